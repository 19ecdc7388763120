"""Verdicts, and the one pure rollup from test outcomes to row verdicts and the SL-C vector.

Nothing here does I/O: the plugin records `Outcome`s as tests end, and the reporters call `rollup`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import TYPE_CHECKING

from iec62443_harness.catalogue import FRS, Row

if TYPE_CHECKING:
    from iec62443_harness.target import Countermeasure


class Verdict(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    MANUAL = "manual"
    NA = "n/a"
    ERROR = "error"
    NOT_RUN = "not-run"
    COMPENSATED = "compensated"  # satisfied by a compensating countermeasure (CCSC 2)
    NOT_TESTED = "not-tested"  # no test judges the row yet


# When several tests judge one row, the row takes the first of these that any of them has: a single
# failure decides; an inconclusive part (error, not run) keeps the row from passing; manual work still
# pending keeps it from passing; a countermeasure is a weaker claim than a plain pass. (A part not run
# beside parts that passed makes the row MANUAL, not NOT_RUN: see judge_row.)
PRECEDENCE = (Verdict.FAIL, Verdict.ERROR, Verdict.NOT_RUN, Verdict.MANUAL, Verdict.COMPENSATED,
              Verdict.PASS, Verdict.NA)

# Verdicts that let a row count as met when the SL-C is computed.
MET = frozenset({Verdict.PASS, Verdict.COMPENSATED, Verdict.NA})


@dataclass(frozen=True)
class Outcome:
    """What one test (one parametrization) concluded about the rows it judges."""

    test: str
    rows: tuple[str, ...]
    verdict: Verdict
    reason: str = ""
    interface: str | None = None
    evidence: tuple[str, ...] = ()
    checklist: tuple[str, ...] = ()  # what a human must check, for MANUAL outcomes
    # Tests of a row sharing a name here are alternatives (the standard's "or": lock-out for a time *or* until an
    # administrator unlocks): over one interface, one of them passing is enough, and the others' not-run,
    # n/a or manual end is set aside (named in the row's reason). A failure or an error always counts.
    alternative: str = ""


@dataclass(frozen=True)
class RowResult:
    row: Row
    verdict: Verdict
    reason: str
    tests: tuple[Outcome, ...] = field(default_factory=tuple)


def countermeasure_map(countermeasures: Iterable[Countermeasure]) -> dict[str, str]:
    """A target file's countermeasures as the rollup reads them: 'row id|interface' -> justification."""
    found: dict[str, str] = {}
    for cm in countermeasures:
        for row in cm.rows:
            for iface in cm.interfaces:
                found.setdefault(f"{row}|{iface}", cm.justification)
    return found


def compensation(row_id: str, interface: str | None, countermeasures: Mapping[str, str]) -> str | None:
    """The justification that turns a FAIL of `row_id` over `interface` into COMPENSATED, if any. The one place
    that decides it: the rollup, the plugin's terminal display and every report ask here."""
    return (countermeasures.get(f"{row_id}|{interface}") if interface else None) or countermeasures.get(row_id)


def judge_row(row: Row, outcomes: Iterable[Outcome], component_type: str,
              countermeasures: Mapping[str, str] | None = None) -> RowResult:
    """The verdict of one row from the outcomes of the tests that judge it.

    `component_type` is 'SAR', 'EDR', 'HDR' or 'NDR'. `countermeasures` maps a row id (or
    'row id|interface') to the justification a target file gives for it; a failure it covers becomes
    COMPENSATED. Alternatives (`Outcome.alternative`) are honoured: one that passed over an interface sets
    aside the others' not-run, n/a or manual end there. What was not exercised never vanishes: a row whose
    exercised parts all passed but where something was not run is MANUAL (partly exercised: a human covers
    the rest, or a rerun that allows it), and its reason names what was and was not exercised; a row where
    nothing was exercised stays NOT_RUN.
    """
    outs = tuple(outcomes)
    if not row.has_requirement:
        return RowResult(row, Verdict.NA, "no component-level requirement in IEC 62443-4-2", outs)
    if not row.applies(component_type):
        kinds = "/".join(sorted(row.applies_to))
        return RowResult(row, Verdict.NA, f"applies to {kinds} components, not {component_type}", outs)
    if not outs:
        return RowResult(row, Verdict.NOT_TESTED, "no test judges this row yet", outs)
    cms = countermeasures or {}
    adjusted: list[Outcome] = []
    observed: dict[str, None] = {}  # dicts: ordered sets
    justifications: dict[str, None] = {}
    for out in outs:
        justification = compensation(row.id, out.interface, cms)
        if out.verdict is Verdict.FAIL and justification:
            observed[out.reason] = justifications[justification] = None
            seen = f"{out.reason}; " if out.reason else ""
            out = replace(out, verdict=Verdict.COMPENSATED,
                          reason=f"{seen}compensating countermeasure: {justification}")
        adjusted.append(out)
    aside, notes = _set_aside(adjusted)
    kept = [o for i, o in enumerate(adjusted) if i not in aside]
    verdicts = {o.verdict for o in kept}
    if Verdict.NOT_RUN in verdicts and not verdicts & {Verdict.FAIL, Verdict.ERROR}:
        return _not_exercised(row, adjusted, aside, notes)
    for verdict in PRECEDENCE:
        deciding = [o for o in kept if o.verdict is verdict]
        if deciding:
            if verdict is Verdict.COMPENSATED:  # each observation and each justification once, however many
                direct = [o.reason for o, orig in zip(adjusted, outs, strict=True)
                          if orig.verdict is verdict and o in kept]
                reasons = [*dict.fromkeys(filter(None, [*direct, *observed])),
                           *(f"compensating countermeasure: {j}" for j in justifications)]
            else:
                reasons = list(dict.fromkeys(o.reason for o in deciding if o.reason))
            if verdict is Verdict.NA and any(o.checklist for o in deciding):
                # n/a only on the target file's word (e.g. an interface it does not declare): a human confirms
                verdict = Verdict.MANUAL
                reasons = [f"n/a by the target file's declaration, to be confirmed: {'; '.join(reasons)}"]
            return RowResult(row, verdict, "; ".join([*reasons, *notes]), tuple(adjusted))
    raise AssertionError(f"outcome verdicts outside PRECEDENCE: {[o.verdict for o in adjusted]}")


