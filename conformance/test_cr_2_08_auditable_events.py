"""CR 2.8 Auditable events (SL 1-4).

Judges CR 2.8 over ssh, one test per event category the harness can cause without harm: an accepted
login, a failed login, an account lockout (the `lockout_test` account, unlocked again), an access the
device refuses, a configuration change (set and set back), a user change (a temporary user added and
removed) and a process-image write (only with `safety.allow_writes`, inside the writable range, writing
back the value the register holds). Each must appear in the device's audit records, read over the shell
(`audit_show`, by an account whose role may) or received by the harness's syslog collector (`syslog:`),
with a timestamp, a source (the interface or the client's address) and the user. Only records that are
new since just before the event count; the evidence holds the attempts and the records found.
An event the device does not produce (an account that does not lock, an access it does not refuse) is
not run here: CR 1.11 and CR 2.1 judge those. Manual when neither reading path is declared.
Not exercised (for the assessor): the categories the harness cannot cause from outside without harm,
backup and restore, reconnaissance, audit log events (clearing, filling, forwarding stopped) and control
system events (program or mode changes).

`AuditTrail`, `LOGIN`, `SUCCESS`, `FAILURE` and `change_config_and_back` serve CR 2.11 and CR 2.12 too.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from conformance.test_cr_2_01_authorization_enforcement import (
    allowed_account,
    current_register,
    harmless_args,
    temporary_user,
)
from fixtures.target import Credentials
from harness.outcomes import manual, not_run

LOOK_S = 2.0  # a record may reach the log, or the collector, a moment after the event
POLL_S = 0.25
AUDIT_COUNT = 100  # records read per look: far more than one event and its reading produce
MARGIN_S = 0.5
LOGIN = r"log ?in|logon|auth|session"
SUCCESS = r"ok|succe|accept|grant|open"
FAILURE = r"fail|invalid|incorrect|wrong|reject|denied|bad|lock"
REFUSED = r"denied|refused|not allowed|unauthori[sz]ed|forbidden|permission"
CONFIG = r"config|setting|\bset\b|chang|modif"
# ISO 8601 date and time, or the RFC 3164 "Mmm dd hh:mm:ss" a syslog line may carry instead
ISO_TIME = re.compile(r"\b\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?")
ANY_TIME = re.compile(ISO_TIME.pattern + r"|\b[A-Z][a-z]{2} [ \d]\d \d{2}:\d{2}:\d{2}\b")
TRAIL_CHECKLIST = [
    "Find where the component keeps its audit records (local log, syslog, management tool).",
    "Cause each event category of CR 2.8 (access control, request errors, control system events, backup and "
    "restore, configuration changes, potential reconnaissance, audit log events) and confirm each is recorded.",
    "Confirm each record has a timestamp, the source (interface, address) and the user, and the outcome.",
]


# --- the audit trail as the harness can read it


@dataclass(frozen=True)
class Record:
    channel: str  # where it was read: "audit_show" or "syslog"
    text: str
    timestamp: str | None  # the device's own, as written

    def time(self) -> float | None:
        """The timestamp in POSIX seconds (UTC when it names no zone); None unless it is ISO 8601."""
        found = ISO_TIME.search(self.timestamp or "")
        if found is None:
            return None
        when = datetime.fromisoformat(found.group(0).replace(" ", "T", 1).replace(",", "."))
        return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


@dataclass(frozen=True)
class Mark:
    seen: frozenset[str]  # audit_show lines present before the event
    at: float  # harness clock (time.time()) before the event


def _stamp(text: str) -> str | None:
    found = ANY_TIME.search(text)
    return found.group(0) if found else None


class AuditTrail:
    """The device's audit records: `audit_show` over the shell, and what the syslog collector received."""

    def __init__(self, target, shell, evidence) -> None:  # type: ignore[no-untyped-def]
        self.shell, self.evidence, self.syslog = shell, evidence, target.syslog
        self.reader = allowed_account(target, "audit_show") if shell.has("audit_show") else None
        self.channels = {"audit_show"} if self.reader else set()
        if self.syslog is not None:
            self.channels.add("syslog")
        if not self.channels:
            manual("the device's audit records can be read neither over the shell (no audit_show operation an "
                   "account may run) nor by syslog (no syslog: section)", TRAIL_CHECKLIST)

    @property
    def where(self) -> str:
        return " and ".join(sorted(self.channels))

    def _lines(self) -> list[str]:
        if self.reader is None:
            return []
        reply = self.shell.run(self.reader, "audit_show", count=AUDIT_COUNT)
        if reply.denied:
            not_run(f"{self.reader.username} may read the audit log by the declared roles, yet the device refuses "
                    f"it: {reply.output.strip()[:100]!r}")
        return [ln.strip() for ln in reply.output.splitlines() if ln.strip()]

    def mark(self) -> Mark:
        return Mark(frozenset(self._lines()), time.time())

    def records(self, mark: Mark) -> list[Record]:
        """The records that appeared since `mark`."""
        new = [Record("audit_show", ln, _stamp(ln)) for ln in self._lines() if ln not in mark.seen]
        if self.syslog is not None:
            new += [Record("syslog", m.raw, m.timestamp or _stamp(m.raw)) for m in self.syslog.messages(mark.at)]
        return new

    def find(self, mark: Mark, user: str, *patterns: str, exclude: str | None = None,
             every_channel: bool = False) -> list[Record]:
        """New records naming `user` and matching every pattern (case-insensitive; the user name itself is
        masked first, so that "locktest" never passes for a lock). Waits up to LOOK_S for one, or for one in
        each channel when `every_channel`."""
        name = re.compile(rf"(?<![\w.-]){re.escape(user)}(?![\w.-])")
        wanted = [re.compile(p, re.IGNORECASE) for p in patterns]
        unwanted = re.compile(exclude, re.IGNORECASE) if exclude else None

        def fits(record: Record) -> bool:
            if not name.search(record.text):
                return False
            text = name.sub("<user>", record.text)
            return all(p.search(text) for p in wanted) and not (unwanted and unwanted.search(text))

        deadline = time.monotonic() + LOOK_S
        while True:
            found = [r for r in self.records(mark) if fits(r)]
            channels = {r.channel for r in found}
            if (channels >= self.channels if every_channel else channels) or time.monotonic() >= deadline:
                break
            time.sleep(POLL_S)
        for record in found:
            self.evidence.add("audit", f"{record.channel}: {record.text}")
        return found


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
    while ssh.try_login(creds.username, creds.password).outcome != "ACCEPTED":
        if time.monotonic() >= deadline:
            raise RuntimeError(f"{creds.username} does not log in with its password (locked, or a wrong credential)")
        time.sleep(0.25)


