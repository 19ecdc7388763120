"""A small Modbus TCP device of our own (threads in the test's process) with two input-validation defects, each
of which it recovers from by itself, and its fixed twin.

- A header whose length field is below 2 (no function code) makes its listener refuse new connections for
  `refuse_s`; connections already open are served on. The 7-byte header alone is enough.
- A malformed function 43 (anything but MEI 14 with a read code of 1-4 and an object id) addressed to a unit id
  other than its own stalls the control task for `stall_s` (its gateway runs inside the control task): coil 0
  stops toggling, so the essential function is lost while the device still answers. The header and the function
  code are enough.

Both hide in the same fuzz group (framing: the header defect is frequent there, the stall rare), so a campaign
that stopped at its first finding would report one of them. `fixed=True` is the twin without either defect.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time

from tests.support import free_port

UNIT = 1


def refuses(case: bytes) -> bool:
    """The header defect's class: a whole MBAP header whose length field is below 2."""
    return len(case) >= 7 and int.from_bytes(case[4:6], "big") < 2


def stalls(case: bytes) -> bool:
    """The stall defect's class: a malformed function 43 (not MEI 14 with a read code of 1-4 and an object id)
    to another unit id, whole by its header."""
    pdu = case[7:]
    whole = len(case) >= 8 and case[2:4] == b"\0\0" and len(case) == 6 + int.from_bytes(case[4:6], "big")
    return whole and case[6] != UNIT and pdu[0] == 43 and not (len(pdu) == 4 and pdu[1] == 0x0E and
                                                                pdu[2] in (1, 2, 3, 4))


class FlawedDevice:
    """Coil 0 toggles `high_s` on / `low_s` off, run by a control thread; reads answer zeros elsewhere."""

    def __init__(self, *, fixed: bool = False, refuse_s: float = 1.0, stall_s: float = 1.0, high_s: float = 0.2,
                 low_s: float = 0.2) -> None:
        self.fixed, self.refuse_s, self.stall_s, self.high_s, self.low_s = fixed, refuse_s, stall_s, high_s, low_s
        self.port = free_port()
        self.trips: list[tuple[float, str]] = []  # (time.monotonic(), "refuse" | "stall")
        self._coil = 1
        self._stalled_until = self._refusing_until = 0.0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._server = self._listen()
        self._threads = [threading.Thread(target=self._control, daemon=True),
                         threading.Thread(target=self._accept, daemon=True)]
        for thread in self._threads:
            thread.start()

    def _listen(self) -> socket.socket:
        server = socket.create_server(("127.0.0.1", self.port))
        server.settimeout(0.05)
        return server

    def _control(self) -> None:
        virtual, last = 0.0, time.monotonic()
        while not self._stop.wait(0.005):
            now = time.monotonic()
            if now >= self._stalled_until:
                virtual += now - last
                self._coil = 1 if virtual % (self.high_s + self.low_s) < self.high_s else 0
            last = now

    def _accept(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                if time.monotonic() >= self._refusing_until and self._server is None:
                    self._server = self._listen()
                server = self._server
            if server is None:
                time.sleep(0.01)
                continue
            try:
                conn, _ = server.accept()
            except (TimeoutError, OSError):
                continue
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()
        if self._server is not None:
            self._server.close()

    def _trip(self, what: str) -> None:
        with self._lock:
            self.trips.append((time.monotonic(), what))
            if what == "stall":
                self._stalled_until = time.monotonic() + self.stall_s
                return
            self._refusing_until = time.monotonic() + self.refuse_s
            server, self._server = self._server, None
        if server is not None:  # at once: a connection already in its backlog is reset too
            server.close()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(0.2)
        buf = b""
        with conn:
            while not self._stop.is_set():
                try:
                    chunk = conn.recv(4096)
                except TimeoutError:
                    continue
                except OSError:
                    return
                if not chunk:
                    return
                buf += chunk
                while len(buf) >= 7:
                    length = int.from_bytes(buf[4:6], "big")
                    if length < 2:
                        if not self.fixed:
                            self._trip("refuse")
                        return  # (the twin only drops the connection, as it should)
                    if length > 254:
                        return
                    if len(buf) < 6 + length:
                        break
                    frame, buf = buf[:6 + length], buf[6 + length:]
                    if frame[2:4] != b"\0\0":
                        continue  # not Modbus: ignored
                    with contextlib.suppress(OSError):
                        conn.sendall(self._answer(frame))

    def _answer(self, frame: bytes) -> bytes:
        tid, unit, pdu = frame[:2], frame[6], frame[7:]
        fc = pdu[0]
        if unit != UNIT:  # the gateway's: no device behind it answers
            if stalls(frame) and not self.fixed:
                self._trip("stall")
            body = bytes([(fc | 0x80) & 0xFF, 0x0B])
        elif fc in (1, 2) and len(pdu) == 5 and 1 <= int.from_bytes(pdu[3:5], "big") <= 2000:
            count = int.from_bytes(pdu[3:5], "big")
            bits = bytearray((count + 7) // 8)
            bits[0] = self._coil if int.from_bytes(pdu[1:3], "big") == 0 else 0
            body = bytes([fc, len(bits)]) + bits
        elif fc in (3, 4) and len(pdu) == 5 and 1 <= int.from_bytes(pdu[3:5], "big") <= 125:
            count = int.from_bytes(pdu[3:5], "big")
            body = bytes([fc, 2 * count]) + bytes(2 * count)
        elif fc in (1, 2, 3, 4, 43):
            body = bytes([fc | 0x80, 0x03])
        else:
            body = bytes([(fc | 0x80) & 0xFF, 0x01])
        return tid + b"\0\0" + (len(body) + 1).to_bytes(2, "big") + bytes([unit]) + body

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(2)


TARGET = """\
identity: {{vendor: Test, model: Flawed device, firmware: "1"}}
component_type: embedded_device
security_level: 1
interfaces:
  modbus_tcp: {{host: 127.0.0.1, port: {port}, timeouts: {{connect_s: 0.5, reply_s: 0.3}}}}
essential_function:
  description: coil 0 toggles {high:g} s on / {low:g} s off
  via: [modbus_tcp]
  signal: {{kind: coil, address: 0, high_s: {high}, low_s: {low}}}
  jitter_s: 0.08
  max_gap_s: {gap}
safety:
  allow_fuzzing: true
  allow_floods: true
  max_rate_per_s: {rate}
  storms: {{step_s: 1.0}}
  fuzz_budget: {{modbus_tcp: {{examples: {examples}, seconds: {seconds}, shrink_seconds: {shrink}}}}}
recovery: {{self_recovery_s: {wait}}}
"""


def target_text(device: FlawedDevice, *, examples: int = 75, seconds: float = 30.0, shrink: float = 20.0,
                wait: float = 5.0, rate: float = 10000) -> str:
    """The device's target file: it comes back by itself within `wait` s, and says so. The budget is counted
    in examples (25 a group of 128 cases), so that a busy machine runs the same cases, only slower."""
    gap = max(device.high_s, device.low_s) + 0.25
    return TARGET.format(port=device.port, high=device.high_s, low=device.low_s, gap=gap, examples=examples,
                         seconds=seconds, shrink=shrink, wait=wait, rate=rate)
