"""The essential-function monitor: the pure judge table-driven, the sampler against scripted drivers, and
real sampling of a pymodbus 3.16 server whose coil toggles (and stalls, and dies) in a subprocess."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from typing import Any

import can
import pytest
from iec62443_harness.errors import HarnessError
from iec62443_harness.evidence import Evidence
from iec62443_harness.fixtures.drivers.errors import ConnectionLost, DeviceTimeout
from iec62443_harness.fixtures.monitor import (
    HANDOVER_MAX_S,
    EssentialFunctionAbsent,
    EssentialFunctionMonitor,
    Sighting,
    Sightings,
    judge,
    monitor_for,
)
from iec62443_harness.fixtures.registry import Registry
from iec62443_harness.fixtures.safety import Guard, HarmHalted
from iec62443_harness.target import (
    CanHeartbeat,
    CoilToggle,
    ConsoleLine,
    EssentialFunction,
    RegisterCounter,
    Safety,
    TargetSpec,
)

from tests.support import ModbusLab, Ticker, wait_for

COIL = CoilToggle(address=0, high_s=0.2, low_s=0.4)
COUNTER = RegisterCounter(address=1, period_s=0.1)
BEAT = CanHeartbeat(can_id=0x705, period_s=0.1)
LINE = ConsoleLine(pattern=r"tick \d+", period_s=0.1)


# --- the pure judge


def coil_run(phases: list[float], start: float = 0.1, first: bool = True) -> list[tuple[float, bool]]:
    """Transitions of a coil whose successive phases last `phases` seconds, the first transition at `start`."""
    out, t, value = [(start, first)], start, first
    for d in phases:
        t += d
        value = not value
        out.append((round(t, 9), value))
    return out


def cycles(n: int) -> list[float]:
    return [0.2, 0.4] * n


def periodic(n: int, period: float = 0.1, start: float = 0.05, value: Any = "00") -> list[tuple[float, Any]]:
    return [(round(start + i * period, 9), value) for i in range(n)]


def counter_samples(duration: float, period: float, sample: float, stall: tuple[float, float] | None = None,
                    rate: float = 1.0) -> list[tuple[float, int]]:
    """What a poller sampling every `sample` s sees of a counter: one transition per change."""
    out, last, t = [], None, 0.0
    while t <= duration:
        frozen = stall and stall[0] <= t < stall[1]
        if not frozen:
            lost = (stall[1] - stall[0]) if stall and t >= stall[1] else 0.0
            value = int((t - lost) * rate / period) & 0xFFFF
            if last is not None and value != last:
                out.append((round(t, 9), value))
            last = value
        t += sample
    return out


def judge_coil(transitions: list[tuple[float, Any]], end: float, **kw: Any):
    args = {"jitter_s": 0.05, "min_within_jitter": 0.95, "max_gap_s": 0.5} | kw
    return judge(COIL, transitions, (0.0, end), **args)


JUDGE_CASES = [
    # (name, signal, transitions, window end, overrides, ok, violation substring)
    ("coil perfect", COIL, coil_run(cycles(10)), 6.2, {}, True, None),
    ("coil jitter at the edge", COIL, coil_run([0.25, 0.35] * 10), 6.2, {}, True, None),
    ("coil just past the edge", COIL, coil_run([0.251, 0.349] * 10), 6.2, {}, False, "within ±0.050 s"),
    ("coil gap in the middle", COIL, coil_run([0.2, 0.4, 0.2, 0.9, 0.2, 0.4]), 2.5, {}, False, "gap: no transition"),
    ("coil stall at the end", COIL, coil_run(cycles(3)), 1.9 + 0.6, {}, False, "stall at the end"),
    ("coil end within max gap", COIL, coil_run(cycles(3)), 1.9 + 0.45, {}, True, None),
    ("coil late start", COIL, coil_run(cycles(2), start=0.7), 2.0, {}, False, "gap at the start"),
    ("coil never toggles", COIL, [], 3.0, {}, False, "no transition in the whole window"),
    ("coil missed toggle", COIL, [(0.1, True), (0.3, False), (0.7, True), (1.6, True)], 1.7,
     {"max_gap_s": 1.0}, False, "within"),
    ("resolution widens the tolerance", COIL, coil_run([0.26, 0.34] * 5), 3.2, {"resolution_s": 0.02}, True, None),
    ("counter sampled slower than it counts", RegisterCounter(address=0, period_s=0.01),
     counter_samples(3.0, 0.01, 0.05), 3.0, {"max_gap_s": 0.1, "resolution_s": 0.05}, True, None),
    ("counter steady", COUNTER, counter_samples(3.0, 0.1, 0.05), 3.0, {"resolution_s": 0.05}, True, None),
    ("counter stalls in the middle", COUNTER, counter_samples(3.0, 0.1, 0.05, stall=(1.0, 2.0)), 3.0,
     {"resolution_s": 0.05, "max_gap_s": 0.3}, False, "gap: no transition for 1.1"),
    ("counter stalls at the end", COUNTER, counter_samples(3.0, 0.1, 0.05, stall=(2.0, 9.0)), 3.0,
     {"resolution_s": 0.05, "max_gap_s": 0.3}, False, "stall at the end"),
    ("counter at half rate", COUNTER, counter_samples(3.0, 0.1, 0.05, rate=0.5), 3.0,
     {"resolution_s": 0.05, "max_gap_s": 0.3}, False, "within"),
    ("counter wraps at 16 bits", COUNTER, [(0.1 * i, (65533 + i) & 0xFFFF) for i in range(1, 8)], 0.8, {}, True, None),
    ("heartbeat perfect", BEAT, periodic(30), 3.0, {"max_gap_s": 0.15}, True, None),
    ("heartbeat gap", BEAT, periodic(10) + periodic(10, start=1.5), 2.5, {"max_gap_s": 0.15}, False, "gap"),
    ("console line perfect", LINE, periodic(30, value="tick 1"), 3.0, {"max_gap_s": 0.15}, True, None),
    ("console line stall at the end", LINE, periodic(10, value="tick 1"), 3.0, {"max_gap_s": 0.15}, False,
     "stall at the end"),
]


@pytest.mark.parametrize(("name", "signal", "transitions", "end", "kw", "ok", "violation"), JUDGE_CASES,
                         ids=[case[0] for case in JUDGE_CASES])
def test_judge(name: str, signal: Any, transitions: list, end: float, kw: dict, ok: bool,
               violation: str | None) -> None:
    args = {"jitter_s": 0.05, "min_within_jitter": 0.95, "max_gap_s": 0.5} | kw
    j = judge(signal, transitions, (0.0, end), **args)
    assert j.ok is ok, j.violations
    assert j.transitions == len(transitions)
    if violation is None:
        assert j.violations == []
    else:
        assert any(violation in v for v in j.violations), j.violations
    assert j.timeline[0].strip().startswith("+0.000 s  window opened")
    assert "window closed" in j.timeline[-1]


@pytest.mark.parametrize(("late", "ok", "fraction"), [(3, False, 0.94), (2, True, 0.96)])
def test_judge_95_percent_threshold(late: int, ok: bool, fraction: float) -> None:
    phases = cycles(25)  # 50 intervals
    for i in range(late):
        phases[10 * i] = 0.3  # a high phase 0.1 s too long

    j = judge_coil(coil_run(phases), end=sum(phases) + 0.2)
    assert j.within_jitter == pytest.approx(fraction)
    assert j.ok is ok
    assert sum("OUT OF JITTER" in line for line in j.timeline) == late


def test_judge_measures_the_longest_gap_including_edges() -> None:
    j = judge_coil(coil_run(cycles(2)), end=1.5)
    assert j.max_gap_s == pytest.approx(0.4)
    j = judge_coil(coil_run([0.2, 0.4]), end=2.0)
    assert j.max_gap_s == pytest.approx(2.0 - 0.7)


def test_judge_too_short_a_window_is_inconclusive_not_failed() -> None:
    j = judge_coil([(0.1, True)], end=0.3)
    assert j.ok and not j.conclusive and j.within_jitter == 1.0
    assert "too short to judge" in j.timeline[-1]
    assert not judge_coil([], end=0.3).violations
    assert judge_coil(coil_run([0.2]), end=0.4).conclusive  # one whole interval is enough to judge


def test_judge_counter_restart_is_out_of_jitter() -> None:
    seen = [(0.1 * i, 100 + i) for i in range(1, 21)] + [(2.2, 0), (2.3, 1)]
    j = judge(COUNTER, seen, (0.0, 2.4), jitter_s=0.05, min_within_jitter=0.95, max_gap_s=0.5)
    assert not j.ok and j.within_jitter > 0.95  # a restart fails even when the timing is otherwise fine
    assert any("went back from 120 to 0: the control task restarted" in v for v in j.violations)


def test_judge_timeline_is_compact_but_keeps_every_violation() -> None:
    phases = cycles(500)
    phases[500] = 0.9  # one long phase in the middle of 1000 intervals
    j = judge_coil(coil_run(phases), end=sum(phases) + 0.2, max_gap_s=1.0)
    assert len(j.timeline) < 20
    assert any("OUT OF JITTER" in line and "high 0.900" in line for line in j.timeline)
    assert any("transitions within jitter" in line for line in j.timeline)
    assert j.ok  # a single late phase in 1000 is within the 95 %


def test_judge_merges_events_into_the_timeline() -> None:
    j = judge_coil(coil_run(cycles(2)), end=1.5, events=[(0.5, "lost sample (1/6): timeout")])
    lines = [line.strip() for line in j.timeline]
    at = next(i for i, line in enumerate(lines) if "lost sample" in line)
    assert lines[at].startswith("+0.500 s  ! lost sample")
    assert lines[at - 1].startswith("+0.300 s") and lines[at + 1].startswith("+0.700 s")


# --- the sampler against scripted drivers (no network)


class Clock:
    """A device's signal as a function of time, with a stall switch and injected failures."""

    def __init__(self, high: float = 0.2, low: float = 0.4, period: float = 0.1) -> None:
        self.t0 = time.monotonic()
        self.high, self.low, self.period = high, low, period
        self.frozen: float | None = None
        self.failures: list[Exception] = []  # raised by the next reads, one each
        self.opened = 0

    def now(self) -> float:
        return (self.frozen or time.monotonic()) - self.t0

    def stall(self) -> None:
        self.frozen = time.monotonic()


