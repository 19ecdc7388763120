"""CR 1.10 Authenticator feedback (SL 1-4).

Judges CR 1.10 over the serial console and ssh: the authenticator is obscured during entry (no password
echo on the console), a failed login gives the same reply for an unknown user as for a wrong password
(it must not reveal which accounts exist), and the time to that reply does not tell them apart either:
interleaved attempts of both kinds (the dedicated `lockout_test` account for the wrong passwords, its
failure count reset before the lockout threshold), medians compared against their spread; the figures
are in the evidence.
"""

from __future__ import annotations

import re
import secrets
import statistics

import pytest

from harness.outcomes import not_run

SAMPLES = 24  # per kind; enough for a median whose spread we can state
MIN_DIFF_S = 0.004  # below this, loopback scheduling noise dominates any real difference


def _probe_account(target):  # type: ignore[no-untyped-def]
    accounts = target.accounts(purpose="lockout_test") or target.accounts(purpose="password_test")
    if not accounts:
        not_run("the target file declares no lockout_test account to take wrong passwords")
    return accounts[0]


def _unknown_user() -> str:
    return f"nouser{secrets.token_hex(3)}"


def _wrong() -> str:
    return "wrong-" + secrets.token_urlsafe(9)


def _normalise(reply: str, username: str) -> str:
    text = reply.replace(username, "<user>")
    return re.sub(r"\s+", " ", text).strip()


@pytest.mark.judges("CR 1.10", over=["console"])
def test_console_does_not_echo_the_password(target, login, evidence):
    creds = _probe_account(target)
    guess = _wrong()
    attempt = login.attempt(creds.username, guess)
    evidence.add("check", f"wrong password typed at the console; echoed: {attempt.password_echoed}")
    assert not attempt.accepted, "a wrong password was accepted"
    assert not attempt.password_echoed, "the console echoes the password as it is typed"
    login.attempt(creds.username, creds.password)  # reset the failure count


@pytest.mark.judges("CR 1.10", over=["ssh", "console"])
def test_same_reply_for_unknown_user_and_wrong_password(target, login, evidence):
    creds = _probe_account(target)
    unknown_name = _unknown_user()
    unknown = login.attempt(unknown_name, _wrong())
    wrong = login.attempt(creds.username, _wrong())
    login.attempt(creds.username, creds.password)  # reset the failure count
    a, b = _normalise(unknown.reply, unknown_name), _normalise(wrong.reply, creds.username)
    evidence.add("check", f"unknown user -> {a!r}; wrong password -> {b!r}")
    assert not unknown.accepted and not wrong.accepted, "a login that should fail was accepted"
    assert a == b, f"the replies differ, so they reveal which accounts exist: {a!r} vs {b!r}"


@pytest.mark.judges("CR 1.10", over=["ssh"])
def test_reply_time_does_not_reveal_accounts(target, login, evidence):
    creds = _probe_account(target)
    policy = target.spec.policies.lockout
    per_round = max(1, policy.threshold - 1) if policy else SAMPLES
    unknown, wrong = [], []
    for i in range(SAMPLES):  # interleaved, so drift on the machine hits both kinds alike
        if i and i % per_round == 0:
            login.attempt(creds.username, creds.password)
        u = login.attempt(_unknown_user(), _wrong())
        w = login.attempt(creds.username, _wrong())
        assert not u.accepted and not w.accepted, "a login that should fail was accepted"
        unknown.append(u.elapsed_s)
        wrong.append(w.elapsed_s)
    login.attempt(creds.username, creds.password)
    mu, mw = statistics.median(unknown), statistics.median(wrong)
    spread = max(statistics.median(abs(x - mu) for x in unknown), statistics.median(abs(x - mw) for x in wrong))
    diff = abs(mu - mw)
    evidence.add("check", f"{SAMPLES} attempts each: median reply unknown user {mu * 1000:.1f} ms, wrong password "
                          f"{mw * 1000:.1f} ms, difference {diff * 1000:.1f} ms, spread (MAD) {spread * 1000:.1f} ms")
    assert not (diff > MIN_DIFF_S and diff > 3 * spread), (
        f"the reply time tells an unknown user ({mu * 1000:.1f} ms) from a wrong password ({mw * 1000:.1f} ms)")
