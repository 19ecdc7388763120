"""CR 1.9 Strength of public key-based authentication (SL 2-4), RE(1) Hardware security for public
key-based authentication (SL 3-4).

Judges CR 1.9 over ssh: the host keys the server offers and the one it presents are of acceptable
strength (no DSA; RSA of at least 2048 bits; ECDSA of at least 256 bits; Ed25519), and the server
refuses a client key it has not enrolled (the key is checked, not just its form). RE(1) is manual.
"""

from __future__ import annotations

import paramiko
import pytest
from iec62443_harness.fixtures.login import refused
from iec62443_harness.fixtures.outcomes import manual

WEAK_TYPES = {"ssh-dss"}
MIN_BITS = {"ssh-rsa": 2048, "rsa-sha2-256": 2048, "rsa-sha2-512": 2048, "ecdsa-sha2-nistp256": 256,
            "ecdsa-sha2-nistp384": 384, "ecdsa-sha2-nistp521": 521}


@pytest.mark.judges("CR 1.9", over=["ssh"])
def test_host_key_strength(target, ssh, evidence):
    probe = ssh.probe()
    name, bits, fingerprint = ssh.host_key()
    evidence.add("check", f"host key types offered: {', '.join(probe.host_key_types)}; presented: {name} "
                          f"{bits} bits {fingerprint}")
    weak = sorted(WEAK_TYPES & set(probe.host_key_types))
    assert not weak, f"the server offers weak host key types: {', '.join(weak)}"
    assert bits >= MIN_BITS.get(name, 0), f"the {name} host key has {bits} bits (at least {MIN_BITS[name]} needed)"


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
