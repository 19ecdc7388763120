"""CR 1.1 Human user identification and authentication (SL 1-4), RE(1) Unique identification and
authentication (SL 2-4), RE(2) Multifactor authentication for all interfaces (SL 3-4).

Judges, over every interface the target declares:
- CR 1.1: ssh refuses the `none` method and an empty password, once the account's right password is shown
  to be accepted (else the refusals would prove nothing); the serial console runs nothing before a login
  (a command typed at the login prompt is taken as a user name, not executed); Modbus TCP/RTU and CAN serve
  an object the target file declares without any authentication, which fails unless the target file
  declares a compensating countermeasure for them (the rollup then says "compensated", with the
  justification). Only the protocol's own "not for you" is a refusal (Modbus exception 01, CANopen abort
  0x06010000); any other exception or abort, or silence, is inconclusive (ERROR).
- CR 1.1, over https (the web-management interface): nothing but the login page is served without a session.
  A client that never logged in asks for the session probe page (`login.session_probe`: a 2xx answer other than
  the login form is served anonymously, a FAIL) and, with `safety.allow_config_changes`, sends the declared
  state-changing request (`protected_action`, with the visitor's own anti-CSRF token, so only the missing login
  can refuse it): taken is a FAIL. First a declared account is shown to log in, the probe page naming it (else
  the refusals would prove nothing: ERROR). Plain http is not judged here (no password is sent there).
- RE(1): each declared account logs in as itself (the shell's `whoami` names that user, not a shared one;
  over https the session probe page names it); not run with fewer than two declared accounts.
- RE(2): password alone does not open an ssh or web (https) session: a login the server takes as complete
  fails, one that it takes as one factor and asks for another (ssh's partial success) passes.
"""

from __future__ import annotations

import re
import secrets

import pytest
from iec62443_harness.fixtures.canopen import sdo_upload, show, upload_refused
from iec62443_harness.fixtures.drivers.http import WebLoginOutcome, input_type
from iec62443_harness.fixtures.login import LoginSurface, accepted, modbus_read_refused, refused
from iec62443_harness.fixtures.outcomes import inconclusive, manual, not_run
from iec62443_harness.fixtures.web_sessions import end_quietly, web_record

MARGIN_S = 0.5


@pytest.mark.judges("CR 1.1", over=["ssh"])
def test_ssh_requires_authentication(target, ssh, evidence):
    creds = (target.accounts(purpose="lockout_test") or target.accounts())[0]
    lockout = target.spec.policies.lockout
    unlock_s = (lockout.unlock_after_s or 0.0) if lockout else 0.0
    if not LoginSurface("ssh", ssh).accepted_within(creds.username, creds.password, unlock_s + MARGIN_S):
        inconclusive(f"{creds.username}'s declared password is not accepted over ssh, so a refusal would "
                           "prove nothing: check the credential in the target file")
    none = ssh.try_login(creds.username)
    empty = ssh.try_login(creds.username, "")
    refused_none, refused_empty = refused(none), refused(empty)
    reset = ssh.try_login(creds.username, creds.password)  # leave the failure count clean
    evidence.add("check", f"right password -> ACCEPTED; 'none' method -> {none.outcome}; empty password -> "
                          f"{empty.outcome}; right password again -> {reset.outcome}")
    assert refused_none, f"ssh lets a user in with the 'none' method (no authentication): {none.outcome}"
    assert refused_empty, f"ssh takes an empty password: {empty.outcome}"


@pytest.mark.judges("CR 1.1", over=["console"])
def test_console_runs_nothing_before_login(target, console, evidence):
    iface = target.spec.interfaces.console
    console.wake()
    marker = f"x{secrets.token_hex(4)}"
    console.send_raw(f"echo {marker}\r".encode())
    text, _ = console.read_until(f"{iface.password_prompt}|{iface.login_prompt}", 2.0)
    evidence.add("check", f"typed 'echo {marker}' at the login prompt; the console answered {text!r}")
    console.send_raw(b"\r")  # abandon the login the command started
    console.read_until(iface.login_prompt, 2.0)
    lines = [ln.strip() for ln in text.splitlines()]
    assert marker not in lines, "a command typed at the login prompt was executed"
    assert not re.search(iface.shell_prompt, text.rstrip("\r\n") + " "), "a shell prompt appeared without login"


@pytest.mark.judges("CR 1.1", over=["modbus_tcp", "modbus_rtu"])
def test_modbus_answers_without_authentication(target, modbus, evidence):
    what, answer, was_refused = modbus_read_refused(target, modbus)
    evidence.add("check", f"read {what} with no authentication -> {answer}")
    assert was_refused, "Modbus has no authentication: any master that reaches the port reads the process image"


@pytest.mark.judges("CR 1.1", over=["can"])
def test_can_answers_without_authentication(target, can_bus, evidence):
    iface = target.spec.interfaces.can
    what, wait = f"object 0x{iface.sdo_read_index:04x} (interfaces.can.sdo_read_index)", iface.timeouts.reply_s
    reply = sdo_upload(can_bus, iface.node_id, iface.sdo_read_index, timeout=wait)
    evidence.add("check", f"SDO upload of {what} with no authentication -> {show(reply)}")
    assert upload_refused(reply, what, wait), (
        "CAN has no authentication: any node on the bus reads the device's objects")


