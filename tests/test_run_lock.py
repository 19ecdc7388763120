"""One run per device at a time: a second run on a target that is being tested is refused before it sends
anything, naming the first; the lock goes with its holder, kill -9 included."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from iec62443_harness.report.lock import RunLock, RunLocked

from tests.test_plugin import DEVICELESS, SUITE, one_line_error, run


@pytest.fixture
def bench(tmp_path: Path) -> Path:
    (tmp_path / "bench.yaml").write_text(DEVICELESS)
    (tmp_path / "test_suite.py").write_text(SUITE)
    return tmp_path


def start_slow(bench: Path, run_id: str) -> subprocess.Popen:
    """A run sitting in its slow test (CR 2.6) after the six fast ones were recorded."""
    proc = subprocess.Popen([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--target", "bench.yaml",
                             "--run-id", run_id, "test_suite.py"], cwd=bench, env={**os.environ, "SLOW_S": "60"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    results = bench / "reports" / "bench" / run_id / "results.jsonl"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if results.is_file() and results.read_text().count('"type": "outcome"') >= 6:
            return proc
        time.sleep(0.1)
    proc.kill()
    pytest.fail("the first run did not reach its slow test")


def test_second_run_on_a_busy_target_is_refused(bench: Path) -> None:
    first = start_slow(bench, "first")
    try:
        second = run(bench, "--target", "bench.yaml", "--run-id", "second", "test_suite.py")
        line = one_line_error(second)
        assert "already being tested" in line and "run first" in line and f"pid {first.pid}" in line
        assert "since 20" in line and "false verdicts" in line
        assert "passed" not in second.stdout and "failed" not in second.stdout  # no test ran
        assert not (bench / "reports" / "bench" / "second").exists()
        assert os.readlink(bench / "reports" / "bench" / "latest") == "first"
        # another target is not held by it
        (bench / "other.yaml").write_text(DEVICELESS)
        assert run(bench, "--target", "other.yaml", "--run-id", "o", "test_suite.py").returncode == 1
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    # the kernel dropped the lock with its holder: the next run goes ahead
    third = run(bench, "--target", "bench.yaml", "--run-id", "third", "test_suite.py")
    assert third.returncode == 1, third.stdout + third.stderr
    assert (bench / "reports" / "bench" / "third" / "matrix.json").is_file()


def test_lock_is_released_and_says_nothing_after(tmp_path: Path) -> None:
    path = tmp_path / ".lock"
    lock = RunLock.acquire(path, "bench", "r1")
    assert "run_id=r1" in path.read_text() and f"pid={os.getpid()}" in path.read_text()
    with pytest.raises(RunLocked, match=r"by run r1 \(pid \d+ on .+, since 20"):
        RunLock.acquire(path, "bench", "r2")  # another descriptor: flock refuses it, as it would another process
    lock.release()
    assert path.read_text() == ""
    RunLock.acquire(path, "bench", "r3").release()


def test_only_a_shared_device_is_locked(bench: Path) -> None:
    """An emulated target gets its own emulator in every run: a held lock does not stop it. (Every test is
    deselected, so the run opens its reports, recording them not-run, without starting a device.)"""
    (bench / "emu.yaml").write_text(DEVICELESS + "emulator: {kind: simplc, profile: sl1}\n")
    held = []
    for name in ("emu", "bench"):
        (bench / "reports" / name).mkdir(parents=True)
        held.append(RunLock.acquire(bench / "reports" / name / ".lock", name, "held"))
    try:
        emulated = run(bench, "--target", "emu.yaml", "--run-id", "e", "-k", "nothing_matches", "test_suite.py")
        assert emulated.returncode == 5, emulated.stdout + emulated.stderr  # no test ran, and no refusal
        assert (bench / "reports" / "emu" / "e" / "matrix.json").is_file()
        line = one_line_error(run(bench, "--target", "bench.yaml", "--run-id", "b", "-k", "nothing_matches",
                                  "test_suite.py"))
        assert "already being tested by run held" in line
    finally:
        for lock in held:
            lock.release()
