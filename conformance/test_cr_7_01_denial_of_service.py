"""CR 7.1 Denial of service protection (SL 1-4) and CR 7.1 RE(1) Manage communication load (SL 2-4).

Judges CR 7.1 over modbus_tcp, modbus_rtu, can, console and ssh: rate-ramped storms on loopback (Modbus
request floods and TCP connection storms, serial request floods, CAN bus load, console input floods, SSH
connection storms), each rate held for `safety.storms.step_s` (default: three periods of the essential
function's signal, at least 2 s), from a low rate up to the interface's cap (`safety.rates` /
`max_rate_per_s`; for serial lines and CAN, at most what the line or bus carries at its declared baud or bit
rate), only with `safety.allow_floods`. The essential function is watched over another channel
throughout and must survive every step (the device may drop what it cannot serve: a degraded mode); the
storm stops at once when it is lost. The device must answer again after the storms. The evidence gives, per
storm, each rate achieved and the share answered, and the highest rate held with the function intact.
Judges CR 7.1 RE(1) over modbus_tcp and ssh: during a storm at the cap, a legitimate client polling on its
own connection must still be answered (at least MIN_ANSWERED of its polls within `timeouts.reply_s`).
Every storm starts only once the device answers on the interface and its function is seen running (else
ERROR: a device already down cannot be judged). Without a declared essential function the row is MANUAL:
the storms ran and the device's answers were seen, but whether it kept doing its job could not be.
Not exercised: storms below the application layer (Ethernet, ARP, IP, ICMP, UDP): a network load tester on
a real link is needed for those.
"""

from __future__ import annotations

import time
from contextlib import nullcontext

import pytest
from iec62443_harness.fixtures.drivers.errors import DriverError
from iec62443_harness.fixtures.floods import POLL_S, STORMS, BackgroundStorm, ramp, step_seconds, storm, top_rate
from iec62443_harness.fixtures.fuzz.watch import Watch, ready_for_attack
from iec62443_harness.fixtures.links.modbus import PROBE_PDU
from iec62443_harness.fixtures.outcomes import manual
from iec62443_harness.fixtures.safety import HarmHalted

MIN_ANSWERED = 0.5


@pytest.mark.judges("CR 7.1", over=list(STORMS))
def test_essential_function_survives_storms(target, interface, evidence):
    spec = target.spec
    guard = target.guard(interface)  # this test's: a halt stops this storm, not the rest of the run
    guard.require("floods")
    target.require(interface)
    held: dict[str, float] = {}
    lost: str | None = None
    watch = Watch(target.registry, interface, evidence, [guard]) if spec.essential_function is not None else None
    step_s, held_for = step_seconds(spec)
    evidence.add("check", held_for)
    with watch if watch is not None else nullcontext():
        ready_for_attack(target, interface, watch, evidence)
        for kind, first in STORMS[interface]:
            for rate in ramp(first, top_rate(spec, interface, kind), spec.safety.storms.ramp_factor):
                try:
                    step = storm(target.registry, interface, kind, guard, rate, step_s)
                except HarmHalted as halted:
                    lost = f"{kind} at {rate:.0f}/s: {halted}"
                    break
                evidence.add("storm", step.line())
                if watch is not None and watch.lost:
                    lost = f"{kind} at {rate:.0f}/s: {watch.lost}"
                    break
                held[kind] = rate
            if lost:
                break
        if watch is not None and lost is None and not watch.survives(time.monotonic()):
            lost = f"after the storms: {watch.lost or 'no transition'}"
    summary = ", ".join(f"{kind} up to {rate:.0f}/s, {step_s:g} s a rate" for kind, rate in held.items()) or "no rate"
    evidence.add("check", f"held{' with the essential function intact' if watch else ''}: {summary}")
    assert lost is None, f"essential function lost under a storm on {interface} ({lost}); held before: {summary}"
    channel = target.channel(interface, guard=target.registry.guard(interface))
    try:
        answers = channel.answering()
    finally:
        channel.close()
    assert answers, f"the device does not answer on {interface} after the storms"
    if watch is None:
        manual(f"storms on {interface} ran ({summary}) and the device answered afterwards, but the target file "
               "declares no essential_function, so whether it kept doing its job could not be observed", [
                   "Declare the essential function (essential_function) and rerun, or",
                   f"watch the process outputs by hand while the {interface} storms of the evidence run again"])


class _Poller:
    """A legitimate client on a connection of its own, polling through the registry: one read (Modbus) or
    one SSH identification (ssh) per poll."""

    def __init__(self, target, interface: str) -> None:  # type: ignore[no-untyped-def]
        self.interface = interface
        self.driver = target.registry.driver(interface)

    def __call__(self) -> bool:
        try:
            if self.interface == "modbus_tcp":
                return self.driver.send_pdu(PROBE_PDU, record=False).kind in ("reply", "exception")
            self.driver.identification()
            return True
        except DriverError:  # not served: the answer sought; a harness bug would raise anything else
            return False

    def close(self) -> None:
        if self.interface == "modbus_tcp":
            self.driver.close()


@pytest.mark.judges("CR 7.1 RE(1)", over=["modbus_tcp", "ssh"])
def test_keeps_communicating_under_load(target, interface, evidence):
    spec = target.spec
    storm_guard = target.guard(interface)
    storm_guard.require("floods")
    target.require(interface)
    watch = Watch(target.registry, interface, evidence) if spec.essential_function is not None else None
    with watch if watch is not None else nullcontext():  # the device must be well before it is loaded
        ready_for_attack(target, interface, watch, evidence)
    kind, _ = STORMS[interface][0]
    rate = top_rate(spec, interface, kind)
    step_s, held_for = step_seconds(spec)
    polls: list[bool] = []
    poll = _Poller(target, interface)
    try:
        with BackgroundStorm(target.registry, interface, kind, storm_guard, rate, step_s) as background:
            time.sleep(0.1)  # let the storm build up
            end = time.monotonic() + step_s
            while time.monotonic() < end:
                asked = time.monotonic()
                polls.append(poll())
                time.sleep(max(0.0, POLL_S - (time.monotonic() - asked)))
    finally:
        poll.close()
    steps = background.steps
    answered = sum(polls) / len(polls) if polls else 0.0
    for step in steps:
        evidence.add("storm", step.line())
    evidence.add("check", f"legitimate polls answered during the {kind} storm at {rate:.0f}/s for {step_s:g} s "
                          f"({held_for}; the polls share the interface's cap): {sum(polls)}/{len(polls)}")
    assert answered >= MIN_ANSWERED, (f"under a {kind} storm at {rate:.0f}/s on {interface} only {answered:.0%} of a "
                                      f"legitimate client's polls were answered (at least {MIN_ANSWERED:.0%} needed)")