class FakeModbus:
    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        clock.opened += 1

    def _fail(self) -> None:
        if self.clock.failures:
            raise self.clock.failures.pop(0)

    def read_coils(self, address: int, count: int) -> list[bool]:
        self._fail()
        return [self.clock.now() % (self.clock.high + self.clock.low) < self.clock.high]

    def read_holding_registers(self, address: int, count: int) -> list[int]:
        self._fail()
        return [int(self.clock.now() / self.clock.period) & 0xFFFF]

    def close(self) -> None:
        pass


class FakeCan:
    def __init__(self, clock: Clock) -> None:
        self.clock, self.n = clock, 0

    def recv(self, timeout: float, can_ids: Any = None, *, record: bool = True) -> can.Message | None:
        due = self.clock.t0 + (self.n + 1) * self.clock.period
        if self.clock.frozen or due - time.monotonic() > timeout:
            time.sleep(timeout)
            return None
        time.sleep(max(0.0, due - time.monotonic()))
        self.n += 1
        return can.Message(timestamp=time.time(), arbitration_id=0x705, data=[5], is_extended_id=False)

    def close(self) -> None:
        pass


class FakeConsole(FakeCan):
    """Prints "tick N" lines, each split across two reads, with noise lines between."""

    def read_for(self, seconds: float) -> bytes:
        msg = self.recv(seconds)
        return f"{self.n}\r\nboot noise\r\ntick ".encode() if msg else b""


