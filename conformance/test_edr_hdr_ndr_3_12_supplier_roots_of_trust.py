"""EDR/HDR/NDR 3.12 Provisioning product supplier roots of trust (SL 2-4).

Judges EDR/HDR/NDR 3.12 as manual: how the supplier's roots of trust were provisioned and are protected is
not visible from outside. The evidence holds what is (fixtures/trust.py): the SSH host key algorithms the device
offers, the key it presents and whether the target file pins it, whether any host certificate is offered, and
what a declared `trust_anchor_list` operation shows. Certificates of other interfaces (https) are not looked at
here yet.
"""

from __future__ import annotations

import pytest
from iec62443_harness.fixtures.outcomes import manual
from iec62443_harness.fixtures.trust import trust_observations


@pytest.mark.judges("EDR/HDR/NDR 3.12")
def test_supplier_roots_of_trust(target, evidence):
    trust_observations(target, evidence)
    manual("the provisioning and protection of the supplier's roots of trust cannot be seen from outside", [
        "Find the supplier's roots of trust the component holds (firmware-signing keys, device identity "
        "certificates, CA certificates) and where (secure element, TPM, protected flash), from the documentation.",
        "Confirm they were provisioned in a controlled process (at manufacture, signed, traceable per unit) and "
        "that their integrity and authenticity are protected (read-only, verified at boot).",
        "Confirm the device identity (host key, certificate in the evidence) chains to the supplier's root where the "
        "documentation says it does, and that a replaced root is detected.",
    ])
