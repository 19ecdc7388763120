"""CR 1.4 Identifier management (SL 1-4).

Judges CR 1.4 over ssh: identifiers are unique (creating an account under an existing user name is
refused and leaves the existing account as it was), and a removed identifier no longer logs in. Manual
with a checklist when the device declares no user_add/user_del commands.
"""

from __future__ import annotations

import secrets

import pytest

from fixtures.passwords import compliant
from harness.evidence import redact
from harness.outcomes import not_run


@pytest.mark.judges("CR 1.4", over=["ssh"])
def test_identifiers_are_unique(target, shell, ssh, evidence):
    shell.require("user_add", "user_del", checklist=[
        "Try to create an account with the name of an existing one; confirm it is refused.",
        "Confirm identifiers are tied to one user, group, role or device each (vendor documentation)."])
    admin = target.admin()
    victims = [c for c in target.accounts(purpose="password_test") or target.accounts(purpose="lockout_test")]
    if admin is None or not victims:
        not_run("the target file declares no admin account or no dedicated test account")
    victim = victims[0]
    impostor_pw = compliant(target.spec.policies.password)
    redact.add(impostor_pw)
    reply = shell.run(admin, "user_add", user=victim.username, role=victim.role, password=impostor_pw)
    impostor = ssh.try_login(victim.username, impostor_pw).outcome
    original = ssh.try_login(victim.username, victim.password).outcome
    evidence.add("check", f"add an account named {victim.username} again -> {reply.output.strip()[:100]!r}; "
                          f"login with the new password -> {impostor}; with the original -> {original}")
    assert impostor != "ACCEPTED", f"a second account named {victim.username} was created or took over the first"
    assert original == "ACCEPTED", f"creating a duplicate identifier broke the existing account {victim.username}"


@pytest.mark.judges("CR 1.4", over=["ssh"])
def test_removed_identifier_cannot_log_in(target, shell, ssh, evidence):
    shell.require("user_add", "user_del", checklist=["Remove an account; confirm it can no longer log in."])
    admin = target.admin()
    if admin is None:
        not_run("the target file declares no admin account")
    user, password = f"r{secrets.token_hex(3)}", compliant(target.spec.policies.password)
    redact.add(password)
    role = next(iter(target.spec.policies.roles), "viewer")
    shell.run(admin, "user_add", user=user, role=role, password=password)
    before = ssh.try_login(user, password).outcome
    shell.run(admin, "user_del", user=user)
    after = ssh.try_login(user, password).outcome
    evidence.add("check", f"temporary {user}: login before removal -> {before}; after -> {after}")
    assert before == "ACCEPTED", "the temporary account could not log in after creation"
    assert after != "ACCEPTED", "a removed identifier still logs in"