def ef(signal: Any, max_gap_s: float = 0.5, jitter_s: float = 0.08, via: str = "modbus_tcp") -> EssentialFunction:
    return EssentialFunction(description="test function", via=[via], signal=signal, jitter_s=jitter_s,
                             max_gap_s=max_gap_s)


@pytest.mark.parametrize(("signal", "driver", "max_gap"), [
    (COIL, FakeModbus, 0.6), (COUNTER, FakeModbus, 0.5), (BEAT, FakeCan, 0.5), (LINE, FakeConsole, 0.5)],
    ids=["coil", "counter", "can_heartbeat", "console_line"])
def test_sampler_follows_each_signal_kind(signal: Any, driver: type, max_gap: float) -> None:
    clock, evidence = Clock(), Evidence()
    with EssentialFunctionMonitor(ef(signal, max_gap), lambda: driver(clock), evidence) as mon:
        mon.wait_baseline()
        time.sleep(0.8)
    mon.check()
    assert mon.result.ok and mon.result.conclusive
    assert mon.result.transitions >= 4
    assert any("essential function maintained" in line for line in evidence.lines())


def test_sampler_reconnects_after_a_lost_sample() -> None:
    clock = Clock()
    clock.failures = [ConnectionLost("modbus_tcp read_coils(0, 1): reset by the device")]
    with EssentialFunctionMonitor(ef(COIL), lambda: FakeModbus(clock), Evidence()) as mon:
        time.sleep(1.0)
    mon.check()
    assert clock.opened == 2
    text = "\n".join(mon.result.timeline)
    assert "lost sample (1/6): modbus_tcp read_coils(0, 1): reset" in text and "reconnected" in text


