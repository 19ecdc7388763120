"""The CAN driver for real: two python-can slcan buses on the two ends of a pty link (one plays the
device), the in-process `virtual` interface, and interfaces that cannot be opened."""

from __future__ import annotations

import statistics
import threading
import time
import uuid
from collections.abc import Iterator

import can
import pytest
import serial
from iec62443_harness.evidence import Evidence
from iec62443_harness.fixtures.drivers.can import CanDriver
from iec62443_harness.fixtures.drivers.errors import InterfaceUnavailable
from iec62443_harness.fixtures.outcomes import NotRun
from iec62443_harness.fixtures.safety import Guard
from iec62443_harness.target import Can, Safety, Timeouts, Writable

from tests.support import PtyLink

HEARTBEAT_ID, HEARTBEAT_S = 0x701, 0.02
REQUEST_ID, RESPONSE_ID = 0x601, 0x581  # CANopen-style SDO ids of node 1
FLOOD_ID, ECHO_ID = 0x100, 0x180
FAST = Timeouts(connect_s=1.0, reply_s=0.3)
SAFETY = Safety(allow_writes=True, rates={"can": 5000},
                writable=Writable(can_ids=[(FLOOD_ID, FLOOD_ID), (REQUEST_ID, REQUEST_ID)]))
SLCAN = {"sleep_after_open": 0}  # python-can waits 2 s after opening an slcan port by default


class Device:
    """The device end of the bus: a heartbeat, an answer to each request, an echo of each flood frame."""

    def __init__(self, bus: can.BusABC) -> None:
        self.bus = bus
        self.flood_seen: list[float] = []
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        next_beat = time.monotonic()
        while not self.stop_event.is_set():
            if time.monotonic() >= next_beat:
                self.bus.send(can.Message(arbitration_id=HEARTBEAT_ID, data=[0x05], is_extended_id=False))
                next_beat += HEARTBEAT_S
            msg = self.bus.recv(max(0.0, min(next_beat - time.monotonic(), 0.05)))
            if msg is None:
                continue
            if msg.arbitration_id == REQUEST_ID:
                self.bus.send(can.Message(arbitration_id=RESPONSE_ID, data=msg.data, is_extended_id=False))
            elif msg.arbitration_id == FLOOD_ID:
                self.flood_seen.append(time.monotonic())
                self.bus.send(can.Message(arbitration_id=ECHO_ID, data=msg.data, is_extended_id=False))

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(5)
        self.bus.shutdown()


@pytest.fixture(params=["slcan", "virtual"])
def bus(request: pytest.FixtureRequest) -> Iterator[tuple[CanDriver, Device]]:
    if request.param == "slcan":
        link = PtyLink()
        device = Device(can.Bus(interface="slcan", channel=link.paths[0], bitrate=500_000, **SLCAN))
        iface = Can(interface="slcan", channel=link.paths[1], options=SLCAN, timeouts=FAST)
    else:
        channel = f"test-{uuid.uuid4()}"
        device = Device(can.Bus(interface="virtual", channel=channel))
        iface = Can(interface="virtual", channel=channel, timeouts=FAST)
    driver = CanDriver(iface, Evidence(), Guard(SAFETY, "can"))
    yield driver, device
    driver.close()
    device.stop()
    if request.param == "slcan":
        link.close()


def test_request_and_reply(bus: tuple[CanDriver, Device]) -> None:
    driver, _ = bus
    reply = driver.request(REQUEST_ID, b"\x40\x18\x10\x01\x00\x00\x00\x00", RESPONSE_ID, timeout=1.0)
    assert reply is not None and reply.arbitration_id == RESPONSE_ID
    assert bytes(reply.data) == b"\x40\x18\x10\x01\x00\x00\x00\x00"
    lines = driver.evidence.lines()
    assert any(line.endswith("TX 601 [8] 40 18 10 01 00 00 00 00") for line in lines)
    assert any(line.endswith("RX 581 [8] 40 18 10 01 00 00 00 00") for line in lines)


def test_unanswered_request_returns_in_time(bus: tuple[CanDriver, Device]) -> None:
    driver, _ = bus
    start = time.monotonic()
    assert driver.request(REQUEST_ID, b"\x01", 0x5FF, timeout=0.3) is None
    assert time.monotonic() - start < 0.3 + 0.3


