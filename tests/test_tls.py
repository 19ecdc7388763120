"""The TLS analysis (fixtures/tls.py) against servers it did not write itself: nginx from Debian with a weak
and a strong configuration, and Python's own ssl server in this process, each on a loopback port.

What the local OpenSSL (3.0) still agrees to serve is recorded by `test_what_the_local_openssl_serves`: at its
default security level it refuses an RSA-1024 certificate and TLS 1.0/1.1; at @SECLEVEL=0 it serves both, with
SHA-1 signatures and anonymous ECDH, while SSL 2.0/3.0, RC4 and 3DES are not served at all. The weak servers
below are built from what it allows; what it refuses is judged on synthetic inventories (`judge()` alone).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from iec62443_harness.evidence import Evidence
from iec62443_harness.fixtures.drivers.http import CertificateMismatch, fingerprint
from iec62443_harness.fixtures.safety import HarmHalted
from iec62443_harness.fixtures.target import TargetRun
from iec62443_harness.fixtures.tls import (
    CertificateInfo,
    TlsInventory,
    chain_findings,
    judge,
    key_findings,
    load_policy,
    scan,
    tls_findings,
)
from iec62443_harness.target import TargetSpec

from tests.certs import make_cert
from tests.support import end_process, free_port
from tests.webapp import WebApp, server_context

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
needs_nginx = pytest.mark.skipif(NGINX is None, reason="nginx is not installed: apt-get install nginx "
                                                       "(tests/apt-packages.txt)")

NGINX_CONF = """\
daemon off;
master_process off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body; proxy_temp_path {dir}/proxy; fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi; scgi_temp_path {dir}/scgi;
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols {protocols};
        ssl_ciphers "{ciphers}";
        ssl_prefer_server_ciphers on;
        location / {{ return 200 "ok\\n"; }}
    }}
}}
"""
WEAK_NGINX = {"protocols": "TLSv1 TLSv1.1 TLSv1.2", "ciphers": "ALL:@SECLEVEL=0"}
STRONG_NGINX = {"protocols": "TLSv1.2 TLSv1.3", "ciphers": "ECDHE+AESGCM"}


@contextlib.contextmanager
def nginx(folder: Path, cert: Path, key: Path, **tls: str) -> Iterator[int]:
    """nginx in the foreground (one process, ours by PID) on a loopback port, serving `tls`."""
    port = free_port()
    conf = folder / "nginx.conf"
    conf.write_text(NGINX_CONF.format(dir=folder, port=port, cert=cert, key=key, **tls))
    proc = subprocess.Popen([NGINX, "-c", str(conf), "-p", str(folder), "-e", str(folder / "error.log")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                log = folder / "error.log"
                raise RuntimeError(f"nginx did not start: {log.read_text()[-500:] if log.exists() else ''}")
            time.sleep(0.05)
        yield port
    finally:
        end_process(proc, 5)


def _weak_cert(folder: Path):  # type: ignore[no-untyped-def]
    return make_cert(folder, "weak", key="rsa", bits=1024, digest=hashes.SHA1())


@needs_nginx
def test_nginx_weak_configuration_fails_the_policy(tmp_path: Path) -> None:
    cert = _weak_cert(tmp_path)
    with nginx(tmp_path, cert.cert, cert.key, **WEAK_NGINX) as port:
        inv = scan("127.0.0.1", port, connect_s=2)
    findings = judge(inv).findings
    text = "\n".join(findings)
    assert {"TLS 1.0", "TLS 1.1", "TLS 1.2"} <= set(inv.offered()), inv.protocols
    for said in ("TLS 1.0 is offered", "TLS 1.1 is offered", "no forward secrecy", "anonymous",
                 "CBC with an HMAC-SHA-1", "RSA key of 1024 bits", "signed with sha1"):
        assert said in text, (said, text)


@needs_nginx
def test_nginx_strong_configuration_meets_the_policy(tmp_path: Path) -> None:
    cert = make_cert(tmp_path)
    with nginx(tmp_path, cert.cert, cert.key, **STRONG_NGINX) as port:
        inv = scan("127.0.0.1", port, connect_s=2)
    judgement = judge(inv)
    assert judgement.findings == [], judgement.findings
    assert inv.offered() == ["TLS 1.2", "TLS 1.3"]
    assert inv.chain[0].key_type == "EC" and inv.chain[0].signature_hash == "sha256" and inv.hostname_matches
    assert any("self-signed" in n for n in judgement.notes)  # trust is a human's call without a CA file


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1 is deprecated:DeprecationWarning")
def test_what_the_local_openssl_serves(tmp_path: Path) -> None:
    weak = _weak_cert(tmp_path)
    with pytest.raises(ssl.SSLError, match="EE_KEY_TOO_SMALL|key too small"):
        server_context(str(weak.cert), str(weak.key))  # default security level: RSA-1024 refused
    # a default server context asked for TLS 1.0: nothing below 1.2 is served at security level 2
    strong = make_cert(tmp_path)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1
    ctx.load_cert_chain(strong.cert, strong.key)
    with WebApp(strong=True, tls=ctx) as app:
        assert scan("127.0.0.1", app.port, connect_s=2).offered() == ["TLS 1.2", "TLS 1.3"]
    with WebApp(strong=False, tls=server_context(str(weak.cert), str(weak.key), weak=True)) as app:
        inv = scan("127.0.0.1", app.port, connect_s=2)
    assert inv.offered() == ["TLS 1.0", "TLS 1.1", "TLS 1.2", "TLS 1.3"]
    suites = [s for v in inv.offered() for s in inv.protocols[v]]
    assert not [s for s in suites if "RC4" in s or "DES" in s], "this OpenSSL serves RC4/3DES after all"
    assert any("_anon_" in s for s in suites)
    assert inv.chain[0].key_bits == 1024 and inv.chain[0].signature_hash == "sha1"


def test_python_server_judged_both_ways(tmp_path: Path) -> None:
    strong, weak = make_cert(tmp_path), _weak_cert(tmp_path)
    with WebApp(strong=True, tls=server_context(str(strong.cert), str(strong.key))) as app:
        good = judge(scan("127.0.0.1", app.port, connect_s=2))
    with WebApp(strong=False, tls=server_context(str(weak.cert), str(weak.key), weak=True)) as app:
        bad = judge(scan("127.0.0.1", app.port, connect_s=2))
    assert good.findings == []
    assert len(bad.findings) >= 6


def _inventory(**kw: object) -> TlsInventory:
    now = dt.datetime.now(dt.UTC)
    cert = CertificateInfo("CN=dev", "CN=dev", "RSA", 3072, None, "sha256", (now - dt.timedelta(days=1)).isoformat(),
                           (now + dt.timedelta(days=30)).isoformat(), "AA", True, ("127.0.0.1",))
    base = {"host": "127.0.0.1", "port": 443, "server_name": "127.0.0.1",
            "protocols": {"TLS 1.2": ("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",), "TLS 1.3": ()},
            "key_exchange": {}, "chain": (cert,), "hostname_matches": True, "trusted": None, "trust_error": None,
            "incomplete": (), "elapsed_s": 0.0, "connections": 0}
    chain = kw.pop("cert", None)
    if chain is not None:
        base["chain"] = (CertificateInfo(**{**cert.__dict__, **chain}),)  # type: ignore[arg-type]
    return TlsInventory(**{**base, **kw})  # type: ignore[arg-type]


@pytest.mark.parametrize(("change", "said"), [
    ({"protocols": {"SSL 3.0": ("TLS_RSA_WITH_RC4_128_SHA",)}}, "SSL 3.0 is offered"),
    ({"protocols": {"TLS 1.2": ("TLS_RSA_WITH_RC4_128_SHA",)}}, "RC4"),
    ({"protocols": {"TLS 1.2": ("TLS_RSA_WITH_AES_128_GCM_SHA256",)}}, "no forward secrecy"),
    ({"protocols": {"TLS 1.2": ("TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA",)}}, "3DES"),
    ({"protocols": {"TLS 1.2": ("TLS_RSA_EXPORT_WITH_RC4_40_MD5",)}}, "export"),
    ({"protocols": {"TLS 1.2": ("TLS_ECDHE_RSA_WITH_NULL_SHA",)}}, "NULL"),
    ({"key_exchange": {"TLS_DHE_RSA_WITH_AES_128_GCM_SHA256": "DH 1024 bits"}}, "DH group of 1024 bits"),
    ({"key_exchange": {"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDH secp192r1 192 bits"}}, "secp192r1"),
    ({"cert": {"key_bits": 1024}}, "RSA key of 1024 bits"),
    ({"cert": {"key_type": "EC", "key_bits": 224, "curve": "secp224r1"}}, "EC key of 224 bits"),
    ({"cert": {"key_type": "DSA", "key_bits": 2048}}, "DSA"),
    ({"cert": {"signature_hash": "md5"}}, "signed with md5"),
    ({"cert": {"not_after": "2020-01-01T00:00:00+00:00"}}, "expired"),
    ({"cert": {"not_before": "2999-01-01T00:00:00+00:00"}}, "not valid before"),
    ({"hostname_matches": False}, "does not name 127.0.0.1"),
    ({"trusted": False, "trust_error": "unable to get local issuer"}, "does not verify against"),
])
def test_what_no_local_server_can_show_is_judged(change: dict, said: str) -> None:
    assert judge(_inventory()).findings == []
    findings = judge(_inventory(**change)).findings
    assert any(said in f for f in findings), findings


def test_key_and_chain_findings_split_the_certificate_judgement() -> None:
    """CR 1.9 reads the keys and signatures, CR 1.8 the chain's dates, name and trust: together what judge() says."""
    inv = _inventory(cert={"key_bits": 1024, "not_after": "2020-01-01T00:00:00+00:00"}, hostname_matches=False)
    keys, chain = key_findings(inv), chain_findings(inv)
    assert len(keys) == 1 and "RSA key of 1024 bits" in keys[0]
    assert len(chain) == 2 and "expired" in chain[0] and "does not name" in chain[1]
    assert set(keys + chain) <= set(judge(inv).findings)
    assert key_findings(_inventory()) == chain_findings(_inventory()) == []


