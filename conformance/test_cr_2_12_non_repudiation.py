"""CR 2.12 Non-repudiation (SL 1-4) and RE(1) Non-repudiation for all users (SL 4).

Judges CR 2.12 over ssh: actions are attributed to the individual who took them. Each ordinary account
whose role may write writes a holding register (only with `safety.allow_writes`, inside the writable
range, writing back the value it holds), and an account allowed to change the configuration changes a
harmless setting and sets it back. The audit record of each action must name its doer and none of the
other individuals who acted.
Manual: RE(1), non-repudiation for every user (software processes and devices too, e.g. a Modbus master)
and the protection of the records against repudiation (signatures, integrity).
"""

from __future__ import annotations

import re

import pytest
from iec62443_harness.fixtures.audit import CONFIG, AuditTrail, change_config_and_back
from iec62443_harness.fixtures.outcomes import NotRun, manual, not_run
from iec62443_harness.fixtures.roles import current_register


@pytest.mark.judges("CR 2.12", over=["ssh"])
def test_actions_are_attributed_to_their_doers(target, shell, evidence):
    trail = AuditTrail(target, shell, evidence)
    roles = target.spec.policies.roles
    writers = [c for c in target.accounts(purpose="normal")
               if c.password and c.role != "admin" and "write" in roles.get(c.role, ())] if shell.has("write") else []
    address = value = None
    if writers:
        try:
            address, value = current_register(target, shell, evidence)
        except NotRun as exc:
            evidence.add("check", f"no writes: {exc.reason}")
    actions = []  # (doer, patterns of the record of the action)
    for creds in writers if address is not None else []:
        mark = trail.mark()
        reply = shell.run(creds, "write", address=address, value=value)
        if not reply.denied:
            actions.append((creds.username, mark, (r"write|set", rf"(?<!\d){address}(?!\d)")))
    if shell.has("config_show", "config_set"):
        mark = trail.mark()
        actor, key = change_config_and_back(target, shell, evidence)
        actions.append((actor.username, mark, (CONFIG, re.escape(key))))
    if not actions:
        not_run("no action the harness may take was possible (no writes allowed, no configuration operations)")
    doers = {doer for doer, _, _ in actions}
    for doer, mark, patterns in actions:
        records = trail.find(mark, doer, *patterns)
        assert records, f"no audit record of {doer}'s action names {doer} ({trail.where})"
        others = [o for o in doers - {doer} if any(re.search(rf"\b{re.escape(o)}\b", r.text) for r in records)]
        assert not others, f"the record of {doer}'s action also names {', '.join(others)}"
    evidence.add("check", f"{len(actions)} actions by {', '.join(sorted(doers))}, each attributed to its doer")


@pytest.mark.judges("CR 2.12 RE(1)")
def test_non_repudiation_for_all_users(target):
    manual("non-repudiation for software processes and devices, and of the records themselves, is a design "
           "matter", [
               "Confirm actions by software processes and devices (e.g. Modbus or CAN writes, engineering-tool "
               "downloads) are attributed to an identified process or device in the audit records.",
               "Confirm the records are protected so that a user cannot deny an action (digital signatures, "
               "write-once storage, forwarding to a protected collector).",
               "Confirm no user, administrators included, can alter or delete records of their own actions."])
