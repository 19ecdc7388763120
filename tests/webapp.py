"""A small web-management interface in the test process, for the https driver, the TLS analysis and CR 3.8.

`WebApp(strong=True)` behaves as a device should: a new random session id at login (the pre-login one is
dropped), ids that die at logout and after `idle_timeout_s`, cookies with Secure (over TLS), HttpOnly and
SameSite=Strict, an anti-CSRF token in its forms and an Origin check on state-changing requests.
`WebApp(strong=False)` is the usual factory web UI: sequential session ids handed out before login and kept
after it (fixation), never ended by logout or idleness, no cookie flags, no CSRF check.

Both: `/login` (a form with the notice and a hidden csrf_token), `/status` (logged in: "Logged in as USER",
else a redirect to /login), `/logout`, `/config` (POST; admin only, a viewer gets 403), and an account locked
after `lock_after` wrong passwords. Pass an `ssl.SSLContext` for https; it listens on 127.0.0.1 only.
`redirect_to`: a plain-http front that sends every request to that https URL. `requests` counts requests.
"""

from __future__ import annotations

import contextlib
import html
import itertools
import secrets
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

BANNER = "Authorized use only. Activity is logged."
USERS = {"admin": ("admin-pass-7Qx!", "admin"), "viewer": ("viewer-pass-3Kd!", "viewer")}


@dataclass
class Session:
    user: str | None
    csrf: str
    last: float = field(default_factory=time.monotonic)


class WebApp:
    def __init__(self, *, strong: bool, tls: ssl.SSLContext | None = None, idle_timeout_s: float = 1.0,
                 lock_after: int = 3, redirect_to: str | None = None) -> None:
        self.strong, self.tls, self.idle_timeout_s, self.lock_after = strong, tls, idle_timeout_s, lock_after
        self.redirect_to = redirect_to  # every request is sent there (plain http in front of https)
        self.requests = 0
        self.sessions: dict[str, Session] = {}
        self.failures: dict[str, int] = {}
        self.config_writes = 0
        self._counter = itertools.count(1000)
        self._lock = threading.Lock()
        app = self

        class Handler(_Handler):
            webapp = app

        self.server = _Server(("127.0.0.1", 0), Handler, tls)
        self.port = self.server.server_address[1]
        self.base_url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()

    def __enter__(self) -> WebApp:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(2)

    def new_sid(self) -> str:
        return secrets.token_urlsafe(32) if self.strong else f"{next(self._counter):08d}"

    def session_for(self, sid: str | None) -> Session | None:
        with self._lock:
            s = self.sessions.get(sid or "")
            if s is None:
                return None
            if self.strong and time.monotonic() - s.last > self.idle_timeout_s:
                del self.sessions[sid or ""]
                return None
            s.last = time.monotonic()
            return s


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type, tls: ssl.SSLContext | None) -> None:
        self.tls = tls
        super().__init__(address, handler)

    def finish_request(self, request: socket.socket, client_address: tuple[str, int]) -> None:
        request.settimeout(5)
        request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # headers and body go out at once
        if self.tls is not None:  # the handshake in the request's own thread: a slow client stalls no other
            try:
                request = self.tls.wrap_socket(request, server_side=True)
            except (ssl.SSLError, OSError):
                return
        super().finish_request(request, client_address)

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # scanners and tests hang up mid-request on purpose


