"""Modbus TCP (at the device's address) and Modbus RTU (a pty) in front of the shared process image, unit id 1.

pymodbus 3.16 does the protocol work: its RTU framer (frame size and CRC), its request decoder, and each
request PDU's own `datastore_update`, run against the `ProcessImage`. The connection handling around it
is ours, because the device's behaviour lives there: pymodbus's stock server handler keeps only the last
request of a TCP read (pipelined requests are lost) and answers an undecodable request with function
byte 0x80, while this device answers every request in order with `fc | 0x80`.

What the profile changes (read live from `device.settings`, which the shell may change):
- `modbus_writes`: "open" (any write), "ranges" (only inside `modbus_writable`, else exception 02),
  "none" (every write answered with exception 01). Writes go to the audit log (event "write").
- `rate_limit_per_s`: requests per second per connection (RTU: per line); beyond it, exception 06.
- `verbose_errors` (TCP only): exception replies carry trailing text leaking the firmware, Python and
  pymodbus versions and an internal stack line. (On RTU trailing bytes would break the line's framing.)

Read Device Identification (FC 43 / MEI 14) answers VendorName "SimPLC Labs", ProductCode "SPLC-1",
MajorMinorRevision = the running firmware version (it changes after `firmware apply` + `system restart`).

Requests are checked as the Modbus specification says (quantity ranges, byte counts, lengths):
exception 01 for an unsupported function, 02 for an address outside 0..999, 03 for a bad value. On TCP a
unit id other than 1 gets exception 0x0B; on RTU, silence. A TCP frame with a protocol id other than 0
is ignored; an MBAP length outside 2..254 drops the connection.

Seeded input bugs (`input_bugs`, the insecure profile only). Each is a class of inputs:
1. Write Multiple Registers (FC 16) whose byte count is not twice its quantity (any address, any
   quantity, TCP or RTU) stalls the control task for good: coil 0 and the counter freeze and the CAN
   heartbeat stops. The request itself is still answered with exception 03.
2. Read Holding or Input Registers (FC 3 or 4) with a quantity of 0 or more than 125 (any address) on
   Modbus TCP crashes the TCP listener: the connection drops without a reply and no new connection is
   accepted until the device restarts. On RTU the same request gets exception 03.
"""

from __future__ import annotations

import asyncio
import os
import platform
import random
import socket
import struct
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pymodbus
from iec62443_harness.labs.simplc.device import Pty
from iec62443_harness.labs.simplc.faults import SLOW_S
from pymodbus.framer import FramerRTU
from pymodbus.pdu import DecodePDU, ModbusPDU
from pymodbus.pdu.device import ModbusControlBlock, ModbusDeviceIdentification

if TYPE_CHECKING:
    from iec62443_harness.labs.simplc.device import Device

UNIT = 1
FIRMWARE = "2.3.1"
SUPPORTED = frozenset({1, 2, 3, 4, 5, 6, 15, 16, 22, 23, 43})
WRITES = frozenset({5, 6, 15, 16, 22, 23})
RTU_GAP_S = 0.05  # a pause this long between bytes ends an RTU frame (t3.5, generous for a pty)
RTU_MAX_BUFFER = 512
MAX_PENDING = 64  # requests queued on one TCP connection before the device stops reading it

ModbusControlBlock().Identity.update(ModbusDeviceIdentification(info_name={
    "VendorName": "SimPLC Labs", "ProductCode": "SPLC-1", "MajorMinorRevision": FIRMWARE,
    "ProductName": "SimPLC emulated controller", "ModelName": "SimPLC-1"}))


def _u16(data: bytes, at: int) -> int:
    return int.from_bytes(data[at:at + 2], "big")


