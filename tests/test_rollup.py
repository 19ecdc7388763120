"""Table-driven tests of harness.verdicts: the rollup from test outcomes to row verdicts and the SL-C vector."""

from __future__ import annotations

import pytest
from iec62443_harness.catalogue import FRS, TYPES, Row, catalogue_index, load_catalogue
from iec62443_harness.verdicts import Outcome, RowResult, Verdict, judge_row, rollup, sl_capability

V = Verdict
ALL = frozenset(TYPES)


def row(rid: str = "CR 9.9", fr: str = "FR1", min_sl: int | None = 1, applies: frozenset[str] = ALL,
        kind: str = "CR") -> Row:
    return Row(id=rid, kind=kind, fr=fr, title="t", applies_to=applies, min_sl=min_sl, automation="A", note="")


def out(verdict: Verdict, reason: str = "", interface: str | None = None, rows: tuple[str, ...] = ("CR 9.9",),
        test: str = "t") -> Outcome:
    return Outcome(test=test, rows=rows, verdict=verdict, reason=reason or str(verdict), interface=interface)


@pytest.mark.parametrize(("verdicts", "expected"), [
    ([V.PASS], V.PASS),
    ([V.PASS, V.PASS], V.PASS),
    ([V.PASS, V.FAIL], V.FAIL),
    ([V.FAIL, V.PASS, V.PASS], V.FAIL),
    ([V.PASS, V.ERROR], V.ERROR),
    ([V.ERROR, V.FAIL], V.FAIL),
    ([V.NOT_RUN, V.ERROR], V.ERROR),
    ([V.MANUAL, V.NOT_RUN], V.NOT_RUN),
    ([V.NA, V.NOT_RUN], V.NOT_RUN),
    ([V.PASS, V.MANUAL], V.MANUAL),
    ([V.MANUAL, V.COMPENSATED], V.MANUAL),
    ([V.COMPENSATED, V.PASS], V.COMPENSATED),
    ([V.PASS, V.NA], V.PASS),
    ([V.NA, V.NA], V.NA),
    ([V.NA, V.PASS, V.COMPENSATED, V.MANUAL, V.NOT_RUN, V.ERROR, V.FAIL], V.FAIL),
])
def test_precedence_over_several_outcomes(verdicts: list[Verdict], expected: Verdict) -> None:
    res = judge_row(row(), [out(v, test=f"t{i}") for i, v in enumerate(verdicts)], "EDR")
    assert res.verdict is expected
    assert len(res.tests) == len(verdicts)
    if expected is V.NOT_RUN:  # nothing exercised: said so, with each test not run and why
        assert res.reason.startswith("nothing exercised: ") and "not-run" in res.reason
    else:
        assert res.reason == str(expected)  # the deciding outcomes' reasons, deduplicated


def alt(verdict: Verdict, test: str, interface: str, alternative: str = "", reason: str = "") -> Outcome:
    return Outcome(test=f"conformance/m.py::{test}[t-{interface}]", rows=("CR 9.9",), verdict=verdict,
                   reason=reason, interface=interface, alternative=alternative)


def test_a_part_not_run_beside_passes_is_partly_exercised_not_a_pass() -> None:
    """All that was exercised passed, one interface could not be: MANUAL (blocks SL-C until a human covers the
    gap), and the reason says what was exercised and what was not, and why."""
    outs = [alt(V.PASS, "test_a", "modbus_tcp"), alt(V.PASS, "test_a", "modbus_rtu"),
            alt(V.NOT_RUN, "test_b", "ssh", reason="no normal account besides the administrator")]
    res = judge_row(row(), outs, "EDR")
    assert res.verdict is V.MANUAL
    assert res.reason == ("partly exercised: all that was exercised passed (test_a over modbus_tcp, test_a over "
                          "modbus_rtu); not exercised: test_b over ssh: no normal account besides the administrator")
    assert [t.verdict for t in res.tests] == [V.PASS, V.PASS, V.NOT_RUN]  # each test keeps its own verdict
    assert "check it by hand" in res.tests[2].checklist[-1] and not res.tests[0].checklist
    assert sl_capability([res]) == {**dict.fromkeys(FRS, 4), "FR1": 0}
    assert sl_capability([res], accept_manual=True) == dict.fromkeys(FRS, 4)


