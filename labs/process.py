"""Emulator processes die with the process that started them, even when it is killed with SIGKILL.

`atexit` and signal handlers stop an emulator on a normal exit or Ctrl-C; a `kill -9` of the harness (or a
CI timeout) skips both, and an orphaned QEMU guest would keep running. Linux's parent-death signal covers
that case: the kernel sends SIGKILL to the emulator when the thread that forked it ends.
"""

from __future__ import annotations

import ctypes
import sys

PR_SET_PDEATHSIG = 1
SIGKILL = 9
_libc = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None  # loaded before any fork


def die_with_parent() -> None:
    """A `preexec_fn` for subprocess.Popen: runs in the child, between fork and exec."""
    if _libc is not None:
        _libc.prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0)