def _unlock_wait(target) -> float:  # type: ignore[no-untyped-def]
    policy = target.spec.policies.lockout
    return (policy.unlock_after_s or 0.0) + MARGIN_S if policy else MARGIN_S


def _wrong() -> str:
    return "wrong-" + secrets.token_urlsafe(9)


def cause_login_ok(target, shell, ssh, trail, evidence) -> list[Expected]:  # type: ignore[no-untyped-def]
    creds = _other_account(target, trail)
    result = ssh.try_login(creds.username, creds.password)
    if result.outcome != "ACCEPTED":
        raise RuntimeError(f"{creds.username} cannot log in ({result.outcome}): check the account")
    return [Expected(f"accepted login of {creds.username}", creds.username, (LOGIN, SUCCESS), FAILURE)]


def cause_login_failed(target, shell, ssh, trail, evidence) -> list[Expected]:  # type: ignore[no-untyped-def]
    creds = _lockout_account(target)
    _usable(ssh, creds, _unlock_wait(target))
    result = ssh.try_login(creds.username, _wrong())
    assert result.outcome != "ACCEPTED", f"a wrong password logs {creds.username} in"
    ssh.try_login(creds.username, creds.password)  # a clean failure count for the next test
    return [Expected(f"failed login of {creds.username}", creds.username, (LOGIN, FAILURE))]


