"""CR 1.10 Authenticator feedback (SL 1-4).

Judges CR 1.10 over the serial console, ssh and the web login (https): the authenticator is obscured during
entry (no password echo on the console; on the web login page the password field is an `<input type=password>`),
a failed login gives the same reply for an unknown user as for a wrong password (it must not reveal which
accounts exist: over ssh what the server sent, its answer, the methods it offers next and its banner; on the
console the text it printed; on the web the status and the page, the values of its hidden inputs, anti-CSRF
tokens and nonces, masked), and the time to that reply does not tell them apart either (ssh, https):
interleaved attempts of both kinds (the dedicated `lockout_test` account for the wrong
passwords, shown first to log in with its right password, its failure count reset before the lockout
threshold), medians compared against their spread; the figures are in the evidence. At most SAMPLES attempts of
each kind, and no more than MIN_SAMPLES once TIME_BOUND_S has passed (a device that delays every failed login).
Not run without a `lockout_test` account: no other account takes wrong passwords.
"""

from __future__ import annotations

import re
import secrets
import statistics
import time

import pytest
from iec62443_harness.fixtures.drivers.http import input_type
from iec62443_harness.fixtures.outcomes import inconclusive, manual, not_run

SAMPLES = 24  # per kind at most; enough for a median whose spread we can state
MIN_SAMPLES = 5  # per kind at least, however slow each failed login is
TIME_BOUND_S = 30.0  # beyond this (a device that delays every failed login, e.g. PAM's 3 s), stop at MIN_SAMPLES
# Below this a difference is not called one, however steady: timer and scheduling granularity. Above it, the
# difference must also stand out of the spread (3 x MAD): a hashed password check (PBKDF2, bcrypt) costs more.
MIN_DIFF_S = 0.0015
MARGIN_S = 0.5
UNDECLARED_ROUND = 2  # wrong passwords between resets when the target file declares no lockout threshold


def _probe_account(target, login):  # type: ignore[no-untyped-def]
    """The lockout_test account, once its right password is seen to log in (an earlier test may have locked it)."""
    accounts = target.accounts(purpose="lockout_test")
    if not accounts:
        not_run("the target file declares no account with purpose: lockout_test to take wrong passwords")
    creds = accounts[0]
    policy = target.spec.policies.lockout
    unlock_s = (policy.unlock_after_s or 0.0) if policy else 0.0
    if not login.accepted_within(creds.username, creds.password, unlock_s + MARGIN_S):
        inconclusive(f"{creds.username} does not log in with its declared password over {login.interface} "
                           "(locked, or a wrong credential): check the account")
    return creds


def _reset(login, creds) -> None:  # type: ignore[no-untyped-def]
    """A correct login, so the wrong passwords never add up to a lockout that would change the replies."""
    if not login.attempt(creds.username, creds.password).accepted:
        inconclusive(f"{creds.username} no longer logs in with its password over {login.interface}, so the "
                           "failure count could not be reset: check the lockout policy in the target file")


def _unknown_user() -> str:
    return f"nouser{secrets.token_hex(3)}"


def _wrong() -> str:
    return "wrong-" + secrets.token_urlsafe(9)


def _difference(a: str, b: str, context: int = 40) -> str:
    """Where two replies part, with a little context: a login page is long, the difference a few words."""
    at = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
    start = max(0, at - context)
    return f"unknown user ...{a[start:at + context]!r}... vs wrong password ...{b[start:at + context]!r}..."


def _normalise(reply: str, username: str) -> str:
    text = reply.replace(username, "<user>")
    return re.sub(r"\s+", " ", text).strip()


@pytest.mark.judges("CR 1.10", over=["console"])
def test_console_does_not_echo_the_password(target, login, evidence):
    creds = _probe_account(target, login)
    guess = _wrong()
    attempt = login.attempt(creds.username, guess)
    _reset(login, creds)
    evidence.add("check", f"wrong password typed at the console; echoed: {attempt.password_echoed}")
    assert not attempt.accepted, "a wrong password was accepted"
    assert not attempt.password_echoed, "the console echoes the password as it is typed"


