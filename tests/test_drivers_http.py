"""The web driver against the web interface in tests/webapp.py (strong and weak) and raw loopback sockets that
misbehave: logins classified, the certificate pinned before anything is sent, bounds, pacing, evidence."""

from __future__ import annotations

import contextlib
import hashlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from iec62443_harness.evidence import Evidence
from iec62443_harness.fixtures.drivers.errors import DeviceTimeout, InterfaceUnavailable
from iec62443_harness.fixtures.drivers.http import (
    CertificateMismatch,
    CertificateRejected,
    Cookie,
    HttpDriver,
    WebLoginOutcome,
    form_token,
)
from iec62443_harness.fixtures.registry import Registry
from iec62443_harness.fixtures.session_ids import analyse
from iec62443_harness.target import TargetSpec

from tests.certs import make_cert
from tests.webapp import USERS, WebApp, server_context

LOGIN = {"path": "/login", "success_marker": "Logged in as", "failure_marker": "Invalid user name or password",
         "lockout_marker": "(?i)locked", "logout": {"path": "/logout"}, "session_probe": "/status",
         "session_probe_marker": "Logged in as"}
ADMIN, VIEWER = ("admin", USERS["admin"][0]), ("viewer", USERS["viewer"][0])


def driver(base_url: str, rate: float = 1000.0, evidence: Evidence | None = None, **web: object) -> HttpDriver:
    """A driver as a run gets it: from a registry over a target file with this interface."""
    name = "https" if base_url.startswith("https") else "http"
    record = {"base_url": base_url, "session_cookie": "SID", "login": LOGIN,
              "csrf": {"source": "form", "name": "csrf_token", "page": "/status"},
              "protected_action": {"path": "/config", "fields": {"ntp": "127.0.0.1"}, "done_marker": "saved"},
              "timeouts": {"connect_s": 0.5, "reply_s": 0.5}, **web}
    spec = TargetSpec.model_validate({"identity": {"vendor": "T", "model": "M", "firmware": "1"},
                                      "component_type": "embedded_device", "security_level": 2,
                                      "interfaces": {name: record}, "safety": {"rates": {name: rate}}})
    return Registry(spec).driver(name, evidence or Evidence(head=500))


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    return make_cert(tmp_path_factory.mktemp("certs"))


@pytest.fixture(params=["strong", "weak"])
def app(request: pytest.FixtureRequest, cert) -> Iterator[WebApp]:  # type: ignore[no-untyped-def]
    with WebApp(strong=request.param == "strong", tls=server_context(str(cert.cert), str(cert.key))) as web:
        yield web


