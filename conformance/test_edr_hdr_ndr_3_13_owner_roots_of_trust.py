"""EDR/HDR/NDR 3.13 Provisioning asset owner roots of trust (SL 2-4).

Judges EDR/HDR/NDR 3.13 as manual: whether the asset owner can provision roots of trust of its own, and how
they are protected, is a human's check. The evidence holds what can be seen (fixtures/trust.py): the SSH host
keys, whether a host certificate is offered, and what a declared `trust_anchor_list` operation shows.
Not done yet: installing an owner anchor through a declared command (no emulated device offers one to prove
such a step against); the checklist asks for it.
"""

from __future__ import annotations

import pytest
from iec62443_harness.fixtures.outcomes import manual
from iec62443_harness.fixtures.trust import trust_observations


@pytest.mark.judges("EDR/HDR/NDR 3.13")
def test_owner_roots_of_trust(target, evidence):
    trust_observations(target, evidence)
    manual("provisioning the asset owner's roots of trust is checked by hand", [
        "Find how the asset owner installs its own roots of trust (CA certificates, host keys, signing keys): "
        "command, web page, vendor tool (documentation).",
        "As the administrator, install an owner anchor (a lab CA) and confirm the component uses it (a "
        "certificate it signs is accepted; one it does not sign is refused); remove it again.",
        "As each other role, try to install or replace an anchor: confirm it is refused and audited.",
        "Confirm installed anchors are protected against change (integrity) and, for private keys, disclosure.",
    ])
