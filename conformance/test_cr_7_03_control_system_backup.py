"""CR 7.3 Control system backup (SL 1-4); RE(1) Backup integrity verification (SL 2-4).

Judges, through the backup operations the target file declares (`lifecycle.backup`), only with
`safety.allow_lifecycle`:
- CR 7.3: the backup operation writes a backup (its answer names it, and it can be read back where the transfer
  allows) while the essential function keeps running (watched over its own channel, before and after). Without a
  declared essential function the row is manual: the backup was made, but whether the device kept doing its job
  could not be seen.
- RE(1): the backup read back, with one letter or digit changed for another of its kind (knowing nothing of the
  format: first the last one, in most formats the integrity value; then one in the middle, the content), put
  back beside it and restored, is refused; the intact backup then restores. Needs a transfer that reads files
  back (`lifecycle.transfer`), else not-run.
Every backup and file the test leaves is removed; a modified backup the device took is undone by restoring the
intact one, or the test says loudly that it could not.
"""

from __future__ import annotations

import posixpath

import pytest
from iec62443_harness.fixtures.lifecycle import changed_character
from iec62443_harness.fixtures.outcomes import inconclusive, manual, not_run


@pytest.mark.judges("CR 7.3")
def test_backup_keeps_the_function_running(target, lifecycle, evidence):
    backup = lifecycle.need("backup")
    lifecycle.allow()
    with lifecycle.watching() as watched:
        path, answer = lifecycle.create_backup()
        data = lifecycle.get(path) if path is not None and lifecycle.can_get() else None
    evidence.add("check", f"{backup.create}: {answer!r}; backup {path or 'not named'}"
                          f"{f', {len(data)} bytes read back' if data is not None else ''}")
    evidence.add("check", f"essential function during the backup: {watched.summary}")
    assert path is not None, f"the backup operation {backup.create} names no backup: {answer!r}"
    if lifecycle.can_get():
        assert data, f"the backup {path} the device names cannot be read back, or is empty"
    assert watched.ok, f"the essential function was lost while the backup was made: {watched.summary}"
    if not watched.declared:
        manual("the backup was made, but the target file declares no essential function, so whether the device "
               "kept doing its job meanwhile could not be seen", [
                   "Declare the essential function (essential_function) and rerun, or",
                   "watch the process outputs by hand while a backup is made."])


@pytest.mark.judges("CR 7.3 RE(1)")
def test_modified_backup_is_refused(target, lifecycle, evidence):
    lifecycle.need("backup")
    if not lifecycle.can_get():
        not_run("lifecycle.transfer declares no way to read a backup back (a get command), so none can be modified")
    lifecycle.allow()
    path, answer = lifecycle.create_backup()
    if path is None:
        inconclusive(f"the backup operation names no backup ({answer!r}), so none can be modified")
    data = lifecycle.get(path)
    if not data:
        inconclusive(f"the backup {path} the device names cannot be read back")
    state = {"intact": True}  # the device holds what the intact backup holds

    def back_to_intact() -> str:
        if state["intact"]:
            return "nothing to undo"
        restored, said = lifecycle.restore_backup(path)
        if not restored:
            inconclusive(f"the intact backup {path} is refused: {said!r}")
        return f"intact backup restored: {said!r}"

    lifecycle.on_restore(f"the state of backup {path}", back_to_intact)
    folder, suffix = posixpath.dirname(path), posixpath.splitext(path)[1]
    taken = []
    for where, what in (("end", "its last letter or digit"), ("middle", "a letter or digit in the middle")):
        modified, at = changed_character(data, where)
        copy = lifecycle.put(modified, folder, lifecycle.name_for(f"modified-{where}", suffix))
        restored, said = lifecycle.restore_backup(copy)
        evidence.add("check", f"backup {path} with {what} changed (offset {at}: {data[at:at + 1]!r} -> "
                              f"{modified[at:at + 1]!r}) as {copy}: {'RESTORED' if restored else 'refused'}: {said!r}")
        lifecycle.remove(copy)
        if restored:
            state["intact"] = False
            taken.append(f"{copy} ({what} changed): {said!r}")
            break  # one is enough; the intact backup puts the device back
    restored, said = lifecycle.restore_backup(path)
    evidence.add("check", f"the intact backup {path}: {'restored' if restored else 'REFUSED'}: {said!r}")
    state["intact"] = state["intact"] or restored
    assert not taken, f"the device restores a modified backup: {'; '.join(taken)}"
    assert restored, f"the device refuses its own intact backup {path} ({said!r})"
