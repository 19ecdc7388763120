"""The rate cap holds per interface, whoever sends: counted at the device, not in the harness.

A small Modbus TCP device of our own (a thread in this process) timestamps every request it receives. The
harness runs the CR 7.1, CR 7.1 RE(1) and CR 3.5 suites against it in a subprocess, with the target file's cap
at 20 requests/s and the essential function watched over the same (attacked) interface, so a storm or a fuzz
campaign, the monitor, the health check and a poller all send at once. No 1 s window may hold more than 20.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.support import free_port

CAP = 20


class CountingDevice:
    """Answers Modbus TCP: coil 0 toggles 1 s on / 2 s off, reads of anything else get zeros, unknown
    functions exception 01; malformed headers close the connection. Every request is timestamped."""

    def __init__(self) -> None:
        self.port = free_port()
        self.start = time.monotonic()
        self.requests: list[float] = []
        self._lock = threading.Lock()
        self._server = socket.create_server(("127.0.0.1", self.port))
        self._server.settimeout(0.2)
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def _coil(self) -> int:
        return 1 if (time.monotonic() - self.start) % 3.0 < 1.0 else 0

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(0.5)
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
                    if buf[2:4] != b"\0\0" or not 2 <= length <= 254:
                        return
                    if len(buf) < 6 + length:
                        break
                    frame, buf = buf[:6 + length], buf[6 + length:]
                    with self._lock:
                        self.requests.append(time.monotonic())
                    try:
                        conn.sendall(self._answer(frame))
                    except OSError:
                        return

    def _answer(self, frame: bytes) -> bytes:
        tid, unit, pdu = frame[:2], frame[6], frame[7:]
        fc = pdu[0] if pdu else 0
        if fc in (1, 2) and len(pdu) == 5:
            body = bytes([fc, 1, self._coil()])
        elif fc in (3, 4) and len(pdu) == 5 and 1 <= int.from_bytes(pdu[3:5], "big") <= 125:
            count = int.from_bytes(pdu[3:5], "big")
            body = bytes([fc, 2 * count]) + bytes(2 * count)
        else:
            body = bytes([(fc | 0x80) & 0xFF, 1])
        return tid + b"\0\0" + (len(body) + 1).to_bytes(2, "big") + bytes([unit]) + body

    def busiest_second(self) -> tuple[int, float]:
        """The most requests in any half-open 1 s window, and when it began (s after start)."""
        with self._lock:
            times = sorted(self.requests)
        best, at, j = 0, 0.0, 0
        for i, t in enumerate(times):
            while j < len(times) and times[j] < t + 1.0:
                j += 1
            if j - i > best:
                best, at = j - i, t - self.start
        return best, at

    def close(self) -> None:
        self._stop.set()
        self._server.close()


TARGET = """\
identity: {{vendor: Test, model: Counting device, firmware: "1"}}
component_type: embedded_device
security_level: 1
interfaces:
  modbus_tcp: {{host: 127.0.0.1, port: {port}, timeouts: {{connect_s: 1.0, reply_s: 0.5}}}}
essential_function:
  description: coil 0 toggles 1 s on / 2 s off
  via: [modbus_tcp]
  signal: {{kind: coil, address: 0, high_s: 1.0, low_s: 2.0}}
  jitter_s: 0.2
  max_gap_s: 2.6
safety:
  allow_fuzzing: true
  allow_floods: true
  max_rate_per_s: {cap}
  storms: {{step_s: 1.0}}
  fuzz_budget: {{modbus_tcp: {{examples: 200, seconds: 3}}}}
"""


@pytest.fixture
def device():  # type: ignore[no-untyped-def]
    dev = CountingDevice()
    try:
        yield dev
    finally:
        dev.close()


def test_storms_fuzzing_monitor_and_poller_together_stay_under_the_cap(device: CountingDevice, tmp_path: Path) -> None:
    (tmp_path / "counting.yaml").write_text(TARGET.format(port=device.port, cap=CAP))
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--target",
                           str(tmp_path / "counting.yaml"), "--reports-dir", str(tmp_path / "reports"), "-k",
                           "denial_of_service or input_validation", "--seed", "1", str(root / "conformance")],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(root)})
    out = done.stdout[-3000:] + done.stderr[-2000:]
    assert "passed" in done.stdout or "failed" in done.stdout, out
    assert len(device.requests) > 3 * CAP, f"the suites sent only {len(device.requests)} requests: {out}"
    most, at = device.busiest_second()
    assert most <= CAP, f"{most} requests arrived within one second (from +{at:.2f} s), cap {CAP}/s: {out}"
