"""The terminal end of fixtures.progress: a live line below pytest's own, and summaries into test reports.

The line is written to the terminal device (not to stdout, which pytest captures during a test) one row below
the cursor and taken away afterwards, the cursor put back where pytest left it, so pytest's output, `-v` lines
and `-q` dots read as they would without it. No line under -q, without a terminal, or on an xdist worker.
"""

from __future__ import annotations

import os
import sys
from typing import IO

import pytest
from iec62443_harness.fixtures import progress

_CURRENT = pytest.StashKey[pytest.Item | None]()


def _terminal(config: pytest.Config) -> IO[str] | None:
    if config.getoption("verbose", 0) < 0 or hasattr(config, "workerinput"):
        return None
    try:
        if not sys.stdout.isatty():
            return None
        return open(os.ttyname(sys.stdout.fileno()), "w", encoding="utf-8")  # noqa: SIM115 (closed at unconfigure)
    except (OSError, ValueError, AttributeError):
        return None


class Live:
    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.tty = _terminal(config)
        self.shown = False

    def _column(self) -> int:
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        return int(getattr(getattr(reporter, "_tw", None), "width_of_current_line", 0) or 0)

    def draw(self, line: str) -> None:
        assert self.tty is not None
        try:
            columns = os.get_terminal_size(self.tty.fileno()).columns
        except OSError:
            columns = 0
        width = (columns or 80) - 1  # (a terminal that reports no size gets a line of 79)
        # first time: down one row (a newline, so the screen scrolls if it must); then redraw that row
        self.tty.write(("\r\x1b[K" if self.shown else "\n") + line[:width])
        self.shown = True
        self.tty.flush()

    def clear(self) -> None:
        if self.tty is None or not self.shown:
            return
        column = self._column()
        self.tty.write("\r\x1b[K\x1b[A" + (f"\x1b[{column}C" if column else ""))  # back to pytest's line and column
        self.tty.flush()
        self.shown = False

    def summary(self, line: str) -> None:
        item = self.config.stash.get(_CURRENT, None)
        if item is not None:
            item.add_report_section("call", "progress", line)

    def sink(self) -> progress.Sink:
        live = self.tty is not None
        return progress.Sink(self.draw if live else None, self.clear if live else None, self.summary)

    def close(self) -> None:
        progress.install(None)
        if self.tty is not None:
            self.clear()
            self.tty.close()
            self.tty = None


_LIVE = pytest.StashKey[Live]()


def start(config: pytest.Config) -> None:
    live = config.stash[_LIVE] = Live(config)
    progress.install(live.sink())


def current(config: pytest.Config, item: pytest.Item | None) -> None:
    """The test now running (its report takes the summaries), or None between tests."""
    if item is None:
        config.stash[_CURRENT] = None
    else:
        config.stash[_CURRENT] = item


def stop(config: pytest.Config) -> None:
    live = config.stash.get(_LIVE, None)
    if live is not None:
        live.close()
