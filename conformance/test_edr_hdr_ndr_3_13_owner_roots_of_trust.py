"""EDR/HDR/NDR 3.13 Provisioning asset owner roots of trust (SL 2-4).

Judges EDR/HDR/NDR 3.13 over ssh where the target file declares `assurance.owner_trust` and the operations
`trust_anchor_install` / `trust_anchor_remove` (run only with `safety.allow_config_changes`, asked first): the
harness makes a CA of its own (Ed25519) and an SSH user certificate it signs for the declared account. The
certificate must be refused before; each account of a role other than the administrator's tries to install the
CA and must not get it trusted; the administrator installs it and the certificate must then be accepted, while
one signed by another CA is still refused; the administrator removes it and the certificate must be refused
again (else ERROR: the device is left trusting the harness's CA). A FAIL names the step the device got wrong.
The rest of the row stays manual with a checklist: where the owner's anchors are kept and how they are
protected against change and disclosure, and whether a refused attempt is audited. The evidence also holds
what can be seen of the roots of trust (fixtures/trust.py): the SSH host keys, whether a host certificate is
offered, and what a declared `trust_anchor_list` operation shows. Manual (checklist) without `owner_trust`.
"""

from __future__ import annotations

import pytest
from iec62443_harness.fixtures.outcomes import inconclusive, manual
from iec62443_harness.fixtures.trust import owner_anchor_round, trust_observations

CHECKLIST = [
    "Find how the asset owner installs its own roots of trust (CA certificates, host keys, signing keys): "
    "command, web page, vendor tool (documentation).",
    "As the administrator, install an owner anchor (a lab CA) and confirm the component uses it (a "
    "certificate it signs is accepted; one it does not sign is refused); remove it again.",
    "As each other role, try to install or replace an anchor: confirm it is refused and audited.",
    "Confirm installed anchors are protected against change (integrity) and, for private keys, disclosure.",
]
ACCEPTED = "ACCEPTED"


@pytest.mark.judges("EDR/HDR/NDR 3.13")
def test_owner_roots_of_trust(target, evidence):
    trust_observations(target, evidence)
    observed = " (installing an SSH user CA was exercised: see the other test)" \
        if target.spec.assurance.owner_trust else ""
    manual(f"where the asset owner's roots of trust are kept, and how they are protected, is checked by hand"
           f"{observed}", CHECKLIST[3:] if observed else CHECKLIST)


@pytest.mark.judges("EDR/HDR/NDR 3.13", over=["ssh"])
def test_owner_anchor_installs_through_the_declared_command(target, interface, evidence):
    trust = target.spec.assurance.owner_trust
    if trust is None:
        manual("the target file declares no way to install an owner root of trust (assurance.owner_trust with "
               "trust_anchor_install and trust_anchor_remove)", CHECKLIST)
    admin = target.admin()
    if admin is None:
        manual(f"no normal account has the administrator role ({target.spec.policies.administrator_role}) to "
               "install an owner anchor with", CHECKLIST)
    others = [c for c in target.accounts(purpose="normal") if c.role != admin.role and c.password]
    found = owner_anchor_round(target, evidence, admin, others)
    if found.removed == ACCEPTED:
        inconclusive("the harness's CA is still trusted after trust_anchor_remove: the device is left trusting "
                     "it; remove it by hand")
    assert found.before != ACCEPTED, "a certificate signed by a CA made just now was accepted before any anchor " \
                                     "was installed: the device does not check who signed it"
    installed_by = [name for name, outcome in found.by_others.items() if outcome == ACCEPTED]
    assert not installed_by, (f"{', '.join(installed_by)} (not the administrator role) installed an owner root of "
                              "trust through trust_anchor_install: the certificate it signs was accepted")
    assert found.installed == ACCEPTED, ("the owner anchor installed through trust_anchor_install is not used: a "
                                         f"certificate it signs was refused ({found.installed})")
    assert found.foreign != ACCEPTED, "with the owner anchor installed, a certificate from another CA was accepted"
    if not others:
        evidence.add("check", "no account of another role is declared: who else may install an anchor was not tried")
