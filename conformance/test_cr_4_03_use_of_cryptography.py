"""CR 4.3 Use of cryptography (SL 1-4).

Judges CR 4.3 over ssh: every algorithm the server offers (key exchanges, host key types with each key's
size, ciphers, MACs; `fixtures/crypto.py`) is one the reference in `harness/data/ssh-crypto-reference.yaml`
accepts (a deny-list after NIST SP 800-131A Rev. 2 and BSI TR-02102-4, on ssh-audit's algorithm facts); the
FAIL names each rejected algorithm, and the evidence holds the whole inventory and the reference's name and
version. Over https: the TLS the web interface serves (`fixtures/tls.py`: every protocol version and cipher suite it
accepts, the key exchange groups, the certificate's key and signature, its validity, its host name) meets the policy
in `harness/data/tls-policy.yaml` (NIST SP 800-52 Rev. 2, BSI TR-02102-2); the FAIL names each protocol, suite or key
that does not. Interfaces without cryptography (Modbus, CAN, the console, plain http) are judged by CR 3.1 and
CR 4.1, not here.
"""

from __future__ import annotations

import pytest
from iec62443_harness.fixtures import crypto
from iec62443_harness.fixtures.tls import policy_reference, tls_findings


@pytest.mark.judges("CR 4.3", over=["ssh"])
def test_ssh_cryptography_follows_the_reference(target, ssh, evidence):
    inv = crypto.inventory(ssh, evidence)
    findings = crypto.judge(inv)
    judged = sum(len(inv.of(kind)) for kind in crypto.KINDS)
    evidence.add("check", f"judged by {crypto.reference().label}: {judged} algorithms, {len(findings)} rejected")
    assert not findings, crypto.verdict_message(findings, "offers")


@pytest.mark.judges("CR 4.3", over=["https"])
def test_tls_follows_the_policy(target, interface, evidence):
    findings = tls_findings(target, interface, evidence)
    evidence.add("check", f"judged by {policy_reference()}: {len(findings)} finding(s)")
    assert not findings, f"the {interface} interface's TLS fails the policy: {' | '.join(findings)}"
