"""Serial console of the emulated PLC: a login on a pty pair, then the shared management shell.

The device keeps the master end and the slave open (raw, 115200 nominal: a pty has no real baud rate);
the harness opens `Console.path` with pyserial. The line is quiet until it receives CR or LF, then shows the
banner (if any) and `simplc login: `, then `Password: ` (echoed only with `console_echo_password`).
A failed login answers `Login incorrect`, or with `reveal_unknown_user` `Unknown user` / `Wrong password`
(/ `Account locked` / `Account disabled`). Lockout applies as on SSH. One session at a time, counted
toward `max_sessions`; `exit`, the idle timeout or an admin's `session kill` return to the login prompt.
Writes never block: with nobody reading the line, bytes are dropped. Faults: "silent" (read, never
answer), "garbage" (random bytes instead of output), "slow" (answers SLOW_S late), "reset" (the logged-in
session drops back to the login prompt; input is ignored while the fault lasts).
"""

from __future__ import annotations

import os
import select
import termios
import threading
import tty
from typing import Any

from iec62443_harness.labs.simplc.accounts import AuthResult
from iec62443_harness.labs.simplc.shell import POLL_S, Terminal, interactive, setting

FAULTS = frozenset({"silent", "garbage", "slow", "reset"})
PROMPT_TIMEOUT_S = 60.0  # an abandoned password prompt returns to the login prompt, like getty
_REVEALED = {AuthResult.UNKNOWN_USER: "Unknown user", AuthResult.BAD_PASSWORD: "Wrong password",
             AuthResult.LOCKED: "Account locked", AuthResult.DISABLED: "Account disabled"}


class _PtyPort:
    def __init__(self, fd: int) -> None:
        self.fd = fd

    def recv(self, timeout: float) -> bytes | None:
        readable, _, _ = select.select([self.fd], [], [], max(timeout, 0.0))
        if not readable:
            return None
        try:
            return os.read(self.fd, 4096) or None  # a serial line never "closes"
        except BlockingIOError:
            return None

    def send(self, data: bytes) -> None:
        while data:
            try:
                data = data[os.write(self.fd, data):]
            except OSError:  # EAGAIN: nobody reads the line, and the pty buffer is full: drop
                return

    def close(self) -> None:
        """A serial line cannot be hung up from the device side."""


class Console:
    def __init__(self, device: Any) -> None:
        self.device = device
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        attrs = termios.tcgetattr(self._slave)
        attrs[4] = attrs[5] = termios.B115200
        termios.tcsetattr(self._slave, termios.TCSANOW, attrs)
        os.set_blocking(self._master, False)
        self.path = os.ttyname(self._slave)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="simplc-console", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        for session in self.device.sessions.list():
            if session.source == "console":
                session.killed.set()  # ends the shell without recording a kill: the device is stopping
        self._thread.join(2.0)
        for fd in (self._master, self._slave):
            os.close(fd)

    def _run(self) -> None:
        term = Terminal(_PtyPort(self._master), self.device, FAULTS, echo=True)
        waiting = True  # quiet until the first CR or LF
        while not self._stop.is_set():
            try:
                if waiting and term.readline(stop=self._stop) is None:
                    return
                waiting = False
                self._login(term)
            except EOFError:  # Ctrl-D, or the "reset" fault
                while self.device.fault == "reset" and not self._stop.wait(POLL_S):
                    pass
                waiting = True

    def _login(self, term: Terminal) -> None:
        banner = setting(self.device, "banner")
        if banner:
            term.write(banner.rstrip("\n") + "\n")
        term.write("simplc login: ")
        user = term.readline(stop=self._stop)
        if not user:
            return
        term.write("Password: ")
        echo = bool(setting(self.device, "console_echo_password"))
        password = term.readline(secret=not echo, timeout=PROMPT_TIMEOUT_S, stop=self._stop)
        if password is None:
            term.write("\n")
            return
        result = self.device.accounts.authenticate(user, password, "console")
        if result is not AuthResult.OK:
            reveal = setting(self.device, "reveal_unknown_user")
            term.write(f"{_REVEALED[result] if reveal else 'Login incorrect'}\n\n")
            return
        # nothing to hang up on a kill: the session sees its kill event and returns to the login prompt
        interactive(self.device, user, "console", term, close=lambda: None)


def serve_console(device: Any) -> Console:
    """Start the console on a fresh pty; the harness opens `Console.path`."""
    return Console(device)
