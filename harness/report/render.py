"""Renderers of the matrix dict (CSV, Markdown, HTML, JUnit XML), and `write_reports`, which writes them all."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import jinja2
from iec62443_harness.catalogue import FRS
from iec62443_harness.errors import HarnessError
from iec62443_harness.report.matrix import FR_TITLES, LEVELS, NOT_REQUIRED, build_matrix
from iec62443_harness.report.oscal import build_oscal
from iec62443_harness.report.results import RESULTS_FILE, read_results, redact_all
from iec62443_harness.verdicts import Verdict
from markupsafe import Markup, escape

REPORT_FILES = ("matrix.json", "matrix.csv", "matrix.md", "matrix.html", "junit.xml", "oscal-ar.json")
TEMPLATES = Path(__file__).resolve().parent / "templates"

# Characters XML 1.0 cannot carry at all (and that a browser shows as garbage): device transcripts can
# hold them (ANSI escapes on a console), so text renderers show them as \xNN.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")


def _visible(value: Any) -> Any:
    if isinstance(value, str):
        return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", value)
    if isinstance(value, dict):
        return {k: _visible(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_visible(v) for v in value]
    return value


def _by_fr(matrix: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"fr": fr, "title": FR_TITLES[fr], "rows": [r for r in matrix["rows"] if r["fr"] == fr]} for fr in FRS]


# --- CSV


def _cell(text: str) -> str:
    # A cell starting with = + - @ is a formula to a spreadsheet; device-supplied text must not become one.
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def render_csv(matrix: dict[str, Any]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    # run_complete on every line: a filtered or pasted extract still says when the run was cut short
    complete = "true" if matrix["run"]["complete"] else "false"
    writer.writerow(["id", "fr", "title", "min_sl", *LEVELS, "verdict", "reason", "run_complete", "binds_at_sl_t"])
    for row in _visible(matrix)["rows"]:
        writer.writerow([row["id"], row["fr"], _cell(row["title"]), "" if row["min_sl"] is None else row["min_sl"],
                         *(row["levels"][lvl] for lvl in LEVELS), row["verdict"], _cell(row["reason"]), complete,
                         "true" if row["binds_at_sl_t"] else "false"])
    return out.getvalue()


# --- Markdown


def _md(text: Any) -> str:
    """Text safe inside a Markdown table cell: no pipes, no line breaks, no raw HTML."""
    text = "" if text is None else str(text)
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return re.sub(r"\s*[\r\n]+\s*", " ", text.replace("\\", "\\\\").replace("|", "\\|"))


def _md_level(verdict: str) -> str:
    return "-" if verdict == NOT_REQUIRED else verdict


def _status(run: dict[str, Any]) -> str:
    if run["complete"]:
        return f"complete (pytest's exit status {run['exit_status']})"
    return "PARTIAL" if run["partial"] else "INCOMPLETE"


def render_markdown(matrix: dict[str, Any]) -> str:
    m = _visible(matrix)
    run, summary = m["run"], m["summary"]
    ident = run["identity"]
    lines = [
        f"# IEC 62443-4-2 conformance matrix: {_md(run['target'])}", "",
        f"- Target: {_md(ident.get('vendor'))} {_md(ident.get('model'))}, firmware {_md(ident.get('firmware'))}"
        + (f", serial {_md(ident['serial_number'])}" if ident.get("serial_number") else ""),
        f"- Component type: {_md(run['component_type'])}; SL-T {run['sl_t']}",
        f"- Run: {_md(run['run_id'])} ({_md(run['command'])}), harness {_md(run['harness_version'])}",
        f"- Started {_md(run['started'])}, ended {_md(run['ended'] or '-')}: {_md(_status(run))}",
        f"- Gate {summary['gate']['mode']}: **{'holds' if summary['gate']['holds'] else 'fails'}** "
        f"({_md(summary['gate']['why'])})",
        *(f"- Note: {_md(note)}" for note in run["notes"]),
        "", "## Summary", "", "| Verdict | Rows |", "| --- | ---: |",
        *(f"| {v} | {n} |" for v, n in summary["counts"].items()),
        "", "## Security levels per FR", "",
        "| | " + " | ".join(FRS) + " |", "| --- |" + " ---: |" * len(FRS),
        "| SL-T | " + " | ".join(str(summary["sl_t_by_fr"][fr]) for fr in FRS) + " |",
        "| SL-C | " + " | ".join(str(summary["sl_c"][fr]) for fr in FRS) + " |",
        "| SL-C if pending manual rows are accepted | "
        + " | ".join(str(summary["sl_c_manual_accepted"][fr]) for fr in FRS) + " |",
        "", "Rows that hold SL-C below SL-T (they bind at SL-T and are not met):", "",
        *(f"- {fr}: {', '.join(_md(r) for r in summary['below_sl_t'][fr]) or 'none'}" for fr in FRS),
    ]
    for group in _by_fr(m):
        lines += ["", f"## {group['fr']}: {group['title']}", "", "SL1-SL4: the row's verdict where it binds, "
                  "- below its minimum SL.", "",
                  "| ID | Title | Min SL | " + " | ".join(LEVELS) + " | Verdict | Reason |",
                  "| --- | --- | ---: |" + " --- |" * len(LEVELS) + " --- | --- |"]
        for row in group["rows"]:
            cells = [_md(c) for c in (row["id"], row["title"], "-" if row["min_sl"] is None else row["min_sl"],
                                      *(_md_level(row["levels"][lvl]) for lvl in LEVELS))]
            cells += [f"**{_md(row['verdict'])}**", _md(row["reason"])]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# --- HTML


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-")


_ENV = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True, undefined=jinja2.StrictUndefined,
                          trim_blocks=True, lstrip_blocks=True)
def _breakable(row_id: str) -> Markup:
    """A row id that may wrap after each '/' and before 'RE(n)' (EDR/HDR/NDR 3.10 RE(1)), never inside a
    clause number: 'NDR 3.10' stays whole."""
    kinds, _, rest = row_id.partition(" ")
    number, _, enhancement = rest.partition(" ")
    head = Markup("/<wbr>").join(escape(k) for k in kinds.split("/")) + Markup("&nbsp;") + escape(number)
    return head + (Markup(" ") + escape(enhancement) if enhancement else Markup(""))


FOLD_AT = 220  # characters of a reason shown before the rest is folded away


def _fold(reason: str) -> tuple[str, str]:
    """A long reason as (what is shown, what is folded): a countermeasure's justification folds first, else the
    text is cut at the last clause or word boundary before FOLD_AT."""
    if len(reason) <= FOLD_AT:
        return reason, ""
    cut = reason.find("compensating countermeasure:")
    if 0 < cut <= FOLD_AT:
        return reason[:cut].rstrip(), reason[cut:]
    for sep in ("; ", ". ", ", ", " "):
        at = reason.rfind(sep, 0, FOLD_AT)
        if at > FOLD_AT // 2:
            return reason[:at + len(sep)].rstrip(), reason[at + len(sep):]
    return reason[:FOLD_AT], reason[FOLD_AT:]


_ENV.filters["vclass"] = lambda verdict: "v-" + _slug(verdict.replace("/", ""))
_ENV.filters["slug"] = _slug
_ENV.filters["breakable"] = _breakable
_ENV.filters["fold"] = _fold


def render_html(matrix: dict[str, Any]) -> str:
    m = _visible(matrix)
    return _ENV.get_template("matrix.html.j2").render(
        m=m, run=m["run"], summary=m["summary"], groups=_by_fr(m), frs=FRS, levels=LEVELS,
        verdicts=[v.value for v in Verdict], rows_by_id={r["id"]: r for r in m["rows"]})


# --- JUnit XML


def _junit_names(test: str) -> tuple[str, str]:
    """pytest's convention: classname is the module path dotted (plus any class), name the function[params]."""
    head, bracket, params = test.partition("[")
    parts = head.split("::")
    if len(parts) < 2:
        return "iec62443", test
    module = parts[0].removesuffix(".py").replace("/", ".").replace("\\", ".")
    return ".".join([module, *parts[1:-1]]), parts[-1] + bracket + params


