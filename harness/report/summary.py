"""The terminal summary of a matrix: counts by verdict, SL-T against SL-C per FR, where the reports are."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from iec62443_harness.catalogue import FRS
from rich.console import Console
from rich.markup import escape
from rich.table import Table

_STYLE = {"pass": "green", "fail": "bold red", "manual": "yellow", "compensated": "cyan", "error": "magenta",
          "not-run": "bright_black", "n/a": "dim", "not-tested": "white"}


def _vector(sl: dict[str, int]) -> str:
    return " ".join(f"{fr}={sl[fr]}" for fr in FRS)


def _counts(matrix: dict[str, Any]) -> list[tuple[str, int]]:
    return [(v, n) for v, n in matrix["summary"]["counts"].items() if n]


def summary_lines(matrix: dict[str, Any]) -> list[str]:
    """The summary as plain lines (for a pytest terminal summary or a log)."""
    run, summary = matrix["run"], matrix["summary"]
    state = "complete" if run["complete"] else "INCOMPLETE"
    return [
        f"IEC 62443-4-2 matrix of {run['target']} ({run['component_type']}), run {run['run_id']}: {state}",
        f"rows: {summary['rows']} ({', '.join(f'{n} {v}' for v, n in _counts(matrix))}); tests: {summary['tests']}",
        f"SL-T {summary['sl_t']}; SL-C {_vector(summary['sl_c'])}",
        f"SL-C if pending manual rows are accepted: {_vector(summary['sl_c_manual_accepted'])}",
        *(f"note: {note}" for note in run["notes"]),
    ]


def print_summary(matrix: dict[str, Any], report_dir: Path, console: Console | None = None) -> None:
    console = console or Console()
    run, summary = matrix["run"], matrix["summary"]
    state = "[green]complete[/]" if run["complete"] else "[bold yellow]INCOMPLETE[/]"
    console.print(f"[bold]IEC 62443-4-2 matrix[/] of {escape(str(run['target']))} "
                  f"({escape(str(run['component_type']))}), run {escape(str(run['run_id']))}: {state}")
    console.print("rows: " + ", ".join(f"[{_STYLE.get(v, 'white')}]{n} {escape(v)}[/]" for v, n in _counts(matrix))
                  + f"; tests: {summary['tests']}")
    table = Table(show_edge=False, pad_edge=False, box=None)
    table.add_column("")
    for fr in FRS:
        table.add_column(fr, justify="right")
    sl_t = summary["sl_t"]
    table.add_row("SL-T", *(str(sl_t) for _ in FRS))
    table.add_row("SL-C", *(f"[{'green' if summary['sl_c'][fr] >= sl_t else 'red'}]{summary['sl_c'][fr]}[/]"
                            for fr in FRS))
    table.add_row("SL-C, manual accepted", *(str(summary["sl_c_manual_accepted"][fr]) for fr in FRS))
    console.print(table)
    for note in run["notes"]:
        console.print(f"[yellow]note:[/] {escape(note)}")
    console.print(f"reports: {escape(str(Path(report_dir) / 'matrix.html'))} (and matrix.json, .csv, .md, junit.xml)")
