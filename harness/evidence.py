"""Evidence: a bounded, timestamped transcript of what was sent and observed, with secrets redacted.

Every driver writes into the `Evidence` of the test that uses it; the plugin stores it with the test's
outcome. Bounds keep a fuzz campaign from writing megabytes per row: the first entries and the last ones
are kept, and the count of those dropped in between is said.
"""

from __future__ import annotations

import threading
import time
from collections import deque

REDACTED = "***"


class Redactor:
    """Replaces every registered secret value in text. One per process: secrets are never logged."""

    def __init__(self) -> None:
        self._secrets: set[str] = set()

    def add(self, secret: str) -> None:
        if secret and len(secret) >= 3:  # a 1-2 character "secret" would shred every line it appears in
            # also the forms repr() and JSON give it, so an escaped backslash or quote does not slip through
            self._secrets.update({secret, repr(secret)[1:-1], secret.encode("unicode_escape").decode()})

    def __call__(self, text: str) -> str:
        for secret in sorted(self._secrets, key=len, reverse=True):
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text


redact = Redactor()


def show_bytes(data: bytes, limit: int = 96) -> str:
    """Bytes as hex, cut at `limit` bytes with the full length said."""
    head = data[:limit].hex(" ")
    return head if len(data) <= limit else f"{head} ... ({len(data)} bytes)"


class Evidence:
    """Bounded transcript. `add("ssh", "login admin -> rejected")`; entries are redacted on the way in."""

    def __init__(self, head: int = 60, tail: int = 60, entry_chars: int = 2000) -> None:
        self._head: list[str] = []
        self._tail: deque[str] = deque(maxlen=tail)
        self._head_max = head
        self._entry_chars = entry_chars
        self._dropped = 0
        self._t0 = time.monotonic()
        self._lock = threading.Lock()  # monitors and drivers write from their own threads

    def add(self, channel: str, text: str) -> None:
        text = redact(text)
        if len(text) > self._entry_chars:
            text = text[: self._entry_chars] + f" ...[{len(text) - self._entry_chars} more chars]"
        entry = f"+{time.monotonic() - self._t0:8.3f}s {channel}: {text}"
        with self._lock:
            if len(self._head) < self._head_max:
                self._head.append(entry)
                return
            if len(self._tail) == self._tail.maxlen:
                self._dropped += 1
            self._tail.append(entry)

    def lines(self) -> list[str]:
        with self._lock:
            gap = [f"... {self._dropped} entries omitted ..."] if self._dropped else []
            return [*self._head, *gap, *self._tail]

    def __bool__(self) -> bool:  # an empty transcript is still a transcript (`ev or Evidence()` must keep it)
        return True

    def __len__(self) -> int:
        return len(self._head) + len(self._tail) + self._dropped