@contextlib.contextmanager
def raw_server(serve: Callable[[socket.socket], None]) -> Iterator[int]:
    """A loopback TCP server handing each connection to `serve` in a thread of its own."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.05)
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            threading.Thread(target=_quietly, args=(serve, conn, stop), daemon=True).start()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join(2)
        server.close()


def _quietly(serve: Callable[[socket.socket], None], conn: socket.socket, stop: threading.Event) -> None:
    with conn, contextlib.suppress(OSError):
        conn.settimeout(2)
        conn.recv(4096)
        serve(conn)  # then closed: one answer per connection


# --- logins


def test_logins_are_classified(app: WebApp) -> None:
    web = driver(app.base_url)
    assert web.try_login(*ADMIN).outcome is WebLoginOutcome.ACCEPTED
    assert web.try_login("admin", "wrong").outcome is WebLoginOutcome.REJECTED
    assert web.try_login("nobody", "wrong").outcome is WebLoginOutcome.REJECTED
    for _ in range(app.lock_after):
        web.try_login("viewer", "wrong")
    locked = web.try_login(*VIEWER)
    assert locked.outcome is WebLoginOutcome.LOCKED_OUT, locked


def test_an_answer_no_marker_describes_decides_nothing(cert) -> None:  # type: ignore[no-untyped-def]
    with WebApp(strong=True, tls=server_context(str(cert.cert), str(cert.key))) as app:
        web = driver(app.base_url, login={**LOGIN, "success_marker": "Welcome", "failure_marker": "Denied"})
        result = web.try_login(*ADMIN)
    assert result.outcome is WebLoginOutcome.UNRECOGNISED and "neither" in result.detail


def test_throttled_closed_silent_and_dripping_devices() -> None:
    def throttle(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 30\r\nContent-Length: 0\r\n"
                     b"Connection: close\r\n\r\n")

    def drip(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
        for _ in range(100):
            conn.sendall(b"x")
            time.sleep(0.1)

    with raw_server(throttle) as port:
        assert driver(f"http://127.0.0.1:{port}").try_login(*ADMIN).outcome is WebLoginOutcome.THROTTLED
    with raw_server(lambda conn: time.sleep(2)) as port:  # reads the request, never answers
        start = time.monotonic()
        result = driver(f"http://127.0.0.1:{port}").try_login(*ADMIN)
        assert result.outcome is WebLoginOutcome.TIMEOUT and time.monotonic() - start < 1.5
    with raw_server(drip) as port:  # every read comes in time, the answer never ends
        start = time.monotonic()
        with pytest.raises(DeviceTimeout, match="did not end"), driver(f"http://127.0.0.1:{port}").client() as c:
            c.request("GET", "/")
        assert time.monotonic() - start < 1.5  # connect_s + reply_s, and one read
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    assert driver(f"http://127.0.0.1:{port}").try_login(*ADMIN).outcome is WebLoginOutcome.DISCONNECTED


# --- the certificate


def _fp(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest()


def test_a_pin_mismatch_sends_nothing(cert, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    other = make_cert(tmp_path, "other")
    with WebApp(strong=True, tls=server_context(str(cert.cert), str(cert.key))) as app:
        with pytest.raises(CertificateMismatch, match="not a pinned one"):
            driver(app.base_url, certificate_sha256=_fp(other.der)).try_login(*ADMIN)
        assert app.requests == 0  # not even the login page: no byte of HTTP went out
        ok = driver(app.base_url, certificate_sha256=[_fp(other.der), _fp(cert.der).upper()])
        assert ok.try_login(*ADMIN).outcome is WebLoginOutcome.ACCEPTED
        assert driver(app.base_url).peer_certificate() == cert.der
        with pytest.raises(CertificateMismatch, match="not a pinned one"):  # the liveness handshake too
            driver(app.base_url, certificate_sha256=_fp(other.der)).peer_certificate()


def test_a_ca_file_verifies_chain_and_name(cert, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    stranger = make_cert(tmp_path, "stranger")
    with WebApp(strong=True, tls=server_context(str(cert.cert), str(cert.key))) as app:
        assert driver(app.base_url, ca_file=str(cert.cert)).try_login(*ADMIN).outcome is WebLoginOutcome.ACCEPTED
        with pytest.raises(CertificateRejected):
            driver(app.base_url, ca_file=str(stranger.cert)).try_login(*ADMIN)
        named = make_cert(tmp_path, "named", host="plc.invalid")
    with WebApp(strong=True, tls=server_context(str(named.cert), str(named.key))) as app:
        with pytest.raises(CertificateRejected):  # trusted, but it names another host
            driver(app.base_url, ca_file=str(named.cert)).try_login(*ADMIN)
        assert app.requests == 0


# --- sessions


def test_sessions_end_as_the_device_ends_them(app: WebApp) -> None:
    web = driver(app.base_url)
    with web.session(*ADMIN) as session:
        sid = session.session_id
        assert sid and session.logged_in()
        session.logout()
    with web.client() as replay:
        replay.jar["SID"] = sid
        assert web.logged_in(replay) is (not app.strong)  # the weak device keeps the session after logout


def test_a_viewer_is_refused_the_protected_action(app: WebApp) -> None:
    web = driver(app.base_url)
    action = web.iface.protected_action
    with web.session(*VIEWER) as viewer:
        refused = viewer.action(action)
    with web.session(*ADMIN) as admin:
        done = admin.action(action)
    assert refused.refused and not refused.done and refused.status == 403
    assert done.done and not done.refused
    assert app.config_writes == 1


def test_redirects_stay_on_the_device() -> None:
    def away(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 302 Found\r\nLocation: https://elsewhere.invalid/x\r\nContent-Length: 0\r\n"
                     b"Connection: close\r\n\r\n")

    evidence = Evidence()
    with raw_server(away) as port, driver(f"http://127.0.0.1:{port}", evidence=evidence).client() as c:
        answer = c.request("GET", "/")
    assert answer.status == 302 and any("not followed" in line for line in evidence.lines())


def test_requests_are_paced_by_the_bucket(cert) -> None:  # type: ignore[no-untyped-def]
    with WebApp(strong=True, tls=server_context(str(cert.cert), str(cert.key))) as app:
        web = driver(app.base_url, rate=20)
        start = time.monotonic()
        with web.client() as c:
            for _ in range(12):
                c.request("GET", "/login")
        elapsed = time.monotonic() - start
    assert elapsed >= 11 / (0.9 * 20) * 0.9, elapsed  # 18 tokens a second after the first
    assert web.guard.bucket.taken == 12


def test_evidence_shows_no_password_and_no_session_id(app: WebApp) -> None:
    evidence = Evidence(head=500)
    web = driver(app.base_url, evidence=evidence)
    with web.session(*ADMIN) as session:
        sid = session.session_id
    text = "\n".join(evidence.lines())
    assert ADMIN[1] not in text and sid not in text
    assert '"password": "***"' in text and "set-cookie SID=<" in text


# --- parsing


def test_cookie_attributes_and_deletion() -> None:
    c = Cookie.parse("SID=abc; Path=/; Secure; HttpOnly; SameSite=Strict")
    assert c and c.secure and c.http_only and c.same_site == "Strict" and not c.deletes
    assert Cookie.parse("SID=; Max-Age=0").deletes  # type: ignore[union-attr]
    assert Cookie.parse("SID=x; Expires=Thu, 01 Jan 1970 00:00:00 GMT").deletes  # type: ignore[union-attr]
    assert Cookie.parse("garbage") is None


def test_tokens_are_read_from_forms() -> None:
    page = '<form><input type="hidden" name="csrf_token" value="a&amp;b"><meta name=xsrf content=q1></form>'
    assert form_token(page, "csrf_token") == "a&b" and form_token(page, "xsrf") == "q1"
    assert form_token(page, "other") is None


def test_session_id_analysis() -> None:
    import secrets

    assert analyse([secrets.token_hex(16) for _ in range(64)]).bits > 100
    counter = analyse([f"sess-{n:06d}" for n in range(5000, 5064)])
    assert counter.sequential and counter.bits < 20
    stepped = analyse([f"{0x1000_0000 + n * 0x0100_0001:08x}" for n in range(64)])
    assert stepped.sequential and "plus" in stepped.sequential
    fixed = analyse(["deadbeef"] * 64)
    assert fixed.repeated == 63 and fixed.bits == 0
    short = analyse([secrets.token_hex(4) for _ in range(64)])  # random, but 32 bits is too few
    assert short.sequential is None and short.bits < 64


def test_plain_http_has_no_certificate() -> None:
    with pytest.raises(InterfaceUnavailable):
        driver("http://127.0.0.1:9").peer_certificate()


def test_the_login_surface_takes_the_web_interface(app: WebApp) -> None:
    from iec62443_harness.fixtures.drivers.errors import DriverError
    from iec62443_harness.fixtures.login import LoginSurface

    surface = LoginSurface("https", driver(app.base_url))
    assert surface.attempt(*ADMIN).accepted
    refused = surface.attempt("admin", "wrong")
    assert not refused.accepted and refused.outcome == "REJECTED"
    confused = LoginSurface("https", driver(app.base_url, login={**LOGIN, "failure_marker": "nothing like it"}))
    with pytest.raises(DriverError, match="neither accepted nor refused"):
        confused.attempt("admin", "wrong")  # an answer no marker describes is no refusal