@pytest.mark.judges("CR 1.10", over=["https"])
def test_web_login_obscures_the_password(target, https, interface, evidence):
    form = target.require(interface).login
    if form is None or form.encoding == "json":
        why = "is not declared" if form is None else "is a JSON API: the page a browser types into is not its own"
        manual(f"interfaces.{interface}.login {why}, so the harness cannot read the password field",
               ["Open the web login page and confirm the password is shown masked as it is typed."])
    with https.client() as client:  # no login: the page as a visitor sees it
        page = client.request("GET", form.path, note="the login page")
    kind = input_type(page.text, form.password_field)
    evidence.add("check", f"{form.path}: <input name={form.password_field}> has type {kind or '(no such input)'}")
    if kind is None:
        inconclusive(f"the login page {form.path} (status {page.status}) has no input named {form.password_field!r}: "
                     f"check interfaces.{interface}.login.path and password_field")
    assert kind == "password", f"the web login's password field is type={kind}: the password shows as it is typed"


@pytest.mark.judges("CR 1.10", over=["ssh", "console", "https"])
def test_same_reply_for_unknown_user_and_wrong_password(target, login, evidence):
    creds = _probe_account(target, login)
    unknown_name = _unknown_user()
    unknown = login.attempt(unknown_name, _wrong())
    wrong = login.attempt(creds.username, _wrong())
    _reset(login, creds)
    a, b = _normalise(unknown.reply, unknown_name), _normalise(wrong.reply, creds.username)
    evidence.add("check", f"unknown user -> {a!r}; wrong password -> {b!r}")
    assert not unknown.accepted and not wrong.accepted, "a login that should fail was accepted"
    assert a == b, f"the replies differ, so they reveal which accounts exist: {_difference(a, b)}"


@pytest.mark.judges("CR 1.10", over=["ssh", "https"])
def test_reply_time_does_not_reveal_accounts(target, login, evidence):
    creds = _probe_account(target, login)
    policy = target.spec.policies.lockout
    per_round = max(1, policy.threshold - 1) if policy else UNDECLARED_ROUND
    unknown, wrong = [], []
    started = time.monotonic()
    for i in range(SAMPLES):  # interleaved, so drift on the machine hits both kinds alike
        if i >= MIN_SAMPLES and time.monotonic() - started > TIME_BOUND_S:
            break
        if i and i % per_round == 0:
            _reset(login, creds)
        if i % 2:  # which kind goes first alternates: a cost of going second (a warm cache) hits both alike
            w = login.attempt(creds.username, _wrong())
            u = login.attempt(_unknown_user(), _wrong())
        else:
            u = login.attempt(_unknown_user(), _wrong())
            w = login.attempt(creds.username, _wrong())
        assert not u.accepted and not w.accepted, "a login that should fail was accepted"
        unknown.append(u.elapsed_s)
        wrong.append(w.elapsed_s)
    _reset(login, creds)
    mu, mw = statistics.median(unknown), statistics.median(wrong)
    spread = max(statistics.median(abs(x - mu) for x in unknown), statistics.median(abs(x - mw) for x in wrong))
    diff = abs(mu - mw)
    n = len(unknown)
    took = time.monotonic() - started
    bound = "" if n == SAMPLES else f" (stopped at {n} of {SAMPLES}: {took:.0f} s, over the {TIME_BOUND_S:g} s bound)"
    evidence.add("check", f"{n} attempts each{bound}: median reply unknown user {mu * 1000:.1f} ms, wrong password "
                          f"{mw * 1000:.1f} ms, difference {diff * 1000:.1f} ms, spread (MAD) {spread * 1000:.1f} ms")
    assert not (diff > MIN_DIFF_S and diff > 3 * spread), (
        f"the reply time tells an unknown user ({mu * 1000:.1f} ms) from a wrong password ({mw * 1000:.1f} ms)")