def check_request(pdu: bytes) -> tuple[int, str] | None:
    """The exception code and reason a well-behaved device answers this request PDU with, or None."""
    fc, n = pdu[0], len(pdu)
    if fc not in SUPPORTED:
        return 1, f"function code {fc} is not supported"
    if fc in (1, 2, 3, 4):
        limit = 2000 if fc < 3 else 125
        if n != 5 or not 1 <= _u16(pdu, 3) <= limit:
            return 3, f"read request needs 4 data bytes and a quantity of 1..{limit}"
    elif fc == 5 and (n != 5 or _u16(pdu, 3) not in (0x0000, 0xFF00)):
        return 3, "write single coil needs a value of 0x0000 or 0xFF00"
    elif fc == 6 and n != 5:
        return 3, "write single register needs 4 data bytes"
    elif fc in (15, 16):
        qty = _u16(pdu, 3) if n >= 5 else 0
        limit, byte_count = (1968, (qty + 7) // 8) if fc == 15 else (123, 2 * qty)
        if n < 6 or not 1 <= qty <= limit or pdu[5] != byte_count or n != 6 + byte_count:
            return 3, f"write multiple needs a quantity of 1..{limit} and a byte count of {byte_count}"
    elif fc == 22 and n != 7:
        return 3, "mask write register needs 6 data bytes"
    elif fc == 23:
        wq = _u16(pdu, 7) if n >= 9 else 0
        if n < 10 or not 1 <= _u16(pdu, 3) <= 125 or not 1 <= wq <= 121 or pdu[9] != 2 * wq or n != 10 + 2 * wq:
            return 3, "read/write multiple needs quantities of 1..125 and 1..121 and a matching byte count"
    elif fc == 43 and (n != 4 or pdu[1] != 0x0E):
        return 1, "only MEI type 14 (read device identification) is supported"
    return None


def write_span(request: ModbusPDU) -> tuple[str, int, int] | None:
    """The table, first address and count a write request touches; None for a read."""
    fc = request.function_code
    if fc == 5:
        return "co", request.address, 1
    if fc == 15:
        return "co", request.address, request.count
    if fc in (6, 22):
        return "hr", request.address, 1
    if fc == 16:
        return "hr", request.address, request.count
    if fc == 23:
        return "hr", request.write_address, request.write_count  # type: ignore[attr-defined]
    return None


@dataclass
class Link:
    """One conversation with a master: a TCP connection or the RTU line."""

    source: str  # audit source, e.g. "modbus_tcp:127.0.0.1:40122"
    tcp: bool
    tokens: float = -1.0
    refilled: float = field(default_factory=time.monotonic)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def take(self, rate: float | None) -> bool:
        """Token bucket: `rate` requests a second, bursts up to one second's worth."""
        if not rate:
            return True
        now = time.monotonic()
        self.tokens = min(rate, (rate if self.tokens < 0 else self.tokens) + (now - self.refilled) * rate)
        self.refilled = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


class ModbusService:
    """Turns a request PDU into a reply PDU, with the device's policy, faults and seeded bugs."""

    def __init__(self, device: Device) -> None:
        self.device = device
        self.decoder = DecodePDU(True)
        self.crash_tcp: Callable[[], None] = lambda: None  # set by the TCP server
        self.firmware = FIRMWARE
        if hasattr(device, "firmware"):
            device.firmware.subscribe(self._firmware_changed)

    def _firmware_changed(self, version: str) -> None:
        self.firmware = version
        ModbusControlBlock().Identity.MajorMinorRevision = version

    async def exchange(self, unit: int, pdu: bytes, link: Link, frame: Callable[[bytes], bytes]) -> bytes | None:
        """The bytes to send back for one request (after faults), or None to stay silent."""
        if self.device.fault in ("silent", "reset"):  # a serial line cannot be reset: it goes quiet
            return None
        async with link.lock:  # one request at a time per master: replies leave in order
            reply = await self.answer(unit, pdu, link)
            if reply is None:
                return None
            if self.device.fault == "slow":
                await asyncio.sleep(SLOW_S)
        if self.device.fault == "garbage":
            return os.urandom(random.randint(1, 24))
        return frame(reply)

    async def answer(self, unit: int, pdu: bytes, link: Link) -> bytes | None:
        dev = self.device
        fc = pdu[0]
        if unit != UNIT:
            return self.error(fc, 0x0B, f"unit {unit} is not this device", link) if link.tcp else None
        dev.master_seen = time.monotonic()
        if not link.take(dev.settings.get("rate_limit_per_s")):
            return self.error(fc, 6, "request rate limit exceeded", link)
        if dev.profile.input_bugs and self._seeded_bug(pdu, link):
            return None
        if problem := check_request(pdu):
            return self.error(fc, *problem, link)
        request = self.decoder.decode(pdu)
        if request is None:
            return self.error(fc, 3, "request does not decode", link)
        request.dev_id = unit
        span = write_span(request)
        if span and (refusal := self._write_refusal(*span)):
            dev.audit.record("write", None, link.source, "denied", f"{span[0]} {span[1]} x{span[2]}: {refusal[1]}")
            return self.error(fc, *refusal, link)
        try:
            response = await request.datastore_update(dev.image, unit)
        except Exception as exc:  # a device answers 04 rather than dropping the master
            return self.error(fc, 4, f"{type(exc).__name__}: {exc}", link)
        if span:
            outcome = "failure" if response.function_code & 0x80 else "success"
            dev.audit.record("write", None, link.source, outcome, f"{span[0]} {span[1]} x{span[2]}")
        reply = bytes([response.function_code]) + response.encode()
        if response.function_code & 0x80:
            return self.error(fc, reply[1], "datastore refused the access", link)
        return reply

    def _seeded_bug(self, pdu: bytes, link: Link) -> bool:
        """Apply a seeded defect; True when the request dies with it (no reply)."""
        fc, n = pdu[0], len(pdu)
        if fc == 16 and n >= 6 and pdu[5] != 2 * _u16(pdu, 3):
            self.device.control.stall(f"FC16 byte count {pdu[5]} for quantity {_u16(pdu, 3)} from {link.source}")
        if link.tcp and fc in (3, 4) and n >= 5 and not 1 <= _u16(pdu, 3) <= 125:
            print(f"simplc: modbus_tcp listener crashed on FC{fc} quantity {_u16(pdu, 3)}", file=sys.stderr)
            self.crash_tcp()
            return True
        return False

    def _write_refusal(self, table: str, first: int, count: int) -> tuple[int, str] | None:
        mode = self.device.settings.get("modbus_writes", "open")
        if mode == "none":
            return 1, "writes are disabled"
        if mode == "ranges":
            ranges = self.device.settings.get("modbus_writable", ())
            if not all(any(lo <= a <= hi for lo, hi in ranges) for a in range(first, first + count)):
                return 2, f"{table} {first}..{first + count - 1} is not writable"
        return None

    def error(self, fc: int, code: int, reason: str, link: Link) -> bytes:
        reply = bytes([(fc | 0x80) & 0xFF, code])
        if link.tcp and self.device.settings.get("verbose_errors"):
            leak = (f" Traceback (most recent call last): File \"/opt/simplc/fw/modbus_slave.py\", line 212, in "
                    f"dispatch: ModbusError: {reason} [simplc-fw {self.firmware}, Python {platform.python_version()}, "
                    f"pymodbus {pymodbus.__version__}]")
            reply += leak.encode()[:240]
        return reply


def _reset(transport: asyncio.BaseTransport) -> None:
    """Close with RST (SO_LINGER 0), as a device whose stack resets connections."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()  # type: ignore[attr-defined]


class _TcpConnection(asyncio.Protocol):
    def __init__(self, server: ModbusTcpServer) -> None:
        self.server = server
        self.service = server.service
        self.buffer = b""
        self.transport: asyncio.Transport | None = None
        self.link: Link | None = None
        self.tasks: set[asyncio.Future[None]] = set()  # requests in progress (held: tasks are weakly referenced)
        self.paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        host, port = transport.get_extra_info("peername")[:2]
        self.link = Link(f"modbus_tcp:{host}:{port}", tcp=True)
        if self.service.device.fault == "reset":
            _reset(transport)
            return
        self.server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)

    def data_received(self, data: bytes) -> None:
        if self.service.device.fault == "reset":
            _reset(self.transport)  # type: ignore[arg-type]
            return
        self.buffer += data
        at = 0
        while len(self.buffer) - at >= 7:
            tid, pid, length, unit = struct.unpack_from(">HHHB", self.buffer, at)
            if not 2 <= length <= 254:  # not Modbus: drop the connection, as most devices do
                self.transport.abort()  # type: ignore[union-attr]
                return
            end = at + 6 + length
            if len(self.buffer) < end:
                break
            if pid == 0:
                task = asyncio.ensure_future(self._serve(tid, unit, self.buffer[at + 7:end]))
                self.tasks.add(task)
                task.add_done_callback(self._done)
            at = end
        self.buffer = self.buffer[at:]
        if len(self.tasks) >= MAX_PENDING and not self.paused:  # backpressure: a flood fills the TCP window
            self.transport.pause_reading()  # type: ignore[union-attr]
            self.paused = True

    def _done(self, task: asyncio.Future[None]) -> None:
        self.tasks.discard(task)
        if self.paused and len(self.tasks) <= MAX_PENDING // 4 and not self.transport.is_closing():  # type: ignore
            self.transport.resume_reading()  # type: ignore[union-attr]
            self.paused = False

    async def _serve(self, tid: int, unit: int, pdu: bytes) -> None:
        def mbap(reply: bytes) -> bytes:
            return struct.pack(">HHHB", tid, 0, len(reply) + 1, unit) + reply

        out = await self.service.exchange(unit, pdu, self.link, mbap)  # type: ignore[arg-type]
        if out and self.transport and not self.transport.is_closing():
            self.transport.write(out)


class ModbusTcpServer:
    def __init__(self, service: ModbusService) -> None:
        self.service = service
        self.connections: set[_TcpConnection] = set()
        self.server: asyncio.AbstractServer | None = None
        self.port = 0
        service.crash_tcp = self.crash
        service.device.faults.subscribe(self._fault_changed)

    async def start(self, sock: socket.socket) -> None:
        self.port = sock.getsockname()[1]
        self.server = await asyncio.get_running_loop().create_server(lambda: _TcpConnection(self), sock=sock)

    def _fault_changed(self, name: str | None) -> None:
        if name == "reset" and self.server is not None:
            self.server.get_loop().call_soon_threadsafe(self._reset_all)

    def _reset_all(self) -> None:
        for conn in list(self.connections):
            if conn.transport is not None:
                _reset(conn.transport)

    def crash(self) -> None:
        """The seeded listener crash: stop accepting and drop every connection."""
        if self.server is not None:
            self.server.close()
        self._reset_all()

    def close(self) -> None:
        self.crash()


class ModbusRtuLine:
    """Modbus RTU slave on the device end of a pty; the harness opens `path` with pyserial."""

    def __init__(self, service: ModbusService) -> None:
        self.service = service
        self.pty = Pty()
        self.path = self.pty.path
        self.framer = FramerRTU(DecodePDU(True))
        self.link = Link("modbus_rtu", tcp=False)
        self.buffer = b""
        self.last_rx = 0.0
        self.tasks: set[asyncio.Future[None]] = set()
        self.loop = asyncio.get_running_loop()
        self.loop.add_reader(self.pty.master, self._readable)

    def _readable(self) -> None:
        data = self.pty.read()
        if not data:
            return
        now = time.monotonic()
        if now - self.last_rx > RTU_GAP_S or len(self.buffer) > RTU_MAX_BUFFER:
            self.buffer = b""  # a silent gap ends any partial frame
        self.last_rx = now
        self.buffer += data
        while self.buffer:
            used, unit, _, pdu = self.framer.decode(self.buffer)
            if not used:
                return
            self.buffer = self.buffer[used:]
            if pdu:
                task = asyncio.ensure_future(self._serve(unit, pdu))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)

    async def _serve(self, unit: int, pdu: bytes) -> None:
        out = await self.service.exchange(unit, pdu, self.link, lambda reply: self.framer.encode(reply, unit, 0))
        if out:
            self.pty.write(out)

    def close(self) -> None:
        self.loop.remove_reader(self.pty.master)
        self.pty.close()