class _Handler(BaseHTTPRequestHandler):
    webapp: WebApp
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    # -- helpers

    def _cookies(self) -> dict[str, str]:
        jar = {}
        for part in (self.headers.get("Cookie") or "").split(";"):
            name, _, value = part.strip().partition("=")
            if name:
                jar[name] = value
        return jar

    def _fields(self) -> dict[str, str]:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        return {k: v[0] for k, v in parse_qs(body).items()}

    def _set_cookie(self, sid: str, delete: bool = False) -> str:
        value = f"SID={'' if delete else sid}; Path=/"
        if delete:
            value += "; Max-Age=0"
        if self.webapp.strong:
            value += "; HttpOnly; SameSite=Strict" + ("; Secure" if self.webapp.tls else "")
        return value

    def _send(self, status: int, body: str = "", *, location: str | None = None, cookies: tuple[str, ...] = ()) -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        if location:
            self.send_header("Location", location)
        for c in cookies:
            self.send_header("Set-Cookie", c)
        self.end_headers()
        self.wfile.write(data)

    def _current(self) -> tuple[str | None, Session | None]:
        sid = self._cookies().get("SID")
        return sid, self.webapp.session_for(sid)

    # -- pages

    def parse_request(self) -> bool:
        ok = super().parse_request()
        if ok:
            self.webapp.requests += 1
        return ok

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        app = self.webapp
        if app.redirect_to:
            self._send(301, location=app.redirect_to + self.path)
            return
        sid, session = self._current()
        if self.path.startswith("/login"):
            cookies: tuple[str, ...] = ()
            if session is None:  # a session before login: both variants hand one out, as many devices do
                sid = app.new_sid()
                session = Session(None, secrets.token_urlsafe(16))
                with app._lock:
                    app.sessions[sid] = session
                cookies = (self._set_cookie(sid),)
            form = (f"<p>{html.escape(BANNER)}</p><form method=post action=/login>"
                    f"<input type=hidden name=csrf_token value=\"{session.csrf}\">"
                    "<input name=username><input name=password type=password></form>")
            self._send(200, form, cookies=cookies)
        elif self.path.startswith("/status"):
            if session is None or session.user is None:
                self._send(303, location="/login")
            else:
                self._send(200, f"<p>Logged in as {session.user}</p><input type=hidden name=csrf_token "
                                f"value=\"{session.csrf}\">")
        else:
            self._send(404, "not found")

    def do_POST(self) -> None:  # noqa: N802
        app = self.webapp
        fields = self._fields()
        sid, session = self._current()
        if self.path == "/login":
            self._login(fields, sid, session)
        elif self.path == "/logout":
            if app.strong and sid:
                with app._lock:
                    app.sessions.pop(sid, None)
            self._send(303, location="/login", cookies=(self._set_cookie("", delete=True),) if app.strong else ())
        elif self.path == "/config":
            if session is None or session.user is None:
                self._send(401, "login required")
            elif USERS[session.user][1] != "admin":
                self._send(403, "permission denied")
            elif app.strong and (fields.get("csrf_token") != session.csrf or
                                 self.headers.get("Origin") not in (None, app.base_url)):
                self._send(403, "CSRF check failed")
            else:
                app.config_writes += 1
                self._send(200, "<p>saved</p>")
        else:
            self._send(404, "not found")

    def _login(self, fields: dict[str, str], sid: str | None, session: Session | None) -> None:
        app = self.webapp
        user, password = fields.get("username", ""), fields.get("password", "")
        if app.strong and (session is None or fields.get("csrf_token") != session.csrf):
            self._send(403, "CSRF check failed")
            return
        if app.failures.get(user, 0) >= app.lock_after:
            self._send(200, "<p>Account locked: ask an administrator.</p>")
            return
        if user not in USERS or USERS[user][0] != password:
            app.failures[user] = app.failures.get(user, 0) + 1
            self._send(200, "<p>Invalid user name or password.</p>")
            return
        app.failures[user] = 0
        with app._lock:
            if app.strong or session is None:  # the weak one keeps (and so trusts) whatever id came in
                if sid:
                    app.sessions.pop(sid, None)
                sid = app.new_sid()
            app.sessions[sid] = Session(user, secrets.token_urlsafe(16))
        self._send(303, location="/status", cookies=(self._set_cookie(sid),))


def server_context(cert: str, key: str, *, weak: bool = False) -> ssl.SSLContext:
    """TLS 1.2+ with forward-secret AEAD suites; `weak`: everything this OpenSSL still agrees to serve."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    if weak:
        ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
        ctx.set_ciphers("ALL:@SECLEVEL=0")
    else:
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_ciphers("ECDHE+AESGCM:ECDHE+CHACHA20")
    ctx.load_cert_chain(cert, key)
    return ctx


@contextlib.contextmanager
def console_socket() -> object:
    """A console on a loopback TCP port (pyserial socket://) that answers every Enter with a login prompt: the
    run's liveness check has a console to ask, as on a device with a web UI and a serial console."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.05)
    stop = threading.Event()

    def serve() -> None:
        conns: list[socket.socket] = []
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                conn, _ = server.accept()
                conn.settimeout(0.01)
                conns.append(conn)
            for conn in list(conns):
                try:
                    if b"\r" in conn.recv(256):
                        conn.sendall(b"\r\nplc login: ")
                except TimeoutError:
                    continue
                except OSError:
                    conns.remove(conn)
        for conn in conns:
            conn.close()
        server.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"socket://127.0.0.1:{server.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(2)
