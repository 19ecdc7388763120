"""CR 1.4 Identifier management (SL 1-4).

Judges CR 1.4 over ssh: identifiers are unique (creating an account under the name of an existing one, a
temporary account an administrator adds for the test, is refused and leaves that account as it was), and a
removed identifier no longer logs in. No account the target file declares is ever re-added or removed.
Manual with a checklist when the device declares no user_add/user_del commands.
"""

from __future__ import annotations

import secrets

import pytest
from iec62443_harness.evidence import redact
from iec62443_harness.fixtures.login import accepted
from iec62443_harness.fixtures.outcomes import inconclusive, not_run
from iec62443_harness.fixtures.passwords import compliant
from iec62443_harness.fixtures.roles import temporary_user


@pytest.mark.judges("CR 1.4", over=["ssh"])
def test_identifiers_are_unique(target, shell, ssh, evidence):
    shell.require("user_add", "user_del", checklist=[
        "Try to create an account with the name of an existing one; confirm it is refused.",
        "Confirm identifiers are tied to one user, group, role or device each (vendor documentation)."])
    admin = target.admin()
    if admin is None:
        not_run("the target file declares no admin account")
    with temporary_user(target, shell, evidence) as existing:
        if not accepted(ssh.try_login(existing.username, existing.password)):
            inconclusive(f"the temporary account {existing.username} the administrator added does not log "
                               "in, so a duplicate could not be told from it; check user_add in shell.commands")
        impostor_pw = compliant(target.spec.policies.password)
        redact.add(impostor_pw)
        reply = shell.run(admin, "user_add", user=existing.username, role=existing.role, password=impostor_pw)
        impostor = accepted(ssh.try_login(existing.username, impostor_pw))
        original = accepted(ssh.try_login(existing.username, existing.password))
    evidence.add("check", f"add an account named {existing.username} again -> {reply.output.strip()[:100]!r}; "
                          f"login with the new password accepted: {impostor}; with the original: {original}")
    assert not impostor, f"a second account named {existing.username} was created or took over the first"
    assert original, f"creating a duplicate identifier broke the existing account {existing.username}"


@pytest.mark.judges("CR 1.4", over=["ssh"])
def test_removed_identifier_cannot_log_in(target, shell, ssh, evidence):
    shell.require("user_add", "user_del", checklist=["Remove an account; confirm it can no longer log in."])
    admin = target.admin()
    if admin is None:
        not_run("the target file declares no admin account")
    user, password = f"r{secrets.token_hex(3)}", compliant(target.spec.policies.password)
    redact.add(password)
    role = next(iter(target.spec.policies.roles), "viewer")
    added = shell.run(admin, "user_add", user=user, role=role, password=password)
    try:
        before = accepted(ssh.try_login(user, password))
    finally:
        shell.run(admin, "user_del", user=user)
    if not before:  # CR 1.3 judges creation; without a working account removal shows nothing
        inconclusive(f"the temporary account {user} does not log in after the administrator added it "
                           f"({added.output.strip()[:80]!r}); check user_add in shell.commands")
    after = accepted(ssh.try_login(user, password))
    evidence.add("check", f"temporary {user}: logs in before removal; login accepted after removal: {after}")
    assert not after, "a removed identifier still logs in"
