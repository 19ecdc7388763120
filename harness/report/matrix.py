"""The conformance matrix: one run's outcomes rolled up over the whole catalogue, as a JSON-ready dict.

Every renderer (JSON, CSV, Markdown, HTML, JUnit, the terminal summary) reads this dict only, so all of
them say the same thing. Its shape is versioned and described in docs/report-schema.md.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from iec62443_harness import __version__
from iec62443_harness.catalogue import CATALOGUE_FILE, FRS, TYPES, Row, load_catalogue
from iec62443_harness.errors import HarnessError
from iec62443_harness.report import gate
from iec62443_harness.report.results import DESELECTED, RunRecord, Timing, now_iso, redact_all
from iec62443_harness.verdicts import Outcome, Verdict, rollup, sl_capability

MATRIX_SCHEMA = "iec62443-harness/matrix"
MATRIX_SCHEMA_VERSION = 2
LEVELS = ("SL1", "SL2", "SL3", "SL4")
NOT_REQUIRED = "not-required"  # a level below the row's min_sl: the row does not bind there
FR_TITLES = {
    "FR1": "Identification and authentication control",
    "FR2": "Use control",
    "FR3": "System integrity",
    "FR4": "Data confidentiality",
    "FR5": "Restricted data flow",
    "FR6": "Timely response to events",
    "FR7": "Resource availability",
}


def levels(row: Row, verdict: Verdict) -> dict[str, str]:
    """The row's verdict at SL1..SL4: its verdict where it binds, 'not-required' below its min_sl."""
    return {f"SL{n}": str(verdict) if row.min_sl is None or n >= row.min_sl else NOT_REQUIRED
            for n in range(1, 5)}


def _test_entry(out: Outcome, timing: Timing) -> dict[str, Any]:
    return {"test": out.test, "verdict": str(out.verdict), "reason": out.reason, "interface": out.interface,
            "evidence": list(out.evidence), "checklist": list(out.checklist), "duration_s": timing.duration_s,
            "ended": timing.ended}


def _countermeasures(header: dict[str, Any]) -> dict[str, str]:
    cms = header.get("countermeasures") or {}
    if not isinstance(cms, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in cms.items()):
        raise HarnessError("results.jsonl header: 'countermeasures' must map 'row id' or 'row id|interface' to a "
                           "justification; the file is damaged: rerun the tests")
    return cms


