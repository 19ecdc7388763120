"""CR 1.14 Strength of symmetric key-based authentication (SL 2-4), RE(1) Hardware security for symmetric
key-based authentication (SL 3-4).

Judges CR 1.14 over ssh: the server's full algorithm inventory (`fixtures/crypto.py`: the key exchanges that
derive the session keys, host keys, and the ciphers and MACs that authenticate every packet with them) holds
nothing the reference in `harness/data/ssh-crypto-reference.yaml` rejects (CBC, 64-bit blocks, RC4, 3DES,
MD5, SHA-1 and short-tag MACs, SHA-1 key exchanges, none, ...), each failing algorithm named. Symmetric keys
of other protocols and RE(1) are manual.
"""

from __future__ import annotations

import pytest
from iec62443_harness.fixtures import crypto
from iec62443_harness.fixtures.outcomes import manual


@pytest.mark.judges("CR 1.14", over=["ssh"])
def test_ssh_offers_no_weak_symmetric_algorithms(target, ssh, evidence):
    inv = crypto.inventory(ssh, evidence)
    findings = crypto.judge(inv)
    evidence.add("check", f"judged by {crypto.reference().label}: {len(findings)} rejected")
    assert not findings, crypto.verdict_message(findings, "accepts")


@pytest.mark.judges("CR 1.14 RE(1)")
def test_hardware_protection_of_symmetric_keys(target):
    manual("where symmetric keys are kept cannot be seen over the interfaces",
           ["List the pre-shared and long-term symmetric keys the component uses (e.g. for fieldbus security).",
            "Confirm they are stored and used inside a hardware security mechanism.",
            "Confirm they cannot be read out through any interface or debug port."])
