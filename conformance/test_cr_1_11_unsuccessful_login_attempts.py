"""CR 1.11 Unsuccessful login attempts (SL 1-4).

Judges: CR 1.11, over ssh and the serial console, with the dedicated `lockout_test` account of the target
file (never an account the rest of the run needs). After the declared number of consecutive failures
(`policies.lockout.threshold`; 10 when the target declares none) the account must refuse even the right
password; it must come back after `unlock_after_s`, or when an administrator unlocks it
(`policies.lockout.admin_unlock`). The essential function is watched throughout: locking accounts must not
disturb the control task.
Not exercised: changing the limit (the values judged are the ones the target file declares configured).
"""

from __future__ import annotations

import secrets
import time
from contextlib import nullcontext

import pytest

from harness.outcomes import not_run

UNDECLARED_PROBE = 10  # failures tried when the target file declares no lockout policy
MARGIN_S = 0.5


def _lockout_account(target):  # type: ignore[no-untyped-def]
    accounts = target.accounts(purpose="lockout_test")
    if not accounts:
        not_run("the target file declares no account with purpose: lockout_test; the harness never locks an "
                "account the run needs")
    return accounts[0]


def _wait_unlocked(login, creds, limit_s: float) -> bool:  # type: ignore[no-untyped-def]
    """Whether the right password is accepted within `limit_s` (an earlier test may have left it locked)."""
    deadline = time.monotonic() + limit_s
    while True:
        if login.attempt(creds.username, creds.password).accepted:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.25)


def _lock(login, creds, failures: int, evidence) -> list[str]:  # type: ignore[no-untyped-def]
    replies = []
    for n in range(1, failures + 1):
        attempt = login.attempt(creds.username, "wrong-" + secrets.token_urlsafe(9))
        replies.append(attempt.outcome)
        assert not attempt.accepted, f"a wrong password was accepted for {creds.username} (attempt {n})"
    evidence.add("check", f"{failures} wrong passwords for {creds.username}: {', '.join(replies)}")
    return replies


@pytest.mark.judges("CR 1.11", over=["ssh", "console"])
def test_account_locks_and_unlocks_in_time(target, login, evidence, essential_function):
    creds = _lockout_account(target)
    policy = target.spec.policies.lockout
    unlock_s = policy.unlock_after_s if policy and policy.unlock_after_s else None
    assert _wait_unlocked(login, creds, (unlock_s or 0) + MARGIN_S), (
        f"{creds.username} does not log in with its right password before the test (locked, or wrong credential)")
    threshold = policy.threshold if policy else UNDECLARED_PROBE

    with essential_function or nullcontext():
        _lock(login, creds, threshold, evidence)
        locked_at = time.monotonic()
        after = login.attempt(creds.username, creds.password)
        evidence.add("check", f"right password after {threshold} failures: {after.outcome}")
        assert not after.accepted, (f"still accepts the right password after {threshold} failed logins"
                                    + ("" if policy else " (the target file declares no lockout policy)"))
        if unlock_s is not None:
            time.sleep(max(0.0, unlock_s - (time.monotonic() - locked_at)) + MARGIN_S)
            back = _wait_unlocked(login, creds, unlock_s)  # allow as much again for a coarse device clock
            waited = time.monotonic() - locked_at
            evidence.add("check", f"right password accepted again after {waited:.1f} s: {back}")
            assert back, f"the account stays locked {waited:.1f} s after the lock (declared: {unlock_s} s)"
            assert waited >= unlock_s * 0.9, f"unlocked after {waited:.1f} s, before the declared {unlock_s} s"
    if essential_function is not None:
        essential_function.check()


@pytest.mark.judges("CR 1.11", over=["ssh"])
def test_administrator_unlocks(target, login, shell, evidence):
    creds = _lockout_account(target)
    policy = target.spec.policies.lockout
    if policy is None or policy.admin_unlock is None:
        not_run("the target file declares no administrator unlock (policies.lockout.admin_unlock)")
    admin = target.admin()
    if admin is None:
        not_run("the target file declares no admin account to unlock with")
    assert _wait_unlocked(login, creds, (policy.unlock_after_s or 0) + MARGIN_S), (
        f"{creds.username} does not log in with its right password before the test")
    _lock(login, creds, policy.threshold, evidence)
    assert not login.attempt(creds.username, creds.password).accepted, "the account did not lock"
    reply = shell.run(admin, policy.admin_unlock, user=creds.username)
    evidence.add("check", f"{reply.command!r} -> {reply.output.strip()[:200]!r}")
    assert not reply.denied, f"the administrator may not unlock: {reply.output.strip()[:200]}"
    assert login.attempt(creds.username, creds.password).accepted, "still locked after the administrator unlocked it"
