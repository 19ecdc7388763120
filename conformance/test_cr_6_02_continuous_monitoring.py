"""CR 6.2 Continuous monitoring (SL 2-4).

Judges CR 6.2 over ssh: the harness causes security events and measures, on its own clock, when each reaches
its syslog receiver (the target's `syslog:` section): a failed login (a wrong password for the `lockout_test`
account, else another normal one, then its right password so that no lockout builds up), an access the device
refuses (an account runs, with harmless arguments, an operation its declared role lacks) and a configuration
change (a harmless setting set and set back). Without `safety.allow_config_changes` no change is caused, and
the refused access is one that changes nothing if let through; the evidence says so. The latency of an event
is the time from the device's answer to the receipt of the first message naming the user and the event (one
that came before the answer counts as 0); the span from the request is in the evidence too. Each must arrive
within `assurance.monitoring.latency_s`; one that comes later, or not within twice the bound (at least
MIN_WAIT_S), fails. An event the device does not produce (an access it does not refuse) is noted, not judged.
Manual: no `syslog:` section, no event the harness can cause, or every event arrived but the target file
declares no bound (the latencies are in the evidence).
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from iec62443_harness.fixtures.audit import CONFIG, FAILURE, LOGIN, POLL_S, change_config_and_back
from iec62443_harness.fixtures.login import refused
from iec62443_harness.fixtures.outcomes import manual
from iec62443_harness.fixtures.roles import allowed_account, harmless_args
from iec62443_harness.fixtures.shell import CHANGES

MIN_WAIT_S = 2.0
REFUSED = r"denied|refused|not allowed|unauthori[sz]ed|forbidden|permission"
CHECKLIST = [
    "Find how the component reports security events to a monitoring system (syslog, SNMP traps, an API) and "
    "configure it to send to a collector.",
    "Cause a failed login, a refused access and a configuration change; confirm each reaches the collector, and "
    "how quickly.",
]


@dataclass(frozen=True)
class Event:
    what: str
    user: str
    patterns: tuple[str, ...]
    requested: float  # harness clock before the request
    answered: float  # harness clock once the device answered


class TimedShell:
    """The management shell, noting when each operation was sent and answered."""

    def __init__(self, shell) -> None:  # type: ignore[no-untyped-def]
        self.shell = shell
        self.calls: list[tuple[str, float, float]] = []

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self.shell, name)

    def run(self, creds, operation: str, **args):  # type: ignore[no-untyped-def]
        start = time.time()
        reply = self.shell.run(creds, operation, **args)
        self.calls.append((operation, start, time.time()))
        return reply


def failed_login(target, shell, ssh, evidence) -> Event | None:  # type: ignore[no-untyped-def]
    admin = target.spec.policies.administrator_role
    accounts = target.accounts(purpose="lockout_test") or [c for c in target.accounts(purpose="normal")
                                                            if c.password and c.role != admin]
    if not accounts:
        evidence.add("check", "failed login: no lockout_test or other normal account declared")
        return None
    creds = accounts[0]
    start = time.time()
    result = ssh.try_login(creds.username, "wrong-" + secrets.token_urlsafe(9))
    end = time.time()
    ssh.try_login(creds.username, creds.password)  # a clean failure count for later tests
    if not refused(result):
        evidence.add("check", f"failed login: a wrong password for {creds.username} is not refused ({result.outcome})")
        return None
    return Event(f"failed login of {creds.username}", creds.username, (LOGIN, FAILURE), start, end)


def refused_access(target, shell, ssh, evidence) -> Event | None:  # type: ignore[no-untyped-def]
    roles = target.spec.policies.roles
    changes = target.spec.safety.allow_config_changes  # a refused change is still a change request
    candidates = [op for op in ("config_set", "user_del", "session_kill", "user_list", "audit_show")
                  if shell.has(op) and (changes or op not in CHANGES)]
    pick = next(((c, op) for c in target.accounts(purpose="normal") if c.password
                 for op in candidates if roles and op not in roles.get(c.role, ())), None)
    if pick is None:
        evidence.add("check", "refused access: no declared account lacks a declared operation")
        return None
    creds, op = pick
    start = time.time()
    reply = shell.run(creds, op, **harmless_args(target))
    end = time.time()
    if not reply.denied:
        evidence.add("check", f"refused access: the device does not refuse {op} to {creds.username} ({creds.role})")
        return None
    return Event(f"refused {op} of {creds.username}", creds.username, (REFUSED,), start, end)


def config_change(target, shell, ssh, evidence) -> Event | None:  # type: ignore[no-untyped-def]
    if not (shell.has("config_show", "config_set") and allowed_account(target, "config_set")):
        evidence.add("check", "configuration change: no config_show/config_set an account may run")
        return None
    if not target.spec.safety.allow_config_changes:
        evidence.add("check", "configuration change: not caused, the target file does not allow changes "
                              "(safety.allow_config_changes)")
        return None
    timed = TimedShell(shell)
    actor, key = change_config_and_back(target, timed, evidence)
    _, start, end = next(call for call in timed.calls if call[0] == "config_set")
    return Event(f"change of {key} by {actor.username}", actor.username, (CONFIG, re.escape(key)), start, end)


CAUSES: dict[str, Callable[..., Event | None]] = {
    "failed_login": failed_login, "refused_access": refused_access, "config_change": config_change}


def _arrival(target, event: Event, wait_s: float):  # type: ignore[no-untyped-def]
    """The first syslog message since the request that names the user and matches every pattern, or None."""
    name = re.compile(rf"(?<![\w.-]){re.escape(event.user)}(?![\w.-])")
    wanted = [re.compile(p, re.IGNORECASE) for p in event.patterns]
    deadline = event.answered + wait_s
    while True:
        for msg in target.syslog.messages(event.requested):
            text = name.sub("<user>", msg.raw)
            if name.search(msg.raw) and all(p.search(text) for p in wanted):
                return msg
        if time.time() >= deadline:
            return None
        time.sleep(POLL_S / 5)


@pytest.mark.judges("CR 6.2", over=["ssh"])
def test_security_events_reach_the_monitor_in_time(target, shell, ssh, evidence):
    if target.syslog is None:
        manual("the target declares no syslog: section, so no monitoring stream reaches the harness", CHECKLIST)
    monitoring = target.spec.assurance.monitoring
    bound = monitoring.latency_s if monitoring else None
    wait_s = max(2 * bound, MIN_WAIT_S) if bound else MIN_WAIT_S
    measured: list[tuple[Event, float | None]] = []
    for cause in CAUSES.values():
        event = cause(target, shell, ssh, evidence)
        if event is None:
            continue
        msg = _arrival(target, event, wait_s)
        if msg is None:
            measured.append((event, None))
            evidence.add("latency", f"{event.what}: no syslog message within {wait_s:g} s of the answer")
            continue
        after_answer = msg.received - event.answered
        latency = max(0.0, after_answer)
        measured.append((event, latency))
        when = (f"{after_answer * 1000:.1f} ms after the answer" if after_answer >= 0
                else f"{-after_answer * 1000:.1f} ms before the answer (latency 0)")
        evidence.add("latency", f"{event.what}: {when}, {(msg.received - event.requested) * 1000:.1f} ms after the "
                                f"request; {target.syslog.describe(msg)}")
    if not measured:
        manual("the harness could cause no security event on this target (see the evidence)", CHECKLIST)
    missing = [e.what for e, latency in measured if latency is None]
    assert not missing, f"no syslog message of the {', '.join(missing)} within {wait_s:g} s"
    if bound is None:
        manual("every event reached the syslog receiver, but the target file declares no bound to judge the "
               "latencies against (assurance.monitoring.latency_s)", CHECKLIST)
    late = [f"{e.what} ({latency:.3f} s)" for e, latency in measured if latency is not None and latency > bound]
    assert not late, f"later than {bound:g} s at the syslog receiver: {', '.join(late)}"