def test_sampler_halts_every_guard_when_the_function_stalls() -> None:
    clock, guards = Clock(), [Guard(Safety(), "modbus_tcp"), Guard(Safety(), "can")]
    with EssentialFunctionMonitor(ef(COIL, max_gap_s=0.45), lambda: FakeModbus(clock), Evidence(), guards) as mon:
        mon.wait_baseline()
        clock.stall()
        last = mon.transitions[-1][0]
        halted = wait_for(lambda: guards[1].halted, 2.0)
    assert halted is not None and all(g.halted for g in guards)
    assert halted - last < 0.45 + 2 * mon.sample_s + 0.25  # max_gap + resolution + one sample, and slack
    with pytest.raises(HarmHalted):
        guards[0].pace()
    with pytest.raises(AssertionError, match="stall at the end"):
        mon.check()


def test_sampler_gives_up_on_a_dead_device_within_bounded_retries() -> None:
    clock, guard = Clock(), Guard(Safety(), "modbus_tcp")

    class Dead(FakeModbus):
        def read_coils(self, address: int, count: int) -> list[bool]:
            raise DeviceTimeout("modbus_tcp read_coils(0, 1): no reply within 0.1 s")

    with EssentialFunctionMonitor(ef(COIL), lambda: Dead(clock), Evidence(), [guard], retries=3) as mon:
        assert wait_for(lambda: mon.gone, 2.0)
    assert clock.opened == 4
    assert "stopped answering" in guard.halted
    assert any("device stopped answering the monitor" in v for v in mon.result.violations)


