"""EDR/HDR/NDR 3.14 Integrity of the boot process (SL 1-4); RE(1) Authenticity of the boot process (SL 2-4).

Judges both rows where the target file declares `assurance.boot_integrity` and its lab actions (run only with
`safety.allow_config_changes`, asked first). 3.14: the `tamper` action changes bytes of a part the device boots
or runs (its boot image or application bundle), its signature or hash left as they were, and restarts the
device. RE(1): the `foreign_signature` action installs a changed part validly signed with a key other than the
supplier's, and restarts it. The essential function must run before; while the action holds, the harness
watches for `within_s` whether the essential function runs again (then the changed part ran: FAIL) and looks
for a record of the refusal matching `refusal` (audit_show or syslog). Not running, with the refusal recorded,
is a PASS; not running with no record cannot be told from a part that merely broke, and is manual. The action
is then undone and the essential function must run again (else ERROR, said loudly: the device is left changed).
Manual, with a checklist, without `assurance.boot_integrity` (or, for RE(1), without `foreign_signature`).
"""

from __future__ import annotations

import re
import time

import pytest
from iec62443_harness.evidence import Evidence
from iec62443_harness.fixtures.audit import AuditTrail
from iec62443_harness.fixtures.lab import lab_action, require
from iec62443_harness.fixtures.monitor import EssentialFunctionAbsent, describe, monitor_for
from iec62443_harness.fixtures.outcomes import inconclusive, manual
from iec62443_harness.fixtures.shell import ManagementShell

RETRY_S = 1.0  # between two looks at a device whose function does not answer yet
INTEGRITY = [
    "Find how the component verifies the integrity of its boot chain (boot loader, kernel or runtime, "
    "application bundle) before it runs each part (documentation: hashes, measured boot, secure boot).",
    "On a lab unit, change one byte of each boot stage and of the application bundle, restart: confirm the "
    "component refuses to run the changed part, and reports it (console, audit record, LED).",
    "Restore the original image and confirm the component starts normally again.",
]
AUTHENTICITY = [
    "Find the keys that sign each boot stage and where the verifying public key or its hash is anchored "
    "(fused, ROM, secure element).",
    "On a lab unit, install a boot image signed with another key (or unsigned) with a valid hash: confirm it "
    "is refused at restart.",
    "Confirm the anchor cannot be replaced without the supplier's authority (EDR/HDR/NDR 3.12).",
]


def _note(target, evidence) -> None:  # type: ignore[no-untyped-def]
    emulator = target.spec.emulator
    kind = f"; emulated by {emulator.kind} ({emulator.profile})" if emulator else ""
    evidence.add("check", f"firmware named by the target file: {target.spec.identity.firmware}{kind}")


def _runs(target, within_s: float) -> tuple[bool, str]:  # type: ignore[no-untyped-def]
    """Whether the essential function shows a transition within `within_s` (a device still starting is asked
    again): (it runs, what was seen)."""
    deadline = time.monotonic() + within_s
    while True:
        # scratch (the timeline is not needed); a transition of its own, none handed over from before
        monitor = monitor_for(target.registry, Evidence(head=0, tail=5), handover=False)
        started = time.monotonic()
        with monitor:
            try:
                monitor.wait_baseline(max(0.1, deadline - started), transitions=1)
                return True, f"the {describe(monitor.signal)} switched over {monitor.via}"
            except EssentialFunctionAbsent as exc:
                why = str(exc)
        if time.monotonic() + RETRY_S >= deadline:
            return False, why
        time.sleep(RETRY_S)


def _changed_part(target, evidence, action: str, what: str, checklist: list[str]) -> None:  # type: ignore[no-untyped-def]
    boot = target.spec.assurance.boot_integrity
    require(target, action)  # before the first byte
    shell = ManagementShell(target, target.driver("ssh", evidence)) if target.spec.interfaces.ssh else None
    readable = target.syslog is not None or (shell is not None and shell.has("audit_show"))
    trail = AuditTrail(target, shell, evidence) if shell is not None and readable else None
    ran, seen = _runs(target, boot.within_s)
    if not ran:
        inconclusive(f"the essential function does not run before the {what} ({seen}): nothing to compare with")
    refusal = re.compile(boot.refusal)
    mark = trail.mark() if trail else None
    since = time.time()
    with lab_action(target, action, evidence) as performed:
        ran, seen = _runs(target, boot.within_s)
        texts = [(r.channel, r.text) for r in trail.records(mark)] if trail else [
            ("syslog", m.raw) for m in target.syslog.messages(since)] if target.syslog else []
        found = [f"{channel}: {text}" for channel, text in texts if refusal.search(text)]
        alerts = [m.received - since for m in (target.syslog.messages(since) if target.syslog else [])
                  if refusal.search(m.raw)]
        evidence.add("check", f"after {action} (device answering again {performed.at - since:.1f} s after the "
                              f"action began): essential function {'RUNS' if ran else 'not seen'} within "
                              f"{boot.within_s:g} s ({seen})")
        for line in found[:4]:
            evidence.add("record", line)
        first = f"; the first reached syslog {min(alerts):.1f} s after the action began" if alerts else ""
        evidence.add("check", f"{len(found)} of {len(texts)} new records match the refusal {boot.refusal!r}{first}")
    back, after = _runs(target, boot.within_s)
    evidence.add("check", f"after {action} was undone: essential function {'runs' if back else 'NOT seen'} ({after})")
    if not back:
        inconclusive(f"the essential function does not run again after {action} was undone ({after}): the device "
                     "is left changed; restore it by hand")
    recorded = f" (yet {len(found)} records matched the refusal pattern)" if found else ", no refusal recorded"
    assert not ran, f"the {what} ran: after {action} {seen} within {boot.within_s:g} s{recorded}"
    if not found:
        where = trail.where if trail else "no channel (no syslog: section, no audit_show)"
        manual(f"the {what} did not run, but no record of a refusal matching {boot.refusal!r} reached {where}: a "
               "refusal cannot be told from a part that merely broke", checklist)


@pytest.mark.judges("EDR/HDR/NDR 3.14")
def test_boot_integrity(target, evidence):
    _note(target, evidence)
    boot = target.spec.assurance.boot_integrity
    if boot is None:
        manual("the target file declares no lab action that changes a boot part and restarts the device "
               "(assurance.boot_integrity): boot integrity is checked by hand", INTEGRITY)
    _changed_part(target, evidence, boot.tamper, "changed part (its signature or hash as before)", INTEGRITY)


@pytest.mark.judges("EDR/HDR/NDR 3.14 RE(1)")
def test_boot_authenticity(target, evidence):
    _note(target, evidence)
    boot = target.spec.assurance.boot_integrity
    if boot is None or boot.foreign_signature is None:
        manual("the target file declares no lab action that installs a part signed with another key "
               "(assurance.boot_integrity.foreign_signature): boot authenticity is checked by hand", AUTHENTICITY)
    _changed_part(target, evidence, boot.foreign_signature, "part signed with another key", AUTHENTICITY)
