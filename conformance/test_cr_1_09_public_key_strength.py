"""CR 1.9 Strength of public key-based authentication (SL 2-4), RE(1) Hardware security for public
key-based authentication (SL 3-4).

Judges CR 1.9 over ssh: the server's full algorithm inventory (key exchanges, host key types with each key's
size, ciphers, MACs: `fixtures/crypto.py`) holds nothing the reference in
`harness/data/ssh-crypto-reference.yaml` rejects (SHA-1 signatures and key exchanges, DSA, RSA under 2048
bits, CBC, SHA-1 and MD5 MACs, ...), each failing algorithm named; and the server refuses a client key it has
not enrolled (the key is checked, not just its form). RE(1) is manual.
"""

from __future__ import annotations

import paramiko
import pytest
from iec62443_harness.fixtures import crypto
from iec62443_harness.fixtures.login import refused
from iec62443_harness.fixtures.outcomes import manual


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


@pytest.mark.judges("CR 1.9 RE(1)")
def test_hardware_protection_of_private_keys(target):
    manual("where private keys live cannot be seen over the interfaces",
           ["Identify every private key the component holds (host keys, certificates, signing keys).",
            "Confirm each is generated and used inside a hardware security mechanism (TPM, secure element).",
            "Confirm keys cannot be exported in clear through any interface or debug port."])