def test_recv_filters_and_times_out(bus: tuple[CanDriver, Device]) -> None:
    driver, _ = bus
    msg = driver.recv(1.0, can_ids=[HEARTBEAT_ID])
    assert msg is not None and msg.arbitration_id == HEARTBEAT_ID
    start = time.monotonic()
    assert driver.recv(0.2, can_ids=[0x123]) is None  # heartbeats keep coming, none of them match
    assert 0.2 <= time.monotonic() - start < 0.2 + 0.3
    assert driver.recv(0.0, can_ids=[0x123]) is None


def test_heartbeats(bus: tuple[CanDriver, Device]) -> None:
    driver, _ = bus
    stamps = driver.heartbeats(HEARTBEAT_ID, 0.4)
    assert 12 <= len(stamps) <= 24  # 20 expected at one per 20 ms
    gaps = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
    assert abs(statistics.median(gaps) - HEARTBEAT_S) < 0.01


def test_burst_is_paced_and_counts_replies(bus: tuple[CanDriver, Device]) -> None:
    driver, device = bus
    result = driver.burst([(FLOOD_ID, bytes([i % 256])) for i in range(100)], rate_per_s=500, reply_id=ECHO_ID)
    assert result.sent == 100 and result.errors == 0
    assert result.replies >= 95  # each frame is echoed; a busy machine may delay a few past the tail
    span, expected = device.flood_seen[-1] - device.flood_seen[0], 99 / 500  # first to last frame
    assert 0.8 * expected < span < 1.5 * expected
    assert result.elapsed_s < 0.2 * 1.5 + FAST.reply_s + 0.3
    assert any("burst of 100 frames from 100 [1] 00 at 500/s: sent 100" in line for line in driver.evidence.lines())


def test_sends_outside_the_target_file_are_refused(bus: tuple[CanDriver, Device]) -> None:
    driver, _ = bus
    with pytest.raises(NotRun, match=r"safety\.writable\.can_ids"):
        driver.send(0x000, b"\x01\x01")  # an NMT command: not declared writable
    with pytest.raises(NotRun, match=r"safety\.writable\.can_ids"):
        driver.burst([(FLOOD_ID, b""), (0x200, b"")], rate_per_s=100)
    readonly = CanDriver(driver.iface, Evidence(), Guard(Safety(), "can"))
    try:
        with pytest.raises(NotRun, match=r"safety\.allow_writes"):
            readonly.request(REQUEST_ID, b"\x40", RESPONSE_ID)
    finally:
        readonly.close()


def test_unknown_interface_names_the_known_ones() -> None:
    with pytest.raises(InterfaceUnavailable) as exc:
        CanDriver(Can(interface="socketcann", channel="can0"), Evidence(), Guard(SAFETY, "can"))
    message = str(exc.value)
    assert "unknown python-can interface 'socketcann'" in message and "socketcan, socketcand" in message
    assert "\n" not in message


def test_interface_that_cannot_open_is_unavailable() -> None:
    with pytest.raises(InterfaceUnavailable, match=r"^can open vector channel '0': .*Windows"):
        CanDriver(Can(interface="vector", channel="0"), Evidence(), Guard(SAFETY, "can"))
    with pytest.raises(InterfaceUnavailable, match=r"^can open slcan channel '/dev/does-not-exist': "):
        CanDriver(Can(interface="slcan", channel="/dev/does-not-exist", options=SLCAN), Evidence(),
                  Guard(SAFETY, "can"))


def test_slcan_partial_line_waits_for_the_rest() -> None:
    """python-can's slcan keeps a partial line across receives: recv(0) gives nothing, never half a frame."""
    link = PtyLink()
    try:
        with serial.serial_for_url(link.paths[0], timeout=0.1) as device, \
                CanDriver(Can(interface="slcan", channel=link.paths[1], options=SLCAN, timeouts=FAST), Evidence(),
                          Guard(SAFETY, "can")) as driver:
            device.write(b"t1232AB")
            time.sleep(0.05)
            assert driver.recv(0.0) is None
            device.write(b"CD\r")
            msg = driver.recv(1.0, can_ids=[0x123])
            assert msg is not None and bytes(msg.data) == b"\xab\xcd"
    finally:
        link.close()
