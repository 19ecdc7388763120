"""CR 1.9 Strength of public key-based authentication (SL 2-4), RE(1) Hardware security for public
key-based authentication (SL 3-4).

Judges CR 1.9 over ssh: the server's full algorithm inventory (key exchanges, host key types with each key's
size, ciphers, MACs: `fixtures/crypto.py`) holds nothing the reference in
`harness/data/ssh-crypto-reference.yaml` rejects (SHA-1 signatures and key exchanges, DSA, RSA under 2048
bits, CBC, SHA-1 and MD5 MACs, ...), each failing algorithm named; and the server refuses a client key it has
not enrolled (the key is checked, not just its form). Over https: every certificate the web interface presents
(`fixtures/tls.py`) has a key of a type and size, and a signature hash, that `harness/data/tls-policy.yaml` accepts
(RSA of 2048 bits or more, EC of 256 or more, no DSA, no SHA-1 or MD5 signature but a root's own). RE(1) is manual.
"""

from __future__ import annotations

import paramiko
import pytest
from iec62443_harness.fixtures import crypto
from iec62443_harness.fixtures.login import refused
from iec62443_harness.fixtures.outcomes import manual
from iec62443_harness.fixtures.tls import key_findings, policy_reference, tls_inventory


@pytest.mark.judges("CR 1.9", over=["ssh"])
def test_ssh_algorithms_and_host_keys_meet_the_reference(target, ssh, evidence):
    inv = crypto.inventory(ssh, evidence)
    findings = crypto.judge(inv)
    evidence.add("check", f"judged by {crypto.reference().label}: {len(findings)} rejected")
    assert not findings, crypto.verdict_message(findings, "offers")


@pytest.mark.judges("CR 1.9", over=["ssh"])
def test_unenrolled_client_key_refused(target, ssh, evidence):
    creds = target.admin() or target.accounts()[0]
    key = paramiko.ECDSAKey.generate(bits=256)
    result = ssh.try_login(creds.username, pkey=key)
    evidence.add("check", f"{creds.username} with an unenrolled ECDSA key -> {result.outcome}")
    assert refused(result), f"a client key that was never enrolled is taken ({result.outcome})"


@pytest.mark.judges("CR 1.9", over=["https"])
def test_tls_certificate_keys_meet_the_policy(target, interface, evidence):
    inv = tls_inventory(target, interface, evidence)
    findings = key_findings(inv)
    evidence.add("check", f"{len(inv.chain)} certificate(s) judged by {policy_reference()}: {len(findings)} rejected")
    assert not findings, f"the {interface} interface authenticates with keys the policy rejects: {' | '.join(findings)}"


@pytest.mark.judges("CR 1.9 RE(1)")
def test_hardware_protection_of_private_keys(target):
    manual("where private keys live cannot be seen over the interfaces",
           ["Identify every private key the component holds (host keys, certificates, signing keys).",
            "Confirm each is generated and used inside a hardware security mechanism (TPM, secure element).",
            "Confirm keys cannot be exported in clear through any interface or debug port."])
