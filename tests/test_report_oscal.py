"""oscal-ar.json: an OSCAL assessment-results document per run, checked against NIST's own JSON schema
(tests/data/oscal, OSCAL v1.2.3) rather than against the library that wrote it."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
from iec62443_harness.report import write_reports
from iec62443_harness.report.diff import load_run
from iec62443_harness.report.oscal import build_oscal, control_id

DATA = Path(__file__).resolve().parent / "data"
SCHEMA = DATA / "oscal" / "oscal_assessment-results_schema.json"


@pytest.fixture(scope="module")
def validator() -> Any:
    return jsonschema_rs.Draft7Validator(json.loads(SCHEMA.read_text()), validate_formats=True)


def _errors(validator: Any, doc: dict[str, Any]) -> list[str]:
    return [f"{list(e.instance_path)}: {e.message}" for e in validator.iter_errors(doc)]


@pytest.fixture(scope="module", params=["sim-plc-sl2", "sim-plc-insecure"])
def doc(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    run_dir = tmp_path_factory.mktemp(request.param)
    (run_dir / "results.jsonl").write_bytes((DATA / "runs" / f"{request.param}.jsonl").read_bytes())
    write_reports(run_dir)  # as every run writes it
    return json.loads((run_dir / "oscal-ar.json").read_text(encoding="utf-8"))


def test_the_document_validates_against_the_oscal_schema(doc: dict[str, Any], validator: Any) -> None:
    assert _errors(validator, doc) == []
    broken = copy.deepcopy(doc)
    broken["assessment-results"]["results"][0]["findings"][0]["target"]["status"]["state"] = "fine"
    del broken["assessment-results"]["metadata"]["oscal-version"]
    assert len(_errors(validator, broken)) >= 2  # the schema is really applied


def test_controls_findings_and_observations(doc: dict[str, Any]) -> None:
    result = doc["assessment-results"]["results"][0]
    controls = [c["control-id"] for c in result["reviewed-controls"]["control-selections"][0]["include-controls"]]
    assert {"cr-1.1", "cr-1.1-re-1", "cr-1.5", "edr-2.13", "edr-3.10-re-1"} <= set(controls)
    assert not any(c.startswith(("ndr-", "hdr-", "sar-")) for c in controls)  # an embedded device
    findings = {f["target"]["target-id"]: f for f in result["findings"]}
    props = {tid: {p["name"]: p["value"] for p in f["props"]} for tid, f in findings.items()}
    assert props["cr-1.1-re-2_smt"]["verdict"] == "fail"
    assert findings["cr-1.1-re-2_smt"]["target"]["status"] == {"state": "not-satisfied", "reason": "fail"}
    manual = next(tid for tid, p in props.items() if p["verdict"] == "manual")
    assert findings[manual]["target"]["status"]["state"] == "not-satisfied"
    assert "reviewer" in findings[manual]["target"]["status"]["remarks"]
    observations = {o["uuid"]: o for o in result["observations"]}
    for finding in findings.values():
        for rel in finding.get("related-observations", []):
            assert rel["observation-uuid"] in observations
    methods = {o["props"][0]["value"]: set() for o in observations.values()}
    for o in observations.values():
        methods[o["props"][0]["value"]].update(o["methods"])
    assert methods["manual"] == {"EXAMINE"} and methods["pass"] == {"TEST"}
    examined = next(o for o in observations.values() if o["methods"] == ["EXAMINE"])
    assert len(examined["relevant-evidence"]) == 2  # transcript and checklist


def test_the_sl2_run_passes_cr_1_5(doc: dict[str, Any]) -> None:
    result = doc["assessment-results"]["results"][0]
    state = next(f["target"]["status"]["state"] for f in result["findings"] if f["target"]["target-id"] == "cr-1.5_smt")
    sl2 = "sl2" in doc["assessment-results"]["metadata"]["version"]
    assert state == ("satisfied" if sl2 else "not-satisfied")


def test_control_ids() -> None:
    assert [control_id(i, "EDR") for i in ("CR 1.1", "CR 1.11 RE(1)", "NDR 1.6", "EDR/HDR/NDR 3.14 RE(1)")] == \
        ["cr-1.1", "cr-1.11-re-1", "ndr-1.6", "edr-3.14-re-1"]
    assert control_id("SAR/EDR/HDR/NDR 2.4 RE(1)", "SAR") == "sar-2.4-re-1"


def test_rebuild_writes_the_same_uuids() -> None:
    matrix = load_run(DATA / "runs" / "sim-plc-sl2.jsonl")
    first, again = build_oscal(matrix), build_oscal(matrix)
    assert first == again