def test_policy_names_its_references_and_version() -> None:
    policy = load_policy()
    assert policy["version"] and any("SP 800-52" in r for r in policy["references"])
    assert any("TR-02102-2" in r for r in policy["references"])
    assert "SP 800-52" in judge(_inventory()).reference


SPEC = {"identity": {"vendor": "T", "model": "M", "firmware": "1"}, "component_type": "embedded_device",
        "security_level": 2, "safety": {"rates": {"https": 400}}}


def test_scan_is_paced_reused_and_halted(tmp_path: Path) -> None:
    cert = make_cert(tmp_path)
    with WebApp(strong=True, tls=server_context(str(cert.cert), str(cert.key))) as app:
        spec = TargetSpec.model_validate({**SPEC, "interfaces": {"https": {"base_url": app.base_url}}})
        run = TargetRun("bench", tmp_path / "bench.yaml", spec)
        evidence = Evidence(head=200)
        start = time.monotonic()
        assert tls_findings(run, "https", evidence) == []
        elapsed = time.monotonic() - start
        bucket = run.registry.bucket("https")
        inv = tls_findings.__globals__["_INVENTORIES"][run.registry][("https", "127.0.0.1", app.port)]
        assert bucket.taken == inv.connections > 100  # every connection took a token first
        # at 90 % of 400/s, less the one burst the bucket may start with
        assert elapsed >= (inv.connections - bucket._capacity) / (0.9 * 400) * 0.95
        assert any("policy" in line and "SP 800-52" in line for line in evidence.lines())
        taken = bucket.taken
        assert tls_findings(run, "https", Evidence()) == [] and bucket.taken == taken  # reused: nothing sent
        # a pin must be the certificate scanned: a cached inventory of another one is scanned again (a device
        # restarted on its port with a new certificate), and a scan of another one judges nothing
        run.registry.spec = run.spec = spec.with_endpoints({"https": {"certificate_sha256": "00" * 32}})
        with pytest.raises(CertificateMismatch, match="not a pinned one"):
            tls_findings(run, "https", Evidence())
        assert bucket.taken > taken
        taken = bucket.taken
        run.registry.spec = run.spec = spec.with_endpoints({"https": {"certificate_sha256": fingerprint(cert.der)}})
        assert tls_findings(run, "https", Evidence()) == [] and bucket.taken == taken
        run.registry.spec = run.spec = spec
        run.begin_test()
        run.guard("https").halt("essential function lost")
        run.registry.spec = spec.with_endpoints({"https": {"base_url": app.base_url.replace("127.0.0.1",
                                                                                            "127.0.0.2")}})
        run.spec = run.registry.spec
        with pytest.raises(HarmHalted):
            tls_findings(run, "https", Evidence())
