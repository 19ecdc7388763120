"""The report files of a run, rebuilt from a hand-written results.jsonl."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from iec62443_harness.catalogue import FRS, load_catalogue
from iec62443_harness.errors import HarnessError
from iec62443_harness.evidence import redact
from iec62443_harness.report import (
    MATRIX_SCHEMA,
    REPORT_FILES,
    ResultsWriter,
    load_matrix,
    print_summary,
    read_results,
    summary_lines,
    write_reports,
)
from iec62443_harness.report.__main__ import main
from iec62443_harness.verdicts import Outcome, Verdict
from rich.console import Console

SECRET = "pw-Zq8-report-test-only"  # registered with the redactor: must appear in no report file
VERDICTS = {v.value for v in Verdict}
LEVEL_VALUES = VERDICTS | {"not-required"}

HEADER = {
    "type": "run", "schema_version": 1, "harness_version": "0.1.0", "run_id": "20250101T000000Z-ab12",
    "target": "sim-plc", "target_file": "targets/sim-plc.yaml",
    "identity": {"vendor": "Acme <Controls>", "model": "PLC-1", "firmware": "1.2.3", "serial_number": None},
    "component_type": "EDR", "security_level": 2,
    "config": {"interfaces": {"ssh": {"host": "127.0.0.1", "port": 2222}}, "accounts": {"admin": {"password": "***"}}},
    "countermeasures": {"CR 1.1|modbus_tcp": "the Modbus port is only reachable from the cell zone",
                        "CR 2.1": "a gateway enforces authorization in front of the device"},
    "started": "2025-01-01T00:00:00.000Z", "command": "pytest --target sim-plc",
}


def outcome(test: str, rows: list[str], verdict: str, reason: str = "", interface: str | None = None,
            evidence: list[str] | None = None, checklist: list[str] | None = None) -> dict[str, Any]:
    return {"type": "outcome", "test": test, "rows": rows, "verdict": verdict, "reason": reason,
            "interface": interface, "evidence": evidence or [], "checklist": checklist or [], "duration_s": 0.25,
            "ended": "2025-01-01T00:00:01.000Z"}


OUTCOMES = [
    outcome("conformance/test_cr_1_11.py::test_lockout[sim-plc-ssh]", ["CR 1.11"], "pass", "locked after 3 attempts",
            "ssh", ["+   0.010s ssh: login admin -> rejected", "+   0.020s ssh: <script>alert(1)</script>"]),
    outcome("conformance/test_cr_1_11.py::test_lockout[sim-plc-console]", ["CR 1.11"], "fail",
            "console accepted a 4th attempt", "console", ["+   0.1s console: \x1b[31mlogin:\x1b[0m"]),
    outcome("conformance/test_cr_1_1.py::test_auth[sim-plc-modbus_tcp]", ["CR 1.1"], "fail",
            "Modbus has no authentication", "modbus_tcp"),
    outcome("conformance/test_cr_1_1.py::test_auth[sim-plc-ssh]", ["CR 1.1"], "pass", "ssh asks for a password", "ssh"),
    outcome("conformance/test_cr_1_8.py::test_pki", ["CR 1.8"], "manual", "the PKI needs a review", None,
            checklist=["The certificate chain ends at the asset owner's root", "Revocation is checked"]),
    outcome("conformance/test_cr_2_1.py::TestRoles::test_denied[sim-plc-ssh]", ["CR 2.1", "CR 2.1 RE(1)"], "fail",
            f"operator wrote a register (password {SECRET})", "ssh", [f"ssh: auth {SECRET} ok"]),
    outcome("conformance/test_cr_3_5.py::test_fuzz[sim-plc-modbus_tcp]", ["CR 3.5"], "error",
            "driver raised TimeoutError", "modbus_tcp"),
    outcome("conformance/test_cr_7_1.py::test_flood[sim-plc-modbus_tcp]", ["CR 7.1"], "not-run",
            "floods are not allowed by the target file (safety.allow_floods)", "modbus_tcp"),
    outcome("conformance/test_ndr_5_2.py::test_fail_close", ["NDR 5.2 RE(3)"], "pass", "closed", None),
    outcome("conformance/test_cr_1_10.py::test_feedback[sim-plc-console]", ["CR 1.10"], "n/a",
            "the target declares no console interface", "console"),
    outcome("conformance/test_misc.py::test_typo", ["CR 99.1"], "pass", "ok"),
]
END = {"type": "end", "ended": "2025-01-01T00:01:00.000Z", "exit_status": 1}


def write_run(run_dir: Path, lines: list[dict[str, Any]], tail: str = "") -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(line) + "\n" for line in lines) + tail
    (run_dir / "results.jsonl").write_text(text, encoding="utf-8")
    return run_dir


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path], dict[str, Any]]:
    redact.add(SECRET)
    run_dir = write_run(tmp_path_factory.mktemp("run") / "sim-plc" / "r1", [HEADER, *OUTCOMES, END])
    paths = write_reports(run_dir)
    return run_dir, paths, json.loads((run_dir / "matrix.json").read_text(encoding="utf-8"))


def check_shape(matrix: dict[str, Any]) -> None:
    """The documented shape of matrix.json (docs/report-schema.md)."""
    assert (matrix["schema"], matrix["schema_version"]) == (MATRIX_SCHEMA, 2)
    assert set(matrix) == {"schema", "schema_version", "generated", "run", "summary", "rows", "tests"}
    assert set(matrix["generated"]) == {"at", "harness_version", "catalogue_sha256"}
    run = matrix["run"]
    assert set(run) == {"harness_version", "run_id", "target", "target_file", "identity", "component_type", "sl_t",
                        "config", "countermeasures", "started", "ended", "exit_status", "complete", "partial",
                        "deselected", "selected_paths", "truncated_line", "gate", "command", "notes", "merged_from",
                        "environment"}
    assert isinstance(run["complete"], bool) and isinstance(run["truncated_line"], bool)
    assert isinstance(run["partial"], bool) and not (run["partial"] and run["complete"])
    assert run["gate"] in ("sl-t", "any", "none")
    assert isinstance(run["config"], dict) and all(isinstance(n, str) for n in run["notes"])
    summary = matrix["summary"]
    assert set(summary["counts"]) == VERDICTS and sum(summary["counts"].values()) == len(matrix["rows"])
    assert summary["rows"] == len(matrix["rows"]) and summary["tests"] == len(matrix["tests"])
    for key in ("sl_t_by_fr", "sl_c", "sl_c_manual_accepted", "meets_sl_t", "below_sl_t", "fr_titles"):
        assert list(summary[key]) == list(FRS)
    assert summary["sl_t"] == max(summary["sl_t_by_fr"].values())
    for fr in FRS:
        assert 0 <= summary["sl_c"][fr] <= summary["sl_c_manual_accepted"][fr] <= 4
        assert summary["meets_sl_t"][fr] is (summary["sl_c"][fr] >= summary["sl_t_by_fr"][fr])
        assert summary["meets_sl_t"][fr] is not bool(summary["below_sl_t"][fr])  # the rows that hold it below
    assert set(summary["gate"]) == {"mode", "holds", "failing", "why"} and summary["gate"]["mode"] == run["gate"]
    test_keys = {"test", "verdict", "reason", "interface", "evidence", "checklist", "duration_s", "ended"}
    for row in matrix["rows"]:
        assert set(row) == {"id", "fr", "title", "kind", "applies_to", "min_sl", "automation", "verdict",
                            "reason", "levels", "binds_at_sl_t", "tests"}  # no catalogue note: internal
        assert row["binds_at_sl_t"] is (row["min_sl"] is not None and row["min_sl"] <= summary["sl_t_by_fr"][row["fr"]])
        assert row["verdict"] in VERDICTS and row["fr"] in FRS
        assert list(row["levels"]) == ["SL1", "SL2", "SL3", "SL4"]
        assert set(row["levels"].values()) <= LEVEL_VALUES
        for n in range(1, 5):
            below = row["min_sl"] is not None and n < row["min_sl"]
            assert row["levels"][f"SL{n}"] == ("not-required" if below else row["verdict"])
        for test in row["tests"]:
            assert set(test) == test_keys and test["verdict"] in VERDICTS
    for test in matrix["tests"]:
        assert set(test) == test_keys | {"rows", "recorded_verdict"}
        assert test["verdict"] in VERDICTS and test["recorded_verdict"] in VERDICTS


def test_every_file_is_written(built: tuple[Path, list[Path], dict[str, Any]]) -> None:
    run_dir, paths, _ = built
    assert [p.name for p in paths] == [*REPORT_FILES, "manifest.json"]
    assert all(p.parent == run_dir and p.stat().st_size > 0 for p in paths)
    assert not list(run_dir.glob(".*.tmp"))


def test_matrix_json_has_every_catalogue_row_once(built: tuple[Path, list[Path], dict[str, Any]]) -> None:
    _, _, matrix = built
    check_shape(matrix)
    assert [r["id"] for r in matrix["rows"]] == [r.id for r in load_catalogue()]
    run = matrix["run"]
    assert (run["complete"], run["truncated_line"], run["exit_status"]) == (True, False, 1)
    assert run["identity"]["vendor"] == "Acme <Controls>" and run["sl_t"] == 2
    assert any("CR 99.1" in note for note in run["notes"])


def test_matrix_verdicts(built: tuple[Path, list[Path], dict[str, Any]]) -> None:
    _, _, matrix = built
    rows = {r["id"]: r for r in matrix["rows"]}
    expected = {"CR 1.11": "fail", "CR 1.1": "compensated", "CR 1.8": "manual", "CR 2.1": "compensated",
                "CR 2.1 RE(1)": "fail", "CR 3.5": "error", "CR 7.1": "not-run", "NDR 5.2 RE(3)": "n/a",
                "CR 1.10": "n/a", "CR 2.3": "n/a", "CR 1.3": "not-tested"}
    assert {rid: rows[rid]["verdict"] for rid in expected} == expected
    assert rows["CR 1.8"]["tests"][0]["checklist"][0].startswith("The certificate chain")
    assert [t["verdict"] for t in rows["CR 1.1"]["tests"]] == ["compensated", "pass"]
    assert rows["CR 1.1"]["tests"][0]["interface"] == "modbus_tcp"
    assert rows["CR 2.1 RE(1)"]["levels"] == {"SL1": "not-required", "SL2": "fail", "SL3": "fail", "SL4": "fail"}
    tests = {t["test"]: t for t in matrix["tests"]}
    # the CR 2.1 test is compensated for CR 2.1 only, so it still fails as a test
    roles = tests["conformance/test_cr_2_1.py::TestRoles::test_denied[sim-plc-ssh]"]
    assert (roles["verdict"], roles["recorded_verdict"]) == ("fail", "fail")
    modbus = tests["conformance/test_cr_1_1.py::test_auth[sim-plc-modbus_tcp]"]
    assert (modbus["verdict"], modbus["recorded_verdict"]) == ("compensated", "fail")
    assert "cell zone" in modbus["reason"]
    summary = matrix["summary"]
    assert summary["sl_c"] == dict.fromkeys(FRS, 0)  # plenty of SL1 rows are not tested
    assert summary["counts"]["compensated"] == 2 and summary["counts"]["manual"] == 1


def test_csv_parses(built: tuple[Path, list[Path], dict[str, Any]]) -> None:
    run_dir, _, matrix = built
    with (run_dir / "matrix.csv").open(newline="", encoding="utf-8") as fh:
        records = list(csv.DictReader(fh))
    assert list(records[0]) == ["id", "fr", "title", "min_sl", "SL1", "SL2", "SL3", "SL4", "verdict", "reason",
                                "run_complete", "binds_at_sl_t"]
    assert {r["run_complete"] for r in records} == {"true"}
    assert [r["id"] for r in records] == [r["id"] for r in matrix["rows"]]
    by_id = {r["id"]: r for r in records}
    assert (by_id["CR 1.11"]["verdict"], by_id["CR 1.11"]["min_sl"], by_id["CR 2.3"]["min_sl"]) == ("fail", "1", "")
    assert by_id["NDR 5.2 RE(3)"]["SL2"] == "not-required"
    assert (by_id["CR 1.11"]["binds_at_sl_t"], by_id["CR 1.1 RE(2)"]["binds_at_sl_t"]) == ("true", "false")


def test_html_is_self_contained_and_escaped(built: tuple[Path, list[Path], dict[str, Any]]) -> None:
    run_dir, _, matrix = built
    html = (run_dir / "matrix.html").read_text(encoding="utf-8")
    shown = html.replace("<wbr>", "").replace("&nbsp;", " ")
    for row in matrix["rows"]:
        assert f'<td class="id">{row["id"]}</td>' in shown
    for external in ("http://", "https://", "src=", "<link", "@import", "url("):
        assert external not in html
    assert "<script" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "Acme &lt;Controls&gt;" in html and "\x1b" not in html and "\\x1b[31m" in html
    assert html.count("<details><summary>") == sum(1 for r in matrix["rows"] if r["tests"])
    assert 'class="lvl v-compensated"' in html and 'class="lvl v-not-tested"' in html
    assert "Gate sl-t: fails." in html and 'id="below-FR1"' in html


def test_html_keeps_catalogue_notes_out_and_folds_long_reasons(built: tuple[Path, list[Path], dict[str, Any]]) -> None:
    run_dir, _, matrix = built
    html = (run_dir / "matrix.html").read_text(encoding="utf-8")
    # (one note says what the rollup's own n/a reason says too: that one is not internal)
    notes = [r.note for r in load_catalogue() if r.note and r.note != "no component-level requirement"]
    assert "likely bug" in " ".join(notes)
    for name in ("matrix.html", "matrix.json", "matrix.md", "matrix.csv", "oscal-ar.json"):
        text = (run_dir / name).read_text(encoding="utf-8")
        assert not [n for n in notes if n in text], name  # the catalogue's internal notes are no finding
    from iec62443_harness.report.render import FOLD_AT, _fold

    long = "Modbus has no authentication; " * 3 + "compensating countermeasure: " + "a conduit admits one. " * 20
    head, rest = _fold(long)
    assert head.endswith("authentication;") and rest.startswith("compensating countermeasure:")
    head, rest = _fold("word " * 100)
    assert len(head) <= FOLD_AT and rest and ("word " * 100).startswith(head)
    assert '<details class="more">' in html or all(len(r["reason"]) <= FOLD_AT for r in matrix["rows"])


def test_junit_parses_with_requirements(built: tuple[Path, list[Path], dict[str, Any]]) -> None:
    run_dir, _, _ = built
    root = ET.parse(run_dir / "junit.xml").getroot()
    cases = root.findall("./testsuite/testcase")
    assert len(cases) == len(OUTCOMES)
    by_name = {(c.get("classname"), c.get("name")): c for c in cases}
    lockout = by_name[("conformance.test_cr_1_11", "test_lockout[sim-plc-console]")]
    assert lockout.find("failure").get("message") == "console accepted a 4th attempt"
    roles = by_name[("conformance.test_cr_2_1.TestRoles", "test_denied[sim-plc-ssh]")]
    props = [(p.get("name"), p.get("value")) for p in roles.findall("./properties/property")]
    assert props == [("requirement", "CR 2.1"), ("requirement", "CR 2.1 RE(1)"), ("interface", "ssh"),
                     ("verdict", "fail")]
    assert by_name[("conformance.test_cr_3_5", "test_fuzz[sim-plc-modbus_tcp]")].find("error") is not None
    for name, verdict in [("test_pki", "manual"), ("test_auth[sim-plc-modbus_tcp]", "compensated"),
                          ("test_flood[sim-plc-modbus_tcp]", "not-run"), ("test_feedback[sim-plc-console]", "n/a")]:
        case = next(c for c in cases if c.get("name") == name)
        assert case.find("skipped").get("message").startswith(f"{verdict}: ")
    suite = root.find("testsuite")
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors"), suite.get("skipped")) == \
        ("11", "2", "1", "4")


def test_markdown_groups_rows_by_fr(built: tuple[Path, list[Path], dict[str, Any]]) -> None:
    run_dir, _, _ = built
    md = (run_dir / "matrix.md").read_text(encoding="utf-8")
    positions = [md.index(f"## {fr}: ") for fr in FRS]
    assert positions == sorted(positions) and md.index("## Summary") < md.index("## Security levels") < positions[0]
    assert "| CR 1.1 RE(1) | Unique identification and authentication | 2 | - | not-tested |" in md
    assert "- Gate sl-t: **fails** (3 rows fail or error at SL-T: CR 1.11, CR 2.1 RE(1), CR 3.5)" in md
    assert "| SL-T | 2 | 2 | 2 | 2 | 2 | 2 | 2 |" in md and "- FR1: CR 1.1 RE(1), CR 1.2, " in md


def test_no_secret_in_any_report(built: tuple[Path, list[Path], dict[str, Any]]) -> None:
    _, paths, _ = built
    for path in paths:
        text = path.read_text(encoding="utf-8")
        assert SECRET not in text, path.name
    assert "password ***" in paths[0].read_text(encoding="utf-8")


def test_truncated_last_line_rebuilds_incomplete(tmp_path: Path) -> None:
    cut = json.dumps(OUTCOMES[2])[:57]  # kill -9 in the middle of appending an outcome
    run_dir = write_run(tmp_path / "r2", [HEADER, *OUTCOMES[:2]], tail=cut)
    record = read_results(run_dir / "results.jsonl")
    assert (record.truncated, record.ended, len(record.outcomes)) == (True, None, 2)
    write_reports(run_dir)
    matrix = load_matrix(run_dir)
    check_shape(matrix)
    run = matrix["run"]
    assert (run["complete"], run["truncated_line"], run["ended"]) == (False, True, None)
    assert any("cut off" in note for note in run["notes"])
    assert "incomplete" in (run_dir / "matrix.html").read_text(encoding="utf-8")
    assert ET.parse(run_dir / "junit.xml").getroot().find("testsuite").get("tests") == "2"


def test_unfinished_run_without_truncation_is_incomplete(tmp_path: Path) -> None:
    run_dir = write_run(tmp_path / "r3", [HEADER, *OUTCOMES[:3]])
    write_reports(run_dir)
    run = load_matrix(run_dir)["run"]
    assert (run["complete"], run["truncated_line"]) == (False, False)


@pytest.mark.parametrize(("text", "message"), [
    ("", "does not start with a run header"),
    (json.dumps(OUTCOMES[0]) + "\n", "does not start with a run header"),
    (json.dumps({**HEADER, "schema_version": 9}) + "\n", "schema_version 9"),
    (json.dumps(HEADER) + "\n{not json\n" + json.dumps(END) + "\n", "line 2 is not JSON"),
    (json.dumps(HEADER) + "\n" + json.dumps({**OUTCOMES[0], "verdict": "great"}) + "\n", "unknown verdict 'great'"),
    (json.dumps(HEADER) + "\n" + json.dumps({**OUTCOMES[0], "rows": "CR 1.1"}) + "\n", "'rows' must be a list"),
])
def test_damaged_results_are_one_line_errors(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "results.jsonl").write_text(text, encoding="utf-8")
    with pytest.raises(HarnessError, match=message) as info:
        write_reports(tmp_path)
    assert "\n" not in str(info.value)


def test_writer_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    writer = ResultsWriter(path)
    writer.header({k: v for k, v in HEADER.items() if k not in ("type", "schema_version", "harness_version")})
    sent = Outcome(test="conformance/test_x.py::test_y[sim-plc-ssh]", rows=("CR 1.11", "CR 1.11"),
                   verdict=Verdict.MANUAL, reason="look", interface="ssh", evidence=("e1",), checklist=("c1", "c2"))
    writer.outcome(sent, 1.23456)
    writer.end(0)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["type"] for line in lines] == ["run", "outcome", "end"]
    record = read_results(path)
    assert record.outcomes == [sent] and record.timings[0].duration_s == 1.235
    assert (record.exit_status, record.truncated, record.header["harness_version"]) == (0, False, "0.1.0")
    assert record.header["run_id"] == HEADER["run_id"] and record.ended
    write_reports(tmp_path)  # a row named twice by one outcome still maps its tests one to one
    rows = {r["id"]: r for r in load_matrix(tmp_path)["rows"]}
    assert [t["verdict"] for t in rows["CR 1.11"]["tests"]] == ["manual", "manual"]


def test_summary(built: tuple[Path, list[Path], dict[str, Any]]) -> None:
    run_dir, _, matrix = built
    lines = summary_lines(matrix, run_dir)
    assert "complete" in lines[0] and "2 compensated" in lines[1]
    assert lines[2:4] == ["SL-T " + " ".join(f"{fr}=2" for fr in FRS), "SL-C " + " ".join(f"{fr}=0" for fr in FRS)]
    assert "gate sl-t: FAILS (3 rows fail or error at SL-T: CR 1.11, CR 2.1 RE(1), CR 3.5)" in lines
    assert any(line.startswith("fails at SL-T: CR 1.11 [fail] console accepted") for line in lines)
    assert lines[-1] == f"report: {run_dir / 'matrix.html'}"
    console = Console(file=io.StringIO(), width=120, color_system=None)
    print_summary(matrix, run_dir, console)
    shown = console.file.getvalue()
    assert "SL-C, manual accepted" in shown and str(run_dir / "matrix.html") in shown and "2 compensated" in shown
    assert "fail at SL-T: CR 1.11 Unsuccessful login attempts" in shown and "error at SL-T: CR 3.5" in shown


def test_cli_rebuilds(built: tuple[Path, list[Path], dict[str, Any]], capsys: pytest.CaptureFixture[str]) -> None:
    run_dir, paths, _ = built
    (run_dir / "matrix.html").unlink()
    assert main([str(run_dir)]) == 0
    assert all(p.is_file() for p in paths)
    assert "SL-C" in capsys.readouterr().out


@pytest.mark.parametrize("case", ["missing", "no-results", "damaged"])
def test_cli_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str) -> None:
    run_dir = tmp_path / "nowhere" if case == "missing" else tmp_path
    if case == "damaged":
        (tmp_path / "results.jsonl").write_text("garbage\n", encoding="utf-8")
    assert main([str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(run_dir) in err


def test_cli_module_on_missing_dir(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "iec62443_harness.cli", "rebuild", str(tmp_path / "absent")],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "no run folder" in proc.stderr and "reports/" in proc.stderr


def test_rebuilt_csv_and_junit_say_incomplete(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A run stopped early (no end line here) must not pass for complete in a spreadsheet or a CI viewer."""
    run_dir = write_run(tmp_path / "sim-plc" / "r4", [HEADER, *OUTCOMES[:3]])
    assert main([str(run_dir)]) == 0
    capsys.readouterr()
    with (run_dir / "matrix.csv").open(newline="", encoding="utf-8") as fh:
        records = list(csv.DictReader(fh))
    assert records and {r["run_complete"] for r in records} == {"false"}
    props = ET.parse(run_dir / "junit.xml").getroot().findall("./testsuite/properties/property")
    values = [(p.get("name"), p.get("value")) for p in props]
    assert ("complete", "false") in values
    assert any(name == "note" and "did not finish" in value for name, value in values)

