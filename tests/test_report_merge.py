"""`iec62443 merge`: the halves of a run, split with -k, merge into the whole run's matrix; a merge that still
lacks a selected test's result is not complete; runs of different targets do not merge."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from iec62443_harness.report.merge import main, merge_runs

from tests.test_plugin import DEVICELESS, SUITE, run

HALF = "observed or failing or manual"


def _rows(matrix: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows, without what differs between two runs of the same tests (times taken and ended, the time
    stamps of evidence lines)."""
    def same(test: dict[str, Any]) -> dict[str, Any]:
        evidence = [re.sub(r"^\+\s*[\d.]+s ", "", e) for e in test["evidence"]]
        return {**{k: v for k, v in test.items() if k not in ("duration_s", "ended")}, "evidence": evidence}

    return [{**r, "tests": [same(t) for t in r["tests"]]} for r in matrix["rows"]]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    bench = tmp_path_factory.mktemp("bench")
    (bench / "bench.yaml").write_text(DEVICELESS)
    (bench / "test_suite.py").write_text(SUITE)
    for run_id, selection in (("whole", []), ("a", ["-k", HALF]), ("b", ["-k", f"not ({HALF})"])):
        proc = run(bench, "--target", "bench.yaml", "--run-id", run_id, *selection, "test_suite.py")
        assert proc.returncode in (0, 1), proc.stdout
    return bench / "reports" / "bench"


def test_two_halves_merge_into_the_whole(runs: Path, tmp_path: Path) -> None:
    half_a = json.loads((runs / "a" / "matrix.json").read_text())
    assert half_a["run"]["partial"] and not half_a["run"]["complete"]
    out = merge_runs([runs / "a", runs / "b"], tmp_path / "merged")
    whole = json.loads((runs / "whole" / "matrix.json").read_text())
    merged = json.loads((out / "matrix.json").read_text())
    assert _rows(merged) == _rows(whole)
    assert merged["summary"]["counts"] == whole["summary"]["counts"]
    assert merged["summary"]["sl_c"] == whole["summary"]["sl_c"]
    assert (merged["run"]["complete"], merged["run"]["partial"], merged["run"]["deselected"]) == (True, False, [])
    assert merged["run"]["merged_from"] == [str(runs / "a"), str(runs / "b")]
    for name in ("results.jsonl", "matrix.csv", "matrix.md", "matrix.html", "junit.xml"):
        assert (out / name).is_file(), name


def test_a_merge_missing_a_selected_test_is_not_complete(runs: Path, tmp_path: Path) -> None:
    merged = json.loads((merge_runs([runs / "a"], tmp_path / "only-a") / "matrix.json").read_text())
    assert (merged["run"]["complete"], merged["run"]["partial"]) == (False, True)
    # a source killed before recording part of what it collected: those tests are unreached
    cut = tmp_path / "cut"
    cut.mkdir()
    lines = (runs / "b" / "results.jsonl").read_text().splitlines()
    (cut / "results.jsonl").write_text("\n".join(lines[:-3]) + "\n")  # the end line and two outcomes lost
    merged = json.loads((merge_runs([runs / "a", cut], tmp_path / "m2") / "matrix.json").read_text())
    assert merged["run"]["complete"] is False and merged["run"]["exit_status"] == 2


def test_runs_of_different_targets_do_not_merge(runs: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    other = tmp_path / "other"
    shutil.copytree(runs / "b", other)
    results = other / "results.jsonl"
    lines = results.read_text().splitlines()
    header = json.loads(lines[0])
    header["identity"]["firmware"] = "2"
    results.write_text("\n".join([json.dumps(header), *lines[1:]]) + "\n")
    assert main(["-o", str(tmp_path / "m"), str(runs / "a"), str(other)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "differ in identity" in err and not (tmp_path / "m").exists()
    assert main(["-o", str(runs / "a"), str(runs / "b")]) == 2  # never into an existing folder
    assert "already exists" in capsys.readouterr().err
