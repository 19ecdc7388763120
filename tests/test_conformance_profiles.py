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
from iec62443_harness.labs.netns import unavailable
from iec62443_harness.labs.simplc.profile import load_oracle
from iec62443_harness.target import find_target_file, load_target

ROOT = Path(__file__).resolve().parent.parent
TARGETS = ("sim-plc", "sim-plc-sl1", "sim-plc-insecure")


@pytest.fixture(scope="module", params=TARGETS)
def run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict, str, int]:
    name = request.param
    reports = tmp_path_factory.mktemp(name)
    proc = subprocess.run([sys.executable, "-m", "pytest", "conformance", "--target", name, "--reports-dir",
                           str(reports), "--run-id", "oracle", "-q", "-p", "no:cacheprovider"],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    matrix_file = reports / name / "oracle" / "matrix.json"
    assert matrix_file.is_file(), proc.stdout[-3000:] + proc.stderr[-3000:]
    return name, json.loads(matrix_file.read_text()), proc.stdout, proc.returncode


def test_matrix_matches_the_profile_oracle(run: tuple[str, dict, str, int]) -> None:
    name, matrix, _, _ = run
    profile = load_target(find_target_file(name)).emulator.profile
    oracle = load_oracle(profile)
    assert oracle, f"profile {profile} has no oracle"
    if unavailable():  # the target files' own_address falls back to loopback: CR 7.7 cannot scan, so it is manual
        oracle["CR 7.7"] = "manual"
    got = {row["id"]: row["verdict"] for row in matrix["rows"]}
    wrong = {rid: f"expected {want}, got {got.get(rid)} ({_reason(matrix, rid)})"
             for rid, want in oracle.items() if got.get(rid) != want}
    assert not wrong, f"{name}: " + "; ".join(f"{k}: {v}" for k, v in wrong.items())


def test_cr_7_7_names_the_debug_monitor_alone(run: tuple[str, dict, str, int]) -> None:
    name, matrix, _, _ = run
    if name != "sim-plc-insecure" or unavailable():
        pytest.skip("only the insecure profile, at an address of its own, runs an undeclared service")
    reason = _reason(matrix, "CR 7.7")
    assert reason.startswith("1 open port(s) not declared") and "tcp/9999" in reason, reason
    assert "SimPLC debug monitor" in reason, reason


def test_no_row_errors_against_the_emulator(run: tuple[str, dict, str, int]) -> None:
    name, matrix, stdout, _ = run
    errors = {row["id"]: row["reason"] for row in matrix["rows"] if row["verdict"] == "error"}
    assert not errors, f"{name}: {errors}"


def test_every_fr1_fr2_row_judged_on_sl2(run: tuple[str, dict, str, int]) -> None:
    name, matrix, _, _ = run
    if name != "sim-plc":
        pytest.skip("the sl2 profile is the one that must cover FR1 and FR2 completely")
    untested = [row["id"] for row in matrix["rows"] if row["fr"] in ("FR1", "FR2") and row["verdict"] == "not-tested"]
    assert not untested, f"FR1/FR2 rows no test judges: {untested}"


# The exit gate (sl-t): the hardened profiles fail only rows above their SL-T (CR 1.1 RE(2) and, on sl1, CR 1.7
# RE(1) and 2.7 are SL3 rows), so they exit 0; the factory profile fails SL1 rows and exits 1.
# sl1 fails rows that bind at its SL-T: CR 3.1 (no countermeasure for its unprotected fieldbus) and EDR 3.2 (it
# installs an image signed by another key); sl2 fails only CR 1.1 RE(2), an SL3 row.
EXIT = {"sim-plc": 0, "sim-plc-sl1": 1, "sim-plc-insecure": 1}


def test_the_exit_status_is_the_sl_t_gate(run: tuple[str, dict, str, int]) -> None:
    name, matrix, stdout, returncode = run
    gate = matrix["summary"]["gate"]
    assert returncode == EXIT[name] == (0 if gate["holds"] else 1), f"{name}: exit {returncode}, gate {gate}"
    above = [r["id"] for r in matrix["rows"] if r["verdict"] == "fail" and not r["binds_at_sl_t"]]
    assert "CR 1.1 RE(2)" in above  # still judged and shown, at SL3 and SL4
    levels = next(r["levels"] for r in matrix["rows"] if r["id"] == "CR 1.1 RE(2)")
    assert (levels["SL3"], levels["SL4"]) == ("fail", "fail")


def _reason(matrix: dict, rid: str) -> str:
    row = next((r for r in matrix["rows"] if r["id"] == rid), None)
    return (row or {}).get("reason", "")[:160]
