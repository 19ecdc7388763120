"""The emulated PLC's web management UI: https, and on profiles with `web_plain_http` the same UI over plain http.

One UI on the device's accounts, roles and audit log (the shell's), stdlib `http.server` under `ssl`:

    GET  /           303 to /status when logged in, else to /login
    GET  /login      the login form; the banner (setting `banner`) above it when there is one. Every visitor
                     without a session gets one here (cookie `sid`) and, with strong sessions, an anti-CSRF
                     token (hidden input `csrf_token`) bound to it
    POST /login      username, password (and csrf_token): `Accounts.authenticate`, so lockout and the audit
                     records (login_ok, login_failed, account_locked) are the shell's. Accepted: 303 to /status;
                     refused: the form again, "Login incorrect" (with `reveal_unknown_user`: "Unknown user",
                     "Wrong password", "Account locked", "Account disabled"); accepted beyond the user's
                     `max_sessions` live web sessions: the form again, "Too many sessions"
    GET  /status     logged in: "Logged in as USER (ROLE)", firmware, coil 0, the location label, the token and
                     the location form; otherwise 303 to /login (the session probe)
    POST /logout     303 to /login; audited `logout`
    POST /location   location=TEXT (and csrf_token): the device's location label. Operation `config_set` of the
                     shell's role table (admin; anyone with `role_enforcement` off). Refused: 403 "permission
                     denied: config_set needs role admin", audited permission_denied; done: 200 "saved",
                     audited config_change. Its initial value is LOCATION: writing that back changes nothing.

Profiles differ in mechanisms, not flags a client could read:
- `web_tls: modern`: TLS 1.2 and 1.3, ECDHE with AES-GCM or ChaCha20 only, an EC P-256 certificate signed with
  SHA-256. `legacy`: every protocol and suite this OpenSSL still serves at @SECLEVEL=0 (TLS 1.0 to 1.3, CBC with
  SHA-1, static RSA, anonymous ECDH) and an RSA-1024 certificate. What OpenSSL 3.0 refuses even then: SSL 2.0
  and 3.0 (not built), RC4 and 3DES (not in its default provider), so the legacy server offers none of those;
  and `cryptography` no longer signs with SHA-1, so the legacy certificate's signature is SHA-256.
- `web_sessions: strong`: random ids (32 bytes) rotated at login (the visitor's session is dropped), ended at
  logout and after `idle_timeout_s` (the live setting) without a request; cookie `Secure` (over TLS),
  `HttpOnly`, `SameSite=Strict`; the login and every state-changing request need the session's token and,
  when the browser sends one, an Origin that is the UI's own (403 "CSRF check failed" otherwise).
  `weak`: sequential 8-digit ids handed out before login and kept by it (fixation), alive after logout,
  no cookie flags, no token or origin check.
- `web_plain_http`: the whole UI, login included, over plain http as well.

Certificates are made at start, fresh every time; the private key is handed to OpenSSL through a memfd and
never touches the disk. The certificate's SHA-256 fingerprint goes out with the endpoints
(`https: {base_url, certificate_sha256}`), so a client can pin the device it started.

Web sessions are the UI's own table (at most MAX_SESSIONS, oldest dropped): `session list` stays the shell's.
The live setting `max_sessions` limits each user's logged-in web sessions (per interface, as CR 2.7 asks): a
login beyond it is refused ("Too many sessions", audited session_refused) until one ends (logout, idle).
`system restart` and `purge` end them all. Bounded: MAX_CONNECTIONS at a time, a socket
time-out of SOCKET_TIMEOUT_S, request bodies of MAX_BODY bytes. Audit source "https:<host>:<port>"
or "http:<host>:<port>". Faults are not modelled here.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import html
import ipaddress
import itertools
import os
import secrets
import socket
import ssl
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from iec62443_harness.labs.simplc.accounts import AuthResult
from iec62443_harness.labs.simplc.shell import Shell, min_role, setting

COOKIE = "sid"
TOKEN = "csrf_token"
LOCATION = "Control cabinet 1"
OPERATION = "config_set"  # what changing the location needs, in the shell's role table
MAX_SESSIONS = 512
MAX_CONNECTIONS = 32
MAX_BODY = 16 * 1024
SOCKET_TIMEOUT_S = 10.0
POLL_S = 0.1
CERT_DAYS = 365
MODERN_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"  # TLS 1.2; TLS 1.3 keeps OpenSSL's three AEAD suites
LEGACY_CIPHERS = "ALL:@SECLEVEL=0"
_REVEALED = {AuthResult.UNKNOWN_USER: "Unknown user", AuthResult.BAD_PASSWORD: "Wrong password",
             AuthResult.LOCKED: "Account locked", AuthResult.DISABLED: "Account disabled"}


# --- TLS


def make_certificate(legacy: bool, host: str) -> tuple[bytes, bytes]:
    """(certificate PEM, private key PEM): self-signed, naming `host` (and localhost) in subjectAltName."""
    key = rsa.generate_private_key(65537, 1024) if legacy else ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "SimPLC Labs"),
                      x509.NameAttribute(NameOID.COMMON_NAME, f"simplc {host}")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=CERT_DAYS))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(host)),
                                                        x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def tls_context(legacy: bool, cert_pem: bytes, key_pem: bytes) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    if legacy:
        ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
        ctx.set_ciphers(LEGACY_CIPHERS)  # before the key is loaded: at the default level RSA-1024 is refused
    else:
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_ciphers(MODERN_CIPHERS)
    fd = os.memfd_create("simplc-tls", os.MFD_CLOEXEC)  # in memory only: the key never reaches the disk
    try:
        os.write(fd, cert_pem + key_pem)
        ctx.load_cert_chain(f"/proc/self/fd/{fd}")
    finally:
        os.close(fd)
    return ctx


def fingerprint(cert_pem: bytes) -> str:
    der = x509.load_pem_x509_certificate(cert_pem).public_bytes(serialization.Encoding.DER)
    digest = hashlib.sha256(der).hexdigest().upper()
    return ":".join(digest[i:i + 2] for i in range(0, 64, 2))


# --- sessions


@dataclass
class WebSession:
    sid: str
    token: str
    user: str | None = None  # None: a visitor who has not logged in
    last: float = field(default_factory=time.monotonic)


class SessionTable:
    """The UI's sessions, shared by its https and http fronts."""

    def __init__(self, device: Any) -> None:
        self.device = device
        self.strong = getattr(device.profile, "web_sessions", "strong") == "strong"
        self._lock = threading.Lock()
        self._live: OrderedDict[str, WebSession] = OrderedDict()
        self._counter = itertools.count(10_000_001)

    def _new_sid(self) -> str:
        return secrets.token_urlsafe(32) if self.strong else f"{next(self._counter):08d}"

    def visitor(self) -> WebSession:
        session = WebSession(self._new_sid(), secrets.token_urlsafe(24))
        with self._lock:
            self._live[session.sid] = session
            while len(self._live) > MAX_SESSIONS:
                self._live.popitem(last=False)
        return session

    def get(self, sid: str | None, source: str) -> WebSession | None:
        """The live session `sid` names, its activity refreshed; one idle too long is ended here."""
        if not sid:
            return None
        with self._lock:
            session = self._live.get(sid)
            if session is None:
                return None
            if self._idle(session):
                del self._live[sid]
            else:
                session.last = time.monotonic()
                return session
        self._ended(session, source, "idle")
        return None

    def _idle(self, session: WebSession) -> bool:
        idle = setting(self.device, "idle_timeout_s")
        return bool(idle) and time.monotonic() - session.last > idle

    def reap(self) -> None:
        """End the sessions idle too long now (the audit record then says so at once, not at the next visit)."""
        with self._lock:
            gone = [s for s in self._live.values() if self._idle(s)]
            for s in gone:
                del self._live[s.sid]
        for s in gone:
            self._ended(s, "web", "idle")

    def _ended(self, session: WebSession, source: str, why: str) -> None:
        if session.user is not None:
            self.device.audit.record("logout", session.user, source, "success", f"web session: {why}")

    def login(self, session: WebSession | None, user: str) -> WebSession | None:
        """The session of a user who just logged in: a new one (strong), or the visitor's own (weak); None when
        the user already holds `max_sessions` (the live setting) live web sessions."""
        limit = setting(self.device, "max_sessions")
        with self._lock:
            held = sum(1 for s in self._live.values() if s.user == user and s is not session and not self._idle(s))
            if limit and held >= limit:
                return None
            if self.strong or session is None:
                if session is not None:
                    self._live.pop(session.sid, None)
                session = WebSession(self._new_sid(), secrets.token_urlsafe(24))
            session.user, session.last = user, time.monotonic()
            self._live[session.sid] = session
            self._live.move_to_end(session.sid)
            while len(self._live) > MAX_SESSIONS:
                self._live.popitem(last=False)
        return session

    def logout(self, session: WebSession, source: str) -> None:
        if self.strong:
            with self._lock:
                self._live.pop(session.sid, None)
        self._ended(session, source, "logout")  # the weak UI says goodbye and keeps the session

    def clear(self) -> None:
        with self._lock:
            self._live.clear()


