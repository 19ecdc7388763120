"""The emulated PLC's web management UI (labs/simplc/web.py) from outside, with httpx and ssl only: the TLS each
profile serves (what the local OpenSSL agrees to at @SECLEVEL=0 recorded), the certificate and the fingerprint
handed over, the login form and banner, sessions (random and rotated, or sequential and fixed), cookie flags,
logout and idle time-out, the role check and the CSRF check on the state-changing request, lockout, and the
audit records the shell's log forwards as syslog.
"""

from __future__ import annotations

import hashlib
import re
import socket
import ssl
import time
import warnings
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest
from iec62443_harness import labs

from tests.support import Syslog

pytestmark = pytest.mark.timeout(60)
BANNER = "Authorized use only. Activity is logged."
FOREIGN = "https://attacker.invalid"


@pytest.fixture(scope="module")
def syslog() -> Iterator[Syslog]:
    collector = Syslog()
    yield collector
    collector.sock.close()


@pytest.fixture(scope="module")
def sl2(syslog: Syslog) -> Iterator[labs.Running]:
    running = labs.start("simplc", "sl2", syslog=syslog.address)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def insecure() -> Iterator[labs.Running]:
    running = labs.start("simplc", "insecure")
    yield running
    running.stop()


def _client_ctx(version: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    ctx.set_ciphers("ALL:@SECLEVEL=0")
    if version is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx.minimum_version = ctx.maximum_version = version
    return ctx


def handshake(running: labs.Running, version: ssl.TLSVersion | None = None) -> tuple[str, str, bytes]:
    """(protocol, cipher, certificate DER) of one handshake with the device's https front."""
    url = urlsplit(running.endpoints["https"]["base_url"])
    with socket.create_connection((url.hostname, url.port), timeout=3) as raw, \
            _client_ctx(version).wrap_socket(raw) as tls:
        return tls.version() or "", tls.cipher()[0], tls.getpeercert(binary_form=True) or b""


def client(running: labs.Running, scheme: str = "https") -> httpx.Client:
    return httpx.Client(base_url=running.endpoints[scheme]["base_url"], verify=_client_ctx(), timeout=3,
                        follow_redirects=False, trust_env=False)


def token(page: str) -> str:
    found = re.search(r'name=csrf_token value="([^"]+)"', page)
    assert found, page
    return found.group(1)


def login(c: httpx.Client, user: str, password: str) -> httpx.Response:
    page = c.get("/login")
    fields = {"username": user, "password": password}
    if "csrf_token" in page.text:
        fields["csrf_token"] = token(page.text)
    return c.post("/login", data=fields, headers={"Origin": str(c.base_url).rstrip("/")})


def logged_in(running: labs.Running, sid: str, scheme: str = "https") -> bool:
    """Whether `sid`, replayed alone from a fresh client, shows the status page."""
    with client(running, scheme) as fresh:
        fresh.cookies.set("sid", sid)
        answer = fresh.get("/status")
    return answer.status_code == 200 and "Logged in as" in answer.text


# --- TLS


def test_sl2_serves_tls_1_2_and_1_3_with_a_strong_certificate(sl2: labs.Running) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec

    for old in (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1):
        with pytest.raises(ssl.SSLError):
            handshake(sl2, old)
    protocol, cipher, der = handshake(sl2, ssl.TLSVersion.TLSv1_2)
    assert protocol == "TLSv1.2" and cipher.startswith("ECDHE-ECDSA-") and ("GCM" in cipher or "CHACHA" in cipher)
    assert handshake(sl2)[0] == "TLSv1.3"
    cert = x509.load_der_x509_certificate(der)
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey) and cert.public_key().curve.name == "secp256r1"
    assert cert.signature_hash_algorithm.name == "sha256"
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "127.0.0.1" in [str(ip) for ip in names.get_values_for_type(x509.IPAddress)]
    pinned = sl2.endpoints["https"]["certificate_sha256"].replace(":", "").lower()
    assert hashlib.sha256(der).hexdigest() == pinned  # the fingerprint handed over is the certificate served
    assert "http" not in sl2.endpoints


