"""CR 3.8 Session integrity (SL 2-4).

Judges CR 3.8 over https, the web-management interface, from what the device does with its session cookie
(interfaces.https.session_cookie), each check its own test:

- identifiers cannot be guessed: `session_samples` logins (each logged out again) give ids with no repeat, no
  sequence, and an estimated entropy of at least 64 bits (OWASP Session Management Cheat Sheet);
- a new identifier at login: the one the device handed out before login (or one the harness planted) gives no
  session after it (no fixation);
- an identifier dies at logout, and after policies.session.idle_timeout_s without traffic: replayed from
  another client it is refused;
- the cookie carries Secure, HttpOnly and SameSite (Lax or Strict);
- a state-changing request (interfaces.https.protected_action) without its CSRF token and from a foreign
  Origin is refused, once the same request with its token has been shown to be taken (only with
  safety.allow_config_changes: it changes the device);
and over plain http, that the web interface gives no session there (it sends the browser to https).

A check the target file gives nothing to drive (no login, no logout request, no session probe page, no idle
time-out, no protected action) is manual, with what a human must check. Manual in any case: how identifiers
are generated (a hash of a clock looks random from outside), and session protection on other interfaces.
"""

from __future__ import annotations

import re
import secrets
import time

import pytest
from iec62443_harness.fixtures.drivers.http import FOREIGN_ORIGIN, WebLoginOutcome, show_secret
from iec62443_harness.fixtures.outcomes import inconclusive, manual
from iec62443_harness.fixtures.session_ids import MIN_BITS, analyse
from iec62443_harness.fixtures.web_sessions import confirmed_session, replayed_alive, web_record

MAX_IDLE_WAIT_S = 600.0  # longer idle time-outs are for a human with a stopwatch (the backstop is 900 s)
BY_HAND = ("Log in through a browser; confirm the session cookie is random, changes at login and dies at logout "
           "and after the idle time-out.")


def _account(target, interface: str):  # type: ignore[no-untyped-def]
    creds = target.admin() or next((c for c in target.accounts(purpose="normal") if c.password), None)
    if creds is None or creds.password is None:
        manual("the target file declares no account with a password to log in with",
               [f"Add an account to the target file to let the harness log in over {interface}."])
    return creds


@pytest.mark.judges("CR 3.8", over=["https"])
def test_session_ids_cannot_be_guessed(target, https, interface, evidence):
    rec = web_record(target, interface, "session_cookie", how=BY_HAND)
    creds = _account(target, interface)
    ids = []
    for _ in range(rec.session_samples):
        with https.session(creds.username, creds.password) as session:
            if session.session_id is None:
                inconclusive(f"the login set no {rec.session_cookie!r} cookie: check interfaces.{interface}."
                             "session_cookie")
            ids.append(session.session_id)
            if rec.login.logout is not None:
                session.logout()  # so that the samples never add up to a session limit
    result = analyse(ids)
    evidence.add("check", f"session ids after {len(ids)} logins of {creds.username}: {result.describe()}")
    assert result.repeated == 0, f"the device handed out the same session id again ({result.repeated} repeats " \
                                 f"in {result.count} logins)"
    assert result.sequential is None, f"session ids follow a sequence: {result.sequential}"
    assert result.bits >= MIN_BITS, (f"session ids carry about {result.bits:.0f} bits of entropy, fewer than "
                                     f"{MIN_BITS:g} ({result.describe()})")


@pytest.mark.judges("CR 3.8", over=["https"])
def test_new_session_id_at_login(target, https, interface, evidence):
    rec = web_record(target, interface, "session_cookie", how=BY_HAND)
    creds = _account(target, interface)
    with https.client() as client:
        planted = secrets.token_hex(16)
        client.jar[rec.session_cookie] = planted  # kept unless the device hands out its own before login
        result = https.login_on(client, creds.username, creds.password)
        if result.outcome is not WebLoginOutcome.ACCEPTED:
            inconclusive(f"{creds.username} does not log in over {interface} ({result.outcome}: {result.detail})")
        pre, post = result.pre_login_id, result.session_id
        source = "planted by the harness" if pre == planted else "handed out by the device"
        evidence.add("check", f"id before login ({source}): {show_secret(pre)}; after: {show_secret(post)}")
        if post is None:
            inconclusive(f"the login left no {rec.session_cookie!r} cookie: check interfaces.{interface}."
                         "session_cookie")
        assert post != pre, f"the session id {source} before login is still the session id after it (fixation)"
        if rec.login.session_probe is not None and pre is not None:
            assert not replayed_alive(https, pre, evidence, "the pre-login id after login"), \
                f"the session id {source} before login gives a logged-in session (fixation)"
        if rec.login.logout is not None:
            https.logout(client)


@pytest.mark.judges("CR 3.8", over=["https"])
def test_session_id_dies_at_logout(target, https, interface, evidence):
    web_record(target, interface, "session_cookie", "logout", "session_probe", how=BY_HAND)
    creds = _account(target, interface)
    with confirmed_session(https, creds) as session:
        sid = session.session_id
        session.logout()
        evidence.add("check", "logged out")
    assert not replayed_alive(https, sid, evidence, "after logout"), \
        "the session id still gives a logged-in session after logout"


