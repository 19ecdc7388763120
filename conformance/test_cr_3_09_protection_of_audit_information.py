"""CR 3.9 Protection of audit information (SL 2-4); RE(1) Audit records on write-once media (SL 4).

Judges CR 3.9 over ssh and console (the management shell), and over SFTP on ssh for the log's files
(`assurance.audit_log.files`). Rights come from the declared role table (fixtures/audit_log.py): `audit_show`
and `audit_export` read (the files with `audit_export`), `audit_clear` and `audit_rotate` clear, no role may
rewrite records.
- Reading: one account of each role without a read right runs each read operation on the shell, and reads
  each file over SFTP; each must be refused (the shell's `denied_pattern`; over SFTP any status but done).
- Changing, only with `safety.allow_config_changes` (asked first): one account of each role runs each clear
  operation its role lacks on the shell, deletes each file over SFTP unless its role may clear, and (every
  role, the administrator too) uploads the log's file less its last record, as a forger erasing a trace would.
  Each must be refused, and the log must be unchanged: before and after, an authorised role reads it whole
  (the file over SFTP, else `audit_export`, else `audit_show`) and every earlier record must still be
  there, in order (new records, such as the refusals, may follow; the oldest may roll out of a full log).
  What a role could change is put back where the device lets the harness (a rewritable file is written
  back whole); a log the harness cannot put back (cleared on the shell) is said so in the evidence and in
  the failure. Records are compared as the device writes them, never shown whole in the evidence.
Manual: RE(1), audit records on write-once media (checklist).
"""

from __future__ import annotations

import pytest
from iec62443_harness.fixtures.audit_log import (
    CLEARS,
    PROTECT_CHECKLIST,
    READS,
    Attempt,
    Snapshot,
    compare,
    files_of,
    one_per_role,
    rights,
    sftp_attempt,
    shell_attempt,
    snapshot,
)
from iec62443_harness.fixtures.outcomes import manual


def _failed(attempts: list[Attempt]) -> str:
    return "; ".join(f"{a.user} ({a.role}) {a.what}: {a.answer!r}" for a in attempts if not a.refused)


@pytest.mark.judges("CR 3.9", over=["ssh", "console"])
def test_roles_without_read_rights_cannot_read_the_log(target, interface, shell, evidence):
    target.require(interface)
    table = rights(target)
    operations = [op for op in READS if shell.has(op)]
    files = target.spec.assurance.audit_log.files if interface == "ssh" else []
    if not operations and not files:
        manual("the target file declares no way to read the audit log (audit_show, audit_export, "
               "assurance.audit_log.files)", PROTECT_CHECKLIST)
    attempts: list[Attempt] = []
    for creds in one_per_role(target):
        attempts += [shell_attempt(target, shell, creds, op, interface, evidence)
                     for op in operations if op not in table[creds.role]]
        if files and "audit_export" not in table[creds.role]:
            with files_of(target, creds, evidence) as sftp:
                attempts += [sftp_attempt(creds, sftp.read(path)) for path in files]
    if not attempts:
        manual("every declared role may read the audit log: no refusal to observe", PROTECT_CHECKLIST)
    evidence.add("check", f"{len(attempts)} reads by roles without the right, "
                          f"{sum(a.refused for a in attempts)} refused")
    assert all(a.refused for a in attempts), f"read by a role without the right: {_failed(attempts)}"


def _drop_last(raw: bytes) -> bytes:
    kept = raw.rstrip(b"\n").split(b"\n")[:-1]
    return b"".join(line + b"\n" for line in kept)


def _put_back(target, shell, evidence, before: Snapshot, after: Snapshot, writers) -> str:  # type: ignore[no-untyped-def]
    """Write the file back whole (the records from before, then the new ones) as a role the device let rewrite
    it, else as the administrator; what became of the log, for the evidence and the failure message."""
    files = target.spec.assurance.audit_log.files
    writer = writers[0] if writers else target.admin()
    if not files or before.raw is None or writer is None:
        return "NOT put back: the target file declares no file the harness could write it back to"
    known = set(before.records)
    new = [r for r in after.records if r not in known]
    content = before.raw.rstrip(b"\n") + b"\n" + b"".join(r.encode() + b"\n" for r in new)
    with files_of(target, writer, evidence) as sftp:
        written = sftp.write(files[0], content)
    if written.status != "done":
        return (f"NOT put back: the device refuses {writer.username} writing {files[0]} ({written.status}); the "
                "records are in this run's syslog receiver if the device forwarded them")
    lost, note = compare(before, snapshot(target, shell, evidence))
    return f"put back by {writer.username} over SFTP" if not lost else f"NOT put back ({note})"


@pytest.mark.judges("CR 3.9", over=["ssh", "console"])
def test_roles_without_rights_cannot_clear_or_rewrite_the_log(target, interface, shell, evidence):
    target.require(interface)
    target.guard(interface).require("config_changes")
    table = rights(target)
    operations = [op for op in CLEARS if shell.has(op)]
    files = target.spec.assurance.audit_log.files if interface == "ssh" else []
    accounts = one_per_role(target)
    if not files and not any(op not in table[c.role] for c in accounts for op in operations):
        manual("no declared way to clear or rewrite the audit log that some role lacks (audit_clear, audit_rotate, "
               "assurance.audit_log.files)", PROTECT_CHECKLIST)
    before = snapshot(target, shell, evidence)
    if not before.records:
        manual(f"the audit log is empty ({before.how}): no record whose loss could be seen", PROTECT_CHECKLIST)
    if files and before.raw is None:
        manual(f"no declared account may read {files[0]} (audit_export) to rewrite it from", PROTECT_CHECKLIST)
    attempts: list[Attempt] = []
    writers = []
    for creds in accounts:
        if files:
            with files_of(target, creds, evidence) as sftp:
                rewrite = sftp_attempt(creds, sftp.write(files[0], _drop_last(before.raw or b"")))
                attempts.append(rewrite)
                if not rewrite.refused:
                    writers.append(creds)
                if "audit_clear" not in table[creds.role]:
                    attempts += [sftp_attempt(creds, sftp.remove(path)) for path in files]
        attempts += [shell_attempt(target, shell, creds, op, interface, evidence)
                     for op in operations if op not in table[creds.role]]
    after = snapshot(target, shell, evidence)
    lost, note = compare(before, after)
    evidence.add("check", f"audit log before and after: {note}")
    restored = ""
    if lost:
        restored = _put_back(target, shell, evidence, before, after, writers)
        evidence.add("restore", f"{len(lost)} audit records lost; {restored}")
    assert all(a.refused for a in attempts), f"clearing or rewriting the audit log was not refused: {_failed(attempts)}"
    assert not lost, f"{len(lost)} earlier audit records are gone ({note}); the log was {restored}"


@pytest.mark.judges("CR 3.9 RE(1)")
def test_audit_records_on_write_once_media(target):
    manual("write-once media are a property of the hardware and its configuration, not visible from outside", [
        "Find where the component stores its audit records, or to which it forwards them (documentation).",
        "Confirm the storage is write-once (WORM media, an append-only store the component cannot rewrite), "
        "or that records are forwarded to such a store as they are made.",
        "Try to change or delete a stored record with every privilege the component offers (an administrator, "
        "a maintenance mode, a firmware tool): confirm it is refused.",
    ])