@pytest.mark.parametrize(("outcomes", "expected", "in_reason"), [
    # the standard's "or": one alternative passed over ssh, the other not run there: met
    ([alt(V.PASS, "test_time", "ssh", "unlock"), alt(V.PASS, "test_time", "console", "unlock"),
      alt(V.NOT_RUN, "test_admin", "ssh", "unlock", "unlock needs root")],
     V.PASS, "test_admin over ssh ended not-run (unlock needs root), not needed: its alternative test_time over "
             "ssh passed"),
    # either alternative will do
    ([alt(V.NOT_RUN, "test_time", "ssh", "unlock", "no unlock_after_s"), alt(V.PASS, "test_admin", "ssh", "unlock")],
     V.PASS, "not needed: its alternative test_admin over ssh passed"),
    # alternatives count per interface: over the console nothing passed
    ([alt(V.PASS, "test_admin", "ssh", "unlock"), alt(V.NOT_RUN, "test_time", "console", "unlock", "locked")],
     V.MANUAL, "not exercised: test_time over console: locked"),
    # a failure of an alternative is an observation: it still decides
    ([alt(V.PASS, "test_admin", "ssh", "unlock"), alt(V.FAIL, "test_time", "ssh", "unlock", "unlocked early")],
     V.FAIL, "unlocked early"),
    # and so does an error: the harness broke on it
    ([alt(V.PASS, "test_admin", "ssh", "unlock"), alt(V.ERROR, "test_time", "ssh", "unlock", "timeout")],
     V.ERROR, "timeout"),
    # no alternative passed: nothing exercised
    ([alt(V.NOT_RUN, "test_admin", "ssh", "unlock", "a"), alt(V.NOT_RUN, "test_time", "ssh", "unlock", "b")],
     V.NOT_RUN, "nothing exercised: test_admin over ssh: a; test_time over ssh: b"),
    # tests that are not alternatives are all needed
    ([alt(V.PASS, "test_admin", "ssh"), alt(V.NOT_RUN, "test_time", "ssh", reason="b")], V.MANUAL, "partly exercised"),
])
def test_alternatives(outcomes: list[Outcome], expected: Verdict, in_reason: str) -> None:
    res = judge_row(row(), outcomes, "EDR")
    assert res.verdict is expected, res.reason
    assert in_reason in res.reason


def test_reason_joins_the_deciding_outcomes_only() -> None:
    outs = [out(V.FAIL, "ssh lets a 4th attempt in"), out(V.PASS, "console locks"),
            out(V.FAIL, "modbus has no login"), out(V.FAIL, "ssh lets a 4th attempt in")]
    res = judge_row(row(), outs, "EDR")
    assert res.reason == "ssh lets a 4th attempt in; modbus has no login"


@pytest.mark.parametrize(("rid", "applies", "component_type", "expected"), [
    ("NDR 5.2", frozenset({"NDR"}), "EDR", V.NA),
    ("NDR 5.2", frozenset({"NDR"}), "NDR", V.FAIL),
    ("EDR/HDR/NDR 2.13", frozenset({"EDR", "HDR", "NDR"}), "SAR", V.NA),
    ("EDR/HDR/NDR 2.13", frozenset({"EDR", "HDR", "NDR"}), "HDR", V.FAIL),
    ("HDR 3.2 RE(1)", frozenset({"HDR"}), "EDR", V.NA),
])
def test_component_type_not_applicable(rid: str, applies: frozenset[str], component_type: str,
                                       expected: Verdict) -> None:
    res = judge_row(row(rid, applies=applies), [out(V.FAIL, rows=(rid,))], component_type)
    assert res.verdict is expected
    if expected is V.NA:
        assert component_type in res.reason and "applies to" in res.reason


@pytest.mark.parametrize("outs", [[], [out(V.FAIL, rows=("CR 2.3",))]])
def test_row_with_no_requirement_is_na(outs: list[Outcome]) -> None:
    res = judge_row(row("CR 2.3", min_sl=None, applies=frozenset(), kind="none"), outs, "EDR")
    assert res.verdict is V.NA
    assert "no component-level requirement" in res.reason


def test_row_no_test_judges_is_not_tested() -> None:
    assert judge_row(row(), [], "EDR").verdict is V.NOT_TESTED


