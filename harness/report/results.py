"""`results.jsonl`: the run's source of truth, one JSON object per line, appended as tests end.

Each line is written with a single `os.write` on an O_APPEND descriptor and nothing is buffered in the
process, so a run killed with kill -9 leaves every finished line on disk and at most a truncated last
line, which `read_results` ignores and reports.

Lines: one `run` header, then one `outcome` per test, then `end` when the run ends normally.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from iec62443_harness import __version__
from iec62443_harness.errors import HarnessError
from iec62443_harness.evidence import redact
from iec62443_harness.verdicts import Outcome, Verdict

RESULTS_SCHEMA_VERSION = 1
RESULTS_FILE = "results.jsonl"
TARGET_COPY = "target.yaml"  # the target file as the run read it, secrets redacted

# Reasons of the `not-run` outcomes the plugin records for tests that never ran; a merge replaces them with
# another run's real outcome of the same test, and the matrix calls a run with deselected tests partial.
DESELECTED = "deselected on the command line"
NOT_REACHED = "not reached: the run stopped before this test"
INTERRUPTED = "interrupted: the run stopped during this test"
PLACEHOLDERS = (DESELECTED, NOT_REACHED, INTERRUPTED)


def now_iso() -> str:
    """Current UTC time as ISO-8601 with milliseconds and a Z suffix."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def redact_all(value: Any) -> Any:
    """Every string inside a JSON-like value (keys included) passed through the secret redactor."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {redact_all(k): redact_all(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_all(v) for v in value]
    return value


class ResultsWriter:
    """Appends the lines of one run's `results.jsonl`. Thread-safe; holds no file open between calls."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def _append(self, record: dict[str, Any]) -> None:
        # default=str: a config value that is not JSON (a Path, an enum) is recorded as its text.
        data = (json.dumps(redact_all(record), ensure_ascii=False, default=str) + "\n").encode("utf-8")
        with self._lock:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                view = memoryview(data)
                while view:  # a regular file takes it whole; the loop only guards a short write
                    view = view[os.write(fd, view):]
            finally:
                os.close(fd)

    def header(self, run: dict[str, Any]) -> None:
        """The first line: run id, target, identity, component_type, security_level, config, ..."""
        record = {"type": "run", "schema_version": RESULTS_SCHEMA_VERSION, "harness_version": __version__,
                  "started": now_iso()}
        record.update(run)
        record["type"], record["schema_version"] = "run", RESULTS_SCHEMA_VERSION
        self._append(record)

    def outcome(self, outcome: Outcome, duration_s: float) -> None:
        self._append({"type": "outcome", "test": outcome.test, "rows": list(outcome.rows),
                      "verdict": str(outcome.verdict), "reason": outcome.reason, "interface": outcome.interface,
                      "evidence": list(outcome.evidence), "checklist": list(outcome.checklist),
                      "alternative": outcome.alternative,
                      "duration_s": round(float(duration_s), 3), "ended": now_iso()})

    def end(self, exit_status: int, unreached: int = 0, signal: str | None = None) -> None:
        """`unreached`: collected tests the run stopped before (-x, Ctrl-C): the run is then incomplete.
        `signal`: the signal that stopped the run ("SIGTERM"), when one did."""
        record: dict[str, Any] = {"type": "end", "ended": now_iso(), "exit_status": int(exit_status),
                                  "unreached": unreached}
        if signal:
            record["signal"] = signal
        self._append(record)


@dataclass(frozen=True)
class Timing:
    duration_s: float | None
    ended: str | None


@dataclass(frozen=True)
class RunRecord:
    header: dict[str, Any]
    outcomes: list[Outcome]
    timings: list[Timing]  # parallel to `outcomes`
    ended: str | None  # None: no `end` line, the run did not finish normally
    exit_status: int | None
    truncated: bool  # the last line did not parse (the run was killed mid-write) and was ignored
    unreached: int = 0  # tests the run stopped before
    signal: str | None = None  # the signal that stopped it ("SIGTERM"), from the end line


