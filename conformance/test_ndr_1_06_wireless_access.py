"""NDR 1.6 Wireless access management (SL 1-4, network devices), RE(1) Unique identification and
authentication (SL 2-4).

For other component types the rollup marks both rows n/a from the catalogue. For a network device they
are n/a when the target file says it has no wireless interface (`wireless: false`); otherwise manual:
the harness drives no radio.
"""

from __future__ import annotations

import pytest
from iec62443_harness.fixtures.outcomes import manual, not_applicable


@pytest.mark.judges("NDR 1.6", "NDR 1.6 RE(1)")
def test_wireless_access_management(target):
    if not target.spec.wireless:
        not_applicable("the target file declares no wireless interface (wireless: false)",
                       ["Confirm the component has no wireless interface (Wi-Fi, Bluetooth, cellular, "
                        "ISA100/WirelessHART, NFC): its target file says wireless: false."])
    manual("the harness has no wireless interface to test from",
           ["Confirm every wireless user (human, process, device) is identified and authenticated.",
            "Confirm wireless identities are unique (RE(1)), e.g. WPA2/3-Enterprise with per-user credentials."])