@pytest.mark.parametrize(("countermeasures", "outcomes", "expected", "test_verdicts"), [
    # per row: every failing interface is covered
    ({"CR 9.9": "segmented zone"}, [out(V.FAIL, interface="ssh")], V.COMPENSATED, [V.COMPENSATED]),
    ({"CR 9.9": "segmented zone"}, [out(V.FAIL, interface=None)], V.COMPENSATED, [V.COMPENSATED]),
    # per row|interface: only that interface
    ({"CR 9.9|ssh": "jump host"}, [out(V.FAIL, interface="ssh")], V.COMPENSATED, [V.COMPENSATED]),
    ({"CR 9.9|ssh": "jump host"}, [out(V.FAIL, interface="modbus_tcp")], V.FAIL, [V.FAIL]),
    ({"CR 9.9|ssh": "jump host"}, [out(V.FAIL, interface=None)], V.FAIL, [V.FAIL]),
    ({"CR 9.9|ssh": "jump host"}, [out(V.FAIL, interface="ssh", test="a"), out(V.FAIL, interface="can", test="b")],
     V.FAIL, [V.COMPENSATED, V.FAIL]),
    ({"CR 9.9|ssh": "jump host", "CR 9.9|can": "gateway filters"},
     [out(V.FAIL, interface="ssh", test="a"), out(V.FAIL, interface="can", test="b")],
     V.COMPENSATED, [V.COMPENSATED, V.COMPENSATED]),
    # a compensated failure still loses to a plain failure elsewhere, and is weaker than a pass
    ({"CR 9.9|ssh": "jump host"}, [out(V.FAIL, interface="ssh", test="a"), out(V.PASS, interface="can", test="b")],
     V.COMPENSATED, [V.COMPENSATED, V.PASS]),
    # only failures are compensated
    ({"CR 9.9": "segmented zone"}, [out(V.PASS)], V.PASS, [V.PASS]),
    ({"CR 9.9": "segmented zone"}, [out(V.ERROR)], V.ERROR, [V.ERROR]),
    ({"CR 9.9": "segmented zone"}, [out(V.MANUAL)], V.MANUAL, [V.MANUAL]),
    # a countermeasure for another row does nothing
    ({"CR 1.1": "segmented zone", "CR 9.9 RE(1)": "x" * 10}, [out(V.FAIL)], V.FAIL, [V.FAIL]),
])
def test_countermeasures(countermeasures: dict[str, str], outcomes: list[Outcome], expected: Verdict,
                         test_verdicts: list[Verdict]) -> None:
    res = judge_row(row(), outcomes, "EDR", countermeasures)
    assert res.verdict is expected
    assert [t.verdict for t in res.tests] == test_verdicts
    for t, original in zip(res.tests, outcomes, strict=True):
        if t.verdict is V.COMPENSATED:
            justification = countermeasures.get(f"CR 9.9|{original.interface}") or countermeasures["CR 9.9"]
            assert original.reason in t.reason and justification in t.reason
        else:
            assert t == original


def results(*specs: tuple[str, int | None, Verdict]) -> list[RowResult]:
    return [RowResult(row(f"R{i}", fr=fr, min_sl=sl), v, "") for i, (fr, sl, v) in enumerate(specs)]


