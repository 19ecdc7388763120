"""CAN: node 5 on a bus reached through an slcan (LAWICEL) adapter, both emulated on a pty.

There is no SocketCAN here. The harness opens the pty with python-can:
`can.Bus(interface="slcan", channel=<pty path>, bitrate=500000)`. The device end plays the adapter
(it answers the ASCII commands O/L/C/Sn/sxxxx/V/N/F/Z with CR, or BEL for what it does not know, acks
each transmitted frame with z/Z) and node 5 on the bus behind it. As with a real adapter, frames reach the
harness only while its channel is open (O or L until C); closing the channel drops frames not yet read.

Node 5:
- Heartbeat: id 0x705, one byte 0x05 (operational), every 500 ms while the control task runs.
- SDO-like expedited service: requests to 0x605, replies from 0x585, always 8 data bytes:
    byte 0     command: 0x40 read, 0x2B write 16 bits
    bytes 1-2  index, little-endian: table code + address; table codes 0x2000 coils, 0x3000 discrete
               inputs, 0x4000 holding registers, 0x5000 input registers; address 0..999
    byte 3     sub-index (echoed, otherwise ignored)
    bytes 4-5  value, little-endian (write)
  Replies: read 0x4B, index, sub, value (LE), 0, 0; write 0x60, index, sub, 0, 0, 0, 0;
  error 0x80, index, sub, abort code (LE, 32 bits):
    0x05040001 unknown command, or a request that is not 8 bytes
    0x06020000 no such table or address
    0x06010002 write to a read-only table (discrete inputs, input registers)
    0x06010000 write refused by `can_writes` ("none", or outside `modbus_writable` for "ranges")
    0x06090030 value out of range (a coil takes 0 or 1)
  Writes go to the audit log (event "write", source "can").

Seeded input bugs (`input_bugs`, the insecure profile only). Each is a class of inputs:
1. An 8-byte request to 0x605 whose command byte is 0xF0-0xFF stalls the control task for good (coil 0
   and the counter freeze, the heartbeat stops). The request is answered with abort 0x05040001.
2. A request to 0x605 shorter than 4 bytes (DLC 0-3) crashes the CAN service: node 5 falls silent for
   good (no heartbeat, no replies) while the control task runs on. The adapter still answers commands.
Faults: `can_off` silences the node (the adapter still answers), `slow` delays each SDO reply 1.5 s.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from typing import TYPE_CHECKING

from iec62443_harness.labs.simplc.device import Pty
from iec62443_harness.labs.simplc.faults import SLOW_S
from iec62443_harness.labs.simplc.image import ImageError

if TYPE_CHECKING:
    from iec62443_harness.labs.simplc.device import Device

NODE_ID = 5
HEARTBEAT_ID, SDO_REQUEST_ID, SDO_REPLY_ID = 0x700 + NODE_ID, 0x600 + NODE_ID, 0x580 + NODE_ID
OPERATIONAL = 0x05
HEARTBEAT_SCANS = 5  # control scans (100 ms) between heartbeats
READ, WRITE = 0x40, 0x2B
READ_OK, WRITE_OK, ABORT = 0x4B, 0x60, 0x80
TABLE_CODES = {0x2: "co", 0x3: "di", 0x4: "hr", 0x5: "ir"}
BAD_COMMAND, NO_OBJECT, READ_ONLY, REFUSED, OUT_OF_RANGE = 0x05040001, 0x06020000, 0x06010002, 0x06010000, 0x06090030
MAX_LINE = 64


class SdoAbort(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(f"abort 0x{code:08X}")
        self.code = code


def parse_frame(line: str) -> tuple[int, bool, bytes | None] | None:
    """(id, extended, data or None for a remote frame) from an slcan t/T/r/R line, or None if malformed."""
    kind = line[:1]
    width = 8 if kind in ("T", "R") else 3
    try:
        can_id, dlc = int(line[1:1 + width], 16), int(line[1 + width])
    except (ValueError, IndexError):
        return None
    if dlc > 8 or can_id >= (1 << (29 if width == 8 else 11)):
        return None
    if kind in ("r", "R"):
        return can_id, width == 8, None
    payload = line[2 + width:]
    if len(payload) != 2 * dlc:
        return None
    try:
        return can_id, width == 8, bytes.fromhex(payload)
    except ValueError:
        return None


class CanNode:
    def __init__(self, device: Device) -> None:
        self.device = device
        self.pty = Pty()
        self.path = self.pty.path
        self.open = False  # the adapter's channel, opened by the harness with O or L
        self.crashed: str | None = None  # why the seeded bug killed the CAN service
        self._line = b""
        self._write_lock = threading.Lock()  # heartbeats come from the control thread
        self.loop = asyncio.get_running_loop()
        self.loop.add_reader(self.pty.master, self._readable)
        device.control.add_scan_hook(self._scan)

    @property
    def on_bus(self) -> bool:
        return self.crashed is None and self.device.fault != "can_off"

    def close(self) -> None:
        self.loop.remove_reader(self.pty.master)
        with self._write_lock:
            self.pty.close()

    def _send_raw(self, text: str) -> None:
        with self._write_lock:
            self.pty.write(text.encode("ascii"))

    def send(self, can_id: int, data: bytes) -> None:
        """Put a frame on the bus; the harness sees it only while its adapter channel is open."""
        if self.open and self.on_bus:
            self._send_raw(f"t{can_id:03X}{len(data)}{data.hex().upper()}\r")

    def _scan(self, scan: int) -> None:
        if scan % HEARTBEAT_SCANS == 0:
            self.send(HEARTBEAT_ID, bytes([OPERATIONAL]))

    # --- the adapter: slcan commands from the harness

    def _readable(self) -> None:
        for byte in self.pty.read():
            if byte in (0x0D, 0x0A):
                line, self._line = self._line, b""
                if byte == 0x0D:
                    self._send_raw(self._command(line.decode("ascii", "replace")))
            elif len(self._line) < MAX_LINE:
                self._line += bytes([byte])

    def _command(self, line: str) -> str:
        kind = line[:1]
        if kind in ("O", "L"):
            self.open = True
            return "\r"
        if kind == "C":
            self.open = False
            self.pty.discard_pending()
            return "\r"
        if kind in ("S", "s", "Z", ""):
            return "\r"
        if kind == "V":
            return "V1013\r"
        if kind == "N":
            return "NSP05\r"
        if kind == "F":
            return "F00\r"
        if kind in ("t", "T", "r", "R") and self.open and (frame := parse_frame(line)) is not None:
            self._on_frame(*frame)
            return "z\r" if kind in ("t", "r") else "Z\r"
        return "\a"

    # --- node 5

    def _on_frame(self, can_id: int, extended: bool, data: bytes | None) -> None:
        if extended or data is None or can_id != SDO_REQUEST_ID or not self.on_bus:
            return
        try:
            reply = self._sdo(data)
        except Exception as exc:  # only a seeded bug gets here: the CAN service dies
            self.crashed = f"{type(exc).__name__}: {exc} on request {data.hex()}"
            print(f"simplc: CAN service crashed: {self.crashed}", file=sys.stderr)
            return
        if self.device.fault == "slow":
            self.loop.call_later(SLOW_S, self.send, SDO_REPLY_ID, reply)
        else:
            self.send(SDO_REPLY_ID, reply)

    def _sdo(self, data: bytes) -> bytes:
        bugs = self.device.profile.input_bugs
        if not bugs and len(data) != 8:
            return bytes([ABORT, 0, 0, 0]) + BAD_COMMAND.to_bytes(4, "little")
        command, index, sub = data[0], data[1] | data[2] << 8, data[3]  # IndexError: seeded bug 2
        head = index.to_bytes(2, "little") + bytes([sub])
        if bugs and len(data) == 8 and command >= 0xF0:
            self.device.control.stall(f"CAN SDO command 0x{command:02X}")
        try:
            if command == READ:
                return bytes([READ_OK]) + head + self._read(index).to_bytes(2, "little") + b"\0\0"
            if command == WRITE:
                self._write(index, int.from_bytes(data[4:6].ljust(2, b"\0"), "little"))
                return bytes([WRITE_OK]) + head + b"\0\0\0\0"
            raise SdoAbort(BAD_COMMAND)
        except SdoAbort as abort:
            return bytes([ABORT]) + head + abort.code.to_bytes(4, "little")

    def _locate(self, index: int) -> tuple[str, int]:
        table = TABLE_CODES.get(index >> 12)
        address = index & 0x0FFF
        if table is None or address >= self.device.image.size:
            raise SdoAbort(NO_OBJECT)
        return table, address

    def _read(self, index: int) -> int:
        table, address = self._locate(index)
        try:
            return self.device.image.read(table, address)[0]
        except ImageError:
            raise SdoAbort(NO_OBJECT) from None

    def _write(self, index: int, value: int) -> None:
        table, address = self._locate(index)
        detail = f"{table} {address} = {value}"
        code = None
        if table not in ("co", "hr"):
            code = READ_ONLY
        elif table == "co" and value not in (0, 1):
            code = OUT_OF_RANGE
        else:
            mode = self.device.settings.get("can_writes", "open")
            ranges = self.device.settings.get("modbus_writable", ())
            if mode == "none" or (mode == "ranges" and not any(lo <= address <= hi for lo, hi in ranges)):
                code = REFUSED
        if code is not None:
            self.device.audit.record("write", None, "can", "denied", f"{detail}: abort 0x{code:08X}")
            raise SdoAbort(code)
        self.device.image.write(table, address, [value])
        self.device.audit.record("write", None, "can", "success", detail)
