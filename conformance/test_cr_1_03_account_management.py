"""CR 1.3 Account management (SL 1-4).

Judges CR 1.3 over ssh, through the management commands the target file declares (`user_add`,
`user_disable`, `user_enable`, `user_del`): an administrator creates an account that can then log in,
disables it (login refused), enables it (login works again) and removes it (login refused). Manual with a
checklist when the device has no such commands declared. The temporary account is removed whatever happens.
"""

from __future__ import annotations

import secrets

import pytest
from iec62443_harness.evidence import redact
from iec62443_harness.fixtures.login import accepted
from iec62443_harness.fixtures.outcomes import not_run
from iec62443_harness.fixtures.passwords import compliant


@pytest.mark.judges("CR 1.3", over=["ssh"])
def test_account_life_cycle(target, shell, ssh, evidence):
    shell.require("user_add", "user_disable", "user_enable", "user_del", checklist=[
        "As an administrator, create an account; log in with it.",
        "Disable it; confirm login is refused on every interface.",
        "Enable it again; confirm login works.",
        "Remove it; confirm login is refused and the account no longer appears."])
    admin = target.admin()
    if admin is None:
        not_run("the target file declares no admin account")
    role = next(iter(target.spec.policies.roles), "viewer")
    user, password = f"h{secrets.token_hex(3)}", compliant(target.spec.policies.password)
    redact.add(password)

    def logs_in() -> bool:
        return accepted(ssh.try_login(user, password))  # no answer at all raises: it shows neither state

    added = shell.run(admin, "user_add", user=user, role=role, password=password)
    try:
        assert not added.denied, f"the administrator may not add accounts: {added.output.strip()[:120]}"
        steps = {"added": logs_in()}
        shell.run(admin, "user_disable", user=user)
        steps["disabled"] = logs_in()
        shell.run(admin, "user_enable", user=user)
        steps["enabled"] = logs_in()
    finally:
        removed = shell.run(admin, "user_del", user=user)
    steps["removed"] = logs_in()
    evidence.add("check", f"temporary account {user} logs in after each step: {steps}; removal said "
                          f"{removed.output.strip()[:80]!r}")
    assert steps == {"added": True, "disabled": False, "enabled": True, "removed": False}, (
        f"account management does not take effect as expected: {steps}")
