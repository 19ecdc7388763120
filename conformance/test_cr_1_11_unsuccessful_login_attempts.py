"""CR 1.11 Unsuccessful login attempts (SL 1-4).

Judges: CR 1.11, over ssh, the serial console and the web login (https, judged by the target file's login
markers: a locked account's right password must not be ACCEPTED; an accepted web login is logged out again),
with the dedicated `lockout_test` account of the target
file (never an account the rest of the run needs), shown first to log in with its right password (else
ERROR: the credential is wrong, or the account was left locked). After the declared number of consecutive
failures (`policies.lockout.threshold`; 10 when the target declares none) the account must refuse even the
right password; with `unlock_after_s` declared it must still refuse it just before that time has passed
(an account that unlocks early fails) and accept it again soon after; or it comes back when an
administrator unlocks it (`policies.lockout.admin_unlock`, run over the management shell; the account is
locked and seen unlocked over the interface under test). The two unlocks are the standard's alternatives
(`alternative="unlock"`): over an interface, one shown working is enough, and the other's not-run is named in
the row's reason. An account that is the only administrator (purposes [normal, lockout_test], a device with one
account) is locked only where its lock ends by itself in time, and never unlocked by itself. The essential
function is watched throughout: it must be running when the test starts (else ERROR), and locking accounts must
not disturb it.
Not exercised: changing the limit (the values judged are the ones the target file declares configured).
"""

from __future__ import annotations

import secrets
import time
from contextlib import nullcontext

import pytest
from iec62443_harness.fixtures.monitor import EssentialFunctionAbsent
from iec62443_harness.fixtures.outcomes import inconclusive, not_run
from iec62443_harness.fixtures.sessions import lockout_account, unlocking_admin, wait_out_lock

UNDECLARED_PROBE = 10  # failures tried when the target file declares no lockout policy
MARGIN_S = 0.5


def _usable(login, creds, limit_s: float) -> None:  # type: ignore[no-untyped-def]
    """The positive control: the right password logs in (an earlier test may have left the account locked)."""
    if not login.accepted_within(creds.username, creds.password, limit_s):
        inconclusive(f"{creds.username} does not log in with its right password over {login.interface} "
                           "before the test (locked, or a wrong credential): check the account")


def _lock(login, creds, failures: int, evidence) -> float:  # type: ignore[no-untyped-def]
    """Fail `failures` times; the time the last failure was sent (the lock starts no earlier)."""
    replies, sent = [], time.monotonic()
    for n in range(1, failures + 1):
        sent = time.monotonic()
        attempt = login.attempt(creds.username, "wrong-" + secrets.token_urlsafe(9))
        replies.append(attempt.outcome)
        assert not attempt.accepted, f"a wrong password was accepted for {creds.username} (attempt {n})"
    evidence.add("check", f"{failures} wrong passwords for {creds.username}: {', '.join(replies)}")
    return sent


def _baseline(monitor) -> None:  # type: ignore[no-untyped-def]
    """The function must run before anything is locked: one lost already is no CR 1.11 failure (ERROR)."""
    try:
        monitor.wait_baseline()
    except EssentialFunctionAbsent as exc:
        inconclusive(f"{exc} (before any login attempt)")  # not a DriverError: stays an ERROR


@pytest.mark.judges("CR 1.11", over=["ssh", "console", "https"], alternative="unlock")
def test_account_locks_and_unlocks_in_time(target, login, evidence, essential_function):
    policy = target.spec.policies.lockout
    unlock_s = policy.unlock_after_s if policy and policy.unlock_after_s else None
    creds = lockout_account(target, unlocks_in_time=unlock_s is not None)
    _usable(login, creds, (unlock_s or 0) + MARGIN_S)
    threshold = policy.threshold if policy else UNDECLARED_PROBE

    with essential_function or nullcontext() as monitor:
        if monitor is not None:
            _baseline(monitor)
        last_failure = _lock(login, creds, threshold, evidence)
        locked_at = time.monotonic()
        after = login.attempt(creds.username, creds.password)
        evidence.add("check", f"right password after {threshold} failures: {after.outcome}")
        if after.accepted and unlock_s is not None and time.monotonic() - last_failure >= unlock_s:
            inconclusive(f"the right password was tried only {time.monotonic() - last_failure:.1f} s after "
                               f"the last failure, past the declared {unlock_s:g} s unlock: the lock went unseen")
        assert not after.accepted, (f"still accepts the right password after {threshold} failed logins"
                                    + ("" if policy else " (the target file declares no lockout policy)"))
        if unlock_s is not None:
            _judge_unlock(login, creds, unlock_s, last_failure, locked_at, evidence)
    if essential_function is not None:
        essential_function.check()
    if unlock_s is None:  # the lock was seen; how it ends is the other alternative's to show
        not_run(f"the account locked after {threshold} failed logins, but the target file declares no time-based "
                "unlock (policies.lockout.unlock_after_s): this alternative (locked for a time) ends here; the other "
                "is an administrator's unlock")


def _judge_unlock(login, creds, unlock_s: float, last_failure: float, locked_at: float,  # type: ignore[no-untyped-def]
                  evidence) -> None:
    """Still locked just before `unlock_s`, accepted again soon after it."""
    early_at = locked_at + unlock_s - MARGIN_S
    if time.monotonic() < early_at:
        wait_out_lock(early_at - time.monotonic(), creds)
        early = login.attempt(creds.username, creds.password)
        # the device locked no earlier than the last failure was sent, and judged this attempt no later than now
        held = time.monotonic() - last_failure
        late = " (too late to show an early unlock)" if early.accepted and held >= unlock_s else ""
        evidence.add("check", f"right password {held:.2f} s at most after the lock: {early.outcome}{late}")
        assert not (early.accepted and held < unlock_s), (
            f"unlocked after {held:.1f} s at most, before the declared {unlock_s:g} s")
    else:
        evidence.add("check", f"no attempt fits before {unlock_s:g} s: the refusal right after the lock stands alone")
    wait_out_lock(max(0.0, unlock_s - (time.monotonic() - locked_at)) + MARGIN_S, creds)
    back = login.accepted_within(creds.username, creds.password, unlock_s)  # as much again for a coarse clock
    waited = time.monotonic() - locked_at
    evidence.add("check", f"right password accepted again {waited:.1f} s after the lock: {back}")
    assert back, f"the account stays locked {waited:.1f} s after the lock (declared: {unlock_s:g} s)"


@pytest.mark.judges("CR 1.11", over=["ssh", "https"], alternative="unlock")
def test_administrator_unlocks(target, login, shell, evidence):
    policy = target.spec.policies.lockout
    creds = lockout_account(target, unlocks_in_time=bool(policy and policy.unlock_after_s))
    if policy is None or policy.admin_unlock is None:
        not_run("the target file declares no administrator unlock (policies.lockout.admin_unlock)")
    admin = unlocking_admin(target, creds)
    if admin is None:
        not_run("the target file declares no administrator account other than the one to lock, to unlock it with")
    _usable(login, creds, (policy.unlock_after_s or 0) + MARGIN_S)
    _lock(login, creds, policy.threshold, evidence)
    assert not login.attempt(creds.username, creds.password).accepted, "the account did not lock"
    reply = shell.run(admin, policy.admin_unlock, user=creds.username)
    evidence.add("check", f"{reply.command!r} -> {reply.output.strip()[:200]!r}")
    assert not reply.denied, f"the administrator may not unlock: {reply.output.strip()[:200]}"
    assert login.attempt(creds.username, creds.password).accepted, "still locked after the administrator unlocked it"