@pytest.mark.judges("CR 1.1 RE(1)", over=["ssh"])
def test_each_account_is_an_individual(target, shell, evidence):
    shell.require("whoami", checklist=[
        "Log in with each declared account and confirm the session identifies that individual user.",
        "Confirm no account is shared between people (vendor documentation, user list)."])
    accounts = [c for c in target.accounts(purpose="normal") if c.password]
    if len({c.username for c in accounts}) < 2:
        not_run("the target file declares fewer than two normal accounts with a password: individual "
                "identification cannot be told from a single account")
    for creds in accounts:
        reply = shell.run(creds, "whoami")
        evidence.add("check", f"{creds.username}: whoami -> {reply.output.strip()[:80]!r}")
        assert re.search(rf"\b{re.escape(creds.username)}\b", reply.output), (
            f"a session of {creds.username} does not identify that user: {reply.output.strip()[:80]!r}")


@pytest.mark.judges("CR 1.1 RE(2)", over=["ssh"])
def test_password_alone_is_not_enough(target, ssh, evidence):
    creds = target.admin() or target.accounts()[0]
    result = ssh.try_login(creds.username, creds.password)
    evidence.add("check", f"password of {creds.username} alone -> {result.outcome}; methods the server asks for "
                          f"next: {', '.join(result.allowed_methods) or 'none'}")
    if refused(result):
        inconclusive(f"{creds.username}'s declared password is refused over ssh ({result.outcome}), so "
                           "whether it is enough cannot be seen: check the credential in the target file")
    assert not accepted(result), "a password alone opens an ssh session: no second factor is required"


def _probe_page(https, client):  # type: ignore[no-untyped-def]
    """The session probe page as `client` is shown it (no redirect followed)."""
    return client.request("GET", https.login_form.session_probe, follow=False, note="session probe page")


def _web_identifies(https, creds, evidence) -> bool:  # type: ignore[no-untyped-def]
    """Log in as `creds`; whether the probe page is served and names that user (then log out)."""
    session = https.session(creds.username, creds.password)
    try:
        page = _probe_page(https, session.client)
        marker = re.search(https.login_form.session_probe_marker, page.text) is not None
        named = re.search(rf"\b{re.escape(creds.username)}\b", page.text) is not None
        evidence.add("check", f"{creds.username} logged in: probe page status {page.status}, marker "
                              f"{'seen' if marker else 'absent'}, user {'named' if named else 'NOT named'}")
        return 200 <= page.status < 300 and marker and named
    finally:
        end_quietly(https, session)


@pytest.mark.judges("CR 1.1", over=["https"])
def test_web_serves_nothing_without_login(target, https, interface, evidence):
    rec = web_record(target, interface, "session_probe")
    accounts = [c for c in target.accounts(purpose="normal") if c.password]
    if not accounts:
        not_run("the target file declares no normal account with a password to show a login is what opens the pages")
    if not _web_identifies(https, accounts[0], evidence):
        inconclusive(f"the probe page {rec.login.session_probe} does not show {accounts[0].username} logged in after "
                     f"a login: a refusal without one would prove nothing; check interfaces.{interface}.login")
    with https.client() as anonymous:
        page = _probe_page(https, anonymous)
        login_form = input_type(page.text, rec.login.password_field) is not None
        served = 200 <= page.status < 300 and not login_form
        evidence.add("check", f"no login: {rec.login.session_probe} -> status {page.status}"
                              f"{' (the login form)' if login_form else ''}")
        if page.status == 404 or page.status >= 500:
            inconclusive(f"{rec.login.session_probe} answered {page.status} without a login: neither served nor "
                         "refused for want of one")
        assert not served, f"the web interface serves {rec.login.session_probe} to a client that never logged in"
        action = rec.protected_action
        if action is None or not target.spec.safety.allow_config_changes:
            evidence.add("check", "the state-changing request was not sent (no protected_action, or "
                                  "safety.allow_config_changes is false)")
            return
        tried = https.action(anonymous, action, note="with no login")
    evidence.add("check", f"no login: {action.method} {action.path} -> {'TAKEN' if tried.done else 'not taken'} "
                          f"({tried.detail})")
    assert not tried.done, f"the web interface takes {action.method} {action.path} from a client that never logged in"


@pytest.mark.judges("CR 1.1 RE(1)", over=["https"])
def test_each_web_account_is_an_individual(target, https, interface, evidence):
    web_record(target, interface, "session_probe")
    accounts = [c for c in target.accounts(purpose="normal") if c.password]
    if len({c.username for c in accounts}) < 2:
        not_run("the target file declares fewer than two normal accounts with a password: individual "
                "identification cannot be told from a single account")
    anonymous = [c.username for c in accounts if not _web_identifies(https, c, evidence)]
    assert not anonymous, f"a web session does not name its user on {https.login_form.session_probe}: " \
                          f"{', '.join(anonymous)}"


@pytest.mark.judges("CR 1.1 RE(2)", over=["https"])
def test_password_alone_is_not_enough_on_the_web(target, https, interface, evidence):
    web_record(target, interface)
    creds = target.admin() or target.accounts()[0]
    with https.client() as client:
        result = https.login_on(client, creds.username, creds.password)
        if result.outcome is WebLoginOutcome.ACCEPTED and https.login_form.logout is not None:
            https.logout(client)
    evidence.add("check", f"password of {creds.username} alone over {interface} -> {result.outcome} ({result.detail})")
    if result.outcome is WebLoginOutcome.UNRECOGNISED:
        manual(f"the answer to {creds.username}'s password over {interface} matches neither login marker "
               f"({result.detail}): perhaps a second-factor step, which the target file cannot describe", [
                   f"Log in over {interface} with {creds.username}'s password and confirm a second factor is asked "
                   "for before any page of the device is served."])
    if result.outcome is not WebLoginOutcome.ACCEPTED:
        inconclusive(f"{creds.username}'s declared password is refused over {interface} ({result.outcome}: "
                     f"{result.detail}): whether it is enough cannot be seen; check the credential")
    assert result.outcome is not WebLoginOutcome.ACCEPTED, (
        f"a password alone opens a web session of {creds.username} over {interface}: no second factor is required")