def test_insecure_serves_what_openssl_allows_at_seclevel_0(insecure: labs.Running) -> None:
    """Recorded: OpenSSL 3.0 serves TLS 1.0 and 1.1 and an RSA-1024 certificate at @SECLEVEL=0 (not at its default
    level), with SHA-1 CBC suites; SSL 3.0 it no longer speaks at all."""
    from cryptography import x509

    for version, name in ((ssl.TLSVersion.TLSv1, "TLSv1"), (ssl.TLSVersion.TLSv1_1, "TLSv1.1")):
        protocol, cipher, der = handshake(insecure, version)
        assert protocol == name and cipher.endswith("-SHA"), (protocol, cipher)
    assert x509.load_der_x509_certificate(der).public_key().key_size == 1024
    with pytest.raises(ssl.SSLError):  # the client side refuses too: nothing of SSL 3.0 is built
        handshake(insecure, ssl.TLSVersion.SSLv3)


# --- sessions: sl2


def test_sl2_login_page_banner_token_and_cookie_flags(sl2: labs.Running) -> None:
    with client(sl2) as c:
        page = c.get("/login")
        assert page.status_code == 200 and BANNER in page.text and 'type=password' in page.text
        cookie = page.headers["set-cookie"]
        assert {"Secure", "HttpOnly", "SameSite=Strict"} <= {p.strip() for p in cookie.split(";")}, cookie
        pre = c.cookies["sid"]
        assert len(pre) >= 40  # 32 random bytes, base64url
        refused = c.post("/login", data={"username": "admin", "password": sl2.secrets["SIMPLC_ADMIN_PASSWORD"]})
        assert refused.status_code == 403 and "CSRF" in refused.text  # the login form's token is required
        done = c.post("/login", data={"username": "admin", "password": sl2.secrets["SIMPLC_ADMIN_PASSWORD"],
                                      "csrf_token": token(page.text)})
        assert done.status_code == 303 and done.headers["location"] == "/status"
        post = c.cookies["sid"]
        assert post != pre and not logged_in(sl2, pre) and logged_in(sl2, post)  # rotated at login
        status = c.get("/status")
        assert "Logged in as admin (admin)" in status.text
        out = c.post("/logout")
        assert out.status_code == 303 and "Max-Age=0" in out.headers["set-cookie"]
    assert not logged_in(sl2, post)


def test_sl2_session_ends_when_idle(sl2: labs.Running, syslog: Syslog) -> None:
    with client(sl2) as c:
        assert login(c, "operator", sl2.secrets["SIMPLC_OPERATOR_PASSWORD"]).status_code == 303
        sid = c.cookies["sid"]
        assert logged_in(sl2, sid)
        time.sleep(2.6)  # idle_timeout_s 2.0
        assert not logged_in(sl2, sid)
    assert syslog.wait_for("event=logout", "user=operator", "web session: idle")


def test_sl2_roles_and_csrf_on_the_state_changing_request(sl2: labs.Running, syslog: Syslog) -> None:
    origin = sl2.endpoints["https"]["base_url"]
    with client(sl2) as viewer:
        login(viewer, "viewer", sl2.secrets["SIMPLC_VIEWER_PASSWORD"])
        page = viewer.get("/status").text
        refused = viewer.post("/location", data={"location": "Control cabinet 1", "csrf_token": token(page)},
                              headers={"Origin": origin})
        assert refused.status_code == 403 and "permission denied: config_set needs role admin" in refused.text
    assert syslog.wait_for("event=permission_denied", "user=viewer", "source=https:127.0.0.1:")
    with client(sl2) as admin:
        login(admin, "admin", sl2.secrets["SIMPLC_ADMIN_PASSWORD"])
        page = admin.get("/status").text
        forged = admin.post("/location", data={"location": "Control cabinet 1"}, headers={"Origin": FOREIGN})
        assert forged.status_code == 403 and "CSRF" in forged.text
        foreign = admin.post("/location", data={"location": "x", "csrf_token": token(page)},
                             headers={"Origin": FOREIGN})
        assert foreign.status_code == 403  # the token alone is not enough from another origin
        done = admin.post("/location", data={"location": "Control cabinet 1", "csrf_token": token(page)},
                          headers={"Origin": origin})
        assert done.status_code == 200 and "saved" in done.text
        assert "Location: Control cabinet 1" in admin.get("/status").text
        admin.post("/logout")
    assert syslog.wait_for("event=config_change", "user=admin")


