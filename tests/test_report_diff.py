"""`iec62443 diff`: firmware v1 against v2, here the emulated PLC's factory (insecure) profile against its
hardened (sl2) one, from recorded results.jsonl files (tests/data/runs, evidence trimmed)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from iec62443_harness.catalogue import FRS
from iec62443_harness.report.diff import diff_matrices, load_run, main, render_markdown

RUNS = Path(__file__).resolve().parent / "data" / "runs"
INSECURE, SL2 = RUNS / "sim-plc-insecure.jsonl", RUNS / "sim-plc-sl2.jsonl"


def test_hardening_lists_cr_1_5_among_the_changed_rows() -> None:
    d = diff_matrices(load_run(INSECURE), load_run(SL2))
    changed = {c["id"]: c for c in d["changed"]}
    assert changed["CR 1.5"]["before"] == "fail" and changed["CR 1.5"]["after"] == "pass"
    assert changed["CR 1.5"]["kind"] == "fixed" and changed["CR 1.5"]["binds_at_sl_t"] is True
    assert "CR 1.1 RE(2)" not in changed  # fails in both
    assert d["kinds"]["new-fail"] == 0 and list(d["sl_c"]["a"]) == list(FRS)
    assert (d["sl_c"]["a"]["FR1"], d["sl_c"]["b"]["FR1"]) == (0, 1)


def test_a_regression_lists_new_failures_first(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_b = tmp_path / "sim-plc" / "v2"
    run_b.mkdir(parents=True)
    shutil.copy(INSECURE, run_b / "results.jsonl")  # a run folder, as a run writes it
    d = diff_matrices(load_run(SL2), load_run(run_b))
    kinds = [c["kind"] for c in d["changed"]]
    assert kinds == sorted(kinds, key=["new-fail", "new-error", "worse", "fixed", "changed"].index)
    assert kinds[0] == "new-fail" and "CR 1.5" in [c["id"] for c in d["changed"] if c["kind"] == "new-fail"]
    assert main([str(SL2), str(run_b)]) == 1  # a row newly fails
    out = capsys.readouterr().out
    assert out.index("CR 1.5") < out.index("CR 1.7 RE(1)") and "new-fail" in out and "SL-C  FR1 1->0" in out
    assert main([str(INSECURE), str(SL2)]) == 0


def test_markdown_and_json(tmp_path: Path) -> None:
    md = render_markdown(diff_matrices(load_run(INSECURE), load_run(SL2)))
    assert "| SL-C before | 0 |" in md and "| fixed | CR 1.5 | Authenticator management | 1 | fail | **pass** |" in md
    out = tmp_path / "diff.json"
    assert main([str(INSECURE), str(SL2), "--format", "json", "-o", str(out)]) == 0
    d = json.loads(out.read_text())
    assert d["schema"] == "iec62443-harness/diff" and any(c["id"] == "CR 1.5" for c in d["changed"])


def test_input_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path / "absent"), str(SL2)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is not a run" in err
