"""The device's audit trail: an in-memory log of security events, optionally forwarded as syslog.

Each record is a dict: `ts` (ISO 8601 UTC, milliseconds), `event`, `user`, `role` (the user's role when
the record was made), `source`, `outcome`, `detail`. `source` names the interface and the peer
("ssh:127.0.0.1:54321", "sftp:127.0.0.1:54322", "telnet:127.0.0.1:54323", "console",
"modbus_tcp:127.0.0.1:40000", "enclosure").

Events the management plane records (part A adds its own, e.g. Modbus writes):
login_ok, login_failed, account_locked, logout, session_refused, session_killed, permission_denied,
password_change, user_add, user_disable, user_enable, user_remove, user_unlock, config_change, write,
file_upload, file_delete, firmware_apply, script_run, system_restart, purge, backup_create, backup_restore,
audit_clear, audit_rotate, audit_export, selftest, tamper.
Outcomes: success, failure, denied, alert (tamper; syslog severity 1).

`broken` (the `audit_broken` fault) makes the log stop recording: records are dropped, none is forwarded.
`clear`, `rotate` and `replace` serve `audit clear`, `audit rotate`, `system purge` and, where the audit
is unprotected, an SFTP upload over /log/audit.log. `export()` gives the records as JSON lines.

Forwarding sends one RFC 5424 datagram per record over UDP, to a loopback address only, e.g.
`<85>1 2026-11-26T16:52:33.123Z simplc simplc 4242 login_failed - event=login_failed user=bob
source=ssh:127.0.0.1:54321 outcome=failure`.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import socket
import threading
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime

from iec62443_harness.labs import LabError

MAX_ENTRIES = 10_000  # oldest records drop first: memory stays bounded under a login flood
SEND_TIMEOUT_S = 0.2
_FACILITY_AUTH, _FACILITY_AUTHPRIV = 4, 10
# authpriv: events about credentials; auth: everything else security-relevant
_AUTHPRIV_EVENTS = {"login_ok", "login_failed", "account_locked", "password_change", "user_add", "user_unlock"}
_SEVERITY = {"success": 5, "failure": 4, "denied": 4, "alert": 1}  # notice, warning; anything else: error (3)
_MAX_FIELD = 256  # a hostile username must not make a syslog line huge


def _clean(value: str) -> str:
    """One printable token-safe field: control characters escaped so a log line cannot be forged."""
    text = "".join(ch if ch.isprintable() else f"\\x{ord(ch):02x}" for ch in value[:_MAX_FIELD])
    return f'"{text}"' if (" " in text or '"' in text or not text) else text


class AuditLog:
    def __init__(self, syslog: tuple[str, int] | None = None) -> None:
        self._lock = threading.Lock()
        self._entries: deque[dict] = deque(maxlen=MAX_ENTRIES)
        self._syslog = syslog
        self._sock: socket.socket | None = None
        self.broken = False  # the audit_broken fault: nothing is recorded
        self.role_of: Callable[[str | None], str | None] = lambda user: None
        self.rotated: list[dict] = []  # the previous log, after `audit rotate`
        if syslog is not None:
            host, port = syslog
            try:
                loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
            except ValueError:
                loopback = False
            if not loopback:
                raise LabError(f"syslog address {host} is not loopback: the emulated PLC sends syslog only to "
                               "127.0.0.1; give a loopback listener")
            self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self._sock.settimeout(SEND_TIMEOUT_S)

    def record(self, event: str, user: str | None, source: str, outcome: str, detail: str = "") -> None:
        if self.broken:
            return
        now = datetime.now(UTC)
        entry = {"ts": now.isoformat(timespec="milliseconds").replace("+00:00", "Z"), "event": event,
                 "user": user, "role": self.role_of(user), "source": source, "outcome": outcome, "detail": detail}
        with self._lock:
            self._entries.append(entry)
        sock = self._sock  # close() may run concurrently
        if sock is not None:
            self._forward(entry, sock)

    def entries(self) -> list[dict]:
        with self._lock:
            return [dict(e) for e in self._entries]

    def clear(self, rotate: bool = False) -> int:
        """Drop every record (keep them as the rotated log with `rotate`); how many there were."""
        with self._lock:
            count = len(self._entries)
            if rotate:
                self.rotated = list(self._entries)
            self._entries.clear()
        return count

    def replace(self, entries: list[dict]) -> None:
        """Put `entries` in place of the log (an unprotected log's SFTP upload)."""
        with self._lock:
            self._entries.clear()
            self._entries.extend(entries)

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    @staticmethod
    def export(entries: list[dict]) -> str:
        """JSON lines: time, user, role, event, outcome, source, detail."""
        return "".join(json.dumps({"time": e["ts"], "user": e["user"], "role": e.get("role"), "event": e["event"],
                                   "outcome": e["outcome"], "source": e["source"], "detail": e["detail"]}) + "\n"
                       for e in entries)

    @staticmethod
    def parse_export(data: bytes) -> list[dict]:
        """Records from `export()` text; lines that are not such records are skipped."""
        entries = []
        for line in data.decode("utf-8", "replace").splitlines():
            try:
                e = json.loads(line)
                entries.append({"ts": str(e["time"]), "event": str(e["event"]), "user": e.get("user"),
                                "role": e.get("role"), "source": str(e.get("source", "")),
                                "outcome": str(e.get("outcome", "")), "detail": str(e.get("detail") or "")})
            except (ValueError, KeyError, TypeError, AttributeError):
                continue
        return entries

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _forward(self, entry: dict, sock: socket.socket) -> None:
        facility = _FACILITY_AUTHPRIV if entry["event"] in _AUTHPRIV_EVENTS else _FACILITY_AUTH
        pri = facility * 8 + _SEVERITY.get(entry["outcome"], 3)
        message = " ".join(f"{key}={_clean(entry[key] or '-')}" for key in ("event", "user", "source", "outcome"))
        if entry["detail"]:
            message += f" detail={_clean(entry['detail'])}"
        msgid = _clean(entry["event"]).strip('"')[:32] or "-"
        line = f"<{pri}>1 {entry['ts']} simplc simplc {os.getpid()} {msgid} - {message}"
        # a missing or slow collector must never stop the device; the record stays in entries()
        with contextlib.suppress(OSError):
            sock.sendto(line.encode("utf-8", "replace"), self._syslog)
