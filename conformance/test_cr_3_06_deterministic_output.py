"""CR 3.6 Deterministic output (SL 1-4).

Judges CR 3.6 over modbus_tcp: the outputs must go to a predetermined state when normal operation cannot be
kept, here when the master falls silent. With `safety.allow_writes`, every coil of the first writable coil
range is commanded on (at most MAX_COMMANDS), the harness falls silent on every interface, then reads the
outputs again; the commanded coils are put back as they were.
- With `safe_state` declared (`after_s`, and the outputs with their safe values): after `after_s` plus a
  margin, every declared output must hold its safe value: PASS or FAIL. When commanding moved none of them
  away from its safe value, the silence showed nothing and the row is MANUAL.
- Without `safe_state`: MANUAL, with the coils that moved on their own after OBSERVE_SILENCE_S in the
  evidence, for a human to compare with the vendor's documented safe state.
Not exercised: the outputs during a flood (CR 7.1 watches the essential function's output under storms),
restart, power loss and internal faults, and outputs wired to physical I/O (a hardware-in-the-loop I/O
monitor is needed): the checklist keeps them.
"""

from __future__ import annotations

import time

import pytest
from iec62443_harness.fixtures.outcomes import manual

OBSERVE_SILENCE_S = 3.0  # without a declared timeout: longer than common fieldbus watchdogs (1-2 s)
MARGIN_S = 1.0  # past the declared timeout: a few control scans and a busy host
SETTLE_S = 0.3  # a few control scans for the commands to reach the outputs
MAX_COMMANDS = 100
CHECKLIST = (
    "The vendor documents the state every output takes when communication with the master is lost, and after "
    "how long (declared in the target file as safe_state)",
    "The outputs observed after the silence (evidence) match that documented state",
    "The same holds when the device restarts, loses power, or detects an internal fault",
)


def _spans(addresses: list[int]) -> str:
    """[1, 2, 3, 7] -> '1-3, 7'."""
    spans: list[list[int]] = []
    for a in addresses:
        if spans and a == spans[-1][1] + 1:
            spans[-1][1] = a
        else:
            spans.append([a, a])
    return ", ".join(f"{lo}-{hi}" if hi > lo else f"{lo}" for lo, hi in spans) or "none"


def _declared(modbus, safe) -> dict[str, int]:  # type: ignore[no-untyped-def]
    """Every output the safe state names -> its current value, keyed 'coil N' / 'holding register N'."""
    values: dict[str, int] = {}
    for kind, ranges, read in (("coil", safe.coils, modbus.read_coils),
                               ("holding register", safe.holding_registers, modbus.read_holding_registers)):
        for lo, hi, _ in ranges:
            for offset, value in enumerate(read(lo, hi - lo + 1)):
                values[f"{kind} {lo + offset}"] = int(value)
    return values


def _after_silence(modbus, safe, hi: int, evidence) -> tuple[list[bool], dict[str, int]]:  # type: ignore[no-untyped-def]
    """The outputs after the silence, the coils in ONE request: that read is the master talking again, and a
    device may leave its safe state as soon as it hears it (what a later, rate-capped read would then see)."""
    top = max([hi, *(last for _, last, _ in safe.coils)]) if safe else hi
    if top >= 2000:  # beyond one request's reach: the declared ones apart, after the first read
        return modbus.read_coils(0, hi + 1), _declared(modbus, safe) if safe else {}
    coils = modbus.read_coils(0, top + 1)
    outputs = {f"coil {a}": int(coils[a]) for lo, last, _ in (safe.coils if safe else ()) for a in range(lo, last + 1)}
    if safe is not None and safe.holding_registers:
        evidence.add("check", "holding registers of the safe state read in a second request, after the device heard "
                              "the master again (the coils were read first, in one request)")
        for lo, last, _ in safe.holding_registers:
            for offset, value in enumerate(modbus.read_holding_registers(lo, last - lo + 1)):
                outputs[f"holding register {lo + offset}"] = int(value)
    return coils[:hi + 1], outputs


def _wanted(safe) -> dict[str, int]:  # type: ignore[no-untyped-def]
    return {f"{kind} {a}": value
            for kind, ranges in (("coil", safe.coils), ("holding register", safe.holding_registers))
            for lo, hi, value in ranges for a in range(lo, hi + 1)}


@pytest.mark.judges("CR 3.6", over=["modbus_tcp"])
def test_outputs_after_loss_of_communication(target, modbus, evidence):
    safety, safe = target.spec.safety, target.spec.safe_state
    if not (safety.allow_writes and safety.writable.coils):
        manual("no writable coils to command outputs with (safety.allow_writes, safety.writable.coils): "
               "nothing to observe", CHECKLIST)
    lo, hi = safety.writable.coils[0]
    hi = min(hi, lo + MAX_COMMANDS - 1, 1999)
    ef = target.spec.essential_function
    own = {ef.signal.address} if ef is not None and ef.signal.kind == "coil" else set()
    silence_s = safe.after_s + MARGIN_S if safe else OBSERVE_SILENCE_S

    before = modbus.read_coils(lo, hi - lo + 1)
    try:
        for address in range(lo, hi + 1):
            modbus.write_coil(address, True)
        time.sleep(SETTLE_S)
        commanded = modbus.read_coils(0, hi + 1)
        outputs = _declared(modbus, safe) if safe else {}
        modbus.close()  # the master falls silent: no request from the harness on any interface
        time.sleep(silence_s)
        after, outputs_after = _after_silence(modbus, safe, hi, evidence)
    finally:
        for address, value in zip(range(lo, hi + 1), before, strict=True):
            modbus.write_coil(address, value)
    moved = [a for a in range(hi + 1) if commanded[a] != after[a] and a not in own]
    went = {a: f"{int(commanded[a])}->{int(after[a])}" for a in moved}
    evidence.add("check", f"commanded coils {lo}-{hi} on; after {silence_s:g} s without a master, coils that "
                          f"moved on their own: {_spans(moved)}" + (f" ({went})" if went else ""))
    if safe is None:
        manual(f"no safe state declared (safe_state): after {silence_s:g} s without a master, coils "
               f"{_spans(moved)} changed on their own; compare with the vendor's documented safe state", CHECKLIST)
    wanted = _wanted(safe)
    away = [name for name, value in outputs.items() if value != wanted[name]]
    wrong = [f"{name} = {value} (safe: {wanted[name]})" for name, value in outputs_after.items()
             if value != wanted[name]]
    evidence.add("check", f"declared safe state after {safe.after_s:g} s: {len(wanted)} outputs; away from it while "
                          f"commanded: {', '.join(away) or 'none'}; after the silence, not at their safe value: "
                          f"{', '.join(wrong) or 'none'}")
    assert not wrong, (f"{len(wrong)} of {len(wanted)} declared outputs are not in their safe state "
                       f"{silence_s:g} s after the master fell silent: {', '.join(wrong)}")
    if not away:
        manual("every declared output already sat at its safe value while commanded, so the silence showed "
               "nothing: command them away from it (writable ranges) or check by hand", CHECKLIST)
