"""The exit status is a gate a CI job can use: rows that bind at the target's SL-T decide it (`--gate`), an SL-T
may be a vector per FR, and a run limited by selection is partial everywhere: matrix, summary, exit, `latest`."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest
from iec62443_harness.catalogue import FRS
from iec62443_harness.errors import HarnessError
from iec62443_harness.report import gate
from iec62443_harness.target import load_target

from tests.test_plugin import DEVICELESS, run

# CR 1.12 binds at SL1, CR 1.1 RE(1) at SL2, CR 1.1 RE(2) at SL3 (FR1); CR 2.5 at SL1 (FR2).
GATED = '''\
import os
import pytest

@pytest.mark.judges("CR 1.12")
def test_banner(target):
    assert os.environ.get("FAIL_SL1") != "1", "no banner before login"

@pytest.mark.judges("CR 1.1 RE(1)")
def test_unique(target):
    assert os.environ.get("FAIL_SL2") != "1", "a shared account logs in"

@pytest.mark.judges("CR 1.1 RE(2)")
def test_multifactor(target):
    assert False, "a password alone opens a session"

@pytest.mark.judges("CR 2.5")
def test_session_lock(target):
    pass
'''


def _row(rid: str, fr: str, min_sl: int | None, verdict: str) -> dict:
    return {"id": rid, "fr": fr, "min_sl": min_sl, "verdict": verdict}


def test_gate_functions() -> None:
    sl_t = {**dict.fromkeys(FRS, 2), "FR1": 3}
    rows = [_row("A", "FR1", 3, "fail"), _row("B", "FR2", 3, "fail"), _row("C", "FR2", 1, "error"),
            _row("D", "FR2", 2, "manual"), _row("E", "FR2", None, "n/a"), _row("F", "FR3", 1, "pass")]
    assert [gate.binds(r, sl_t) for r in rows] == [True, False, True, True, False, True]
    assert gate.failing_rows(rows, sl_t, "sl-t") == ["A", "C"]
    assert gate.failing_rows(rows, sl_t, "any") == ["A", "B", "C"]
    assert gate.failing_rows(rows, sl_t, "none") == []
    assert gate.below_sl_t(rows, sl_t) == {**{fr: [] for fr in FRS}, "FR1": ["A"], "FR2": ["C", "D"]}
    assert gate.judge(rows, sl_t, "sl-t", partial=False)["holds"] is False
    assert gate.judge([rows[1]], sl_t, "sl-t", partial=False)["holds"] is True
    partial = gate.judge([rows[1]], sl_t, "sl-t", partial=True)
    assert partial["holds"] is False and "partial" in partial["why"]
    assert gate.judge(rows, sl_t, "none", partial=True)["holds"] is True
    # pytest's own statuses other than 0/1 (interrupted, usage error, nothing collected) pass through
    assert [gate.exit_status(s, True) for s in (0, 1, 2, 3, 4, 5)] == [0, 0, 2, 3, 4, 5]
    assert [gate.exit_status(s, False) for s in (0, 1, 2)] == [1, 1, 2]
    assert gate.exit_status(0, True, unjudged_failed=True) == 1


def test_sl_t_vector_in_a_target_file(tmp_path: Path) -> None:
    vector = "{FR1: 3, FR2: 2, FR3: 2, FR4: 1, FR5: 1, FR6: 1, FR7: 2}"
    path = tmp_path / "zone.yaml"
    path.write_text(DEVICELESS.replace("security_level: 2", f"security_level: {vector}"))
    spec = load_target(path)
    assert spec.sl_t == {"FR1": 3, "FR2": 2, "FR3": 2, "FR4": 1, "FR5": 1, "FR6": 1, "FR7": 2}
    path.write_text(DEVICELESS)
    assert load_target(path).sl_t == dict.fromkeys(FRS, 2)
    for bad, message in (("{FR1: 3, FR2: 2}", "leaves out FR3, FR4, FR5, FR6, FR7"),
                         ("{FR1: 3, FR2: 2, FR3: 2, FR4: 1, FR5: 1, FR6: 1, FR7: 5}", "FR7 must be a security level"),
                         ("{FR1: 1, FR2: 1, FR3: 1, FR4: 1, FR5: 1, FR6: 1, FR7: 1, SR9: 1}", "'SR9' is not a"),
                         ("high", "one security level 1-4 or a vector")):
        path.write_text(DEVICELESS.replace("security_level: 2", f"security_level: {bad}"))
        with pytest.raises(HarnessError, match=message) as info:
            load_target(path)
        assert "\n" not in str(info.value) and "security_level" in str(info.value)


@pytest.fixture
def bench(tmp_path: Path) -> Path:
    (tmp_path / "bench.yaml").write_text(DEVICELESS)
    (tmp_path / "test_gated.py").write_text(GATED)
    return tmp_path


def _matrix(bench: Path, run_id: str, target: str = "bench") -> dict:
    return json.loads((bench / "reports" / target / run_id / "matrix.json").read_text())


def test_a_fail_above_sl_t_is_shown_but_does_not_fail_the_run(bench: Path) -> None:
    proc = run(bench, "--target", "bench.yaml", "--run-id", "r", "test_gated.py")
    assert proc.returncode == 0, proc.stdout
    assert "1 failed" in proc.stdout and "exit status 0: gate sl-t (pytest's own: 1)" in proc.stdout
    matrix = _matrix(bench, "r")
    rows = {r["id"]: r for r in matrix["rows"]}
    assert rows["CR 1.1 RE(2)"]["levels"] == {"SL1": "not-required", "SL2": "not-required", "SL3": "fail",
                                              "SL4": "fail"}
    assert matrix["summary"]["gate"] == {"mode": "sl-t", "holds": True, "failing": [],
                                         "why": "no row that binds at SL-T fails or errors"}
    assert "fails above SL-T (judged, not gating): CR 1.1 RE(2) (SL3)" in proc.stdout
    assert run(bench, "--target", "bench.yaml", "--run-id", "any", "--gate", "any", "test_gated.py").returncode == 1
    assert _matrix(bench, "any")["summary"]["gate"]["failing"] == ["CR 1.1 RE(2)"]


@pytest.mark.parametrize(("env", "gate_opt", "status"), [({"FAIL_SL2": "1"}, [], 1), ({"FAIL_SL1": "1"}, [], 1),
                                                          ({"FAIL_SL1": "1"}, ["--gate", "none"], 0)])
def test_a_fail_at_sl_t_fails_the_run(bench: Path, env: dict, gate_opt: list, status: int) -> None:
    proc = run(bench, "--target", "bench.yaml", "--run-id", "r", *gate_opt, "test_gated.py", env=env)
    assert proc.returncode == status, proc.stdout
    if status:
        assert "gate sl-t: FAILS (1 row fail or error at SL-T: CR 1.1" in proc.stdout
        assert "fail at SL-T: CR 1.1" in proc.stdout


def test_the_sl_t_vector_decides_per_fr(bench: Path) -> None:
    """FR1 at SL1: CR 1.1 RE(1) (an SL2 row) no longer binds, and its failure does not gate."""
    (bench / "zone.yaml").write_text(DEVICELESS.replace(
        "security_level: 2", "security_level: {FR1: 1, FR2: 2, FR3: 2, FR4: 2, FR5: 2, FR6: 2, FR7: 2}"))
    proc = run(bench, "--target", "zone.yaml", "--run-id", "z", "test_gated.py", env={"FAIL_SL2": "1"})
    assert proc.returncode == 0, proc.stdout
    summary = _matrix(bench, "z", "zone")["summary"]
    assert summary["sl_t_by_fr"]["FR1"] == 1 and summary["sl_t"] == 2
    assert "CR 1.1 RE(1)" not in summary["below_sl_t"]["FR1"] and "CR 1.12" not in summary["below_sl_t"]["FR1"]
    assert "CR 1.1" in summary["below_sl_t"]["FR1"]  # not tested here: it holds FR1 at SL-C 0
    assert "SL-T" in proc.stdout and "fails above SL-T (judged, not gating): CR 1.1 RE(1) (SL2), CR 1.1 RE(2)" \
        in proc.stdout


def test_a_selection_limited_run_is_partial(bench: Path) -> None:
    assert run(bench, "--target", "bench.yaml", "--run-id", "whole", "test_gated.py").returncode == 0
    proc = run(bench, "--target", "bench.yaml", "--run-id", "part", "-k", "banner", "test_gated.py")
    assert proc.returncode == 1, proc.stdout  # the one selected test passed: the run still proves nothing
    assert "run part: PARTIAL" in proc.stdout and "3 tests were deselected" in proc.stdout
    assert "reports/bench/latest still names whole" in proc.stdout
    matrix = _matrix(bench, "part")
    run_info = matrix["run"]
    assert (run_info["partial"], run_info["complete"]) == (True, False)
    assert sorted(run_info["deselected"]) == sorted(f"test_gated.py::test_{n}[bench]"
                                                    for n in ("unique", "multifactor", "session_lock"))
    assert matrix["summary"]["gate"]["holds"] is False
    assert os.readlink(bench / "reports" / "bench" / "latest") == "whole"
    with (bench / "reports" / "bench" / "part" / "matrix.csv").open(newline="") as fh:
        assert {rec["run_complete"] for rec in csv.DictReader(fh)} == {"false"}


def test_a_partial_run_takes_latest_only_while_there_is_no_whole_one(bench: Path) -> None:
    run(bench, "--target", "bench.yaml", "--run-id", "p1", "-k", "banner", "test_gated.py")
    assert os.readlink(bench / "reports" / "bench" / "latest") == "p1"
    run(bench, "--target", "bench.yaml", "--run-id", "p2", "-k", "unique", "test_gated.py")
    assert os.readlink(bench / "reports" / "bench" / "latest") == "p2"
    run(bench, "--target", "bench.yaml", "--run-id", "w", "test_gated.py")
    run(bench, "--target", "bench.yaml", "--run-id", "p3", "-k", "banner", "test_gated.py")
    assert os.readlink(bench / "reports" / "bench" / "latest") == "w"


def test_a_path_into_the_shipped_suites_is_partial(tmp_path: Path) -> None:
    """A module of the suites named on the command line leaves the others out: partial, said with the path."""
    import iec62443_harness.conformance as suites
    from iec62443_harness.plugin.hooks import _limited_paths

    module = next(p for p in sorted(Path(suites.__file__).parent.glob("test_cr_1_12*.py")))

    class Config:
        args = [str(module), str(module) + "::test_x"]
        invocation_params = type("P", (), {"dir": tmp_path})

    assert _limited_paths(Config) == [f"conformance/{module.name}", f"conformance/{module.name}::test_x"]
    Config.args = [str(module), str(module.parent)]
    assert _limited_paths(Config) == []