def test_a_hung_device_is_caught_while_the_monitor_read_blocks() -> None:
    clock, guard = Clock(), Guard(Safety(), "modbus_tcp")

    class Hangs(FakeModbus):
        def read_coils(self, address: int, count: int) -> list[bool]:
            if self.clock.frozen:  # accepts the request, never answers, until the driver's 1.2 s timeout
                time.sleep(1.2)
                raise DeviceTimeout("modbus_tcp read_coils(0, 1): no reply within 1.2 s")
            return super().read_coils(address, count)

    with EssentialFunctionMonitor(ef(COIL, 0.45), lambda: Hangs(clock), Evidence(), [guard]) as mon:
        mon.wait_baseline()
        clock.stall()
        last = mon.transitions[-1][0]
        halted = wait_for(lambda: guard.halted, 2.0)
    assert halted is not None and halted - last < 0.45 + 0.5  # not held up by the blocked 1.2 s read


def test_wait_baseline_raises_when_the_function_is_absent() -> None:
    clock = Clock()
    clock.stall()
    with EssentialFunctionMonitor(ef(COIL), lambda: FakeModbus(clock), Evidence()) as mon, \
            pytest.raises(EssentialFunctionAbsent, match="0 transitions of the coil 0 toggling"):
        mon.wait_baseline(0.3)


# --- one window handing the function over to the next

SLOW = CoilToggle(address=0, high_s=1.0, low_s=1.0)  # phases long enough that a busy host hands over in time
SHORT = CoilToggle(address=0, high_s=0.3, low_s=0.3)


def test_a_window_opens_with_the_sound_window_befores_last_transition() -> None:
    clock, sightings = Clock(high=1.0, low=1.0), Sightings()
    with EssentialFunctionMonitor(ef(SLOW, 1.5), lambda: FakeModbus(clock), Evidence(), sightings=sightings) as one:
        one.wait_running()
    seen = sightings.get(SLOW)
    assert seen is not None and seen.at == one.transitions[-1][0] and seen.via == "modbus_tcp"
    evidence = Evidence()
    with EssentialFunctionMonitor(ef(SLOW, 1.5), lambda: FakeModbus(clock), evidence, sightings=sightings) as two:
        asked = time.monotonic()
        two.wait_running()
        waited = time.monotonic() - asked
        two.wait_baseline(3.0, transitions=2)  # then a transition of its own, judged against the one taken over
    two.check()
    assert two.carried == seen and waited < 0.5
    assert two.window_start == seen.at and two.result.transitions >= 2 and two.result.conclusive
    assert "window opened with coil 0 -> " in "\n".join(evidence.lines())


def _sighting(value: bool, *, age: float, signal: CoilToggle = SLOW, resolution: float = 0.02) -> Sighting:
    now = time.monotonic()
    return Sighting(signal, now - age, value, now - age / 2, "modbus_rtu", resolution)


@pytest.mark.parametrize(("seen", "why"), [
    (lambda: _sighting(False, age=0.05), "its first sample shows another value"),
    (lambda: _sighting(True, age=HANDOVER_MAX_S + 0.1), "too old"),
    (lambda: _sighting(True, age=0.22, signal=SHORT), "its next transition was due"),
    (lambda: _sighting(True, age=0.05, resolution=0.2), "timestamped less exactly"),
    (lambda: _sighting(True, age=0.05, signal=COIL), "another signal"),
], ids=["value", "old", "due", "resolution", "signal"])
def test_no_window_is_opened_with_a_sighting_that_cannot_vouch(seen: Any, why: str) -> None:
    clock = Clock(high=1.0, low=1.0)
    clock.frozen = clock.t0 + 0.1  # the coil stays high
    sighting, sightings = seen(), Sightings()
    sightings.put(sighting, sightings.generation)
    signal = SHORT if sighting.signal == SHORT else SLOW
    with EssentialFunctionMonitor(ef(signal, 1.5), lambda: FakeModbus(clock), Evidence(),
                                  sightings=sightings) as mon:
        wait_for(lambda: mon._state is not None, 1.0)
        assert mon.carried is None, why
        assert mon.transitions == []


