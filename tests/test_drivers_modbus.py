"""The Modbus driver against real servers: pymodbus 3.16 (TCP and RTU on a pty link) and small
misbehaving servers, one per way a device can fail. Each check asserts the classification and that the
operation returned within its timeout plus a margin."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import select
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from iec62443_harness.evidence import Evidence
from iec62443_harness.fixtures.drivers.errors import (
    ConnectionLost,
    DeviceTimeout,
    InterfaceUnavailable,
    ProtocolViolation,
)
from iec62443_harness.fixtures.drivers.modbus import ModbusDriver, ModbusExceptionReply
from iec62443_harness.fixtures.links.modbus import crc16, mbap, rtu_frame
from iec62443_harness.fixtures.outcomes import NotRun
from iec62443_harness.fixtures.safety import Guard
from iec62443_harness.target import ModbusRtu, ModbusTcp, Safety, Timeouts, Writable
from pymodbus.framer import FramerType
from pymodbus.pdu.device import ModbusDeviceIdentification
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from tests.support import PtyLink, free_port, raw_pty

logging.getLogger("pymodbus").setLevel(logging.CRITICAL)  # the misbehaviour below is deliberate

FAST = Timeouts(connect_s=0.5, reply_s=0.5)
MARGIN = 0.4  # scheduling slack on a busy 2-core machine
SAFETY = Safety(allow_writes=True, max_rate_per_s=10_000,
                writable=Writable(coils=[(0, 7)], holding_registers=[(0, 9)]))
READ_10 = bytes.fromhex("03 0000 000a")


# --- helpers: servers


def sim_device() -> SimDevice:
    def bits() -> list[SimData]:
        return [SimData(0, values=[i % 3 == 0 for i in range(64)], datatype=DataType.BITS)]

    return SimDevice(1, simdata=(bits(), bits(), [SimData(0, values=list(range(100)), datatype=DataType.REGISTERS)],
                                 [SimData(0, values=list(range(1000, 1100)), datatype=DataType.REGISTERS)]))


IDENTITY = ModbusDeviceIdentification(info_name={"VendorName": "Acme", "ProductCode": "AC-1",
                                                 "MajorMinorRevision": "1.2", "ProductName": "Widget"})


class PymodbusServer:
    """A pymodbus 3.16 server running its own event loop in a thread."""

    def __init__(self, make: Callable[[], ModbusTcpServer | ModbusSerialServer]) -> None:
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self.server: ModbusTcpServer | ModbusSerialServer | None = None

        async def main() -> None:
            try:
                self.server = make()
                await self.server.serve_forever(background=True)
            except BaseException as exc:  # handed to the test thread
                self.error = exc
                return
            finally:
                self.ready.set()
            await self.server.serving

        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(main(),), daemon=True)
        self.thread.start()
        assert self.ready.wait(5), "pymodbus server did not start in 5 s"
        if self.error:
            self.stop()
            raise self.error

    def stop(self) -> None:
        if self.server is not None and self.thread.is_alive():
            asyncio.run_coroutine_threadsafe(self.server.shutdown(), self.loop).result(5)
        self.thread.join(5)
        assert not self.thread.is_alive(), "pymodbus server thread did not stop"
        self.loop.close()


def read_reply(request: bytes) -> bytes:
    """A correct Modbus TCP answer to a read-holding-registers request (zeros)."""
    count = int.from_bytes(request[10:12], "big") if len(request) >= 12 else 1
    return mbap(int.from_bytes(request[:2], "big"), request[6], bytes([3, 2 * count]) + bytes(2 * count))


class TcpMisbehaver:
    """A Modbus TCP 'device' that fails in one way: stall, reset, garbage, slow, truncated or oneshot."""

    def __init__(self, behaviour: str) -> None:
        self.behaviour = behaviour
        self.listener = socket.create_server(("127.0.0.1", free_port()))
        self.port = self.listener.getsockname()[1]
        self.stop_event = threading.Event()
        self.rng = random.Random(7)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conns: list[socket.socket] = []
        pending: list[tuple[float, socket.socket, bytes]] = []
        while not self.stop_event.is_set():
            ready, _, _ = select.select([self.listener, *conns], [], [], 0.02)
            for s in ready:
                if s is self.listener:
                    conns.append(self.listener.accept()[0])
                    continue
                try:
                    data = s.recv(4096)
                except OSError:
                    data = b""
                if not data:
                    conns.remove(s)
                    s.close()
                elif self._answer(s, data, pending):
                    conns.remove(s)
            now = time.monotonic()
            for item in [p for p in pending if p[0] <= now]:
                pending.remove(item)
                with contextlib.suppress(OSError):  # the client gave up and closed
                    item[1].sendall(item[2])
        for s in conns:
            s.close()

    def _answer(self, conn: socket.socket, request: bytes, pending: list) -> bool:
        """React to one request; True when the connection was closed."""
        b = self.behaviour
        if b == "reset":
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close sends RST
            conn.close()
            return True
        if b == "garbage":
            conn.sendall(self.rng.randbytes(23))
        elif b == "slow":
            pending.append((time.monotonic() + 1.5, conn, read_reply(request)))
        elif b == "truncated":
            conn.sendall(read_reply(request)[:-3])
        elif b == "oneshot":
            conn.sendall(read_reply(request))
            conn.close()
            return True
        return False  # stall: read and never answer

    def close(self) -> None:
        self.stop_event.set()
        self.thread.join(5)
        self.listener.close()


class RtuMisbehaver:
    """A Modbus RTU 'device' on the master end of a pty: silent, bad_crc, truncated, garbage or slow."""

    def __init__(self, behaviour: str) -> None:
        self.behaviour = behaviour
        self.master, self.slave, self.path = raw_pty()
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        rng = random.Random(7)
        while not self.stop_event.is_set():
            if not select.select([self.master], [], [], 0.02)[0]:
                continue
            request = os.read(self.master, 512)
            count = int.from_bytes(request[4:6], "big") if len(request) >= 6 else 1
            good = rtu_frame(request[0], bytes([3, 2 * count]) + bytes(2 * count))
            reply = {"silent": b"", "bad_crc": good[:-2] + bytes([good[-2] ^ 0x55, good[-1]]),
                     "truncated": good[:-4], "garbage": rng.randbytes(9)}.get(self.behaviour, good)
            if self.behaviour == "slow":
                self.stop_event.wait(1.5)
            if reply and not self.stop_event.is_set():
                os.write(self.master, reply)

    def close(self) -> None:
        self.stop_event.set()
        self.thread.join(5)
        os.close(self.master)
        os.close(self.slave)


# --- fixtures


@pytest.fixture(scope="module")
def tcp_server() -> Iterator[int]:
    port = free_port()
    server = PymodbusServer(lambda: ModbusTcpServer(sim_device(), address=("127.0.0.1", port), identity=IDENTITY))
    yield port
    server.stop()


@pytest.fixture
def tcp(tcp_server: int) -> Iterator[ModbusDriver]:
    with ModbusDriver(ModbusTcp(host="127.0.0.1", port=tcp_server, timeouts=FAST), Evidence(),
                      Guard(SAFETY, "modbus_tcp")) as driver:
        yield driver


@pytest.fixture(scope="module")
def rtu_link() -> Iterator[str]:
    link = PtyLink()
    server = PymodbusServer(lambda: ModbusSerialServer(sim_device(), framer=FramerType.RTU, port=link.paths[0],
                                                       baudrate=115200, parity="N", identity=IDENTITY))
    yield link.paths[1]
    server.stop()
    link.close()


@pytest.fixture
def rtu(rtu_link: str) -> Iterator[ModbusDriver]:
    iface = ModbusRtu(url=rtu_link, baudrate=115200, parity="N", timeouts=FAST)
    with ModbusDriver(iface, Evidence(), Guard(SAFETY, "modbus_rtu")) as driver:
        yield driver


def misbehaving_tcp(behaviour: str) -> tuple[TcpMisbehaver, ModbusDriver]:
    server = TcpMisbehaver(behaviour)
    driver = ModbusDriver(ModbusTcp(host="127.0.0.1", port=server.port, timeouts=FAST), Evidence(),
                          Guard(SAFETY, "modbus_tcp"))
    return server, driver


def timed(fn: Callable[[], object]) -> tuple[object, float]:
    start = time.monotonic()
    try:
        result: object = fn()
    except Exception as exc:  # the classification under test
        result = exc
    return result, time.monotonic() - start


# --- framing


def test_framing_helpers() -> None:
    assert crc16(bytes.fromhex("01 03 00 00 00 0a")) == 0xCDC5  # the classic example frame: CRC bytes c5 cd
    assert rtu_frame(1, READ_10) == bytes.fromhex("01 03 00 00 00 0a c5 cd")
    assert mbap(1, 1, READ_10) == bytes.fromhex("00 01 00 00 00 06 01 03 00 00 00 0a")
    assert mbap(1, 1, READ_10, length=200)[4:6] == b"\x00\xc8"


# --- semantic operations against pymodbus


@pytest.mark.parametrize("driver_name", ["tcp", "rtu"])
def test_semantic_reads(driver_name: str, request: pytest.FixtureRequest) -> None:
    driver: ModbusDriver = request.getfixturevalue(driver_name)
    assert driver.kind == f"modbus_{driver_name}"
    assert driver.read_holding_registers(0, 10) == list(range(10))
    assert driver.read_input_registers(5, 3) == [1005, 1006, 1007]
    assert driver.read_coils(0, 10) == [i % 3 == 0 for i in range(10)]
    assert driver.read_discrete_inputs(3, 4) == [True, False, False, True]
    with pytest.raises(ModbusExceptionReply) as exc:
        driver.read_holding_registers(200, 10)
    assert exc.value.code == 2 and "illegal data address" in str(exc.value)
    lines = driver.evidence.lines()
    assert any("TX " in line for line in lines)
    assert any(line.endswith("(exception 02)") for line in lines)


@pytest.mark.parametrize("driver_name", ["tcp", "rtu"])
def test_writes_inside_declared_ranges(driver_name: str, request: pytest.FixtureRequest) -> None:
    driver: ModbusDriver = request.getfixturevalue(driver_name)
    driver.write_register(5, 0x1234)
    driver.write_registers(7, [1, 2, 3])
    driver.write_coil(2, True)
    assert driver.read_holding_registers(5, 5) == [0x1234, 6, 1, 2, 3]
    assert driver.read_coils(2, 1) == [True]
    driver.write_registers(5, [5, 6, 7, 8, 9])  # restore the image for the other tests
    driver.write_coil(2, False)
    with pytest.raises(NotRun, match=r"safety\.writable\.holding_registers"):
        driver.write_registers(8, [1, 2, 3])  # 8..10 runs past the declared [0, 9]


def test_writes_refused_without_permission(tcp_server: int) -> None:
    evidence = Evidence()
    iface = ModbusTcp(host="127.0.0.1", port=tcp_server, timeouts=FAST)
    with ModbusDriver(iface, evidence, Guard(Safety(), "modbus_tcp")) as driver, \
            pytest.raises(NotRun, match=r"safety\.allow_writes"):
        driver.write_register(0, 1)
    assert len(evidence) == 0  # refused before any traffic


@pytest.mark.parametrize("driver_name", ["tcp", "rtu"])
def test_device_identification(driver_name: str, request: pytest.FixtureRequest) -> None:
    ident = request.getfixturevalue(driver_name).device_identification()
    assert ident is not None and ident[0] == "Acme" and ident[1] == "AC-1" and ident[2] == "1.2"


def test_reconnects_when_the_device_closed_the_idle_connection() -> None:
    server, driver = misbehaving_tcp("oneshot")  # answers one request per connection, then closes it
    try:
        assert driver.read_holding_registers(0, 2) == [0, 0]
        time.sleep(0.05)  # the close reaches us before the next request: lost before sending
        assert driver.read_holding_registers(0, 2) == [0, 0]
    finally:
        driver.close()
        server.close()


def test_closed_port_is_interface_unavailable() -> None:
    iface = ModbusTcp(host="127.0.0.1", port=free_port(), timeouts=FAST)
    with ModbusDriver(iface, Evidence(), Guard(SAFETY, "modbus_tcp")) as driver:
        result, elapsed = timed(lambda: driver.read_holding_registers(0, 1))
    assert isinstance(result, InterfaceUnavailable) and "modbus_tcp connect" in str(result)
    assert elapsed < FAST.connect_s + MARGIN


def test_missing_serial_port_is_interface_unavailable() -> None:
    iface = ModbusRtu(url="/dev/does-not-exist", timeouts=FAST)
    with ModbusDriver(iface, Evidence(), Guard(SAFETY, "modbus_rtu")) as driver, \
            pytest.raises(InterfaceUnavailable, match="modbus_rtu open /dev/does-not-exist"):
        driver.read_holding_registers(0, 1)


# --- raw path against pymodbus


def test_raw_reply_and_exception(tcp: ModbusDriver) -> None:
    reply = tcp.send_raw(mbap(0x4242, 1, READ_10))
    assert reply.kind == "reply" and reply.data[:2] == b"\x42\x42" and len(reply.data) == 9 + 20
    unknown = tcp.send_pdu(b"\x63")  # pymodbus answers with function byte 0x80, not 0xe3
    assert unknown.kind == "exception" and unknown.exception_code == 1
    assert any(line.endswith("00 00 00 03 01 80 01 (exception 01)") for line in tcp.evidence.lines())


def test_raw_then_probe_bounds_a_silent_case(tcp_server: int) -> None:
    """A false MBAP length gets no answer from pymodbus: the probe tells it in about a round trip,
    far below the reply timeout a plain wait would cost (bound generous for a busy machine)."""
    slow = Timeouts(connect_s=0.5, reply_s=3.0)
    with ModbusDriver(ModbusTcp(host="127.0.0.1", port=tcp_server, timeouts=slow), Evidence(),
                      Guard(SAFETY, "modbus_tcp")) as tcp:
        tcp.read_holding_registers(0, 1)  # warm up the round-trip estimate
        for _ in range(3):
            (case, alive), elapsed = timed(lambda: tcp.send_raw_then_probe(mbap(9, 1, READ_10, length=200)))
            assert case.kind == "silence" and alive
            assert elapsed < slow.reply_s / 3, f"a silent case took {elapsed:.3f}s"
        (case, alive), _ = timed(lambda: tcp.send_raw_then_probe(mbap(10, 1, READ_10)))
        assert case.kind == "reply" and case.data[:2] == b"\x00\x0a" and alive
        assert tcp.read_holding_registers(0, 2) == [0, 1]  # the driver is back in sync


def test_raw_then_probe_reports_a_dead_device() -> None:
    server, driver = misbehaving_tcp("stall")
    try:
        (case, alive), elapsed = timed(lambda: driver.send_raw_then_probe(mbap(1, 1, READ_10)))
        assert case.kind == "silence" and not alive
        assert elapsed < 2 * FAST.reply_s + MARGIN
    finally:
        driver.close()
        server.close()


def test_rtu_raw_bad_crc_is_ignored_by_the_device(rtu: ModbusDriver) -> None:
    (reply, elapsed) = timed(lambda: rtu.send_pdu(READ_10, bad_crc=True))
    assert reply.kind == "silence" and elapsed < FAST.reply_s + MARGIN
    (case, alive), elapsed = timed(lambda: rtu.send_raw_then_probe(rtu_frame(1, READ_10)[:-1] + b"\x00"))
    assert case.kind == "silence" and alive and elapsed < FAST.reply_s / 2
    assert rtu.send_pdu(READ_10).kind == "reply"


# --- misbehaving devices: classification and bounded time


@pytest.mark.parametrize(("behaviour", "error", "raw_kind"), [
    ("stall", DeviceTimeout, "silence"),
    ("slow", DeviceTimeout, "silence"),
    ("reset", ConnectionLost, "reset"),
    ("garbage", ProtocolViolation, "garbage"),
    ("truncated", ProtocolViolation, "garbage"),
])
def test_tcp_misbehaviour(behaviour: str, error: type[Exception], raw_kind: str) -> None:
    server, driver = misbehaving_tcp(behaviour)
    try:
        result, elapsed = timed(lambda: driver.read_holding_registers(0, 10))
        assert isinstance(result, error), result
        assert str(result).startswith("modbus_tcp read_holding_registers(0, 10): ") and "\n" not in str(result)
        assert elapsed < FAST.reply_s + MARGIN
        reply, elapsed = timed(lambda: driver.send_raw(mbap(77, 1, READ_10)))
        assert reply.kind == raw_kind, reply
        assert elapsed < FAST.reply_s + MARGIN
        expected = "RX silence after 0.5" if raw_kind == "silence" else f"({raw_kind} after"
        assert any(expected in line for line in driver.evidence.lines())
    finally:
        driver.close()
        server.close()


@pytest.mark.parametrize(("behaviour", "error", "raw_kind"), [
    ("silent", DeviceTimeout, "silence"),
    ("slow", DeviceTimeout, "silence"),
    ("bad_crc", ProtocolViolation, "garbage"),
    ("truncated", ProtocolViolation, "garbage"),
    ("garbage", ProtocolViolation, "garbage"),
])
def test_rtu_misbehaviour(behaviour: str, error: type[Exception], raw_kind: str) -> None:
    device = RtuMisbehaver(behaviour)
    iface = ModbusRtu(url=device.path, baudrate=115200, parity="N", timeouts=FAST)
    driver = ModbusDriver(iface, Evidence(), Guard(SAFETY, "modbus_rtu"))
    try:
        result, elapsed = timed(lambda: driver.read_holding_registers(0, 10))
        assert isinstance(result, error), result
        assert elapsed < FAST.reply_s + MARGIN
        if behaviour == "slow":
            time.sleep(1.2)  # let the late answer arrive: it must not be taken for the next reply
        reply, elapsed = timed(lambda: driver.send_pdu(READ_10))
        assert reply.kind == raw_kind, reply
        assert elapsed < FAST.reply_s + MARGIN
    finally:
        driver.close()
        device.close()


def test_pace_holds_every_request(tcp_server: int) -> None:
    iface = ModbusTcp(host="127.0.0.1", port=tcp_server, timeouts=FAST)
    with ModbusDriver(iface, Evidence(), Guard(Safety(max_rate_per_s=100), "modbus_tcp")) as driver:
        start = time.monotonic()
        for _ in range(30):
            driver.send_pdu(READ_10, record=False)
        elapsed = time.monotonic() - start
    assert 0.2 < elapsed < 0.6  # 30 requests at 100/s: about 0.3 s