@pytest.mark.parametrize(("specs", "expected", "expected_manual"), [
    # nothing blocks: 4 everywhere
    ([], dict.fromkeys(FRS, 4), dict.fromkeys(FRS, 4)),
    ([("FR1", 1, V.PASS), ("FR1", 4, V.PASS), ("FR2", 2, V.COMPENSATED), ("FR3", 1, V.NA)],
     dict.fromkeys(FRS, 4), dict.fromkeys(FRS, 4)),
    # a failure at SL1 gives 0; at SL3, 2; the lowest blocking row decides
    ([("FR1", 1, V.FAIL), ("FR2", 3, V.FAIL), ("FR3", 3, V.FAIL), ("FR3", 2, V.ERROR)],
     {**dict.fromkeys(FRS, 4), "FR1": 0, "FR2": 2, "FR3": 1},
     {**dict.fromkeys(FRS, 4), "FR1": 0, "FR2": 2, "FR3": 1}),
    # pending manual work blocks, unless accepted; not-tested and not-run always block
    ([("FR4", 2, V.MANUAL), ("FR5", 4, V.NOT_TESTED), ("FR6", 1, V.NOT_RUN), ("FR7", 3, V.MANUAL),
      ("FR7", 4, V.FAIL)],
     {**dict.fromkeys(FRS, 4), "FR4": 1, "FR5": 3, "FR6": 0, "FR7": 2},
     {**dict.fromkeys(FRS, 4), "FR4": 4, "FR5": 3, "FR6": 0, "FR7": 3}),
    # accepting manual work never lifts a failure below it
    ([("FR1", 3, V.MANUAL), ("FR1", 2, V.FAIL)], {**dict.fromkeys(FRS, 4), "FR1": 1},
     {**dict.fromkeys(FRS, 4), "FR1": 1}),
    # rows with no min_sl (no component requirement) never block
    ([("FR2", None, V.FAIL), ("FR5", None, V.NOT_TESTED)], dict.fromkeys(FRS, 4), dict.fromkeys(FRS, 4)),
])
def test_sl_capability(specs: list[tuple[str, int | None, Verdict]], expected: dict[str, int],
                       expected_manual: dict[str, int]) -> None:
    res = results(*specs)
    assert sl_capability(res) == expected
    assert sl_capability(res, accept_manual=True) == expected_manual


def _applicable(component_type: str) -> list[Row]:
    return [r for r in load_catalogue() if r.has_requirement and r.applies(component_type)]


@pytest.mark.parametrize("component_type", TYPES)
def test_real_catalogue_extremes(component_type: str) -> None:
    catalogue = load_catalogue()
    untested = rollup(catalogue, [], component_type)
    assert [r.row.id for r in untested] == [r.id for r in catalogue]  # every row, in catalogue order
    assert sl_capability(untested) == dict.fromkeys(FRS, 0)  # every FR has an SL1 row binding every type
    passing = [Outcome(test=f"t{i}", rows=(r.id,), verdict=V.PASS) for i, r in enumerate(_applicable(component_type))]
    assert sl_capability(rollup(catalogue, passing, component_type)) == dict.fromkeys(FRS, 4)


def test_real_catalogue_manual_and_countermeasure() -> None:
    catalogue = load_catalogue()
    outcomes = [Outcome(test=f"t{i}", rows=(r.id,), verdict=V.PASS) for i, r in enumerate(_applicable("EDR"))]
    # an SL3 row left to a human, an SL2 row failing on one interface with a countermeasure for it
    outcomes.append(Outcome(test="m", rows=("CR 1.9 RE(1)",), verdict=V.MANUAL, checklist=("inspect the TPM",)))
    outcomes.append(Outcome(test="f", rows=("CR 3.1 RE(1)",), verdict=V.FAIL, reason="plain Modbus",
                            interface="modbus_tcp"))
    index = catalogue_index()
    assert (index["CR 1.9 RE(1)"].min_sl, index["CR 3.1 RE(1)"].min_sl) == (3, 2)
    res = rollup(catalogue, outcomes, "EDR")
    assert sl_capability(res) == {**dict.fromkeys(FRS, 4), "FR1": 2, "FR3": 1}
    assert sl_capability(res, accept_manual=True) == {**dict.fromkeys(FRS, 4), "FR3": 1}
    res = rollup(catalogue, outcomes, "EDR", {"CR 3.1 RE(1)|modbus_tcp": "IPsec tunnel in the cabinet"})
    by_id = {r.row.id: r for r in res}
    assert by_id["CR 3.1 RE(1)"].verdict is V.COMPENSATED
    assert by_id["CR 1.9 RE(1)"].verdict is V.MANUAL
    assert sl_capability(res, accept_manual=True) == dict.fromkeys(FRS, 4)


def test_rollup_spreads_a_multi_row_outcome_and_keeps_order() -> None:
    cat = (row("A"), row("B", fr="FR2"), row("C", fr="FR3", applies=frozenset({"NDR"})))
    outs = [out(V.PASS, rows=("A", "B"), test="1"), out(V.FAIL, rows=("B", "C"), test="2"),
            out(V.PASS, rows=("Z",), test="3")]  # an id not in the catalogue is ignored
    res = rollup(cat, outs, "EDR")
    assert [(r.row.id, r.verdict) for r in res] == [("A", V.PASS), ("B", V.FAIL), ("C", V.NA)]
    assert [t.test for t in res[1].tests] == ["1", "2"]