def test_a_fresh_sighting_is_taken_and_a_forgotten_one_not() -> None:
    clock = Clock(high=1.0, low=1.0)
    clock.frozen = clock.t0 + 0.1
    sightings = Sightings()
    for forget in (False, True):
        sightings.put(_sighting(True, age=0.05), sightings.generation)
        if forget:
            sightings.forget()
        with EssentialFunctionMonitor(ef(SLOW, 1.5), lambda: FakeModbus(clock), Evidence(),
                                      sightings=sightings) as mon:
            wait_for(lambda m=mon: m._state is not None, 1.0)
            assert (mon.carried is None) is forget


def test_a_window_open_across_a_restart_records_nothing() -> None:
    clock, sightings = Clock(high=0.2, low=0.4), Sightings()
    with EssentialFunctionMonitor(ef(COIL, 0.6), lambda: FakeModbus(clock), Evidence(), sightings=sightings) as mon:
        mon.wait_running()
        sightings.forget()  # the device restarted while this window was open
    mon.check()
    assert len(sightings) == 0


def test_event_signals_are_never_handed_over() -> None:
    clock, sightings = Clock(), Sightings()
    with EssentialFunctionMonitor(ef(BEAT), lambda: FakeCan(clock), Evidence(), sightings=sightings) as one:
        one.wait_running()
    assert sightings.get(BEAT) is None  # nothing to hand over: an event has no value to check
    sightings.put(Sighting(BEAT, one.transitions[-1][0], "05", time.monotonic(), "can", 0.01), sightings.generation)
    with EssentialFunctionMonitor(ef(BEAT), lambda: FakeCan(clock), Evidence(), sightings=sightings) as two:
        two.wait_running()
    assert two.carried is None and two.transitions[0][0] > one.transitions[-1][0]


def test_a_window_that_lost_the_function_vouches_for_nothing() -> None:
    clock, sightings = Clock(high=0.2, low=0.4), Sightings()
    with pytest.raises(AssertionError), \
            EssentialFunctionMonitor(ef(COIL, 0.45), lambda: FakeModbus(clock), Evidence(), sightings=sightings) as mon:
        mon.wait_running()
        clock.stall()
        wait_for(lambda: mon.halted, 2.0)
        raise HarmHalted("stopped")
    assert len(sightings) == 0


def test_a_halt_inside_the_window_ends_the_test_as_a_fail() -> None:
    clock, guard = Clock(), Guard(Safety(), "modbus_tcp")
    with pytest.raises(AssertionError, match="LOST"), \
            EssentialFunctionMonitor(ef(COIL, 0.45), lambda: FakeModbus(clock), Evidence(), [guard]) as mon:
        mon.wait_baseline()
        clock.stall()
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:  # the "attack": paced by the guard the monitor halts
            guard.pace()
            time.sleep(0.01)
    assert mon.result is not None and not mon.result.ok


def test_the_attacks_driver_losing_the_device_is_a_fail_when_the_function_stops() -> None:
    clock = Clock()
    start = time.monotonic()
    with pytest.raises(AssertionError, match="stall at the end"), \
            EssentialFunctionMonitor(ef(COIL, 0.45), lambda: FakeModbus(clock), Evidence()) as mon:
        mon.wait_baseline()
        clock.stall()
        raise ConnectionLost("modbus_tcp write_coil(100, True): connection closed by the device")
    assert time.monotonic() - start < 3.0


def test_the_attacks_driver_error_stays_an_error_when_the_function_runs() -> None:
    clock = Clock()
    with pytest.raises(DeviceTimeout), \
            EssentialFunctionMonitor(ef(COIL, 0.45), lambda: FakeModbus(clock), Evidence()) as mon:
        mon.wait_baseline()
        raise DeviceTimeout("modbus_tcp read_coils(7, 1): no reply within 0.5 s")
    assert mon.result.ok


