"""CR 1.7 Strength of password-based authentication (SL 1-4), RE(1) Password generation and lifetime
restrictions for human users (SL 3-4), RE(2) Password lifetime restrictions for all users (SL 4).

Judges, over ssh with the dedicated `password_test` account and the declared `passwd` command:
- CR 1.7: a new password breaking each declared rule (`policies.password`: length, character classes) is
  refused (judged by logging in with it afterwards, not by the device's message); a compliant one works.
  A declared minimum length below MIN_LENGTH_FLOOR (8, the least NIST SP 800-63B section 5.1.1.2 allows
  for a memorized secret) fails as well: rules that weak are no strength, however well enforced.
- RE(1): a password used before cannot be set again (generations, `policies.password.history`); the
  lifetime part is manual (it takes days to observe).
- RE(2): manual.
The account's current password is tracked for the rest of the run.
"""

from __future__ import annotations

import pytest
from iec62443_harness.evidence import redact
from iec62443_harness.fixtures.login import accepted
from iec62443_harness.fixtures.outcomes import manual, not_run
from iec62443_harness.fixtures.passwords import compliant, violations

MIN_LENGTH_FLOOR = 8  # NIST SP 800-63B 5.1.1.2: memorized secrets of at least 8 characters


def _account(target, shell):  # type: ignore[no-untyped-def]
    shell.require("passwd", checklist=["Change a password to one that breaks each configured rule; confirm refusal.",
                                       "Change it to a compliant one; confirm it works."])
    accounts = target.accounts(purpose="password_test")
    if not accounts:
        not_run("the target file declares no account with purpose: password_test")
    return accounts[0]


def _change(target, shell, ssh, key: str, new: str) -> bool:  # type: ignore[no-untyped-def]
    """Ask for a change; whether it took effect (the new password logs in). Tracks the current password."""
    creds = target.account(key)  # with its current password
    redact.add(new)  # the candidate too, whether or not it takes
    shell.run(creds, "passwd", old=creds.password, new=new)
    if accepted(ssh.try_login(creds.username, new)):
        target.password_changed(creds.username, new)
        return True
    return False


@pytest.mark.judges("CR 1.7", over=["ssh"])
def test_password_rules_enforced(target, shell, ssh, evidence):
    creds = _account(target, shell)
    policy = target.spec.policies.password
    if policy is None:
        not_run("the target file declares no password rules (policies.password)")
    taken = []
    for rule, weak in violations(policy).items():
        took = _change(target, shell, ssh, creds.key, weak)
        evidence.add("check", f"new password {rule}: {'ACCEPTED' if took else 'refused'}")
        if took:
            taken.append(rule)
    good = _change(target, shell, ssh, creds.key, compliant(policy))
    evidence.add("check", f"compliant new password: {'accepted' if good else 'refused'}; declared minimum length "
                          f"{policy.min_length} (floor {MIN_LENGTH_FLOOR})")
    problems = [f"passwords breaking the declared rules were accepted: {', '.join(taken)}"] if taken else []
    if not good:
        problems.append("a password meeting every declared rule was refused")
    if policy.min_length < MIN_LENGTH_FLOOR:
        problems.append(f"the declared minimum length {policy.min_length} is below {MIN_LENGTH_FLOOR} "
                        "(NIST SP 800-63B 5.1.1.2)")
    assert not problems, "; ".join(problems)


@pytest.mark.judges("CR 1.7 RE(1)", over=["ssh"])
def test_previous_password_cannot_be_reused(target, shell, ssh, evidence):
    creds = _account(target, shell)
    policy = target.spec.policies.password
    first = target.account(creds.key).password
    assert _change(target, shell, ssh, creds.key, compliant(policy)), (
        "a compliant password change was refused")
    reused = _change(target, shell, ssh, creds.key, first)
    generations = policy.history if policy else 0
    evidence.add("check", f"set the previous password again -> {'ACCEPTED' if reused else 'refused'} "
                          f"(declared history: {generations} generations)")
    assert not reused, "the previous password can be set again right away"


@pytest.mark.judges("CR 1.7 RE(1)")
def test_password_lifetime_for_human_users(target):
    manual("minimum and maximum password lifetimes take days to observe",
           [f"Confirm the configured maximum lifetime ({_lifetime(target)}) forces a change when it expires.",
            "Confirm a minimum lifetime prevents cycling through the history in one sitting.",
            "Confirm both are configurable by an authorised user."])


@pytest.mark.judges("CR 1.7 RE(2)")
def test_password_lifetime_for_all_users(target):
    manual("lifetime restrictions for every user, software processes and devices included, take days to observe",
           ["List every password-based identity (human, service, device) the component uses.",
            "Confirm each is subject to configurable minimum and maximum lifetimes."])


def _lifetime(target) -> str:  # type: ignore[no-untyped-def]
    policy = target.spec.policies.password
    days = policy.max_lifetime_days if policy else None
    return f"{days} days" if days else "not declared in the target file"
