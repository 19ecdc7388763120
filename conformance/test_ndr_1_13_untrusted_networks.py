"""NDR 1.13 Access via untrusted networks (SL 1-4, network devices), RE(1) Explicit access request
approval (SL 3-4).

For other component types the rollup marks both rows n/a from the catalogue. For a network device the
check is manual until the lab topology (labs/, network namespaces) places an untrusted zone in front of it.
"""

from __future__ import annotations

import pytest
from iec62443_harness.fixtures.outcomes import manual


@pytest.mark.judges("NDR 1.13", "NDR 1.13 RE(1)")
def test_access_via_untrusted_networks(target):
    manual("no untrusted-network zone is set up in front of the device in this run",
           ["List the access paths from untrusted networks (remote access, VPN, cloud connectors).",
            "Confirm each is monitored and controlled (NDR 1.13): authentication, logging, deny by default.",
            "RE(1): confirm access from untrusted networks requires explicit approval by an assigned role."])
