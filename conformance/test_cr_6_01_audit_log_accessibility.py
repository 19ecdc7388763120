"""CR 6.1 Audit log accessibility (SL 1-4); RE(1) Programmatic access to audit logs (SL 3-4).

Judges CR 6.1 over ssh: one account of each role the declared table lets read the audit log reads it every way
its role allows: `audit_show` and `audit_export` on the shell, and each file of `assurance.audit_log.files`
over SFTP (with the `audit_export` right). Each read must be let through and give records; a file after the
first that does not exist yet (a rotated log) is noted, not judged.
Judges RE(1) over ssh: the harness logs a declared account in and looks for that login through each
programmatic channel the target declares: the structured export (`audit_export`, `assurance.audit_log.format`
jsonl: every line a JSON object with the declared `fields`, and a new one naming the account) and the syslog
stream to the harness's receiver (every message since the login parsed, RFC 5424 or 3164 with a priority, and
one naming the account). A declared channel whose records the harness cannot parse, or that lacks the login,
fails; manual when neither is declared.
"""

from __future__ import annotations

import re
import time

import pytest
from iec62443_harness.fixtures.audit import LOGIN, LOOK_S, POLL_S
from iec62443_harness.fixtures.audit_log import (
    READS,
    export,
    files_of,
    lines,
    one_per_role,
    parse_jsonl,
    reader,
    rights,
)
from iec62443_harness.fixtures.login import accepted
from iec62443_harness.fixtures.outcomes import inconclusive, manual, not_run

ACCESS_CHECKLIST = [
    "Find every way the component offers its audit records to authorised humans and tools (shell, web, vendor "
    "tool, file transfer, syslog).",
    "As each role allowed to, read the audit log each way and confirm the records are complete and readable.",
]


@pytest.mark.judges("CR 6.1", over=["ssh"])
def test_authorised_roles_read_the_audit_log(target, shell, evidence):
    table = rights(target)
    files = target.spec.assurance.audit_log.files
    problems: list[str] = []
    reads = 0
    for creds in one_per_role(target):
        for operation in READS:
            if operation in table[creds.role] and shell.has(operation):
                if operation == "audit_export":
                    denied, got = export(target, creds, evidence)
                else:
                    reply = shell.run(creds, operation, count=20)
                    denied, got = reply.denied, lines(reply.output)
                reads += 1
                evidence.add("check", f"{creds.username} ({creds.role}) {operation}: "
                                      f"{'refused' if denied else f'{len(got)} records'}")
                if denied or not got:
                    problems.append(f"{creds.username} ({creds.role}) {operation}: "
                                    f"{(got[0] if got else 'nothing')[:80]!r}")
        if files and "audit_export" in table[creds.role]:
            with files_of(target, creds, evidence) as sftp:
                for n, path in enumerate(files):
                    result = sftp.read(path)
                    reads += 1
                    if result.status == "missing" and n > 0:
                        continue  # a rotated log that has not been made yet
                    if result.status != "done" or not lines((result.data or b"").decode("utf-8", "replace")):
                        problems.append(f"{creds.username} ({creds.role}) sftp read {path}: {result.status} "
                                        f"{result.detail}".rstrip())
    if not reads:
        manual("no declared role may read the audit log (audit_show, audit_export in policies.roles), or no "
               "account of such a role is declared", ACCESS_CHECKLIST)
    assert not problems, f"authorised roles cannot read the audit log: {'; '.join(problems)}"


def _login_someone(target, ssh, evidence, avoid: str | None) -> tuple[str, float]:  # type: ignore[no-untyped-def]
    """A fresh accepted login of a declared account (not `avoid`): (its user name, the harness clock before)."""
    creds = next((c for c in target.accounts(purpose="normal") if c.password and c.username != avoid), None)
    if creds is None:
        not_run("the target file declares no second normal account to cause an audited login with")
    before = time.time()
    result = ssh.try_login(creds.username, creds.password)
    if not accepted(result):
        inconclusive(f"{creds.username} cannot log in ({result.outcome}): check the account")
    evidence.add("check", f"event: login of {creds.username} at {before:.3f}")
    return creds.username, before


def _names(user: str) -> re.Pattern[str]:
    return re.compile(rf"(?<![\w.-]){re.escape(user)}(?![\w.-])")


@pytest.mark.judges("CR 6.1 RE(1)", over=["ssh"])
def test_programmatic_access_to_audit_records(target, shell, ssh, evidence):
    spec = target.spec.assurance.audit_log
    exporter = reader(target, shell, "audit_export")
    if exporter is None and target.syslog is None:
        manual("the target declares no programmatic access to its audit records: no audit_export operation an "
               "account may run, no syslog: section", [
                   "Find the component's programmatic access to audit records (an API, a structured export, "
                   "forwarding to a log server) and its documented format.",
                   "Read the records through it with a tool and confirm every field is machine-readable."])
    seen: frozenset[str] = frozenset()
    if exporter is not None:
        seen = frozenset(export(target, exporter, evidence)[1])
    user, before = _login_someone(target, ssh, evidence, exporter.username if exporter else None)
    names, login = _names(user), re.compile(LOGIN, re.IGNORECASE)
    problems: list[str] = []
    if exporter is not None:
        denied, records = export(target, exporter, evidence)
        if denied:
            inconclusive(f"{exporter.username} may run audit_export by the declared roles, yet is refused")
        good, bad = parse_jsonl(records, spec.fields)
        fresh = [r for line, r in good if line not in seen and any(names.fullmatch(str(v)) for v in r.values())
                 and login.search(" ".join(str(v) for v in r.values()))]
        evidence.add("check", f"audit_export by {exporter.username}: {len(records)} lines, {len(good)} JSON records "
                              f"with {', '.join(spec.fields) or 'any fields'}, {len(bad)} not; "
                              f"{len(fresh)} new naming the login of {user}")
        if bad:
            problems.append(f"{len(bad)} of {len(records)} exported lines are not {spec.format} records with "
                            f"{', '.join(spec.fields)}: first {bad[0][:100]!r}")
        if not good:
            problems.append("the export holds no record")
        elif not fresh:
            problems.append(f"no exported record of the login of {user}")
    if target.syslog is not None:
        deadline = time.monotonic() + LOOK_S
        while True:
            messages = target.syslog.messages(before)
            fresh_msgs = [m for m in messages if names.search(m.message) and login.search(m.message)]
            if fresh_msgs or time.monotonic() >= deadline:
                break
            time.sleep(POLL_S)
        unparsed = [m for m in messages if m.severity is None]
        evidence.add("check", f"syslog since the login: {len(messages)} messages, {len(unparsed)} without a "
                              f"priority; {len(fresh_msgs)} naming the login of {user}")
        for m in fresh_msgs[:2]:
            evidence.add("syslog", target.syslog.describe(m))
        if unparsed:
            problems.append(f"{len(unparsed)} syslog messages have no priority (neither RFC 5424 nor 3164): "
                            f"first {unparsed[0].raw[:100]!r}")
        if not fresh_msgs:
            problems.append(f"no syslog message of the login of {user} within {LOOK_S} s")
    assert not problems, "; ".join(problems)