def test_a_crashed_sampler_halts_and_is_an_error_not_a_fail() -> None:
    guard = Guard(Safety(), "modbus_tcp")

    class Broken(FakeModbus):
        def read_coils(self, address: int, count: int) -> list[bool]:
            return []  # an IndexError in the sampler: a harness bug, not a device failure

    with EssentialFunctionMonitor(ef(COIL), lambda: Broken(Clock()), Evidence(), [guard]) as mon:
        assert wait_for(lambda: guard.halted, 1.0)
    with pytest.raises(RuntimeError, match="monitor failed"):
        mon.check()


@pytest.mark.parametrize(("signal", "max_gap", "message"), [
    (COIL, 0.3, "max_gap_s .0.3 s. is shorter than the signal's own longest interval .0.4 s."),
    (CoilToggle(address=0, high_s=0.03, low_s=0.4), 0.5, "shorter than two monitor samples"),
])
def test_impossible_declarations_are_refused(signal: Any, max_gap: float, message: str) -> None:
    with pytest.raises(HarnessError, match=message):
        EssentialFunctionMonitor(ef(signal, max_gap), lambda: None, Evidence())


# --- real sampling of a pymodbus 3.16 server in a subprocess (tests.support.ModbusLab)

@pytest.fixture
def lab() -> Iterator[ModbusLab]:
    with ModbusLab() as server:
        yield server


def spec_for(port: int, signal: Any = COIL, max_gap_s: float = 0.45, jitter_s: float = 0.08,
             interfaces: dict[str, Any] | None = None, via: str = "modbus_tcp") -> TargetSpec:
    interfaces = interfaces or {"modbus_tcp": {"host": "127.0.0.1", "port": port,
                                               "timeouts": {"connect_s": 0.5, "reply_s": 0.3}}}
    return TargetSpec.model_validate({
        "identity": {"vendor": "test", "model": "lab", "firmware": "1"},
        "component_type": "embedded_device", "security_level": 1, "interfaces": interfaces,
        "essential_function": {"description": "the lab's control task", "via": [via], "signal": signal.model_dump(),
                               "jitter_s": jitter_s, "max_gap_s": max_gap_s},
    })


@pytest.mark.parametrize("signal", [COIL, COUNTER], ids=["coil", "counter"])
def test_monitor_sees_a_live_pymodbus_device(lab: ModbusLab, signal: Any) -> None:
    evidence = Evidence()
    with monitor_for(Registry(spec_for(lab.port, signal)), evidence, attacked="can") as mon:
        mon.wait_baseline()
        time.sleep(1.5)
    mon.check()
    assert mon.result.transitions >= (4 if signal is COIL else 15)
    assert mon.result.within_jitter >= 0.95 and mon.result.max_gap_s < 0.45


def test_monitor_detects_a_stalled_control_task_and_halts(lab: ModbusLab) -> None:
    guard = Guard(Safety(), "modbus_tcp")
    with monitor_for(Registry(spec_for(lab.port)), Evidence(), [guard], attacked="modbus_rtu") as mon:
        mon.wait_baseline()
        lab.stall()
        stalled = time.monotonic()
        halted = wait_for(lambda: guard.halted, 3.0)
        last = mon.transitions[-1][0]
    assert halted is not None, "the monitor did not halt the guard"
    # declared period (the 0.4 s low phase) + jitter (0.08) + sampling (2 x 20 ms), with slack for a busy CI
    assert halted - last <= 0.4 + 0.08 + 2 * mon.sample_s + 0.25
    assert halted - stalled <= 0.4 + 0.08 + 2 * mon.sample_s + 0.25
    assert "essential function lost: no transition" in guard.halted
    with pytest.raises(AssertionError, match="stall at the end"):
        mon.check()


def test_monitor_detects_a_killed_device(lab: ModbusLab) -> None:
    guard = Guard(Safety(), "modbus_tcp")
    with monitor_for(Registry(spec_for(lab.port)), Evidence(), [guard]) as mon:
        mon.wait_baseline()
        lab.kill()
        killed = time.monotonic()
        halted = wait_for(lambda: guard.halted, 3.0)
    assert halted is not None and halted - killed < 0.45 + 0.4 + 0.2  # max gap after the last toggle, at worst
    assert not mon.result.ok
    assert any("lost sample" in line for line in mon.result.timeline)