def cause_lockout(target, shell, ssh, trail, evidence) -> list[Expected]:  # type: ignore[no-untyped-def]
    creds = _lockout_account(target)
    policy = target.spec.policies.lockout
    if policy is None:
        not_run("the target file declares no lockout policy (policies.lockout), so no lockout is caused")
    _usable(ssh, creds, _unlock_wait(target))
    for _ in range(policy.threshold):
        ssh.try_login(creds.username, _wrong())
    try:
        after = ssh.try_login(creds.username, creds.password)
        evidence.add("check", f"right password after {policy.threshold} failures: {after.outcome}")
        if after.outcome == "ACCEPTED":
            not_run(f"{creds.username} does not lock after {policy.threshold} failed logins (CR 1.11 judges that)")
    finally:
        admin = target.admin()
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
    reply = shell.run(creds, op, **harmless_args(target, creds))
    if not reply.denied:
        not_run(f"the device does not refuse {op} to {creds.username} ({creds.role}) (CR 2.1 judges that)")
    return [Expected(f"refused {op} of {creds.username}", creds.username, (REFUSED,))]


def _settings(text: str) -> dict[str, str]:
    found = (re.match(r"^\s*([A-Za-z_][\w.-]*)\s*[=:]\s*(.*?)\s*$", ln) for ln in text.splitlines())
    return {m.group(1): m.group(2) for m in found if m}


def change_config_and_back(target, shell, evidence) -> tuple[Credentials, str]:  # type: ignore[no-untyped-def]
    """A harmless configuration change by an account allowed to make it: the banner (found by the declared
    text) set to another text and back, or else the first numeric setting set to its own value."""
    shell.require("config_show", "config_set", checklist=[
        "As an administrator, change a harmless setting and change it back; confirm both are audited with "
        "timestamp, source and user."])
    actor = allowed_account(target, "config_set")
    if actor is None:
        not_run("no declared account may change the configuration (config_set)")
    settings = _settings(shell.run(actor, "config_show").output)
    banner = " ".join((target.spec.policies.banner or "").split())
    key = next((k for k, v in settings.items() if banner and " ".join(v.split()) == banner), None)
    if key is None:
        key = next((k for k, v in settings.items() if re.fullmatch(r"\d+", v)), None)
    if key is None:
        not_run("config_show shows no setting the harness can change harmlessly (the declared banner, or a number)")
    old = settings[key]
    new = f"{old} (audit probe {secrets.token_hex(3)})" if banner and old == banner else old
    try:
        reply = shell.run(actor, "config_set", key=key, value=new)
        evidence.add("check", f"{actor.username} sets {key} to {new!r}: {reply.output.strip()[:100]!r}")
        if reply.denied:
            not_run(f"{actor.username} may change the configuration by the declared roles, yet is refused")
    finally:
        if new != old:
            shell.run(actor, "config_set", key=key, value=old)
            restored = _settings(shell.run(actor, "config_show").output).get(key)
            evidence.add("check", f"{key} set back: now {restored!r}")
            if restored != old:
                raise RuntimeError(f"could not set {key} back to {old!r} (it is {restored!r}): restore it by hand")
    return actor, key


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
    source = re.compile(rf"\bssh\b|(?<![\d.]){re.escape(host)}(?![\d.])", re.IGNORECASE)
    for expected in CAUSES[category](target, shell, ssh, trail, evidence):
        records = trail.find(mark, expected.user, *expected.patterns, exclude=expected.exclude)
        assert records, f"no audit record of the {expected.what} in {trail.where}"
        complete = [r for r in records if r.timestamp and source.search(r.text)]
        evidence.add("check", f"{expected.what}: {len(records)} records, {len(complete)} with timestamp, source "
                              "and user")
        assert any(r.timestamp for r in records), f"the record of the {expected.what} has no timestamp"
        assert complete, f"the record of the {expected.what} does not name its source (interface or address)"