def test_sl2_lockout_and_failed_login_audit(sl2: labs.Running, syslog: Syslog) -> None:
    with client(sl2) as c:
        for _ in range(3):  # lockout_threshold 3
            answer = login(c, "locktest", "wrong-Password-1")
            assert answer.status_code == 200 and "Login incorrect" in answer.text
        locked = login(c, "locktest", sl2.secrets["SIMPLC_LOCKTEST_PASSWORD"])
        assert "Login incorrect" in locked.text and "sid" in c.cookies  # no hint that the account is locked
    assert syslog.wait_for("event=login_failed", "user=locktest", "source=https:")
    assert syslog.wait_for("event=account_locked", "user=locktest")
    time.sleep(2.1)  # lockout_unlock_s 2.0
    with client(sl2) as c:
        assert login(c, "locktest", sl2.secrets["SIMPLC_LOCKTEST_PASSWORD"]).status_code == 303


# --- sessions: insecure


def test_insecure_sessions_are_sequential_fixed_and_outlive_logout(insecure: labs.Running) -> None:
    ids = []
    for _ in range(3):
        with client(insecure) as c:
            c.get("/login")
            pre = c.cookies["sid"]
            answer = login(c, "admin", "admin")  # the factory default
            assert answer.status_code == 303
            assert c.cookies["sid"] == pre  # the visitor's id is the logged-in session's (fixation)
            assert "Secure" not in answer.headers["set-cookie"] and "HttpOnly" not in answer.headers["set-cookie"]
            c.post("/logout")
            ids.append(int(pre))
            assert logged_in(insecure, pre)  # alive after logout
    assert ids[1] - ids[0] == ids[2] - ids[1] == 1


def test_insecure_has_no_banner_no_role_check_and_no_csrf_check(insecure: labs.Running) -> None:
    with client(insecure) as c:
        page = c.get("/login").text
        assert BANNER not in page and "csrf_token" not in page
        login(c, "viewer", insecure.secrets["SIMPLC_VIEWER_PASSWORD"])
        forged = c.post("/location", data={"location": "Control cabinet 1"}, headers={"Origin": FOREIGN})
        assert forged.status_code == 200 and "saved" in forged.text


def test_insecure_serves_the_login_over_plain_http(insecure: labs.Running) -> None:
    with client(insecure, "http") as c:
        page = c.get("/login")
        assert page.status_code == 200 and "type=password" in page.text and "sid" in c.cookies
        assert login(c, "admin", "admin").status_code == 303
        assert logged_in(insecure, c.cookies["sid"], "http")
        assert logged_in(insecure, c.cookies["sid"], "https")  # one session table behind both fronts


def test_a_restart_keeps_the_port_and_makes_a_new_certificate() -> None:
    running = labs.start("simplc", "sl1")
    try:
        before = dict(running.endpoints["https"])
        assert handshake(running)[0] == "TLSv1.3"
        running.restart()
        after = running.endpoints["https"]
        assert after["base_url"] == before["base_url"]  # the port is kept where it is still free
        assert after["certificate_sha256"] != before["certificate_sha256"]
        der = handshake(running)[2]
        assert hashlib.sha256(der).hexdigest() == after["certificate_sha256"].replace(":", "").lower()
    finally:
        running.stop()
