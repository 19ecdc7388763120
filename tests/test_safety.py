"""The safety interlocks: permissions and writable ranges from the target file, the rate cap, the halt."""

from __future__ import annotations

import threading
import time

import pytest
from iec62443_harness.fixtures.outcomes import NotRun
from iec62443_harness.fixtures.safety import Guard, HarmHalted, Permission, Table
from iec62443_harness.target import Safety, Writable
from iec62443_harness.verdicts import Verdict

WRITABLE = Writable(coils=[(0, 7)], holding_registers=[(100, 109), (200, 200)], can_ids=[(0x600, 0x67F)])


@pytest.mark.parametrize("permission", ["writes", "fuzzing", "floods"])
def test_permissions_come_from_the_target_file(permission: Permission) -> None:
    with pytest.raises(NotRun) as refused:
        Guard(Safety(), "modbus_tcp").require(permission)
    assert refused.value.verdict is Verdict.NOT_RUN
    assert f"safety.allow_{permission}" in refused.value.reason and "modbus_tcp" in refused.value.reason
    Guard(Safety(**{f"allow_{permission}": True}), "modbus_tcp").require(permission)


def test_writes_refused_without_allow_writes() -> None:
    guard = Guard(Safety(writable=WRITABLE), "modbus_tcp")
    with pytest.raises(NotRun, match=r"safety\.allow_writes"):
        guard.check_write("holding_registers", 100)


@pytest.mark.parametrize(("table", "address", "count"), [
    ("holding_registers", 99, 1),     # just below a range
    ("holding_registers", 105, 6),    # runs past the end of [100, 109]
    ("holding_registers", 109, 92),   # spans two ranges and the gap between them
    ("holding_registers", 100, 0),    # an empty write is no write
    ("coils", 8, 1),
    ("can_ids", 0x000, 1),
])
def test_writes_refused_outside_declared_ranges(table: Table, address: int, count: int) -> None:
    guard = Guard(Safety(allow_writes=True, writable=WRITABLE), "modbus_tcp")
    with pytest.raises(NotRun, match=rf"safety\.writable\.{table}"):
        guard.check_write(table, address, count)


@pytest.mark.parametrize(("table", "address", "count"), [
    ("holding_registers", 100, 10),
    ("holding_registers", 200, 1),
    ("coils", 0, 8),
    ("can_ids", 0x601, 1),
])
def test_writes_allowed_inside_declared_ranges(table: Table, address: int, count: int) -> None:
    Guard(Safety(allow_writes=True, writable=WRITABLE), "modbus_tcp").check_write(table, address, count)


def test_refusal_says_what_is_declared() -> None:
    guard = Guard(Safety(allow_writes=True), "can")
    with pytest.raises(NotRun, match=r"declared: none"):
        guard.check_write("can_ids", 0x601)


def _drain(guard: Guard) -> None:
    """Use up the small burst a full bucket allows, so what follows runs at the steady rate."""
    for _ in range(int(guard.rate * 0.05) + 1):
        guard.pace()


@pytest.mark.parametrize("rate", [20.0, 200.0])
def test_pace_holds_the_configured_rate(rate: float) -> None:
    guard = Guard(Safety(max_rate_per_s=1000, rates={"modbus_rtu": rate}), "modbus_rtu")
    assert guard.rate == rate  # the per-interface override wins over max_rate_per_s
    _drain(guard)
    calls = int(rate * 0.5)
    start = time.monotonic()
    for _ in range(calls):
        guard.pace()
    measured = calls / (time.monotonic() - start)
    assert 0.8 * rate < measured < 1.2 * rate


def test_pace_is_thread_safe() -> None:
    guard = Guard(Safety(max_rate_per_s=200), "can")
    _drain(guard)
    start = time.monotonic()
    threads = [threading.Thread(target=lambda: [guard.pace() for _ in range(25)]) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    measured = 100 / (time.monotonic() - start)
    assert 0.8 * 200 < measured < 1.2 * 200


def test_halt_stops_traffic_and_wakes_waiters() -> None:
    guard = Guard(Safety(max_rate_per_s=1), "modbus_tcp")
    guard.pace()  # the one token of the bucket: the next call would wait a second
    assert guard.halted is None
    outcome: list[BaseException] = []

    def waiter() -> None:
        try:
            guard.pace()
        except HarmHalted as exc:
            outcome.append(exc)

    thread = threading.Thread(target=waiter)
    thread.start()
    time.sleep(0.1)
    start = time.monotonic()
    guard.halt("heartbeat 0x701 missing for 0.5 s")
    thread.join(2)
    assert time.monotonic() - start < 0.5 and outcome, "halt() did not wake the waiting pace()"
    assert guard.halted == "heartbeat 0x701 missing for 0.5 s"
    with pytest.raises(HarmHalted, match="traffic on modbus_tcp halted: heartbeat 0x701 missing"):
        guard.pace()
    guard.halt("a second reason")  # the first cause is the one reported
    assert guard.halted == "heartbeat 0x701 missing for 0.5 s"
