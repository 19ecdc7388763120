"""CR 4.2 Information persistence (SL 2-4); RE(1) Erase of shared memory resources (SL 3-4); RE(2) Erase
verification (SL 3-4).

Judges CR 4.2 over ssh through the operations the target file declares (`lifecycle.purge`, `lifecycle.backup`,
`lifecycle.settings`, `lifecycle.probe`, `user_add`), only with `safety.allow_lifecycle` and
`safety.allow_config_changes`: the harness creates information on the device (an account that logs in, a changed
setting, a backup, a file in the update folder, the audit records of all that), runs the declared purge, and
checks through the interfaces that each is gone: the account no longer logs in, the setting is no longer the
harness's value, the backup and the file cannot be read, `audit_show` no longer shows the account.
Keys are not checked (nothing generic adds one). Before the purge a backup is read back to the harness; after
it, the backup is put back and restored, so the device returns to its state before the test (the purged audit
log apart), or the test says loudly that it could not. Needs a transfer that reads files back, else not-run.
Manual: RE(1) and RE(2), memory inside the device.
"""

from __future__ import annotations

import posixpath
import re
import secrets

import pytest
from iec62443_harness.fixtures.lifecycle import NotRestored, lookup, same, show
from iec62443_harness.fixtures.login import accepted
from iec62443_harness.fixtures.outcomes import inconclusive, manual, not_run
from iec62443_harness.fixtures.roles import allowed_account, least_privileged_role, strong_password


def _put_back(lifecycle, copy: bytes, path: str) -> str:  # type: ignore[no-untyped-def]
    """The backup taken before the test, put back on the device and restored."""
    again = lifecycle.put(copy, posixpath.dirname(path), lifecycle.name_for("restore", posixpath.splitext(path)[1]))
    restored, said = lifecycle.restore_backup(again)
    lifecycle.remove(again)
    if not restored:
        raise NotRestored(f"the backup taken before the purge is refused: {said!r}")
    return f"the backup taken before the test restored: {said!r}"


def _audit_lines(target, shell) -> list[str] | None:  # type: ignore[no-untyped-def]
    reader = allowed_account(target, "audit_show") if shell.has("audit_show") else None
    if reader is None:
        return None
    return shell.run(reader, "audit_show", count=500).output.splitlines()


@pytest.mark.judges("CR 4.2", over=["ssh"])
def test_purge_leaves_nothing_of_the_run(target, lifecycle, shell, ssh, evidence):
    purge, backup, _ = lifecycle.need("purge", "backup", "settings")
    if not lifecycle.can_get():
        not_run("lifecycle.transfer declares no way to read a backup back (a get command), so the device could not "
                "be restored after the purge: nothing is purged")
    if not shell.has("user_add", "user_del"):
        not_run("the target file declares no user_add and user_del operations to create an account to purge")
    lifecycle.allow()
    target.guard("ssh").require("config_changes")
    path, answer = lifecycle.create_backup()
    if path is None:
        inconclusive(f"the backup operation names no backup ({answer!r}): the device could not be restored after "
                     "a purge, so nothing is purged")
    copy = lifecycle.get(path)
    if not copy:
        inconclusive(f"the backup {path} cannot be read back: the device could not be restored after a purge")
    # what the run creates
    admin = lifecycle.actor()
    user, password = f"h42p{secrets.token_hex(3)}", strong_password(target)
    lifecycle.on_restore(f"account {user} removed",
                         lambda: shell.run(admin, "user_del", user=user).output.strip()[:80])
    shell.run(admin, "user_add", user=user, role=least_privileged_role(target), password=password)
    if not accepted(ssh.try_login(user, password)):
        inconclusive(f"the account {user} does not log in after it was added: its purge would show nothing")
    created = {f"account {user}": "logs in"}
    probe = lifecycle.spec.probe
    if probe is not None:
        lifecycle.set_probe(probe.value)
        created[f"setting {probe.key}"] = repr(probe.value)
    created[f"backup {path}"] = "readable"
    data = None
    if lifecycle.spec.update is not None:
        data = lifecycle.put(b"information created by the harness\n", lifecycle.spec.update.directory,
                             lifecycle.name_for("data", ".txt"))
        created[f"file {data}"] = "readable"
    before_purge = _audit_lines(target, shell)
    if before_purge is not None:
        created["audit records naming the account"] = str(sum(user in ln for ln in before_purge))
    evidence.add("check", "created before the purge: " + "; ".join(f"{k} ({v})" for k, v in created.items()))
    lifecycle.on_restore("the state before the test", lambda: _put_back(lifecycle, copy, path))
    reply = lifecycle.run(purge.operation, ends_session=True)
    evidence.add("check", f"{purge.operation}: {reply.line!r}")
    if reply.output and not re.search(purge.done, reply.output):
        inconclusive(f"the purge operation answered {reply.line!r}, not purge.done: whether it purged is unknown")
    settings, form = lifecycle.wait_settings(purge.wait_s)
    left = []
    after_purge = _audit_lines(target, shell)  # first: the login tried below is audited again
    if after_purge is not None and any(user in ln for ln in after_purge):
        left.append(f"the audit log still shows {sum(user in ln for ln in after_purge)} records naming {user}")
    if accepted(ssh.try_login(user, password)):
        left.append(f"account {user} still logs in")
    if probe is not None:
        found = lookup(settings, probe.key)
        if found is not None and same(found[1], probe.value):
            left.append(f"setting {found[0]} is still {show(found[1])!r}")
    if lifecycle.get(path) is not None:
        left.append(f"backup {path} is still readable")
    if data is not None and lifecycle.get(data) is not None:
        left.append(f"file {data} is still readable")
    evidence.add("check", f"after the purge ({form} readable again): {'; '.join(left) or 'none of it is left'}")
    assert not left, f"after {purge.operation} information created during the run is still there: {'; '.join(left)}"


@pytest.mark.judges("CR 4.2 RE(1)")
def test_shared_memory_is_erased(target, evidence):
    manual("memory a component shares between users or processes is inside it: nothing to observe from outside", [
        "List the memory resources the component shares between users, sessions or processes (vendor design "
        "documentation): buffers, caches, temporary files, swap.",
        "Confirm each is cleared before it is handed to another user or process (code review, vendor attestation).",
        "Where a debugger or memory dump is possible in the lab, confirm no earlier session's data is found in a "
        "newly allocated resource."])


@pytest.mark.judges("CR 4.2 RE(2)")
def test_erase_is_verified(target, evidence):
    manual("whether the component verifies its own erasure is a design matter", [
        "Confirm the component verifies that a purge or decommissioning erase succeeded (vendor documentation), "
        "and reports a failed erase.",
        "Run the purge in the lab and confirm the verification result is shown or logged.",
        "Read the storage of a purged component (lab forensics) and confirm no earlier information is recoverable."])
