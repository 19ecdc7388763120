"""Live progress (fixtures.progress, harness.plugin.live): drawn on a terminal, never into captured output or
under -q, and summarised with the seed in the test's report section."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from iec62443_harness.fixtures import progress

ROOT = Path(__file__).resolve().parents[1]
FUZZ = ["conformance/test_cr_3_05_input_validation.py", "--target", "sim-plc", "-k", "modbus_tcp",
        "--fuzz-seconds", "1.5", "--seed", "4242", "-p", "no:cacheprovider"]


def test_a_progress_line_is_throttled_cleared_and_summarised(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]  # stepped by hand: the throttle is judged on the clock, never on this machine's speed
    monkeypatch.setattr(progress, "_now", lambda: clock[0])
    drawn, cleared, summaries = [], [], []
    progress.install(progress.Sink(drawn.append, lambda: cleared.append(1), summaries.append))
    try:
        with progress.progress("fuzz modbus_tcp", budget_s=10, seed=7) as bar:
            for n in range(1, 1001):
                bar.update(n)
                clock[0] += 0.0001  # a thousand updates in 0.1 s
            clock[0] += 0.3
            bar.update(2000)
    finally:
        progress.install(None)
    # throttled: a tight loop does not write the terminal a thousand times, only its first update and the one
    # after a quarter second
    assert len(drawn) == 2, drawn
    assert drawn[0].startswith("fuzz modbus_tcp: 1 cases")
    assert "fuzz modbus_tcp: 2000 cases" in drawn[-1] and "s left of 10 s" in drawn[-1] and "seed 7" in drawn[-1]
    assert cleared == [1]
    assert len(summaries) == 1 and "2000 cases in" in summaries[0] and "repeat with --seed 7" in summaries[0]


def _on_a_terminal(*args: str) -> str:
    """pytest run with its stdout on a pty (a terminal); everything the terminal got."""
    master, slave = os.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "pytest", *args], cwd=ROOT, stdin=subprocess.DEVNULL,
                            stdout=slave, stderr=slave, env={**os.environ, "COLUMNS": "120"})
    os.close(slave)
    out = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed the pty
            break
        if not chunk:
            break
        out += chunk
    proc.wait(timeout=60)
    os.close(master)
    return out.decode("utf-8", errors="replace")


def test_live_on_a_terminal_and_silent_under_q(tmp_path: Path) -> None:
    live = _on_a_terminal(*FUZZ, "--reports-dir", str(tmp_path / "live"), "-rA")
    assert "s left of 1.5 s, seed 4242" in live and "\x1b[K" in live, live  # the live line, only on the terminal
    # the line went and pytest's own went on: the result of the test and its report section with the seed
    assert "Captured progress call" in live and "repeat with --seed 4242" in live, live
    quiet = _on_a_terminal(*FUZZ, "--reports-dir", str(tmp_path / "quiet"), "-q")
    assert "\x1b[K" not in quiet and "s left of" not in quiet, quiet