_SET_ASIDE = frozenset({Verdict.NOT_RUN, Verdict.NA, Verdict.MANUAL})
_EXERCISED = frozenset({Verdict.PASS, Verdict.COMPENSATED})


def _where(out: Outcome) -> str:
    """A test as a row's reason names it: its function and interface."""
    name = out.test.rpartition("::")[2].partition("[")[0] or out.test
    return f"{name} over {out.interface}" if out.interface else name


def _set_aside(outs: list[Outcome]) -> tuple[set[int], list[str]]:
    """The outcomes an alternative that passed over the same interface makes unnecessary, and the notes that
    say so in the row's reason."""
    passed: dict[tuple[str, str | None], Outcome] = {}
    for out in outs:
        if out.alternative and out.verdict in _EXERCISED:
            passed.setdefault((out.alternative, out.interface), out)
    aside, notes = set(), []
    for i, out in enumerate(outs):
        sufficient = passed.get((out.alternative, out.interface)) if out.alternative else None
        if sufficient is not None and out.verdict in _SET_ASIDE:
            aside.add(i)
            why = f" ({out.reason})" if out.reason else ""
            notes.append(f"{_where(out)} ended {out.verdict}{why}, not needed: its alternative "
                         f"{_where(sufficient)} passed")
    return aside, list(dict.fromkeys(notes))


def _not_exercised(row: Row, outs: list[Outcome], aside: set[int], notes: list[str]) -> RowResult:
    """A row with parts not run and no failure or error: MANUAL when something else was exercised and passed
    (what was not is named, with a checklist item on each test not run), else NOT_RUN."""
    kept = [(i, o) for i, o in enumerate(outs) if i not in aside]
    missing = [o for _, o in kept if o.verdict is Verdict.NOT_RUN]
    gaps = list(dict.fromkeys(f"{_where(o)}: {o.reason or 'not run'}" for o in missing))
    exercised = list(dict.fromkeys(_where(o) for _, o in kept if o.verdict in _EXERCISED))
    if not exercised:
        return RowResult(row, Verdict.NOT_RUN, "; ".join([f"nothing exercised: {'; '.join(gaps)}", *notes]),
                         tuple(outs))
    pending = list(dict.fromkeys(o.reason for _, o in kept if o.verdict is Verdict.MANUAL and o.reason))
    reason = (f"partly exercised: all that was exercised passed ({', '.join(exercised)}); not exercised: "
              f"{'; '.join(gaps)}")
    marked = tuple(
        replace(o, checklist=(*o.checklist, f"Not exercised by the harness ({o.reason or 'not run'}): check it "
                                            "by hand, or allow it in the target file and rerun"))
        if i not in aside and o.verdict is Verdict.NOT_RUN else o for i, o in enumerate(outs))
    return RowResult(row, Verdict.MANUAL, "; ".join([reason, *pending, *notes]), marked)


def sl_capability(results: Iterable[RowResult], *, accept_manual: bool = False) -> dict[str, int]:
    """SL-C per FR: the highest SL n (0-4) for which every row required at n or below is met."""
    met = MET | {Verdict.MANUAL} if accept_manual else MET
    blocking: dict[str, int] = {fr: 5 for fr in FRS}  # lowest min_sl of a row not met, per FR
    for res in results:
        if res.row.min_sl is None or res.verdict in met:
            continue
        blocking[res.row.fr] = min(blocking[res.row.fr], res.row.min_sl)
    return {fr: blocking[fr] - 1 for fr in FRS}


def rollup(catalogue: Iterable[Row], outcomes: Iterable[Outcome], component_type: str,
           countermeasures: Mapping[str, str] | None = None) -> list[RowResult]:
    """Every catalogue row, in catalogue order, with its verdict."""
    by_row: dict[str, list[Outcome]] = {}
    for out in outcomes:
        for rid in out.rows:
            by_row.setdefault(rid, []).append(out)
    return [judge_row(row, by_row.get(row.id, ()), component_type, countermeasures) for row in catalogue]