def _sha256(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def _sl_t(level: Any) -> dict[str, int]:
    def ok(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 4

    if (isinstance(level, dict) and set(level) == set(FRS) and all(map(ok, level.values()))) or ok(level):
        return gate.sl_t_vector(level)
    raise HarnessError(f"results.jsonl header: security_level {level!r} is neither 1-4 nor a vector FR1..FR7 of "
                       "1-4; the file is damaged: rerun the tests")


def _selection(header: dict[str, Any], outcomes: list[Outcome]) -> tuple[list[str], list[str]]:
    """What limited the run: the tests deselected on the command line (still without a result of their own,
    after a merge) and the shipped suites it was limited to by path."""
    deselected = list(dict.fromkeys(o.test for o in outcomes
                                    if o.verdict is Verdict.NOT_RUN and o.reason == DESELECTED))
    selection = header.get("selection") or {}
    paths = selection.get("paths") if isinstance(selection, dict) else None
    return deselected, [p for p in paths or [] if isinstance(p, str)]


def build_matrix(record: RunRecord, catalogue_path: Path = CATALOGUE_FILE) -> dict[str, Any]:
    """The matrix of one run, every string passed through the secret redactor."""
    header = record.header
    component_type = header.get("component_type")
    if component_type not in TYPES:
        raise HarnessError(f"results.jsonl header: component_type {component_type!r} is not one of "
                           f"{', '.join(TYPES)}; the file is damaged: rerun the tests")
    sl_t_by_fr = _sl_t(header.get("security_level"))
    sl_t = max(sl_t_by_fr.values())
    gate_mode = header.get("gate", gate.DEFAULT_GATE)
    if gate_mode not in gate.GATES:
        raise HarnessError(f"results.jsonl header: gate {gate_mode!r} is not one of {', '.join(gate.GATES)}; the "
                           "file is damaged: rerun the tests")
    countermeasures = _countermeasures(header)
    catalogue = load_catalogue(catalogue_path)
    results = rollup(catalogue, record.outcomes, component_type, countermeasures)
    by_id = {res.row.id: res for res in results}

    # rollup keeps, per row, the outcomes naming it in run order (with countermeasures applied), so the
    # k-th outcome naming a row is that row's k-th test: this maps each row's view back to the run's outcomes.
    timing_of: dict[str, list[Timing]] = {}
    tests: list[dict[str, Any]] = []
    notes: list[str] = []
    for out, timing in zip(record.outcomes, record.timings, strict=True):
        adjusted: list[Outcome] = []  # this outcome as each known row it judges sees it
        for rid in out.rows:
            if rid in by_id:
                timing_of.setdefault(rid, []).append(timing)
                adjusted.append(by_id[rid].tests[len(timing_of[rid]) - 1])
        unknown = [rid for rid in out.rows if rid not in by_id]
        if unknown:
            notes.append(f"{out.test} names rows not in the catalogue, ignored: {', '.join(unknown)}")
        verdict, reason = out.verdict, out.reason
        if out.verdict is Verdict.FAIL and adjusted and all(a.verdict is Verdict.COMPENSATED for a in adjusted):
            verdict, reason = Verdict.COMPENSATED, "; ".join(dict.fromkeys(a.reason for a in adjusted))
        entry = _test_entry(out, timing)
        entry.update(rows=list(out.rows), verdict=str(verdict), recorded_verdict=str(out.verdict), reason=reason)
        tests.append(entry)

    rows = []
    for res in results:
        row = res.row
        rows.append({
            "id": row.id, "fr": row.fr, "title": row.title, "kind": row.kind,
            "applies_to": [t for t in TYPES if t in row.applies_to], "min_sl": row.min_sl,
            # the catalogue's `note` column is the maintainers' own reading aid, not a finding: it stays out
            "automation": row.automation, "verdict": str(res.verdict), "reason": res.reason,
            "levels": levels(row, res.verdict),
            "binds_at_sl_t": row.min_sl is not None and row.min_sl <= sl_t_by_fr[row.fr],
            "tests": [_test_entry(t, tm) for t, tm in zip(res.tests, timing_of.get(row.id, []), strict=True)],
        })

    if record.truncated:
        notes.insert(0, "the last line of results.jsonl was cut off (the run was killed mid-write) and was ignored")
    if record.signal:
        notes.insert(0, f"the run was stopped by {record.signal} (a CI time-out or kill) and did not finish: "
                        "tests it had not reached are not-run")
    if record.ended is None:
        notes.insert(0, "the run did not finish (no end line in results.jsonl): rows it had not reached show "
                        "as not-tested")
    notes += [n for n in header.get("notes") or [] if isinstance(n, str)]  # e.g. a merge's
    deselected, paths = _selection(header, record.outcomes)
    partial = bool(deselected or paths)
    if deselected:
        notes.insert(0, f"partial run: {len(deselected)} test{'s were' if len(deselected) != 1 else ' was'} "
                        "deselected on the command line (-k, -m, --deselect); their rows show not-run, and the "
                        "run says nothing about them")
    if paths:
        notes.insert(0, f"partial run: only these shipped suites were collected: {', '.join(paths)}; the rows of "
                        "the others show not-tested")
    sl_c = sl_capability(results)
    sl_c_manual = sl_capability(results, accept_manual=True)
    counts = {v.value: 0 for v in Verdict}
    for res in results:
        counts[res.verdict.value] += 1
    complete = (record.ended is not None and not record.truncated and record.exit_status in (0, 1)
                and record.unreached == 0 and not partial)
    matrix = {
        "schema": MATRIX_SCHEMA,
        "schema_version": MATRIX_SCHEMA_VERSION,
        "generated": {"at": now_iso(), "harness_version": __version__, "catalogue_sha256": _sha256(catalogue_path)},
        "run": {
            "harness_version": header.get("harness_version"), "run_id": header.get("run_id"),
            "target": header.get("target"), "target_file": header.get("target_file"),
            "identity": header.get("identity") or {}, "component_type": component_type, "sl_t": sl_t,
            "config": header.get("config") or {}, "countermeasures": countermeasures,
            "started": header.get("started"), "ended": record.ended, "exit_status": record.exit_status,
            # complete: it ended normally (tests passed or failed), every selected test was reached, nothing
            # was left out by selection, and no line was cut short
            "complete": complete, "partial": partial, "deselected": deselected, "selected_paths": paths,
            "truncated_line": record.truncated, "gate": gate_mode,
            "command": header.get("command"), "notes": notes,
            "merged_from": [r for r in header.get("merged_from") or [] if isinstance(r, str)],
            "environment": header.get("environment") or {},
        },
        "summary": {
            "rows": len(rows), "tests": len(tests), "counts": counts, "sl_t": sl_t, "sl_t_by_fr": sl_t_by_fr,
            "sl_c": sl_c, "sl_c_manual_accepted": sl_c_manual,
            "meets_sl_t": {fr: sl_c[fr] >= sl_t_by_fr[fr] for fr in FRS},
            "below_sl_t": gate.below_sl_t(rows, sl_t_by_fr),
            "gate": gate.judge(rows, sl_t_by_fr, gate_mode, partial),
            "fr_titles": FR_TITLES,
        },
        "rows": rows,
        "tests": tests,
    }
    return redact_all(matrix)