def render_junit(matrix: dict[str, Any]) -> str:
    m = _visible(matrix)
    run, tests = m["run"], m["tests"]
    verdicts = [t["verdict"] for t in tests]
    failures, errors = verdicts.count(Verdict.FAIL), verdicts.count(Verdict.ERROR)
    skipped = len(tests) - failures - errors - verdicts.count(Verdict.PASS)
    total = sum(t["duration_s"] or 0.0 for t in tests)
    suites = ET.Element("testsuites", name="iec62443-harness", tests=str(len(tests)), failures=str(failures),
                        errors=str(errors), skipped=str(skipped), time=f"{total:.3f}")
    suite = ET.SubElement(suites, "testsuite", name=f"iec62443.{run['target']}", tests=str(len(tests)),
                          failures=str(failures), errors=str(errors), skipped=str(skipped), time=f"{total:.3f}",
                          timestamp=run["started"] or "")
    props = ET.SubElement(suite, "properties")
    for name in ("run_id", "target", "component_type", "sl_t", "complete"):
        value = run[name]
        ET.SubElement(props, "property", name=name, value=str(value).lower() if isinstance(value, bool) else str(value))
    for note in run["notes"]:  # why it is incomplete, among others
        ET.SubElement(props, "property", name="note", value=note)
    for test in tests:
        classname, name = _junit_names(test["test"])
        case = ET.SubElement(suite, "testcase", classname=classname, name=name,
                             time=f"{test['duration_s'] or 0.0:.3f}")
        props = ET.SubElement(case, "properties")
        for rid in test["rows"]:
            ET.SubElement(props, "property", name="requirement", value=rid)
        if test["interface"]:
            ET.SubElement(props, "property", name="interface", value=test["interface"])
        ET.SubElement(props, "property", name="verdict", value=test["verdict"])
        verdict, reason = test["verdict"], test["reason"]
        if verdict == Verdict.FAIL:
            ET.SubElement(case, "failure", message=reason).text = reason
        elif verdict == Verdict.ERROR:
            ET.SubElement(case, "error", message=reason).text = reason
        elif verdict != Verdict.PASS:
            ET.SubElement(case, "skipped", message=f"{verdict}: {reason}" if reason else verdict)
        out = [*(f"checklist: {item}" for item in test["checklist"]), *test["evidence"]]
        if out:
            ET.SubElement(case, "system-out").text = "\n".join(out)
    ET.indent(suites)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"


