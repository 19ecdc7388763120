"""Registry of live shell sessions (SSH shells and the console login) with a concurrency limit.

The interface that opens a session hands over a `close` callable that really ends it (closes the SSH
channel, sends the console back to its login prompt): `kill` calls it, so an admin's `session kill` cuts
the session off at once rather than merely forgetting it. The caller audits refusals and kills.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field


class SessionLimitError(Exception):
    """Session refused: the limit is reached. The message is one line fit to show the user."""


@dataclass
class Session:
    id: int
    user: str
    source: str
    started: float = field(default_factory=time.time)
    last_activity: float = field(default_factory=time.time)
    killed: threading.Event = field(default_factory=threading.Event, repr=False)
    close: Callable[[], None] = field(default=lambda: None, repr=False)

    def touch(self) -> None:
        self.last_activity = time.time()


class Sessions:
    def __init__(self, max_sessions: int | None) -> None:
        self.limit = max_sessions  # None: unlimited; `config set max_sessions` may change it
        self._lock = threading.Lock()
        self._live: dict[int, Session] = {}
        self._next_id = 1

    def open(self, user: str, source: str, close: Callable[[], None]) -> Session:
        with self._lock:
            if self.limit is not None and len(self._live) >= self.limit:
                raise SessionLimitError(f"too many sessions: {len(self._live)} of {self.limit} open; log out of "
                                        "one or ask an admin to kill one")
            session = Session(self._next_id, user, source, close=close)
            self._live[session.id] = session
            self._next_id += 1
            return session

    def end(self, session_id: int) -> None:
        """Forget a session that ended by itself (logout, idle timeout, lost connection)."""
        with self._lock:
            self._live.pop(session_id, None)

    def kill(self, session_id: int) -> Session | None:
        """End a live session from outside: returns it, or None when there is no such session."""
        with self._lock:
            session = self._live.pop(session_id, None)
        if session is not None:
            session.killed.set()
            session.close()
        return session

    def get(self, session_id: int) -> Session | None:
        with self._lock:
            return self._live.get(session_id)

    def list(self) -> list[Session]:
        with self._lock:
            return sorted(self._live.values(), key=lambda s: s.id)

    def __len__(self) -> int:
        with self._lock:
            return len(self._live)
