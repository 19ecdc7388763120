"""CR 7.4 Control system recovery and reconstitution (SL 1-4).

Judges CR 7.4 through the operations the target file declares (`lifecycle.backup`, `lifecycle.settings`,
`lifecycle.probe`, `user_add`/`user_del`), only with `safety.allow_lifecycle` and `safety.allow_config_changes`:
the settings report is read and a backup made; then a setting is changed (the probe) and a temporary account
added; the backup restored, the device must report the same settings as before (`settings.volatile` apart), the
temporary account must no longer log in, and the administrator must (the known secure state and its earlier
settings). The probe and the account are undone whatever happens, and the backup removed.
Manual: recovery from a failure the harness cannot cause (a corrupted flash, a replaced module).
"""

from __future__ import annotations

import secrets

import pytest
from iec62443_harness.fixtures.lifecycle import differences, lookup, same, show
from iec62443_harness.fixtures.login import accepted
from iec62443_harness.fixtures.outcomes import inconclusive, not_run
from iec62443_harness.fixtures.roles import least_privileged_role, strong_password


def _account_back(lifecycle, shell, user: str) -> str:  # type: ignore[no-untyped-def]
    return shell.run(lifecycle.actor(), "user_del", user=user).output.strip()[:80]


def _probe_back(lifecycle, value) -> str:  # type: ignore[no-untyped-def]
    now, _ = lifecycle.settings()
    found = lookup(now, lifecycle.spec.probe.key)
    if found is None or same(found[1], value):
        return "as before"
    return lifecycle.set_probe(show(value))


@pytest.mark.judges("CR 7.4", over=["ssh"])
def test_restore_brings_back_the_settings(target, lifecycle, shell, ssh, evidence):
    backup, settings = lifecycle.need("backup", "settings")
    probe = lifecycle.spec.probe
    if probe is None:
        not_run("the target file names no setting the harness may change to see a restore undo it (lifecycle.probe)")
    lifecycle.allow()
    target.guard("ssh").require("config_changes")
    before, form = lifecycle.settings()
    found = lookup(before, probe.key)
    if found is None:
        inconclusive(f"the settings report ({form}) shows no {probe.key!r} (lifecycle.probe.key)")
    key, original = found
    path, answer = lifecycle.create_backup()
    assert path is not None, f"the backup operation {backup.create} names no backup: {answer!r}"
    evidence.add("check", f"{len(before)} settings reported by {form}; {key} = {show(original)!r}; backup {path}")
    lifecycle.on_restore(f"{probe.key} back to {show(original)!r}", lambda: _probe_back(lifecycle, original))
    evidence.add("check", f"{probe.key} set to {probe.value!r}: {lifecycle.set_probe(probe.value)!r}")
    user, password = None, None
    if shell.has("user_add", "user_del"):
        user, password = f"h7r{secrets.token_hex(3)}", strong_password(target)
        lifecycle.on_restore(f"temporary account {user} removed", lambda: _account_back(lifecycle, shell, user))
        added = shell.run(lifecycle.actor(), "user_add", user=user, role=least_privileged_role(target),
                          password=password)
        evidence.add("check", f"temporary account {user} added: {added.output.strip()[:80]!r}")
        if not accepted(ssh.try_login(user, password)):
            inconclusive(f"the temporary account {user} does not log in after it was added: a restore removing it "
                         "would show nothing")
    else:
        evidence.add("check", "no user_add/user_del declared: accounts are not checked")
    changed, _ = lifecycle.settings()
    if not same(changed.get(key), probe.value):
        inconclusive(f"the device does not report {key} = {probe.value!r} after the change "
                     f"({show(changed.get(key))!r}): a restore undoing it would show nothing")
    restored, said = lifecycle.restore_backup(path)
    evidence.add("check", f"restore of {path}: {'restored' if restored else 'REFUSED'}: {said!r}")
    assert restored, f"the device refuses to restore its own backup {path} ({said!r})"
    after, _ = lifecycle.wait_settings(backup_wait(lifecycle))
    diffs = differences(before, after, settings.volatile)
    evidence.add("check", f"settings after the restore: {len(after)} reported, differences from before: "
                          f"{'; '.join(diffs) or 'none'}")
    lingering = user is not None and accepted(ssh.try_login(user, password))
    evidence.add("check", f"temporary account {user} after the restore: {'STILL LOGS IN' if lingering else 'gone'}"
                 if user else "no temporary account")
    assert not diffs, f"after restoring {path} the device's settings differ from before: {'; '.join(diffs)}"
    assert not lingering, f"after restoring {path} the account {user} added after the backup still logs in"


def backup_wait(lifecycle) -> float:  # type: ignore[no-untyped-def]
    """How long a restore may keep the device away: the purge's or the update's bound, else 30 s."""
    spec = lifecycle.spec
    return spec.purge.wait_s if spec.purge else spec.update.restart_wait_s if spec.update else 30.0