# --- all of them


def _write_atomic(path: Path, text: str) -> None:
    """Replace `path` whole, so a reader (a browser refresh, CI) never sees half a file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def render_all(matrix: dict[str, Any]) -> dict[str, str]:
    """File name -> content of every report file."""
    return {
        "matrix.json": json.dumps(matrix, indent=2, ensure_ascii=False) + "\n",
        "matrix.csv": render_csv(matrix),
        "matrix.md": render_markdown(matrix),
        "matrix.html": render_html(matrix),
        "junit.xml": render_junit(matrix),
        "oscal-ar.json": json.dumps(redact_all(build_oscal(matrix)), indent=2, ensure_ascii=False) + "\n",
    }


def write_reports(run_dir: Path) -> list[Path]:
    """(Re)build every report file of a run folder from its results.jsonl, then its manifest.json (the hashes of
    them all); the paths written, in order.

    Raises `HarnessError` (one line) when results.jsonl is missing or damaged.
    """
    from iec62443_harness.report.seal import write_manifest

    run_dir = Path(run_dir)
    matrix = build_matrix(read_results(run_dir / RESULTS_FILE))
    written = []
    for name, text in render_all(matrix).items():
        _write_atomic(run_dir / name, text)
        written.append(run_dir / name)
    written.append(write_manifest(run_dir, matrix, [p.name for p in written]))
    return written


def load_matrix(run_dir: Path) -> dict[str, Any]:
    """The matrix.json `write_reports` wrote in a run folder."""
    path = Path(run_dir) / "matrix.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise HarnessError(f"cannot read {path} ({exc}): rebuild it with iec62443 rebuild {run_dir}") from None
