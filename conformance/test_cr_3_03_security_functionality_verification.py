"""CR 3.3 Security functionality verification (SL 1-4); RE(1) Security functionality verification during normal
operation (SL 4).

Judges CR 3.3 over ssh: an account whose declared role may runs the device's self-test (`shell.commands.selftest`,
its report read with `assurance.self_test`). The report must give an overall verdict (the `passed` or `failed`
marker) and a state for each security function the target file lists (`functions`); on the device as found
every one must be ok (a function already failing leaves nothing to judge: ERROR). Then, for each function a lab
action breaks (`broken_by`, run only with `safety.allow_config_changes`, asked first): with the action in place
the self-test must report that function not ok and the overall verdict failed; the action is undone and the
self-test must pass again (else ERROR, said loudly: the device is left broken). A self-test that does not run
(an unknown command, no overall verdict) or leaves a listed function out fails. Without a lab action the
detection of a broken function cannot be seen: manual, with the report as evidence.
Manual: RE(1), verification during normal operation (checklist).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest
from iec62443_harness.fixtures.lab import lab_action
from iec62443_harness.fixtures.outcomes import inconclusive, manual, not_run
from iec62443_harness.fixtures.roles import allowed_account

CHECKLIST = [
    "Find the component's security self-test (documentation): which security functions it verifies and how it is "
    "started (command, schedule, at start-up).",
    "Run it on the component as delivered: confirm it reports each security function and an overall result.",
    "Disable or break one security function on a lab unit (remove the audit storage, corrupt a key) and confirm "
    "the self-test reports that function as failed; confirm the failure is audited or signalled.",
]


@dataclass(frozen=True)
class Report:
    overall: str | None  # "passed", "failed", or None when the output says neither (or both)
    states: dict[str, str]  # function -> its state as written
    output: str

    def ok(self, function: str, pattern: str) -> bool:
        return function in self.states and re.search(pattern, self.states[function]) is not None


def run_selftest(target, shell, evidence) -> Report:  # type: ignore[no-untyped-def]
    spec = target.spec.assurance.self_test
    actor = allowed_account(target, "selftest", admin_last=True)
    if actor is None:
        not_run("no declared account may run selftest (policies.roles)")
    reply = shell.run(actor, "selftest")
    if reply.denied:
        not_run(f"{actor.username} may run selftest by the declared roles, yet is refused (CR 2.1 judges that)")
    passed = re.search(spec.passed, reply.output, re.MULTILINE)
    failed = re.search(spec.failed, reply.output, re.MULTILINE)
    overall = "passed" if passed and not failed else "failed" if failed and not passed else None
    states = {}
    for line in reply.output.splitlines():
        if re.search(spec.passed, line) or re.search(spec.failed, line):
            continue
        if m := re.search(spec.function, line):
            states[m.group("name")] = m.group("state")
    evidence.add("check", f"selftest by {actor.username} (exit {reply.exit_status}): overall {overall or 'none'}; "
                          + ", ".join(f"{name}: {state}" for name, state in states.items()))
    return Report(overall, states, reply.output.strip())


@pytest.mark.judges("CR 3.3", over=["ssh"])
def test_self_test_reports_each_function_and_sees_a_broken_one(target, shell, evidence):
    spec = target.spec.assurance.self_test
    shell.require("selftest", checklist=CHECKLIST)
    if spec is None:
        manual("the target file does not say how to read the self-test's report (assurance.self_test)", CHECKLIST)
    if spec.broken_by:
        target.guard("ssh").require("config_changes")  # before the first byte: a lab action breaks a function
    healthy = run_selftest(target, shell, evidence)
    assert healthy.overall is not None, (f"the self-test does not run or gives no overall verdict: "
                                         f"{healthy.output[:160]!r}")
    missing = [f for f in spec.functions if f not in healthy.states]
    assert not missing, f"the self-test report leaves out {', '.join(missing)}: {healthy.output[:160]!r}"
    failing = [f for f in spec.functions if not healthy.ok(f, spec.ok)]
    if failing or healthy.overall != "passed":
        inconclusive(f"the device reports {', '.join(failing) or 'its self-test'} failed before anything was done to "
                     "it: repair it first; the self-test's detection cannot be judged")
    if not spec.broken_by:
        manual("no lab action breaks a security function (assurance.self_test.broken_by): whether the self-test "
               "sees a broken one is checked by hand", CHECKLIST)
    unseen: list[str] = []
    for function, action in spec.broken_by.items():
        with lab_action(target, action, evidence):
            broken = run_selftest(target, shell, evidence)
        after = run_selftest(target, shell, evidence)
        if after.overall != "passed" or not after.ok(function, spec.ok):
            inconclusive(f"the self-test still reports {function} failed after lab action {action!r} was undone: "
                         "the device is left broken; restore it by hand")
        if broken.ok(function, spec.ok) or broken.overall != "failed":
            unseen.append(f"with {function} broken ({action}) the self-test reports {function}: "
                          f"{broken.states.get(function, 'nothing')}, overall {broken.overall or 'none'}")
    assert not unseen, "; ".join(unseen)


@pytest.mark.judges("CR 3.3 RE(1)")
def test_verification_during_normal_operation(target):
    manual("whether verification runs during normal operation without disturbing it is a design property", [
        "Find whether the component verifies its security functions during normal operation (periodically or "
        "continuously) and how a failure is reported (documentation).",
        "While the essential function runs under a representative load, start (or wait for) a verification run: "
        "confirm the essential function keeps its timing.",
        "Break a security function on a lab unit during operation: confirm the failure is detected at the next "
        "verification and reported (audit record, alarm) without stopping the essential function.",
    ])