# --- the UI


class WebUI:
    """Both fronts of the UI: `https` always, `http` when a plain socket is given. Stop with close()."""

    def __init__(self, device: Any, https_sock: socket.socket, http_sock: socket.socket | None = None) -> None:
        self.device = device
        self.sessions = SessionTable(device)
        self.location = LOCATION
        legacy = getattr(device.profile, "web_tls", "modern") == "legacy"
        host = https_sock.getsockname()[0]
        cert_pem, key_pem = make_certificate(legacy, host)
        self.certificate_sha256 = fingerprint(cert_pem)
        self.servers = [_Server(self, https_sock, tls_context(legacy, cert_pem, key_pem))]
        if http_sock is not None:
            self.servers.append(_Server(self, http_sock, None))
        self._threads = [threading.Thread(target=s.serve_forever, kwargs={"poll_interval": POLL_S},
                                          name=f"simplc-{s.scheme}", daemon=True) for s in self.servers]
        for thread in self._threads:
            thread.start()
        if isinstance(getattr(device, "restart_hooks", None), list):
            device.restart_hooks.append(lambda: self.sessions.clear)

    def endpoints(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for server in self.servers:
            out[server.scheme] = {"base_url": server.base_url}
            if server.scheme == "https":
                out["https"]["certificate_sha256"] = self.certificate_sha256
        return out

    def close(self) -> None:
        for server in self.servers:
            server.shutdown()
            server.server_close()
        for thread in self._threads:
            thread.join(2.0)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, ui: WebUI, sock: socket.socket, tls: ssl.SSLContext | None) -> None:
        self.ui, self.tls = ui, tls
        self.scheme = "https" if tls is not None else "http"
        super().__init__(sock.getsockname()[:2], _Handler, bind_and_activate=False)
        self.socket.close()
        self.socket = sock  # already bound and listening (the device picked the port)
        host, port = sock.getsockname()[:2]
        self.base_url = f"{self.scheme}://{host}:{port}"
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)

    def service_actions(self) -> None:
        self.ui.sessions.reap()

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):  # too many connections: drop this one, as a small device does
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def finish_request(self, request: socket.socket, client_address: Any) -> None:
        request.settimeout(SOCKET_TIMEOUT_S)
        with contextlib.suppress(OSError):
            request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.tls is not None:  # the handshake in the connection's own thread: a slow client stalls no other
            try:
                request = self.tls.wrap_socket(request, server_side=True)
            except (ssl.SSLError, OSError):
                return  # a scanner's refused suite, a client that hung up
        super().finish_request(request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients hang up mid-request (scanners, time-outs): nothing to report


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def version_string(self) -> str:
        return "SimPLC-web/1.0"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (http.server's signature)
        pass

    # -- plumbing

    @property
    def ui(self) -> WebUI:
        return self.server.ui

    @property
    def source(self) -> str:
        return f"{self.server.scheme}:{self.client_address[0]}:{self.client_address[1]}"

    def _cookie(self) -> str | None:
        for part in (self.headers.get("Cookie") or "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == COOKIE:
                return value
        return None

    def _session(self) -> WebSession | None:
        return self.ui.sessions.get(self._cookie(), self.source)

    def _fields(self) -> dict[str, str] | None:
        """The urlencoded body; None when it is too long (answered 413 by the caller)."""
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0
        if length > MAX_BODY:
            return None
        body = self.rfile.read(length).decode("utf-8", "replace") if length > 0 else ""
        return {k: v[0] for k, v in parse_qs(body).items()}

    def _set_cookie(self, sid: str) -> str:
        value = f"{COOKIE}={sid}; Path=/"
        if self.ui.sessions.strong:
            value += ("; Secure" if self.server.scheme == "https" else "") + "; HttpOnly; SameSite=Strict"
        return value

    def _send(self, status: int, body: str = "", *, location: str | None = None, cookie: str | None = None) -> None:
        page = f"<!doctype html><html><head><title>SimPLC</title></head><body>{body}</body></html>" if body else ""
        data = page.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        if location:
            self.send_header("Location", location)
        if cookie:
            self.send_header("Set-Cookie", cookie)
        self.end_headers()
        self.wfile.write(data)

    def _csrf_ok(self, session: WebSession | None, fields: dict[str, str]) -> bool:
        """Strong sessions only: the session's own token, and the UI's own origin when the browser names one."""
        if not self.ui.sessions.strong:
            return True
        origin = self.headers.get("Origin")
        if origin is not None and origin != self.server.base_url:
            return False
        return session is not None and secrets.compare_digest(fields.get(TOKEN, ""), session.token)

    def _refuse_csrf(self, user: str | None, what: str) -> None:
        origin = self.headers.get("Origin") or "none"
        self.ui.device.audit.record("permission_denied", user, self.source, "denied",
                                    f"{what}: CSRF check failed (origin {origin})")
        self._send(403, "<p>CSRF check failed</p>")

    # -- pages

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        path = self.path.split("?")[0]
        session = self._session()
        if path == "/":
            self._send(303, location="/status" if session and session.user else "/login")
        elif path == "/login":
            self._login_page(session)
        elif path == "/status":
            self._status(session)
        else:
            self._send(404, "<p>not found</p>")

    def do_POST(self) -> None:  # noqa: N802
        path = self.path.split("?")[0]
        fields = self._fields()
        if fields is None:
            self.close_connection = True
            self._send(413, "<p>request too large</p>")
            return
        session = self._session()
        if path == "/login":
            self._login(session, fields)
        elif path == "/logout":
            cookie = None
            if session is not None:
                self.ui.sessions.logout(session, self.source)
                if self.ui.sessions.strong:  # the browser forgets the id too
                    cookie = self._set_cookie("") + "; Max-Age=0"
            self._send(303, location="/login", cookie=cookie)
        elif path == "/location":
            self._set_location(session, fields)
        else:
            self._send(404, "<p>not found</p>")

    def _login_page(self, session: WebSession | None, message: str = "", status: int = 200) -> None:
        cookie = None
        if session is None:  # every visitor gets a session here: the weak UI keeps it at login
            session = self.ui.sessions.visitor()
            cookie = self._set_cookie(session.sid)
        banner = setting(self.ui.device, "banner")
        notice = f"<pre class=notice>{html.escape(banner)}</pre>" if banner else ""
        said = f"<p class=error>{html.escape(message)}</p>" if message else ""
        token = f"<input type=hidden name={TOKEN} value=\"{session.token}\">" if self.ui.sessions.strong else ""
        self._send(status, f"<h1>SimPLC management</h1>{notice}{said}<form method=post action=/login>{token}"
                           "<label>User name <input name=username></label>"
                           "<label>Password <input name=password type=password></label>"
                           "<button>Log in</button></form>", cookie=cookie)

    def _login(self, session: WebSession | None, fields: dict[str, str]) -> None:
        if not self._csrf_ok(session, fields):
            self._refuse_csrf(None, "login")
            return
        user, password = fields.get("username", ""), fields.get("password", "")
        result = self.ui.device.accounts.authenticate(user, password, self.source)
        if result is not AuthResult.OK:
            reveal = setting(self.ui.device, "reveal_unknown_user")
            self._login_page(session, _REVEALED[result] if reveal else "Login incorrect")
            return
        new = self.ui.sessions.login(session, user)
        if new is None:
            limit = setting(self.ui.device, "max_sessions")
            self.ui.device.audit.record("session_refused", user, self.source, "failure",
                                        f"too many web sessions: {limit} of {limit} open")
            self._login_page(session, f"Too many sessions: {limit} open; log out of one first")
            return
        self._send(303, location="/status", cookie=self._set_cookie(new.sid))

    def _status(self, session: WebSession | None) -> None:
        if session is None or session.user is None:
            self._send(303, location="/login")
            return
        device = self.ui.device
        role = device.accounts.role_of(session.user) or "none"
        coil = device.image.read("co", 0, 1)[0]
        self._send(200, f"<h1>SimPLC status</h1><p>Logged in as {html.escape(session.user)} ({role})</p>"
                        f"<p>Firmware {html.escape(device.firmware.running)}; output 0 is {'on' if coil else 'off'}</p>"
                        f"<p>Location: {html.escape(self.ui.location)}</p>"
                        f"<form method=post action=/location><input type=hidden name={TOKEN} value=\"{session.token}\">"
                        "<input name=location><button>Save</button></form>"
                        "<form method=post action=/logout><button>Log out</button></form>")

    def _set_location(self, session: WebSession | None, fields: dict[str, str]) -> None:
        if session is None or session.user is None:
            self._send(401, "<p>login required</p>")
            return
        device, user = self.ui.device, session.user
        if not Shell(device, user, self.source).allowed(OPERATION):
            device.audit.record("permission_denied", user, self.source, "denied", f"{OPERATION}: web location")
            self._send(403, f"<p>permission denied: {OPERATION} needs role {min_role(OPERATION)}</p>")
            return
        if not self._csrf_ok(session, fields):
            self._refuse_csrf(user, "location")
            return
        value = fields.get("location", "").strip()[:64]
        if not value:
            self._send(400, "<p>location: give a text of 1-64 characters</p>")
            return
        old, self.ui.location = self.ui.location, value
        device.audit.record("config_change", user, self.source, "success", f"location: {old} -> {value}")
        self._send(200, f"<p>saved: location {html.escape(value)}</p>")


def serve_web(device: Any, https_sock: socket.socket, http_sock: socket.socket | None = None) -> WebUI:
    """Serve the UI on listening sockets (https; plain http too when given); it answers when this returns."""
    return WebUI(device, https_sock, http_sock)
