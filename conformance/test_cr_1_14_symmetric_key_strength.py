"""CR 1.14 Strength of symmetric key-based authentication (SL 2-4), RE(1) Hardware security for symmetric
key-based authentication (SL 3-4).

Judges CR 1.14 over ssh: the message authentication codes and ciphers the server offers (which
authenticate every packet with session keys) include none that is broken or weak (MD5 or 96-bit MACs,
64-bit or CBC ciphers, RC4, none). Symmetric keys of other protocols and RE(1) are manual.
"""

from __future__ import annotations

import pytest
from iec62443_harness.fixtures.outcomes import manual

WEAK_MACS = ("hmac-md5", "hmac-md5-96", "hmac-sha1-96", "umac-64@openssh.com", "none", "hmac-md5-etm@openssh.com",
             "hmac-md5-96-etm@openssh.com", "umac-64-etm@openssh.com", "hmac-ripemd160")
WEAK_CIPHERS = ("3des-cbc", "blowfish-cbc", "cast128-cbc", "arcfour", "arcfour128", "arcfour256", "des-cbc",
                "aes128-cbc", "aes192-cbc", "aes256-cbc", "rijndael-cbc@lysator.liu.se", "none")


@pytest.mark.judges("CR 1.14", over=["ssh"])
def test_ssh_offers_no_weak_symmetric_algorithms(target, ssh, evidence):
    probe = ssh.probe()
    macs = set(probe.macs_c2s) | set(probe.macs_s2c)
    ciphers = set(probe.ciphers_c2s) | set(probe.ciphers_s2c)
    weak = sorted(macs & set(WEAK_MACS)) + sorted(ciphers & set(WEAK_CIPHERS))
    evidence.add("check", f"MACs offered: {', '.join(sorted(macs))}; ciphers: {', '.join(sorted(ciphers))}")
    assert not weak, f"the ssh server accepts weak symmetric algorithms: {', '.join(weak)}"


@pytest.mark.judges("CR 1.14 RE(1)")
def test_hardware_protection_of_symmetric_keys(target):
    manual("where symmetric keys are kept cannot be seen over the interfaces",
           ["List the pre-shared and long-term symmetric keys the component uses (e.g. for fieldbus security).",
            "Confirm they are stored and used inside a hardware security mechanism.",
            "Confirm they cannot be read out through any interface or debug port."])
