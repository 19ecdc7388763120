"""The suites against each emulated profile: the matrix must match the profile's oracle row by row.

The oracle (labs/simplc/profiles/NAME.yaml, `oracle:`) is what the device in that profile should earn.
Reading it here is the harness testing itself; no conformance verdict ever reads it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from iec62443_harness.labs.simplc.profile import load_oracle
from iec62443_harness.target import find_target_file, load_target

ROOT = Path(__file__).resolve().parent.parent
TARGETS = ("sim-plc", "sim-plc-sl1", "sim-plc-insecure")


@pytest.fixture(scope="module", params=TARGETS)
def run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict, str]:
    name = request.param
    reports = tmp_path_factory.mktemp(name)
    proc = subprocess.run([sys.executable, "-m", "pytest", "conformance", "--target", name, "--reports-dir",
                           str(reports), "--run-id", "oracle", "-q", "-p", "no:cacheprovider"],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    matrix_file = reports / name / "oracle" / "matrix.json"
    assert matrix_file.is_file(), proc.stdout[-3000:] + proc.stderr[-3000:]
    return name, json.loads(matrix_file.read_text()), proc.stdout


def test_matrix_matches_the_profile_oracle(run: tuple[str, dict, str]) -> None:
    name, matrix, _ = run
    profile = load_target(find_target_file(name)).emulator.profile
    oracle = load_oracle(profile)
    assert oracle, f"profile {profile} has no oracle"
    got = {row["id"]: row["verdict"] for row in matrix["rows"]}
    wrong = {rid: f"expected {want}, got {got.get(rid)} ({_reason(matrix, rid)})"
             for rid, want in oracle.items() if got.get(rid) != want}
    assert not wrong, f"{name}: " + "; ".join(f"{k}: {v}" for k, v in wrong.items())


def test_no_row_errors_against_the_emulator(run: tuple[str, dict, str]) -> None:
    name, matrix, stdout = run
    errors = {row["id"]: row["reason"] for row in matrix["rows"] if row["verdict"] == "error"}
    assert not errors, f"{name}: {errors}"


def test_every_fr1_fr2_row_judged_on_sl2(run: tuple[str, dict, str]) -> None:
    name, matrix, _ = run
    if name != "sim-plc":
        pytest.skip("the sl2 profile is the one that must cover FR1 and FR2 completely")
    untested = [row["id"] for row in matrix["rows"] if row["fr"] in ("FR1", "FR2") and row["verdict"] == "not-tested"]
    assert not untested, f"FR1/FR2 rows no test judges: {untested}"


def _reason(matrix: dict, rid: str) -> str:
    row = next((r for r in matrix["rows"] if r["id"] == rid), None)
    return (row or {}).get("reason", "")[:160]
