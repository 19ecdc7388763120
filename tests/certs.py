"""Self-signed certificates for the harness's own TLS tests, made with `cryptography`: a strong one (EC P-256
or RSA 2048+, SHA-256, valid now, names 127.0.0.1) and deliberately weak ones (RSA 1024, SHA-1, expired,
another host name). cryptography no longer signs with SHA-1, so a SHA-1 certificate comes from the openssl
command line."""

from __future__ import annotations

import datetime as dt
import ipaddress
import subprocess
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class Cert:
    cert: Path
    key: Path
    der: bytes


def make_cert(folder: Path, name: str = "strong", *, key: str = "ec", bits: int = 2048,
              digest: hashes.HashAlgorithm | None = None, host: str = "127.0.0.1", days: int = 30,
              expired: bool = False) -> Cert:
    """A self-signed certificate and its key as PEM files in `folder`."""
    if isinstance(digest, hashes.SHA1):
        return _openssl_sha1(folder, name, bits, host, days)
    private = ec.generate_private_key(ec.SECP256R1()) if key == "ec" else rsa.generate_private_key(65537, bits)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = dt.datetime.now(dt.UTC)
    start = now - dt.timedelta(days=days + 2) if expired else now - dt.timedelta(minutes=5)
    try:
        san: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        san = x509.DNSName(host)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(private.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(start)
            .not_valid_after(start + dt.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName([san]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(private, digest or hashes.SHA256()))
    cert_path, key_path = folder / f"{name}.crt", folder / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    return Cert(cert_path, key_path, cert.public_bytes(serialization.Encoding.DER))


def _openssl_sha1(folder: Path, name: str, bits: int, host: str, days: int) -> Cert:
    cert_path, key_path = folder / f"{name}.crt", folder / f"{name}.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", f"rsa:{bits}", "-sha1", "-nodes", "-subj", f"/CN={host}",
                    "-addext", f"subjectAltName=IP:{host}", "-days", str(days), "-keyout", str(key_path),
                    "-out", str(cert_path)], check=True, capture_output=True, timeout=60)
    der = x509.load_pem_x509_certificate(cert_path.read_bytes()).public_bytes(serialization.Encoding.DER)
    return Cert(cert_path, key_path, der)