@pytest.mark.judges("CR 3.8", over=["https"])
def test_session_id_dies_when_idle(target, https, interface, evidence):
    rec = web_record(target, interface, "session_cookie", "session_probe", how=BY_HAND)
    idle = target.spec.policies.session.idle_timeout_s
    if idle is None:
        manual("the target file declares no idle time-out (policies.session.idle_timeout_s)",
               ["Confirm the web interface ends an idle session after a configured time, then declare it."])
    grace = max(2.0, 0.1 * idle)
    if idle + grace > MAX_IDLE_WAIT_S:
        manual(f"the declared idle time-out ({idle:g} s) is longer than this harness waits ({MAX_IDLE_WAIT_S:g} s)",
               [f"Log in, leave the session idle for {idle:g} s, and confirm the next request is refused."])
    creds = _account(target, interface)
    with confirmed_session(https, creds) as session:
        sid = session.session_id
        evidence.add("check", f"idle for {idle + grace:.1f} s (idle_timeout_s {idle:g} plus {grace:.1f} s)")
        time.sleep(idle + grace)  # nothing is sent meanwhile: the session's last activity was the probe
        alive = replayed_alive(https, sid, evidence, f"after {idle + grace:.1f} s idle")
        if rec.login.logout is not None:
            session.logout()
    assert not alive, f"the session still works after {idle + grace:.1f} s idle (idle_timeout_s is {idle:g})"


@pytest.mark.judges("CR 3.8", over=["https"])
def test_session_cookie_attributes(target, https, interface, evidence):
    rec = web_record(target, interface, "session_cookie", how=BY_HAND)
    creds = _account(target, interface)
    with https.session(creds.username, creds.password) as session:
        cookie = session.client.seen.get(rec.session_cookie)
        if rec.login.logout is not None:
            session.logout()
    if cookie is None:
        inconclusive(f"the device set no {rec.session_cookie!r} cookie: check interfaces.{interface}.session_cookie")
    evidence.add("check", f"session cookie as set: {cookie.describe()}")
    missing = [flag for flag, ok in (("Secure", cookie.secure), ("HttpOnly", cookie.http_only),
                                     ("SameSite=Lax or Strict", (cookie.same_site or "").lower() in ("lax", "strict")))
               if not ok]
    assert not missing, f"the session cookie lacks {', '.join(missing)}: {cookie.describe()}"


@pytest.mark.judges("CR 3.8", over=["https"])
def test_forged_request_refused(target, https, interface, evidence):
    rec = web_record(target, interface, "session_cookie", how=BY_HAND)
    action = rec.protected_action
    if action is None:
        manual(f"interfaces.{interface}.protected_action is not declared: no state-changing request to forge",
               ["Declare a harmless state-changing request (a setting written back with its own value) and rerun,",
                "or confirm by hand that a request without the anti-CSRF token, from another origin, is refused."])
    target.guard(interface).require("config_changes")  # before the first byte: the request changes the device
    creds = target.admin()
    if creds is None or creds.password is None:
        manual("the target file declares no administrator account with a password to send the request with",
               ["Add an account with policies.administrator_role to the target file and rerun."])
    with https.session(creds.username, creds.password) as session:
        genuine = session.action(action, note="with its token, from the device's own origin")
        evidence.add("check", f"{action.method} {action.path} with its token from {https.base_url}: "
                              f"{'taken' if genuine.done else 'NOT taken'} ({genuine.detail})")
        if not genuine.done:
            inconclusive(f"the declared protected_action is not taken even with its token ({genuine.detail}): a "
                         "refusal of the forged one would mean nothing; check interfaces.https.protected_action")
        forged = session.action(action, token=False, headers={"Origin": FOREIGN_ORIGIN,
                                                               "Referer": f"{FOREIGN_ORIGIN}/"},
                                note="forged: no token, foreign origin")
        evidence.add("check", f"the same request without its token from {FOREIGN_ORIGIN}: "
                              f"{'TAKEN' if forged.done else 'refused' if forged.refused else 'not taken'} "
                              f"({forged.detail})")
        if rec.login.logout is not None:
            session.logout()
    if forged.status >= 500:
        inconclusive(f"the forged request got status {forged.status}: neither taken nor refused")
    assert not forged.done, (f"a state-changing request without its CSRF token, from {FOREIGN_ORIGIN}, was taken "
                             f"({forged.detail})")


@pytest.mark.judges("CR 3.8", over=["http"])
def test_plain_http_gives_no_session(target, https, interface, evidence):
    rec = target.require(interface)
    path = rec.login.path if rec.login is not None else "/"
    with https.client() as client:
        answer = client.request("GET", path, follow=False, note="the login page over plain http")
    location = answer.location or ""
    if 300 <= answer.status < 400 and location.startswith("https://"):
        evidence.add("check", f"plain http sends the browser to {location}")
        return
    cookie = answer.cookie(rec.session_cookie) if rec.session_cookie else None
    form = re.search(r"<input\b[^>]*type\s*=\s*[\"']?password", answer.text, re.IGNORECASE)
    evidence.add("check", f"plain http {path}: status {answer.status}; session cookie "
                          f"{cookie.describe() if cookie else 'none'}; password field {'yes' if form else 'no'}")
    assert not (200 <= answer.status < 300 and (cookie or form)), (
        f"the web interface serves its login over plain http ({path}: status {answer.status}, "
        f"{'a session cookie' if cookie else 'a password field'}): sessions travel without integrity")
