"""A plaintext, telnet-style login port (profile `telnet_login`; the insecure profile): CR 4.1 and 7.7.

TCP, device address. Each connection is greeted with the banner (if any) and `login: `, then `Password: `;
everything, the password included, travels in clear text. After a good login the same management shell
runs as on SSH and the console (a registered session: limit, idle timeout, kill). Three failed logins, or
`LOGIN_TIMEOUT_S` without one, close the connection. Telnet negotiation (IAC sequences) is accepted and
ignored; the server never echoes (a telnet client echoes locally). Audit source "telnet:<host>:<port>".
"""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import Any

from iec62443_harness.labs.simplc.accounts import AuthResult
from iec62443_harness.labs.simplc.shell import POLL_S, Terminal, interactive, setting

MAX_CONNECTIONS = 8
LOGIN_TIMEOUT_S = 30.0
ATTEMPTS = 3
IAC, SB, SE = 255, 250, 240


class _SocketPort:
    """A Terminal port over a TCP socket, with telnet commands filtered out of the input."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._state = 0  # 0 data, 1 after IAC, 2 option byte, 3 in subnegotiation, 4 IAC in subnegotiation

    def recv(self, timeout: float) -> bytes | None:
        self.sock.settimeout(max(timeout, 0.001))
        try:
            data = self.sock.recv(4096)
        except TimeoutError:
            return None
        except OSError:
            return b""
        return self._filter(data) if data else b""

    def _filter(self, data: bytes) -> bytes | None:
        out = bytearray()
        for byte in data:
            if self._state == 0:
                if byte == IAC:
                    self._state = 1
                else:
                    out.append(byte)
            elif self._state == 1:
                if byte == IAC:
                    out.append(byte)
                    self._state = 0
                else:
                    self._state = 3 if byte == SB else 2 if 251 <= byte <= 254 else 0
            elif self._state == 2:
                self._state = 0
            elif self._state == 3:
                self._state = 4 if byte == IAC else 3
            else:
                self._state = 0 if byte == SE else 3
        return bytes(out) or None

    def send(self, data: bytes) -> None:
        self.sock.settimeout(2.0)
        with contextlib.suppress(OSError):
            self.sock.sendall(data)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)


class TelnetServer:
    def __init__(self, device: Any, sock: socket.socket) -> None:
        self.device = device
        self._listener = sock
        self._listener.settimeout(POLL_S)
        self.host, self.port = sock.getsockname()[:2]
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._socks: set[socket.socket] = set()
        self._thread = threading.Thread(target=self._accept_loop, name="simplc-telnet", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._closed.set()
        self._listener.close()
        with self._lock:
            socks = list(self._socks)
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self._thread.join(2.0)

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                sock, peer = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                if self._closed.wait(POLL_S):
                    return
                continue
            with self._lock:
                busy = len(self._socks) >= MAX_CONNECTIONS
                if not busy:
                    self._socks.add(sock)
            if busy:
                sock.close()
                continue
            threading.Thread(target=self._connection, args=(sock, peer), name="simplc-telnet-conn",
                             daemon=True).start()

    def _connection(self, sock: socket.socket, peer: tuple[str, int]) -> None:
        source = f"telnet:{peer[0]}:{peer[1]}"
        port = _SocketPort(sock)
        term = Terminal(port, self.device, frozenset({"silent", "slow", "reset"}), echo=False)
        try:
            banner = setting(self.device, "banner")
            if banner:
                term.write(banner.rstrip("\n") + "\n")
            for _ in range(ATTEMPTS):
                term.write("login: ")
                user = term.readline(timeout=LOGIN_TIMEOUT_S, stop=self._closed)
                if not user:
                    return
                term.write("Password: ")
                password = term.readline(timeout=LOGIN_TIMEOUT_S, stop=self._closed)
                if password is None:
                    return
                if self.device.accounts.authenticate(user, password, source) is AuthResult.OK:
                    interactive(self.device, user, source, term, close=port.close)
                    return
                term.write("Login incorrect\n\n")
        except EOFError:
            pass
        finally:
            with self._lock:
                self._socks.discard(sock)
            sock.close()


def serve_telnet(device: Any, sock: socket.socket) -> TelnetServer:
    """Serve the telnet-style login on a listening socket."""
    return TelnetServer(device, sock)
