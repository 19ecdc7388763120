"""The device's audit trail: an in-memory log of security events, optionally forwarded as syslog.

Each record is a dict: `ts` (ISO 8601 UTC, milliseconds), `event`, `user`, `source`, `outcome`, `detail`.
`source` names the interface and the peer ("ssh:127.0.0.1:54321", "console", "modbus:127.0.0.1:40000").

Events the management plane records (part A adds its own, e.g. Modbus writes):
login_ok, login_failed, account_locked, logout, session_refused, session_killed, permission_denied,
password_change, user_add, user_disable, user_enable, user_remove, user_unlock, config_change, write.
Outcomes: success, failure, denied.

Forwarding sends one RFC 5424 datagram per record over UDP, to a loopback address only, e.g.
`<85>1 2026-11-26T16:52:33.123Z simplc simplc 4242 login_failed - event=login_failed user=bob
source=ssh:127.0.0.1:54321 outcome=failure`.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
import threading
from collections import deque
from datetime import UTC, datetime

from iec62443_harness.labs import LabError

MAX_ENTRIES = 10_000  # oldest records drop first: memory stays bounded under a login flood
SEND_TIMEOUT_S = 0.2
_FACILITY_AUTH, _FACILITY_AUTHPRIV = 4, 10
# authpriv: events about credentials; auth: everything else security-relevant
_AUTHPRIV_EVENTS = {"login_ok", "login_failed", "account_locked", "password_change", "user_add", "user_unlock"}
_SEVERITY = {"success": 5, "failure": 4, "denied": 4}  # notice, warning; anything else: error (3)
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
        now = datetime.now(UTC)
        entry = {"ts": now.isoformat(timespec="milliseconds").replace("+00:00", "Z"), "event": event,
                 "user": user, "source": source, "outcome": outcome, "detail": detail}
        with self._lock:
            self._entries.append(entry)
        sock = self._sock  # close() may run concurrently
        if sock is not None:
            self._forward(entry, sock)

    def entries(self) -> list[dict]:
        with self._lock:
            return [dict(e) for e in self._entries]

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