def _strings(value: Any, what: str, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise HarnessError(f"{where}: {what} must be a list of strings; the file is damaged: rerun the tests")
    return tuple(value)


def _outcome(rec: dict[str, Any], where: str) -> tuple[Outcome, Timing]:
    test, verdict, reason = rec.get("test"), rec.get("verdict"), rec.get("reason") or ""
    interface = rec.get("interface")
    if not isinstance(test, str) or not isinstance(reason, str) or not isinstance(interface, str | None) \
            or not isinstance(verdict, str):
        raise HarnessError(f"{where}: outcome needs string 'test', 'verdict', 'reason' and 'interface'; "
                           "the file is damaged: rerun the tests")
    try:
        verdict = Verdict(verdict)
    except ValueError:
        known = ", ".join(v.value for v in Verdict)
        raise HarnessError(f"{where}: unknown verdict {verdict!r} (known: {known}); the file was written by "
                           "another harness version: rebuild the reports with that version") from None
    outcome = Outcome(test=test, rows=_strings(rec.get("rows"), "'rows'", where), verdict=verdict,
                      reason=reason, interface=interface,
                      evidence=_strings(rec.get("evidence", []), "'evidence'", where),
                      checklist=_strings(rec.get("checklist", []), "'checklist'", where),
                      alternative=str(rec.get("alternative") or ""))
    duration = rec.get("duration_s")
    return outcome, Timing(float(duration) if isinstance(duration, int | float) else None, rec.get("ended"))


def read_results(path: Path) -> RunRecord:
    """Parse a `results.jsonl`. Raises `HarnessError` (one line) when it cannot be read or is damaged."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8", errors="replace")
    except OSError as exc:
        raise HarnessError(f"cannot read {path}: {exc.strerror}; give the run folder of a finished or "
                           "interrupted run (reports/<target>/<run-id>)") from None
    lines = text.split("\n")
    # A complete file ends with a newline, leaving "" last; anything else last was being written.
    last = lines.pop()
    parsed: list[tuple[int, dict[str, Any]]] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            raise HarnessError(f"{path} line {number} is not JSON; the file is damaged: rerun the tests") from None
        if not isinstance(rec, dict):
            raise HarnessError(f"{path} line {number} is not a JSON object; the file is damaged: rerun the tests")
        parsed.append((number, rec))
    truncated = False
    if last.strip():
        try:
            rec = json.loads(last)
            if not isinstance(rec, dict):
                raise ValueError
            parsed.append((len(lines) + 1, rec))
        except ValueError:
            truncated = True
    if not parsed or parsed[0][1].get("type") != "run":
        raise HarnessError(f"{path} does not start with a run header line; it was not written by the harness: "
                           "rerun the tests")
    header = parsed[0][1]
    if header.get("schema_version") != RESULTS_SCHEMA_VERSION:
        raise HarnessError(f"{path} has schema_version {header.get('schema_version')!r}, this harness reads "
                           f"{RESULTS_SCHEMA_VERSION}: rebuild the reports with the harness version that ran it")
    outcomes: list[Outcome] = []
    timings: list[Timing] = []
    ended, exit_status, unreached, stopped_by = None, None, 0, None
    for number, rec in parsed[1:]:
        kind = rec.get("type")
        if kind == "outcome":
            outcome, timing = _outcome(rec, f"{path} line {number}")
            outcomes.append(outcome)
            timings.append(timing)
        elif kind == "end":
            ended = rec["ended"] if isinstance(rec.get("ended"), str) else "unknown"
            exit_status = rec.get("exit_status") if isinstance(rec.get("exit_status"), int) else None
            unreached = rec["unreached"] if isinstance(rec.get("unreached"), int) else 0
            stopped_by = rec.get("signal") if isinstance(rec.get("signal"), str) else None
        # other types are ignored: a later minor addition must not stop older readers
    return RunRecord(header=header, outcomes=outcomes, timings=timings, ended=ended, exit_status=exit_status,
                     truncated=truncated, unreached=unreached, signal=stopped_by)
