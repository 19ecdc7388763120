"""CR 4.3 Use of cryptography (SL 1-4).

Judges CR 4.3 over ssh: every algorithm the server offers (key exchanges, host key types with each key's
size, ciphers, MACs; `fixtures/crypto.py`) is one the reference in `harness/data/ssh-crypto-reference.yaml`
accepts (a deny-list after NIST SP 800-131A Rev. 2 and BSI TR-02102-4, on ssh-audit's algorithm facts); the
FAIL names each rejected algorithm, and the evidence holds the whole inventory and the reference's name and
version. Interfaces without cryptography (Modbus, CAN, the console) are judged by CR 3.1 and CR 4.1, not here.
"""

from __future__ import annotations

import pytest
from iec62443_harness.fixtures import crypto


@pytest.mark.judges("CR 4.3", over=["ssh"])
def test_ssh_cryptography_follows_the_reference(target, ssh, evidence):
    inv = crypto.inventory(ssh, evidence)
    findings = crypto.judge(inv)
    judged = sum(len(inv.of(kind)) for kind in crypto.KINDS)
    evidence.add("check", f"judged by {crypto.reference().label}: {judged} algorithms, {len(findings)} rejected")
    assert not findings, crypto.verdict_message(findings, "offers")
