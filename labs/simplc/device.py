"""The device object every interface shares, and the pty ends the serial interfaces sit on.

`Device` holds the state the interfaces have in common: the profile, the process image, the audit log,
accounts, sessions, the current fault and the mutable security settings (seeded from the profile; the
management shell reads and changes them, and Modbus/CAN read them on every request). It also holds the
maintenance state: the firmware (running and staged version, the vendor's public key), the in-memory
files (/update, /backup, /log), the device-secret backup key, the provisioned state `system purge` goes
back to, and the interfaces `config show` reports.

Two faults act here: `audit_broken` stops the audit log recording; `tamper` opens the enclosure (where the
profile has a `tamper_switch`: that discrete input reads 1, and an audit record `tamper` "enclosure opened"
is made and forwarded; clearing the fault closes it again, recorded as "enclosure closed").
"""

from __future__ import annotations

import contextlib
import copy
import os
import secrets
import string
import termios
import threading
import time
import tty
from collections.abc import Callable
from dataclasses import fields
from typing import Any

from iec62443_harness.labs.simplc.control import ControlTask
from iec62443_harness.labs.simplc.faults import FaultState
from iec62443_harness.labs.simplc.image import ProcessImage
from iec62443_harness.labs.simplc.profile import Profile

# Profile fields that are not live settings: identity, the account list, firmware defects, and what is only
# decided at start-up (whether the debug service exists).
_NOT_SETTINGS = ("name", "accounts", "extra", "input_bugs", "extra_service", "firmware_version", "firmware_check",
                 "firmware_downgrade", "script_signature", "backup_integrity", "purge_complete", "config_json",
                 "selftest", "audit_protected", "tamper_switch", "telnet_login", "web_tls", "web_sessions",
                 "web_plain_http")
END_SESSIONS_S = 0.2  # a restart or purge ends the sessions this long after answering


def initial_settings(profile: Profile) -> dict[str, Any]:
    return {f.name: getattr(profile, f.name) for f in fields(profile) if f.name not in _NOT_SETTINGS}


def make_password(length: int = 16) -> str:
    """A random password with all four character classes, so any profile's password rules accept it."""
    classes = (string.ascii_lowercase, string.ascii_uppercase, string.digits, "!#%+-.:=?@_")
    chars = [secrets.choice(c) for c in classes]
    chars += [secrets.choice("".join(classes)) for _ in range(length - len(chars))]
    secrets.SystemRandom().shuffle(chars)
    return "".join(chars)


def provision_passwords(profile: Profile, env: dict[str, str]) -> dict[str, str]:
    """username -> password: the factory default if the profile has one, else `env[spec.env]` if set (a restart
    keeps the passwords the harness already holds), else a fresh random one."""
    return {a.username: a.password or env.get(a.env) or make_password() for a in profile.accounts}


class Device:
    def __init__(self, profile: Profile, passwords: dict[str, str], syslog: tuple[str, int] | None = None,
                 vendor_key: Any = None) -> None:
        # Imported here: the management side (accounts, audit, sessions) is a separate part of the lab.
        from iec62443_harness.labs.simplc.accounts import Accounts
        from iec62443_harness.labs.simplc.audit import AuditLog
        from iec62443_harness.labs.simplc.files import AUDIT_LOG, AUDIT_ROTATED, DeviceFiles
        from iec62443_harness.labs.simplc.firmware import Firmware, VendorKit
        from iec62443_harness.labs.simplc.sessions import Sessions

        self.profile = profile
        self.image = ProcessImage()
        self.settings: dict[str, Any] = initial_settings(profile)
        self.audit = AuditLog(syslog)
        self.accounts = Accounts(profile, passwords, self.audit, settings=self.settings)  # one live policy
        self.audit.role_of = self.accounts.role_hint
        self.sessions = Sessions(profile.max_sessions)
        self.started = time.time()
        self.faults = FaultState()
        self.master_seen = float("-inf")  # time.monotonic() of the last Modbus request to unit 1
        self.control = ControlTask(self)
        # maintenance
        self.firmware = Firmware(profile.firmware_version, vendor_key or VendorKit().public)
        self.files = DeviceFiles()
        logs = {AUDIT_LOG: lambda: self.audit.entries(), AUDIT_ROTATED: lambda: self.audit.rotated or None}
        self.files.log_reader = lambda path: (None if path not in logs or (entries := logs[path]()) is None
                                              else self.audit.export(entries).encode())
        if not profile.audit_protected:
            self.files.log_writer = lambda data: self.audit.replace(self.audit.parse_export(data))
        self.backup_key = os.urandom(32)  # the device secret that keys backup HMACs
        self.backup_count = 0
        self.interfaces: dict[str, dict[str, Any]] = {}  # name -> protocol, address or line, enabled
        self.restart_hooks: list[Callable[[], Callable[[], None]]] = []
        self.provisioned = {"accounts": self.accounts.snapshot(), "settings": copy.deepcopy(self.settings)}
        self._fault_was: str | None = None
        self.faults.subscribe(self._fault_changed)

    @property
    def fault(self) -> str | None:
        """The current fault name or None; safe to read from any thread."""
        return self.faults.current

    def _fault_changed(self, name: str | None) -> None:
        was, self._fault_was = self._fault_was, name
        self.audit.broken = name == "audit_broken"
        switch = self.profile.tamper_switch
        if switch and (name == "tamper") != (was == "tamper"):
            opened = name == "tamper"
            self.image.write(switch.get("table", "di"), int(switch["address"]), [int(opened)])
            self.audit.record("tamper", None, "enclosure", "alert" if opened else "success",
                              "enclosure opened" if opened else "enclosure closed")

    def end_sessions(self, delay: float = END_SESSIONS_S) -> None:
        """End every shell session and management connection open now, `delay` s from now (after the answer)."""
        sessions = self.sessions.list()
        closers = [hook() for hook in self.restart_hooks]  # each takes its snapshot now

        def run() -> None:
            for session in sessions:
                self.sessions.kill(session.id)
            for close in closers:
                with contextlib.suppress(Exception):
                    close()

        timer = threading.Timer(delay, run)
        timer.daemon = True
        timer.start()


class Pty:
    """A pty pair: the device keeps the master, the harness opens `path` (the slave) with pyserial.

    The device also holds the slave open: the line stays raw between harness connections and reads on the
    master never fail with EIO. Writes never block: with nobody reading, bytes are dropped, as on a wire.
    """

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        os.set_blocking(self.master, False)
        self.path = os.ttyname(self.slave)

    def read(self) -> bytes:
        if self.master < 0:
            return b""
        try:
            return os.read(self.master, 4096)
        except OSError:  # BlockingIOError included
            return b""

    def write(self, data: bytes) -> None:
        if self.master < 0:  # closed: never write into a file descriptor number reused since
            return
        with contextlib.suppress(OSError):  # BlockingIOError included: a full line drops bytes
            os.write(self.master, data)

    def discard_pending(self) -> None:
        """Drop what the harness has not read yet (an adapter that closes its channel)."""
        termios.tcflush(self.slave, termios.TCIFLUSH)

    def close(self) -> None:
        fds, self.master, self.slave = (self.master, self.slave), -1, -1
        for fd in fds:
            if fd >= 0:
                os.close(fd)
