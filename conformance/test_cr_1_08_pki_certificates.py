"""CR 1.8 Public key infrastructure certificates (SL 2-4).

Judges CR 1.8 as manual, with what can be seen: whether the ssh server presents a certificate-type host
key. The interfaces the harness drives (Modbus, CAN, serial, ssh with raw keys) do not carry X.509
certificates, so how the component validates and operates PKI certificates is checked by hand.
"""

from __future__ import annotations

import pytest
from iec62443_harness.fixtures.outcomes import manual

CHECKLIST = [
    "List every interface that uses certificates (TLS, OPC UA, HTTPS, signed updates, SSH certificates).",
    "Confirm certificates are issued by a PKI per the site's policy (not self-signed defaults).",
    "Confirm the component validates chains, validity dates, revocation (CRL/OCSP) and key usage.",
    "Confirm certificate-based identities map to users or devices per CR 1.1/1.2.",
]


@pytest.mark.judges("CR 1.8", over=["ssh"])
def test_certificates_checked_by_hand(target, ssh, evidence):
    probe = ssh.probe()
    certs = [t for t in probe.host_key_types if "-cert-" in t]
    evidence.add("check", f"ssh host key types offered: {', '.join(probe.host_key_types)}; "
                          f"certificate types: {', '.join(certs) or 'none'}")
    manual("the component's use of PKI certificates is not observable over the declared interfaces", CHECKLIST)
