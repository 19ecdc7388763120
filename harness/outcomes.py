"""How a test says something other than pass/fail.

A test passes by observing the device and asserting on what it saw; an `AssertionError` is a FAIL, any
other exception an ERROR. The rest are raised as these exceptions, which pytest shows as skips and the
plugin records with their own verdict:

    manual("CR 1.8", checklist=["The PKI certificate chain is ..."])
    not_applicable("the target declares no console interface")
    not_run("fuzzing is not allowed by the target file (safety.allow_fuzzing)")
"""

from __future__ import annotations

from typing import NoReturn

import pytest

from harness.verdicts import Verdict

_Skipped = pytest.skip.Exception


class VerdictOutcome(_Skipped):
    verdict: Verdict = Verdict.ERROR

    def __init__(self, reason: str, checklist: tuple[str, ...] = ()) -> None:
        super().__init__(reason, pytrace=False)
        self.reason = reason
        self.checklist = checklist


class Manual(VerdictOutcome):
    verdict = Verdict.MANUAL


class NotApplicable(VerdictOutcome):
    verdict = Verdict.NA


class NotRun(VerdictOutcome):
    verdict = Verdict.NOT_RUN


class TargetUnavailable(Exception):
    """The target stopped answering; the remaining tests end as ERROR quickly instead of timing out."""


def manual(reason: str, checklist: list[str] | tuple[str, ...] = ()) -> NoReturn:
    """End the test as MANUAL: a human must examine evidence, following the checklist."""
    raise Manual(reason, tuple(checklist))


def not_applicable(reason: str, confirm: list[str] | tuple[str, ...] = ()) -> NoReturn:
    """End the test as N/A. `confirm`: what a human must confirm when the reason is only the target file's
    word (an interface it does not declare): such a row is MANUAL until someone does."""
    raise NotApplicable(reason, tuple(confirm))


def not_run(reason: str) -> NoReturn:
    raise NotRun(reason)
