"""The terminal summary of a matrix: where the page is, counts by verdict, SL-C against SL-T per FR, the exit
gate, and the rows that fail at SL-T. `print_summary` colours it with rich; `summary_lines` is the same as text.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any

from iec62443_harness.catalogue import FRS
from iec62443_harness.report.gate import BLOCKING
from rich.console import Console
from rich.markup import escape
from rich.table import Table

_STYLE = {"pass": "green", "fail": "bold red", "manual": "yellow", "compensated": "cyan", "error": "magenta",
          "not-run": "bright_black", "n/a": "dim", "not-tested": "white"}


def _counts(matrix: dict[str, Any]) -> list[tuple[str, int]]:
    return [(v, n) for v, n in matrix["summary"]["counts"].items() if n]


def _state(run: dict[str, Any]) -> str:
    if run.get("partial"):
        return "PARTIAL"
    return "complete" if run["complete"] else "INCOMPLETE"


def failing(matrix: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The rows that fail or error: (binding at SL-T, above it)."""
    bad = [r for r in matrix["rows"] if r["verdict"] in BLOCKING]
    return [r for r in bad if r["binds_at_sl_t"]], [r for r in bad if not r["binds_at_sl_t"]]


def _short(text: str, limit: int = 110) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _above_label(summary: dict[str, Any]) -> str:
    return "fails above SL-T" + (" (judged, not gating)" if summary["gate"]["mode"] == "sl-t" else "")


def _gate_line(summary: dict[str, Any]) -> str:
    g = summary["gate"]
    return f"gate {g['mode']}: {'holds' if g['holds'] else 'FAILS'} ({g['why']})"


def summary_lines(matrix: dict[str, Any], report_dir: Path | None = None) -> list[str]:
    """The summary as plain lines (for a log or a terminal without colour)."""
    run, summary = matrix["run"], matrix["summary"]
    at_sl_t, above = failing(matrix)
    lines = [
        f"IEC 62443-4-2 matrix of {run['target']} ({run['component_type']}), run {run['run_id']}: {_state(run)}",
        f"rows: {summary['rows']} ({', '.join(f'{n} {v}' for v, n in _counts(matrix))}); tests: {summary['tests']}",
        "SL-T " + " ".join(f"{fr}={summary['sl_t_by_fr'][fr]}" for fr in FRS),
        "SL-C " + " ".join(f"{fr}={summary['sl_c'][fr]}" for fr in FRS),
        "SL-C if pending manual rows are accepted: "
        + " ".join(f"{fr}={summary['sl_c_manual_accepted'][fr]}" for fr in FRS),
        _gate_line(summary),
        *(f"fails at SL-T: {r['id']} [{r['verdict']}] {_short(r['reason'])}" for r in at_sl_t),
        *([f"{_above_label(summary)}: {', '.join(r['id'] for r in above)}"] if above else []),
        *(f"note: {note}" for note in run["notes"]),
    ]
    if report_dir is not None:
        lines.append(f"report: {Path(report_dir) / 'matrix.html'}")
    return lines


def print_summary(matrix: dict[str, Any], report_dir: Path, console: Console | None = None) -> None:
    console = console or Console()
    run, summary = matrix["run"], matrix["summary"]
    state = {"PARTIAL": "[bold yellow]PARTIAL[/]", "INCOMPLETE": "[bold yellow]INCOMPLETE[/]"}.get(
        _state(run), "[green]complete[/]")
    console.print(f"[bold]IEC 62443-4-2 matrix[/] of {escape(str(run['target']))} "
                  f"({escape(str(run['component_type']))}), run {escape(str(run['run_id']))}: {state}")
    console.print("rows: " + ", ".join(f"[{_STYLE.get(v, 'white')}]{n} {escape(v)}[/]" for v, n in _counts(matrix))
                  + f"; tests: {summary['tests']}")
    table = Table(show_edge=False, pad_edge=False, box=None)
    table.add_column("")
    for fr in FRS:
        table.add_column(fr, justify="right")
    sl_t = summary["sl_t_by_fr"]
    table.add_row("SL-T", *(str(sl_t[fr]) for fr in FRS))
    table.add_row("SL-C", *(f"[{'green' if summary['sl_c'][fr] >= sl_t[fr] else 'bold red'}]{summary['sl_c'][fr]}[/]"
                            for fr in FRS))
    table.add_row("SL-C, manual accepted", *(str(summary["sl_c_manual_accepted"][fr]) for fr in FRS))
    console.print(table)
    g = summary["gate"]
    colour = "green" if g["holds"] else "bold red"
    console.print(f"gate {escape(g['mode'])}: [{colour}]{'holds' if g['holds'] else 'FAILS'}[/] ({escape(g['why'])})")
    at_sl_t, above = failing(matrix)
    for row in at_sl_t:
        console.print(f"  [{_STYLE[row['verdict']]}]{escape(row['verdict'])}[/] at SL-T: [bold]{escape(row['id'])}[/] "
                      f"{escape(row['title'])}: {escape(_short(row['reason']))}")
    if above:
        console.print(f"  [dim]{_above_label(summary)}:[/] "
                      + ", ".join(f"{escape(r['id'])} (SL{r['min_sl']})" for r in above))
    for note in run["notes"]:
        console.print(f"[yellow]note:[/] {escape(note)}")
    console.print(f"reports: [bold]{escape(str(Path(report_dir) / 'matrix.html'))}[/] "
                  "(and matrix.json, .csv, .md, junit.xml, oscal-ar.json, manifest.json)")
    manifest = Path(report_dir) / "manifest.json"
    if manifest.is_file():
        digest = hashlib.sha256(manifest.read_bytes()).hexdigest()
        console.print(f"manifest sha256 {digest} (iec62443 seal {escape(str(report_dir))} packs the run as one bundle)")


def render_summary(matrix: dict[str, Any], report_dir: Path, colour: bool, width: int) -> str:
    """The coloured summary as text with ANSI codes (or without, `colour` False), for pytest's terminal."""
    text = io.StringIO()
    console = Console(file=text, force_terminal=colour, color_system="standard" if colour else None,
                      width=width, highlight=False, soft_wrap=True)
    print_summary(matrix, report_dir, console)
    return text.getvalue()
