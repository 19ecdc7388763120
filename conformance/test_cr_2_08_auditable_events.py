"""CR 2.8 Auditable events (SL 1-4).

Judges CR 2.8 over ssh and https, one test per event category the harness can cause without harm: an accepted
login, a failed login, an account lockout (the `lockout_test` account, unlocked again), an access the
device refuses, a configuration change (set and set back), a user change (a temporary user added and
removed) and a process-image write (only with `safety.allow_writes`, inside the writable range, writing
back the value the register holds). Each must appear in the device's audit records, read over the shell
(`audit_show`, by an account whose role may) or received by the harness's syslog collector (`syslog:`),
with a timestamp, a source (the interface or the client's address) and the user. Only records that are
new since just before the event count; the evidence holds the attempts and the records found.
Over https (the web-management interface), the same for what the web causes: an accepted web login, a failed
one (the `lockout_test` account), a state-changing request the device refuses (`protected_action` from an account
of the least privileged role) and one it takes (the same request from an administrator: a configuration change,
writing a setting back with its current value); the last two only with `safety.allow_config_changes`. The web
session is left to end by itself, never logged out, so a logout record cannot pass for the login's. The records
are read as for ssh; the source is the interface by name (http, https) or an address.
An event the device does not produce (an account that does not lock, an access it does not refuse) is
not run here: CR 1.11 and CR 2.1 judge those. Manual when neither reading path is declared.
Not exercised (for the assessor): the categories the harness cannot cause from outside without harm,
backup and restore, reconnaissance, audit log events (clearing, filling, forwarding stopped) and control
system events (program or mode changes).

The audit trail, its patterns and the configuration change are in fixtures/audit.py (CR 2.11 and CR 2.12
use them too).
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from iec62443_harness.fixtures.audit import CONFIG, FAILURE, LOGIN, SUCCESS, AuditTrail, change_config_and_back
from iec62443_harness.fixtures.drivers.http import WebLoginOutcome
from iec62443_harness.fixtures.login import LoginSurface, accepted, refused
from iec62443_harness.fixtures.outcomes import inconclusive, not_run
from iec62443_harness.fixtures.roles import (
    allowed_account,
    current_register,
    harmless_args,
    least_privileged_role,
    temporary_user,
)
from iec62443_harness.fixtures.sessions import lockout_account, unlocking_admin
from iec62443_harness.fixtures.target import Credentials
from iec62443_harness.fixtures.web_sessions import web_record

MARGIN_S = 0.5
REFUSED = r"denied|refused|not allowed|unauthori[sz]ed|forbidden|permission"


# --- causing events


@dataclass(frozen=True)
class Expected:
    what: str
    user: str  # who the record must name
    patterns: tuple[str, ...]
    exclude: str | None = None


def _other_account(target, trail: AuditTrail) -> Credentials:  # type: ignore[no-untyped-def]
    """A normal account that is not the one reading the audit log (whose own logins would blur the picture)."""
    reader = trail.reader.username if trail.reader else None
    for creds in target.accounts(purpose="normal"):
        if creds.password and creds.username != reader:
            return creds
    not_run("the target file declares no second normal account to cause events with")


def _lockout_account(target) -> Credentials:  # type: ignore[no-untyped-def]
    accounts = target.accounts(purpose="lockout_test")
    if not accounts:
        not_run("the target file declares no account with purpose: lockout_test; no other account is locked")
    return accounts[0]


def _usable(ssh, creds: Credentials, limit_s: float) -> None:  # type: ignore[no-untyped-def]
    """Wait until `creds` logs in (an earlier test may have left it locked for a while)."""
    deadline = time.monotonic() + limit_s
    while not accepted(ssh.try_login(creds.username, creds.password)):
        if time.monotonic() >= deadline:
            inconclusive(f"{creds.username} does not log in with its password (locked, or a wrong credential)")
        time.sleep(0.25)


def _unlock_wait(target) -> float:  # type: ignore[no-untyped-def]
    policy = target.spec.policies.lockout
    return (policy.unlock_after_s or 0.0) + MARGIN_S if policy else MARGIN_S


def _wrong() -> str:
    return "wrong-" + secrets.token_urlsafe(9)


def cause_login_ok(target, shell, ssh, trail, evidence) -> list[Expected]:  # type: ignore[no-untyped-def]
    creds = _other_account(target, trail)
    result = ssh.try_login(creds.username, creds.password)
    if not accepted(result):
        inconclusive(f"{creds.username} cannot log in ({result.outcome}): check the account")
    return [Expected(f"accepted login of {creds.username}", creds.username, (LOGIN, SUCCESS), FAILURE)]


def cause_login_failed(target, shell, ssh, trail, evidence) -> list[Expected]:  # type: ignore[no-untyped-def]
    creds = _lockout_account(target)
    _usable(ssh, creds, _unlock_wait(target))
    result = ssh.try_login(creds.username, _wrong())
    if not refused(result):
        not_run(f"a wrong password for {creds.username} is not refused ({result.outcome}), so no failed login was "
                "caused (CR 1.1 judges that)")
    ssh.try_login(creds.username, creds.password)  # a clean failure count for the next test
    return [Expected(f"failed login of {creds.username}", creds.username, (LOGIN, FAILURE))]


def cause_lockout(target, shell, ssh, trail, evidence) -> list[Expected]:  # type: ignore[no-untyped-def]
    policy = target.spec.policies.lockout
    if policy is None:
        not_run("the target file declares no lockout policy (policies.lockout), so no lockout is caused")
    creds = lockout_account(target, unlocks_in_time=bool(policy.unlock_after_s))
    _usable(ssh, creds, _unlock_wait(target))
    for _ in range(policy.threshold):
        ssh.try_login(creds.username, _wrong())
    try:
        after = ssh.try_login(creds.username, creds.password)
        evidence.add("check", f"right password after {policy.threshold} failures: {after.outcome}")
        if accepted(after):
            not_run(f"{creds.username} does not lock after {policy.threshold} failed logins (CR 1.11 judges that)")
    finally:
        admin = unlocking_admin(target, creds)
        if policy.admin_unlock and admin is not None:
            shell.run(admin, policy.admin_unlock, user=creds.username)
        _usable(ssh, creds, _unlock_wait(target))
    return [Expected(f"lockout of {creds.username}", creds.username, (r"(?<!un)lock",))]


def cause_refusal(target, shell, ssh, trail, evidence) -> list[Expected]:  # type: ignore[no-untyped-def]
    roles = target.spec.policies.roles
    candidates = [op for op in ("config_set", "user_del", "session_kill", "user_list", "audit_show")
                  if shell.has(op)]
    pick = next(((c, op) for c in target.accounts(purpose="normal") if c.password
                 for op in candidates if op not in roles.get(c.role, ())), None)
    if pick is None:
        not_run("no declared account lacks a declared operation, so no refusal can be caused")
    creds, op = pick
    reply = shell.run(creds, op, **harmless_args(target))
    if not reply.denied:
        not_run(f"the device does not refuse {op} to {creds.username} ({creds.role}) (CR 2.1 judges that)")
    return [Expected(f"refused {op} of {creds.username}", creds.username, (REFUSED,))]


def cause_config_change(target, shell, ssh, trail, evidence) -> list[Expected]:  # type: ignore[no-untyped-def]
    actor, key = change_config_and_back(target, shell, evidence)
    return [Expected(f"change of {key} by {actor.username}", actor.username, (CONFIG, re.escape(key)))]


def cause_user_change(target, shell, ssh, trail, evidence) -> list[Expected]:  # type: ignore[no-untyped-def]
    with temporary_user(target, shell, evidence) as creds:
        pass
    admin = target.admin().username
    name = re.escape(creds.username)
    return [Expected(f"addition of user {creds.username}", admin, (name, r"add|creat|new")),
            Expected(f"removal of user {creds.username}", admin, (name, r"del|remov"))]


def cause_write(target, shell, ssh, trail, evidence) -> list[Expected]:  # type: ignore[no-untyped-def]
    if not shell.has("write"):
        not_run("the target file declares no write operation on the shell (shell.commands.write)")
    actor = allowed_account(target, "write", admin_last=True)
    if actor is None:
        not_run("no declared account may write (write)")
    address, value = current_register(target, shell, evidence)
    reply = shell.run(actor, "write", address=address, value=value)
    if reply.denied:
        not_run(f"{actor.username} may write by the declared roles, yet is refused (CR 2.1 judges that)")
    return [Expected(f"write of holding register {address} by {actor.username}", actor.username,
                     (r"write|set", rf"(?<!\d){address}(?!\d)"))]


IPV4 = r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])"


def _judge(trail: AuditTrail, mark, source: re.Pattern[str], caused: list[Expected], evidence) -> None:  # type: ignore[no-untyped-def]
    """Each caused event has a new record naming its user, with a timestamp and a source."""
    for expected in caused:
        records = trail.find(mark, expected.user, *expected.patterns, exclude=expected.exclude)
        assert records, f"no audit record of the {expected.what} in {trail.where}"
        complete = [r for r in records if r.timestamp and source.search(r.text)]
        evidence.add("check", f"{expected.what}: {len(records)} records, {len(complete)} with timestamp, source "
                              "and user")
        assert any(r.timestamp for r in records), f"the record of the {expected.what} has no timestamp"
        assert complete, f"the record of the {expected.what} does not name its source (interface or address)"
CAUSES: dict[str, Callable[..., list[Expected]]] = {
    "login_ok": cause_login_ok, "login_failed": cause_login_failed, "lockout": cause_lockout,
    "access_refused": cause_refusal, "config_change": cause_config_change, "user_change": cause_user_change,
    "write": cause_write,
}


@pytest.mark.judges("CR 2.8", over=["ssh"])
@pytest.mark.parametrize("category", list(CAUSES))
def test_event_is_audited(target, shell, ssh, evidence, category):
    trail = AuditTrail(target, shell, evidence)
    mark = trail.mark()
    host = target.spec.interfaces.ssh.host
    # the interface by name, or an address: the harness's own, or another one where NAT stands between
    source = re.compile(rf"\bssh[d2]?\b|(?<![\d.]){re.escape(host)}(?![\d.])|{IPV4}", re.IGNORECASE)
    _judge(trail, mark, source, CAUSES[category](target, shell, ssh, trail, evidence), evidence)



# --- over the web-management interface


def _web_login(https, creds: Credentials, password: str):  # type: ignore[no-untyped-def]
    """One web login, its session left to end by itself (a logout record would match a login's patterns)."""
    return https.try_login(creds.username, password)


def web_login_ok(target, https, trail, evidence) -> list[Expected]:  # type: ignore[no-untyped-def]
    creds = _other_account(target, trail)
    result = _web_login(https, creds, creds.password)
    if result.outcome is not WebLoginOutcome.ACCEPTED:
        inconclusive(f"{creds.username} cannot log in over {https.name} ({result.outcome}: {result.detail})")
    return [Expected(f"accepted web login of {creds.username}", creds.username, (LOGIN, SUCCESS), FAILURE)]


def web_login_failed(target, https, trail, evidence) -> list[Expected]:  # type: ignore[no-untyped-def]
    creds = _lockout_account(target)
    surface = LoginSurface(https.name, https)
    if not surface.accepted_within(creds.username, creds.password, _unlock_wait(target)):
        inconclusive(f"{creds.username} does not log in over {https.name} (locked, or a wrong credential)")
    result = _web_login(https, creds, _wrong())
    if result.outcome not in (WebLoginOutcome.REJECTED, WebLoginOutcome.LOCKED_OUT):
        not_run(f"a wrong password for {creds.username} is not refused over {https.name} ({result.outcome}), so no "
                "failed login was caused (CR 1.1 judges that)")
    surface.attempt(creds.username, creds.password)  # a clean failure count for the next test
    return [Expected(f"failed web login of {creds.username}", creds.username, (LOGIN, FAILURE))]


def _action(target, https, evidence):  # type: ignore[no-untyped-def]
    rec = target.require(https.name)
    if rec.login is None or rec.protected_action is None:
        not_run(f"interfaces.{https.name} declares no login or no protected_action: no web request to send")
    target.guard(https.name).require("config_changes")  # before the first byte: the request changes the device
    return rec.protected_action


def web_refusal(target, https, trail, evidence) -> list[Expected]:  # type: ignore[no-untyped-def]
    action = _action(target, https, evidence)
    role = least_privileged_role(target)
    creds = next((c for c in target.accounts(role=role, purpose="normal") if c.password), None)
    if creds is None or role == target.spec.policies.administrator_role:
        not_run("no normal account with a password has a less privileged role to be refused the request")
    with https.session(creds.username, creds.password) as session:
        tried = session.action(action, note=f"as {creds.username} ({role})")
    evidence.add("check", f"{action.method} {action.path} as {creds.username}: {tried.detail}")
    if not tried.refused:
        not_run(f"the web interface does not refuse {action.method} {action.path} to {creds.username} ({role}) "
                "(CR 2.1 judges that)")
    return [Expected(f"refused web request {action.path} of {creds.username}", creds.username, (REFUSED,))]


def web_config_change(target, https, trail, evidence) -> list[Expected]:  # type: ignore[no-untyped-def]
    action = _action(target, https, evidence)
    admin = target.admin()
    if admin is None or admin.password is None:
        not_run("the target file declares no administrator account with a password to change the setting")
    with https.session(admin.username, admin.password) as session:
        done = session.action(action, note=f"as {admin.username}")
    evidence.add("check", f"{action.method} {action.path} as {admin.username}: {done.detail}")
    if not done.done:
        inconclusive(f"the declared protected_action is not taken from {admin.username} ({done.detail}): check "
                     f"interfaces.{https.name}.protected_action")
    return [Expected(f"change by {action.method} {action.path} of {admin.username}", admin.username, (CONFIG,))]


WEB_CAUSES: dict[str, Callable[..., list[Expected]]] = {
    "login_ok": web_login_ok, "login_failed": web_login_failed, "access_refused": web_refusal,
    "config_change": web_config_change,
}


@pytest.mark.judges("CR 2.8", over=["https"])
@pytest.mark.parametrize("category", list(WEB_CAUSES))
def test_web_event_is_audited(target, shell, https, interface, evidence, category):
    web_record(target, interface)  # manual when the web interface has no login description
    trail = AuditTrail(target, shell, evidence)
    mark = trail.mark()
    source = re.compile(rf"\bhttps?\b|(?<![\d.]){re.escape(https.host)}(?![\d.])|{IPV4}", re.IGNORECASE)
    _judge(trail, mark, source, WEB_CAUSES[category](target, https, trail, evidence), evidence)
