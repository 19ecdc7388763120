"""The matrix as an OSCAL assessment-results document (JSON), built with compliance-trestle's OSCAL models.

Control ids follow the public OSCAL renderings of the 4-2 catalogue: `CR 1.1` is `cr-1.1`, `CR 1.1 RE(1)` is
`cr-1.1-re-1`, a component-type clause is named for the component under test (`EDR/HDR/NDR 3.10 RE(1)` on an
embedded device is `edr-3.10-re-1`). Every catalogue row that binds the component is a reviewed control; each
judged row has a finding (pass, compensated, n/a: satisfied; fail: not-satisfied with reason fail; manual, error,
not-run: not-satisfied with reason other, since nothing has shown them met yet, and a remark saying which; the
harness's own verdict is a property of every finding), and each test outcome is an observation carrying its
evidence (automated tests: method TEST; manual items: EXAMINE, with the reviewer's checklist).
UUIDs are derived from the run and the test (uuid5), so a rebuild writes the same document.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from iec62443_harness.catalogue import FRS

NS = "urn:iec62443-harness"  # namespace of this harness's own properties
_UUIDS = uuid.UUID("6c9f3b8e-2f1d-5b7a-9c4e-62443a0e4c2d")
_ID = re.compile(r"(?P<kinds>[A-Z]+(?:/[A-Z]+)*) (?P<num>\d+\.\d+)(?: RE\((?P<re>\d+)\))?")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
SATISFIED = {"pass": "pass", "compensated": "other", "n/a": "other"}  # verdict -> OSCAL reason
UNSETTLED = {  # verdict -> why a row that is not (yet) shown met is "not-satisfied", reason "other"
    "manual": "to be examined by a reviewer (observation method EXAMINE, with a checklist); not yet settled",
    "error": "the harness or the device broke during the test: inconclusive, to be run again",
    "not-run": "not run (the target file's safety settings did not allow it, or it was deselected or not reached)",
}


def control_id(row_id: str, component_type: str) -> str:
    """The OSCAL control id of a catalogue row for a component of `component_type` (EDR, ...)."""
    m = _ID.fullmatch(row_id)
    if m is None:
        raise ValueError(f"catalogue id {row_id!r} has no OSCAL control id")
    kinds = m["kinds"].split("/")
    kind = component_type if component_type in kinds else kinds[0]
    return f"{kind.lower()}-{m['num']}" + (f"-re-{m['re']}" if m["re"] else "")


def _text(value: Any) -> str:
    return _CONTROL.sub(lambda c: f"\\x{ord(c.group()):02x}", str(value))


def _line(value: Any) -> str:
    """A markup-line value: one line, never empty."""
    return " ".join(_text(value).split()) or "-"


def build_oscal(matrix: dict[str, Any]) -> dict[str, Any]:
    """The assessment-results document (`{"assessment-results": {...}}`), validated by trestle's models."""
    from trestle.oscal import OSCAL_VERSION
    from trestle.oscal import assessment_results as ar
    from trestle.oscal import common as oc

    run, summary = matrix["run"], matrix["summary"]
    ctype = run["component_type"]
    scope = f"{run['target']}/{run['run_id']}"

    def uid(name: str) -> str:
        return str(uuid.uuid5(_UUIDS, f"{scope}/{name}"))

    def prop(name: str, value: Any) -> oc.Property:
        return oc.Property(name=name, value=_line(value), ns=NS)

    ident = run.get("identity") or {}
    device = oc.SystemComponent(
        uuid=uid("device"), type="this-system", title=_line(f"{ident.get('vendor', '')} {ident.get('model', '')} "
                                                             f"(target {run['target']})"),
        description=_text(f"The component under test: a {ctype} component, firmware {ident.get('firmware', '?')}"
                          + (f", serial {ident['serial_number']}" if ident.get("serial_number") else "") + "."),
        props=[prop("component-type", ctype), *(prop(f"sl-t-{fr.lower()}", summary["sl_t_by_fr"][fr]) for fr in FRS)],
        status=oc.Status(state="operational"))
    tool = oc.SystemComponent(
        uuid=uid("harness"), type="software", title="iec62443-harness",
        description=_text(f"IEC 62443-4-2 conformance harness {run.get('harness_version')}, which ran the tests."),
        status=oc.Status(state="operational"))
    origin = oc.Origin(actors=[oc.OriginActor(type="tool", actor_uuid=tool.uuid)])
    subject = oc.SubjectReference(subject_uuid=device.uuid, type="component")

    collected_default = run.get("ended") or run.get("started") or matrix["generated"]["at"]
    observations = []
    for test in matrix["tests"]:
        manual = test["verdict"] == "manual"
        evidence = [oc.RelevantEvidence(description=_text("\n".join(test["evidence"]) or "No evidence recorded."),
                                        remarks="Transcript of what the harness sent and observed, secrets redacted.")]
        if test["checklist"]:
            evidence.append(oc.RelevantEvidence(
                description=_text("\n".join(f"{n}. {item}" for n, item in enumerate(test["checklist"], 1))),
                remarks="What the reviewer must examine to settle this item."))
        observations.append(oc.Observation(
            uuid=uid(f"test/{test['test']}"), title=_line(test["test"]),
            description=_text(test["reason"] or f"{test['verdict']}: {test['test']}"),
            props=[prop("verdict", test["verdict"]), *([prop("interface", test["interface"])] if test["interface"]
                                                       else [])],
            methods=["EXAMINE" if manual else "TEST"], origins=[origin], subjects=[subject],
            relevant_evidence=evidence, collected=test["ended"] or collected_default))

    reviewed, findings = [], []
    for row in matrix["rows"]:
        if row["kind"] == "none" or ctype not in row["applies_to"]:
            continue  # no component requirement here: not a control of this assessment
        cid = control_id(row["id"], ctype)
        reviewed.append(oc.SelectControlById(control_id=cid))
        if row["verdict"] == "not-tested":
            continue
        verdict = row["verdict"]
        if verdict in SATISFIED:
            status = oc.ObjectiveStatus(state="satisfied", reason=SATISFIED[verdict])
        elif verdict == "fail":
            status = oc.ObjectiveStatus(state="not-satisfied", reason="fail")
        else:
            status = oc.ObjectiveStatus(state="not-satisfied", reason="other", remarks=UNSETTLED[verdict])
        related = [oc.RelatedObservation(observation_uuid=uid(f"test/{t['test']}")) for t in row["tests"]]
        findings.append(oc.Finding(
            uuid=uid(f"row/{row['id']}"), title=_line(f"{row['id']}: {row['title']}"),
            description=_text(row["reason"] or verdict),
            props=[prop("catalogue-id", row["id"]), prop("verdict", verdict),
                   *([prop("min-sl", row["min_sl"])] if row["min_sl"] is not None else []),
                   prop("binds-at-sl-t", str(row["binds_at_sl_t"]).lower())],
            origins=[origin],
            target=oc.FindingTarget(type="statement-id", target_id=f"{cid}_smt", status=status,
                                    title=_line(f"{row['id']} {verdict}")),
            related_observations=related or None))

    result = ar.Result(
        uuid=uid("result"), title=_line(f"IEC 62443-4-2 conformance run {run['run_id']} of {run['target']}"),
        description=_text(f"Automated and manual checks of IEC 62443-4-2 requirements against {run['target']}; "
                          f"run {'complete' if run['complete'] else 'partial' if run['partial'] else 'incomplete'}; "
                          f"exit gate {summary['gate']['mode']}: {summary['gate']['why']}."),
        start=run.get("started") or matrix["generated"]["at"], end=run.get("ended"),
        props=[prop("complete", str(run["complete"]).lower()), prop("partial", str(run["partial"]).lower()),
               *(prop(f"sl-c-{fr.lower()}", summary["sl_c"][fr]) for fr in FRS),
               *(prop(f"sl-t-{fr.lower()}", summary["sl_t_by_fr"][fr]) for fr in FRS)],
        local_definitions=ar.LocalDefinitions1(components=[device, tool]),
        reviewed_controls=oc.ReviewedControls(control_selections=[oc.ControlSelections(
            description="Every IEC 62443-4-2 requirement that binds this component type.", include_controls=reviewed)]),
        observations=observations or None, findings=findings or None,
        remarks=_text("\n".join(run["notes"])) if run["notes"] else None)
    doc = ar.AssessmentResults(
        uuid=uid("assessment-results"),
        metadata=oc.Metadata(
            title=_line(f"IEC 62443-4-2 assessment results: {run['target']}, run {run['run_id']}"),
            last_modified=matrix["generated"]["at"], version=_line(run["run_id"]), oscal_version=OSCAL_VERSION,
            props=[prop("harness-version", matrix["generated"]["harness_version"]),
                   prop("catalogue-sha256", matrix["generated"]["catalogue_sha256"] or "unknown")]),
        import_ap=ar.ImportAp(href="target.yaml", remarks="No OSCAL assessment plan: the target file beside this "
                              "document (secrets redacted) says what was assessed, over which interfaces, and "
                              "what the harness was allowed to do."),
        results=[result])
    return doc.oscal_dict()
