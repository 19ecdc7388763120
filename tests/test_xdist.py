"""pytest-xdist: each target's tests run on one worker, which writes that target's one complete run folder; the
verdicts are the serial run's; one target under -n 2 is refused on one line rather than split over two folders."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from iec62443_harness.plugin.xdist import target_of_nodeid

from tests.support import wait_for

pytest.importorskip("xdist")  # a dev dependency (pyproject [dev] and [xdist])

ROOT = Path(__file__).resolve().parents[1]
SUITE = "conformance/test_cr_1_12_system_use_notification.py"  # fast, and its verdicts differ between the targets
TARGETS = ("sim-plc", "sim-plc-insecure")


def _pytest(reports: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest", "--reports-dir", str(reports), "-p", "no:cacheprovider",
                           *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


def _runs(reports: Path) -> dict[str, list[dict]]:
    """Each target's run folders: the lines of each results.jsonl."""
    found: dict[str, list[dict]] = {}
    for results in sorted(reports.glob("*/*/results.jsonl")):
        if results.parent.is_symlink():
            continue
        lines = [json.loads(line) for line in results.read_text().splitlines()]
        found.setdefault(results.parent.parent.name, []).append(lines)
    return found


def _verdicts(lines: list[dict]) -> dict[str, str]:
    return {rec["test"]: rec["verdict"] for rec in lines if rec["type"] == "outcome"}


def test_two_targets_on_two_workers_give_two_complete_folders_and_the_serial_verdicts(tmp_path: Path) -> None:
    targets = [arg for name in TARGETS for arg in ("--target", name)]
    parallel = _pytest(tmp_path / "n2", SUITE, *targets, "-n", "2")
    serial = _pytest(tmp_path / "serial", SUITE, *targets)
    assert "2 workers" in parallel.stdout, parallel.stdout + parallel.stderr
    assert parallel.returncode == serial.returncode, parallel.stdout
    runs, serial_runs = _runs(tmp_path / "n2"), _runs(tmp_path / "serial")
    assert sorted(runs) == list(TARGETS)
    for name in TARGETS:
        assert len(runs[name]) == 1, f"{name}: {len(runs[name])} run folders"  # one folder per target, not per worker
        lines = runs[name][0]
        header, end = lines[0], lines[-1]
        assert header["target"] == name and end["type"] == "end" and end["unreached"] == 0
        verdicts = _verdicts(lines)
        assert sorted(verdicts) == sorted(header["collected"])  # every test of the target, in this one folder
        assert all(f"[{name}-" in test for test in verdicts)  # and no other target's
        assert verdicts == _verdicts(serial_runs[name][0])
        run_dir = tmp_path / "n2" / name / "latest"
        assert (run_dir / "matrix.json").exists() and (run_dir / "matrix.html").exists()
        assert f"IEC 62443-4-2 matrix: {name}" in parallel.stdout  # the controller shows each target's matrix
    # the gates: the hardened target holds CR 1.12, the insecure one fails it, as in the serial run
    assert "fail" in _verdicts(runs["sim-plc-insecure"][0]).values()
    assert "fail" not in _verdicts(runs["sim-plc"][0]).values()


def test_one_target_on_two_workers_is_refused_on_one_line(tmp_path: Path) -> None:
    done = _pytest(tmp_path, SUITE, "--target", "sim-plc", "-n", "2")
    assert done.returncode == 4, done.stdout + done.stderr  # a usage error, before anything runs
    said = [line for line in done.stderr.splitlines() if line.startswith("ERROR:")]
    assert len(said) == 1 and "-n 2 with one target (sim-plc)" in said[0] and "drop -n" in said[0], done.stderr
    assert not list(tmp_path.glob("*/*/results.jsonl"))  # no split report, no report at all


def test_a_target_is_known_by_the_longest_name_that_fits() -> None:
    names = ["sim-plc", "sim-plc-insecure"]
    assert target_of_nodeid("conformance/t.py::test_x[sim-plc-insecure-ssh]", names) == "sim-plc-insecure"
    assert target_of_nodeid("conformance/t.py::test_x[sim-plc-ssh]", names) == "sim-plc"
    assert target_of_nodeid("conformance/t.py::test_x[sim-plc]", names) == "sim-plc"
    assert target_of_nodeid("tests/t.py::test_y", names) == ""


def test_sigterm_to_the_controller_ends_each_targets_folder(tmp_path: Path) -> None:
    """A CI time-out signals the controller only: it passes the SIGTERM on, and each worker records what it
    reached and writes its target's (incomplete) matrix, as a serial run does."""
    targets = [arg for name in TARGETS for arg in ("--target", name)]
    proc = subprocess.Popen([sys.executable, "-m", "pytest", "--reports-dir", str(tmp_path), "-p", "no:cacheprovider",
                             "conformance/test_cr_3_05_input_validation.py", *targets, "-n", "2"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        started = wait_for(lambda: len([p for p in tmp_path.glob("*/*/results.jsonl") if not p.parent.is_symlink()])
                           == 2, 60)
        assert started is not None, "the workers never opened both run folders"
        time.sleep(2.0)  # into the fuzz campaigns
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    runs = _runs(tmp_path)
    assert sorted(runs) == list(TARGETS), out
    for name in TARGETS:
        end = runs[name][0][-1]
        assert end["type"] == "end" and end["signal"] == "SIGTERM" and end["unreached"] > 0, (name, end)
        assert (tmp_path / name / runs[name][0][0]["run_id"] / "matrix.json").exists(), out
