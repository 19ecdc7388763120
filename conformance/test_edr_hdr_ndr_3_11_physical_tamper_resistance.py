"""EDR/HDR/NDR 3.11 Physical tamper resistance and detection (SL 2-4); RE(1) Notification of a tampering attempt
(SL 3-4).

Judges EDR/HDR/NDR 3.11 as manual: resistance to physical tampering (enclosure, seals, potting) is seen by a
human, with a checklist.
Judges RE(1) where the target file declares `assurance.tamper` and its lab action (`trip`; run only with
`safety.allow_config_changes`, asked first): the harness notes the tamper switch (`signal`: a discrete input
or coil over Modbus, when declared; it must not read tripped before), performs the action and, within
`within_s`, looks for the notification: a new audit record (`audit_show`) or syslog message matching
`notification`, and the switch reading tripped. Both must be seen (the notification alone when no switch is
declared); the action is then undone and the switch must read closed again (else ERROR, said loudly).
Manual without `assurance.tamper` (checklist).
"""

from __future__ import annotations

import re
import time

import pytest
from iec62443_harness.fixtures.audit import AuditTrail
from iec62443_harness.fixtures.lab import lab_action, require
from iec62443_harness.fixtures.outcomes import inconclusive, manual
from iec62443_harness.fixtures.shell import ManagementShell

POLL_S = 0.1
NOTIFY_CHECKLIST = [
    "Find how the component detects a tampering attempt (enclosure switch, light sensor, seal, mesh) and how it "
    "notifies (audit record, syslog alert, alarm output, management tool).",
    "On a lab unit, open the enclosure (or trip each sensor): confirm a notification reaches the responsible "
    "personnel promptly and is recorded in the audit log with a timestamp.",
    "Close it again: confirm the component records that too, and that the notification cannot be suppressed "
    "without an authorised role.",
]


@pytest.mark.judges("EDR/HDR/NDR 3.11")
def test_physical_tamper_resistance(target):
    manual("physical tamper resistance is a property of the enclosure and its assembly", [
        "Inspect the enclosure: screws, seals or tamper-evident labels that show an opening; no debug header, "
        "memory or bus reachable without leaving a trace.",
        "Confirm the tamper-resistance and detection mechanisms the vendor documents are present on the unit.",
        "Confirm sensitive data (keys, credentials) is protected against extraction by physical means (secure "
        "element, encrypted storage, zeroisation on tamper), per the documentation.",
    ])


def _switch(target, evidence) -> bool | None:  # type: ignore[no-untyped-def]
    """Whether the declared tamper switch reads tripped now; None when none is declared."""
    signal = target.spec.assurance.tamper.signal
    if signal is None:
        return None
    with target.driver(signal.interface, evidence) as modbus:
        read = modbus.read_discrete_inputs if signal.table == "discrete_inputs" else modbus.read_coils
        value = read(signal.address, 1)[0]
    return int(value) == signal.tripped


@pytest.mark.judges("EDR/HDR/NDR 3.11 RE(1)")
def test_tampering_attempt_is_notified(target, evidence):
    tamper = target.spec.assurance.tamper
    if tamper is None:
        manual("the target file declares no tamper signal or lab action to trip it (assurance.tamper)",
               NOTIFY_CHECKLIST)
    require(target, tamper.trip)  # before the first byte
    shell = ManagementShell(target, target.driver("ssh", evidence)) if target.spec.interfaces.ssh else None
    trail = AuditTrail(target, shell, evidence) if shell else None
    if trail is None and target.syslog is None:
        manual("no audit_show and no syslog: section: a notification could not be seen", NOTIFY_CHECKLIST)
    where = f"{signal.table} {signal.address}" if (signal := tamper.signal) else ""
    if _switch(target, evidence):
        inconclusive(f"the tamper switch ({where}) reads tripped before the enclosure was opened: close it first")
    mark = trail.mark() if trail else None
    since = time.time()
    notification = re.compile(tamper.notification)
    found, tripped = [], None
    with lab_action(target, tamper.trip, evidence) as performed:
        started = performed.at
        deadline = time.monotonic() + max(0.0, started + tamper.within_s - time.time())
        while True:
            texts = [f"{r.channel}: {r.text}" for r in trail.records(mark)] if trail else [
                f"syslog: {m.raw}" for m in target.syslog.messages(since)]
            found = [t for t in texts if notification.search(t)]
            tripped = _switch(target, evidence) if tripped is not True else True
            if (found and tripped is not False) or time.monotonic() >= deadline:
                break
            time.sleep(POLL_S)
        seen_s = time.time() - started
    for text in found[:4]:
        evidence.add("tamper", text)
    alerts = [m.received - started for m in (target.syslog.messages(since) if target.syslog else [])
              if notification.search(m.raw)]
    switch = f", switch {where} {'tripped' if tripped else 'NOT tripped'}" if tripped is not None else ""
    first = f"; first syslog alert {max(0.0, min(alerts)) * 1000:.1f} ms after the action" if alerts else ""
    evidence.add("check", f"after {tamper.trip}: {len(found)} notifications{switch} (looked for {seen_s:.2f} s){first}")
    if _switch(target, evidence):
        inconclusive(f"the tamper switch ({where}) still reads tripped after {tamper.trip} was undone: the "
                     "device is left open; close it by hand")
    assert tripped is not False, f"the tamper switch ({where}) did not read tripped within {tamper.within_s:g} s"
    assert found, (f"no audit record or syslog message matching {tamper.notification!r} within {tamper.within_s:g} s "
                   "of the tampering")