def test_monitor_reconnects_to_a_restarted_device(lab: ModbusLab) -> None:
    with monitor_for(Registry(spec_for(lab.port, max_gap_s=1.5)), Evidence()) as mon:
        mon.wait_baseline()
        lab.kill()
        time.sleep(0.1)
        revived = ModbusLab(port=lab.port).start()
        try:
            before = len(mon.transitions)
            assert wait_for(lambda: len(mon.transitions) >= before + 2, 3.0)
        finally:
            revived.stop()
    text = "\n".join(mon.result.timeline)
    assert "lost sample" in text and "reconnected" in text


def test_monitor_for_watches_a_channel_not_under_attack() -> None:
    interfaces = {"modbus_tcp": {"host": "127.0.0.1", "port": 1502}, "modbus_rtu": {"url": "loop://"}}
    target = spec_for(0, interfaces=interfaces, via="modbus_rtu")
    target = target.model_copy(update={"essential_function": target.essential_function.model_copy(
        update={"via": ["modbus_rtu", "modbus_tcp"]})})
    assert monitor_for(Registry(target), Evidence(), attacked="modbus_tcp").via == "modbus_rtu"
    assert monitor_for(Registry(target), Evidence(), attacked=["modbus_rtu", "can"]).via == "modbus_tcp"
    evidence = Evidence()
    assert monitor_for(Registry(target), evidence, attacked=["modbus_rtu", "modbus_tcp"]).via == "modbus_rtu"
    assert "the monitor shares the attacked channel" in evidence.lines()[0]


def test_monitor_for_refuses_what_it_cannot_watch() -> None:
    target = spec_for(1502)
    with pytest.raises(HarnessError, match="declares no essential_function"):
        monitor_for(Registry(target.model_copy(update={"essential_function": None})), Evidence())
    heartbeat_over_modbus = target.essential_function.model_copy(update={"signal": BEAT})
    with pytest.raises(HarnessError, match="no declared interface that can carry a can_heartbeat signal: use can"):
        monitor_for(Registry(target.model_copy(update={"essential_function": heartbeat_over_modbus})), Evidence())


@pytest.mark.parametrize("via", ["can", "console"])
def test_monitor_with_the_can_and_console_drivers(via: str) -> None:
    ticker = Ticker()
    try:
        if via == "can":
            interfaces = {"can": {"interface": "virtual", "channel": ticker.channel}}
            signal: Any = BEAT
        else:
            interfaces = {"console": {"url": f"socket://127.0.0.1:{ticker.port}"}}
            signal = LINE
        guard = Guard(Safety(), "modbus_tcp")
        target = spec_for(0, signal, max_gap_s=0.3, interfaces=interfaces, via=via)
        with monitor_for(Registry(target), Evidence(), [guard], attacked="modbus_tcp") as mon:
            mon.wait_baseline()
            time.sleep(1.0)
            ticker.stalled.set()
            last = mon.transitions[-1][0]
            halted = wait_for(lambda: guard.halted, 2.0)
        assert halted is not None and halted - last < 0.3 + mon.resolution_s + 0.25
        assert mon.result.transitions >= 8
        assert mon.result.within_jitter >= 0.9
        assert any("stall at the end" in v for v in mon.result.violations)
    finally:
        ticker.close()


def test_no_thread_is_left_behind() -> None:
    before = {t.name for t in threading.enumerate()}
    clock = Clock()
    for _ in itertools.repeat(None, 3):
        with EssentialFunctionMonitor(ef(COIL), lambda: FakeModbus(clock), Evidence()):
            time.sleep(0.05)
    time.sleep(0.05)
    assert not {t.name for t in threading.enumerate()} - before
