"""One run per target at a time: an exclusive `flock` on `<reports-dir>/<target>/.lock` for the whole run.

Two runs against one device at once disturb each other (lockouts, sessions, rate limits, the essential
function) and give false verdicts, so the second is refused before it sends anything. The lock file holds
who holds it (pid, run id, host, start time) as `key=value` lines, read only while it is held: the kernel
drops a flock when its holder exits, kill -9 included, so a stale file never blocks a run. The file itself
is never deleted (deleting a lock file others may have open races), only emptied on release.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import time
from pathlib import Path

from iec62443_harness.errors import HarnessError
from iec62443_harness.report.results import now_iso

LOCK_FILE = ".lock"


class RunLocked(HarnessError):
    """Another run holds the target's lock."""


class RunLock:
    """A held lock; `release()` (or the process ending) frees it."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, path: Path, target: str, run_id: str) -> RunLock:
        """Take the lock or raise `RunLocked` (one line naming the run that holds it). OSError: cannot lock."""
        path = Path(path)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            held = exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN)
            holder = _holder(fd) if held else {}
            os.close(fd)
            if not held:
                raise
            who = (f"run {holder.get('run_id', '?')} (pid {holder.get('pid', '?')} on {holder.get('host', '?')}, "
                   f"since {holder.get('started', '?')})" if holder else "another run (which has not written its "
                   "details yet)")
            raise RunLocked(f"target {target} is already being tested by {who}: two runs at once on one device "
                            f"give false verdicts; wait for that run to end, or stop it (lock: {path})") from None
        text = f"pid={os.getpid()}\nrun_id={run_id}\nhost={socket.gethostname()}\nstarted={now_iso()}\n"
        os.ftruncate(fd, 0)
        os.pwrite(fd, text.encode("utf-8"), 0)
        return cls(path, fd)

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)  # what it said is no longer true
        finally:
            os.close(fd)  # closing the only descriptor releases the flock


def _holder(fd: int, wait_s: float = 1.0) -> dict[str, str]:
    """What the holder wrote; it writes just after locking, so an empty file is given a moment."""
    deadline = time.monotonic() + wait_s
    while True:
        text = os.pread(fd, 4096, 0).decode("utf-8", errors="replace")
        info = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
        if {"pid", "run_id", "started"} <= info.keys() or time.monotonic() >= deadline:
            return info
        time.sleep(0.05)
