"""The exit gate: which matrix rows decide whether a run passes, as small pure functions over the matrix rows.

A row *binds* at the target's SL-T when it is required at that level for its FR (min_sl <= SL-T[fr]). The
default gate (`sl-t`) fails a run when a binding row fails or errors; rows above SL-T are judged and shown
but do not decide the exit. `any` fails on any failing or erroring row, `none` never fails on verdicts.
A partial run (tests deselected, suites left out) cannot show that a gate holds, whatever it found.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from iec62443_harness.catalogue import FRS
from iec62443_harness.verdicts import MET, Verdict

GATES = ("sl-t", "any", "none")
DEFAULT_GATE = "sl-t"
BLOCKING = frozenset({Verdict.FAIL.value, Verdict.ERROR.value})
_MET = frozenset(v.value for v in MET)


def sl_t_vector(level: Any) -> dict[str, int]:
    """SL-T per FR from a results header's `security_level`: one number, or an FR1..FR7 mapping."""
    if isinstance(level, dict):
        return {fr: level[fr] for fr in FRS}
    return dict.fromkeys(FRS, level)


def binds(row: Mapping[str, Any], sl_t: Mapping[str, int]) -> bool:
    """Whether a matrix row is required at the target's SL-T for its FR."""
    return row["min_sl"] is not None and row["min_sl"] <= sl_t[row["fr"]]


def failing_rows(rows: Iterable[Mapping[str, Any]], sl_t: Mapping[str, int], gate: str) -> list[str]:
    """Ids of the rows that make the gate fail, in catalogue order."""
    if gate == "none":
        return []
    return [r["id"] for r in rows if r["verdict"] in BLOCKING and (gate == "any" or binds(r, sl_t))]


def below_sl_t(rows: Iterable[Mapping[str, Any]], sl_t: Mapping[str, int]) -> dict[str, list[str]]:
    """Per FR, the rows that hold its SL-C below SL-T: binding there and not met (pending manual rows count)."""
    held: dict[str, list[str]] = {fr: [] for fr in FRS}
    for row in rows:
        if binds(row, sl_t) and row["verdict"] not in _MET:
            held[row["fr"]].append(row["id"])
    return held


def judge(rows: Sequence[Mapping[str, Any]], sl_t: Mapping[str, int], gate: str, partial: bool) -> dict[str, Any]:
    """The gate's verdict on a matrix: `holds`, the rows that `fail` it, and `why` in one line."""
    failing = failing_rows(rows, sl_t, gate)
    if gate == "none":
        why = "gate none: verdicts do not decide the exit status"
    elif failing:
        where = "at SL-T" if gate == "sl-t" else "at any SL"
        why = f"{len(failing)} row{'s' if len(failing) != 1 else ''} fail or error {where}: {', '.join(failing)}"
    elif partial:
        why = "partial run: tests were left out, so it cannot show the gate holds"
    else:
        why = ("no row that binds at SL-T fails or errors" if gate == "sl-t"
               else "no row fails or errors")
    holds = gate == "none" or (not failing and not partial)
    return {"mode": gate, "holds": holds, "failing": failing, "why": why}


def exit_status(pytest_status: int, holds: bool, unjudged_failed: bool = False) -> int:
    """The process exit status: pytest's own when the session did not run to its end (interrupted, internal
    or usage error, nothing collected); else 1 when the gate fails or a test that judges no row failed."""
    if pytest_status not in (0, 1):
        return pytest_status
    return 1 if not holds or unjudged_failed else 0
