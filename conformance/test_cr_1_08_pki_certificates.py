"""CR 1.8 Public key infrastructure certificates (SL 2-4).

Judges CR 1.8 over ssh and https with what can be seen, and leaves the PKI itself to a human. Over ssh: whether
the server presents a certificate-type host key (evidence only). Over https: the certificate chain the web
interface presents (`fixtures/tls.py`): a certificate outside its validity dates, a leaf that does not name the
address the device is reached at, or a chain that does not verify against the target file's CA
(`interfaces.https.ca_file`) fails; otherwise the chain is written to the evidence and the row stays manual. How the
component obtains, validates (revocation, key usage) and renews certificates under a PKI is checked by hand.
"""

from __future__ import annotations

import pytest
from iec62443_harness.fixtures.outcomes import manual
from iec62443_harness.fixtures.tls import chain_findings, tls_inventory

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


@pytest.mark.judges("CR 1.8", over=["https"])
def test_web_certificate_chain(target, interface, evidence):
    inv = tls_inventory(target, interface, evidence)
    problems = chain_findings(inv)
    evidence.add("check", f"chain of {len(inv.chain)}: {'; '.join(c.subject for c in inv.chain)}; "
                          f"{len(problems)} problem(s) a client would reject")
    assert not problems, f"the {interface} certificate chain would be rejected: {' | '.join(problems)}"
    leaf, root = inv.chain[0], inv.chain[-1]
    issued = "self-signed" if root.self_signed and len(inv.chain) == 1 else f"issued by {root.issuer}"
    trust = {True: "verifies against the declared CA", None: "no CA declared (interfaces.https.ca_file)"}[inv.trusted]
    manual(f"the {interface} certificate is valid, names {inv.server_name} and is {issued}; {trust}: whether it comes "
           "from the site's PKI, and how the component validates and renews certificates, is for a human",
           [*CHECKLIST, f"Confirm the web certificate (SHA-256 {leaf.sha256}) is the one the site's PKI issued to "
                        "this component, or record why a self-signed one is accepted."])
