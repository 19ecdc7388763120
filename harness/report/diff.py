"""`iec62443 diff RUN_A RUN_B`: the rows whose verdict changed between two runs (new failures first) and SL-C per
FR before and after, as terminal text, Markdown or JSON. The use case: firmware v1 against firmware v2.

A run is a run folder (its results.jsonl is rolled up again here, so both sides are judged by the same
catalogue and rollup), a results.jsonl file, or a matrix.json file.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from iec62443_harness.catalogue import FRS
from iec62443_harness.errors import HarnessError
from iec62443_harness.report.matrix import build_matrix
from iec62443_harness.report.results import RESULTS_FILE, read_results
from iec62443_harness.verdicts import MET

_MET = frozenset(v.value for v in MET)
# Kinds of change, in the order they are listed: what got worse first.
KINDS = ("new-fail", "new-error", "worse", "fixed", "changed")


def load_run(path: Path) -> dict[str, Any]:
    """The matrix of a run folder, a results.jsonl or a matrix.json. One-line `HarnessError` when it is none."""
    path = Path(path)
    if path.is_dir():
        if (path / RESULTS_FILE).is_file():
            return build_matrix(read_results(path / RESULTS_FILE))
        path = path / "matrix.json"
    if path.suffix == ".jsonl" and path.is_file():
        return build_matrix(read_results(path))
    try:
        matrix = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise HarnessError(f"{path} is not a run: give a run folder (reports/<target>/<run-id>), its results.jsonl "
                           f"or its matrix.json ({exc.__class__.__name__})") from None
    if not isinstance(matrix, dict) or matrix.get("schema") != "iec62443-harness/matrix" or "rows" not in matrix:
        raise HarnessError(f"{path} is not a matrix.json written by the harness: give a run folder instead")
    return matrix


def _kind(before: str, after: str) -> str:
    if after == "fail":
        return "new-fail"
    if after == "error":
        return "new-error"
    if before in _MET and after not in _MET:
        return "worse"
    if before not in _MET and after in _MET:
        return "fixed"
    return "changed"


def _side(matrix: dict[str, Any]) -> dict[str, Any]:
    run = matrix["run"]
    ident = run.get("identity") or {}
    return {"run_id": run["run_id"], "target": run["target"], "firmware": ident.get("firmware"),
            "complete": run["complete"], "partial": run.get("partial", False), "started": run.get("started")}


def diff_matrices(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """What changed from run `a` to run `b` (a pure function of the two matrices)."""
    before = {r["id"]: r for r in a["rows"]}
    order = {r["id"]: n for n, r in enumerate(b["rows"])}
    changed = []
    for row in b["rows"]:
        old = before.get(row["id"])
        was = old["verdict"] if old else "absent"
        if was == row["verdict"]:
            continue
        changed.append({"id": row["id"], "fr": row["fr"], "title": row["title"], "min_sl": row["min_sl"],
                        "binds_at_sl_t": row.get("binds_at_sl_t", False), "before": was, "after": row["verdict"],
                        "kind": _kind(was, row["verdict"]), "reason": row["reason"],
                        "reason_before": old["reason"] if old else ""})
    changed.sort(key=lambda c: (KINDS.index(c["kind"]), order[c["id"]]))
    warnings = []
    if a["run"]["target"] != b["run"]["target"]:
        warnings.append(f"the runs are of different targets ({a['run']['target']} and {b['run']['target']})")
    for name, m in (("A", a), ("B", b)):
        if not m["run"]["complete"]:
            warnings.append(f"run {name} ({m['run']['run_id']}) is not complete: rows it did not judge show as "
                            "changes or hide them")
    sa, sb = a["summary"], b["summary"]
    return {
        "schema": "iec62443-harness/diff", "schema_version": 1, "a": _side(a), "b": _side(b),
        "changed": changed,
        "kinds": {k: sum(1 for c in changed if c["kind"] == k) for k in KINDS},
        "sl_t": {"a": sa.get("sl_t_by_fr") or dict.fromkeys(FRS, sa["sl_t"]),
                 "b": sb.get("sl_t_by_fr") or dict.fromkeys(FRS, sb["sl_t"])},
        "sl_c": {"a": sa["sl_c"], "b": sb["sl_c"]},
        "counts": {v: [sa["counts"].get(v, 0), sb["counts"].get(v, 0)] for v in sb["counts"]},
        "warnings": warnings,
    }


def _label(side: dict[str, Any]) -> str:
    firmware = f", firmware {side['firmware']}" if side.get("firmware") else ""
    return f"{side['target']} run {side['run_id']}{firmware}"


def render_markdown(d: dict[str, Any]) -> str:
    def cell(text: Any) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ").replace("<", "&lt;")

    lines = [f"# IEC 62443-4-2 run diff: {cell(_label(d['a']))} → {cell(_label(d['b']))}", ""]
    lines += [f"- Warning: {cell(w)}" for w in d["warnings"]]
    lines += ["", "## SL-C per FR", "", "| | " + " | ".join(FRS) + " |", "| --- |" + " ---: |" * len(FRS),
              "| SL-T (B) | " + " | ".join(str(d["sl_t"]["b"][fr]) for fr in FRS) + " |",
              "| SL-C before | " + " | ".join(str(d["sl_c"]["a"][fr]) for fr in FRS) + " |",
              "| SL-C after | " + " | ".join(str(d["sl_c"]["b"][fr]) for fr in FRS) + " |",
              "", f"## Rows whose verdict changed ({len(d['changed'])})", ""]
    if d["changed"]:
        lines += ["| Change | ID | Title | Min SL | Before | After | Reason now |",
                  "| --- | --- | --- | ---: | --- | --- | --- |"]
        lines += [f"| {c['kind']} | {cell(c['id'])} | {cell(c['title'])} | {c['min_sl'] or '-'} | {c['before']} | "
                  f"**{c['after']}** | {cell(c['reason'])} |" for c in d["changed"]]
    else:
        lines.append("No row changed its verdict.")
    return "\n".join(lines) + "\n"


def render_text(d: dict[str, Any]) -> list[str]:
    """Plain lines; `print_text` colours the same with rich."""
    lines = [f"A: {_label(d['a'])}", f"B: {_label(d['b'])}", *(f"warning: {w}" for w in d["warnings"]),
             "SL-C  " + "  ".join(f"{fr} {d['sl_c']['a'][fr]}->{d['sl_c']['b'][fr]}" for fr in FRS)
             + f"  (SL-T {' '.join(str(d['sl_t']['b'][fr]) for fr in FRS)})",
             f"{len(d['changed'])} rows changed: " + ", ".join(f"{n} {k}" for k, n in d["kinds"].items() if n)]
    lines += [f"  {c['kind']:<9} {c['id']:<22} {c['before']} -> {c['after']}"
              + ("  [binds at SL-T]" if c["binds_at_sl_t"] else "") for c in d["changed"]]
    return lines


def print_text(d: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.markup import escape

    style = {"new-fail": "bold red", "new-error": "magenta", "worse": "yellow", "fixed": "green", "changed": "white"}
    console = Console(highlight=False, soft_wrap=True)
    for n, line in enumerate(render_text(d)):
        kind = line.split()[0] if n >= 4 + len(d["warnings"]) else ""
        console.print(f"[{style[kind]}]{escape(line)}[/]" if kind in style else escape(line))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="iec62443 diff", description="Rows whose verdict changed from run A to run B (new failures first), and "
        "SL-C per FR before and after. Exit status 1 when a row newly fails or errors, 0 when none does, 2 on a "
        "problem with the input.")
    parser.add_argument("run_a", type=Path, help="the earlier run: a run folder, results.jsonl or matrix.json")
    parser.add_argument("run_b", type=Path, help="the later run")
    parser.add_argument("--format", choices=("text", "markdown", "json"), default="text")
    parser.add_argument("-o", "--output", type=Path, help="write to this file instead of the terminal")
    args = parser.parse_args(argv)
    try:
        d = diff_matrices(load_run(args.run_a), load_run(args.run_b))
    except HarnessError as exc:
        print(f"iec62443 diff: {exc}", file=sys.stderr)
        return 2
    if args.format == "json" or args.output or args.format == "markdown":
        text = (json.dumps(d, indent=2, ensure_ascii=False) + "\n" if args.format == "json"
                else render_markdown(d) if args.format == "markdown" else "\n".join(render_text(d)) + "\n")
        if args.output:
            try:
                args.output.write_text(text, encoding="utf-8")
            except OSError as exc:
                print(f"iec62443 diff: cannot write {args.output} ({exc.strerror}): choose a writable path",
                      file=sys.stderr)
                return 2
        else:
            sys.stdout.write(text)
    else:
        print_text(d)
    return 1 if d["kinds"]["new-fail"] or d["kinds"]["new-error"] else 0


if __name__ == "__main__":
    sys.exit(main())
