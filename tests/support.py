"""Helpers that several of the harness's own test modules (and benchmarks/) share: a free loopback port,
raw pty pairs and a pty null-modem link, a pymodbus device in a subprocess (ModbusLab), a heartbeat thread
on CAN and a console socket (Ticker), polling until a condition holds, ending a child process, and a lab
fault held for a `with` block."""

from __future__ import annotations

import contextlib
import os
import random
import select
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import tty
from collections.abc import Callable, Iterator
from typing import Any

import can
from iec62443_harness import labs

# --- ports, ptys, processes


def free_port() -> int:
    """A free loopback port below the ephemeral range (32768+), where a client socket cannot take it."""
    for port in random.sample(range(20000, 32768), 200):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 20000-32767")


def raw_pty() -> tuple[int, int, str]:
    """A pty pair in raw mode: (master fd, slave fd, the slave's device path)."""
    master, slave = os.openpty()
    tty.setraw(slave)
    return master, slave, os.ttyname(slave)


class PtyLink:
    """Two pty pairs joined by a relay thread: a null-modem cable with a device path at each end."""

    def __init__(self) -> None:
        self.fds: list[int] = []
        self.masters: list[int] = []
        self.paths: list[str] = []
        for _ in range(2):
            master, slave, path = raw_pty()  # slaves stay open: the masters never see a hang-up between users
            self.fds += [master, slave]
            self.masters.append(master)
            self.paths.append(path)
        self.stop_r, self.stop_w = os.pipe()
        self.thread = threading.Thread(target=self._relay, daemon=True)
        self.thread.start()

    def _relay(self) -> None:
        a, b = self.masters
        peer = {a: b, b: a}
        while True:
            ready, _, _ = select.select([a, b, self.stop_r], [], [], 1.0)
            if self.stop_r in ready:
                return
            for fd in ready:
                with contextlib.suppress(OSError):  # a side being reopened: drop, as a cable would
                    os.write(peer[fd], os.read(fd, 4096))

    def close(self) -> None:
        os.write(self.stop_w, b"x")
        self.thread.join(5)
        for fd in (*self.fds, self.stop_r, self.stop_w):
            os.close(fd)


def end_process(proc: subprocess.Popen, timeout: float) -> None:
    """Ask a child process to end (SIGTERM); kill it when it has not within `timeout` s."""
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout)


def wait_for(predicate: Callable[[], Any], timeout: float) -> float | None:
    """Poll until predicate() is true: the monotonic time it was, or None on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return time.monotonic()
        time.sleep(0.005)
    return None


@contextlib.contextmanager
def fault(running: labs.Running, name: str) -> Iterator[None]:
    """An emulated device in fault `name` for the `with` block, and back to normal after it."""
    running.set_fault(name)
    try:
        yield
    finally:
        running.set_fault(None)


# --- devices: a pymodbus server in a subprocess, a CAN and console heartbeat in a thread

LAB = textwrap.dedent("""
    import asyncio, os, sys, threading, time
    from pymodbus.server import ModbusTcpServer
    from pymodbus.simulator import DataType, SimData, SimDevice

    high, low, period, port = float(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
    t0, frozen = time.monotonic(), None

    def control():  # "stall" freezes the control task; end of input (the test is gone) ends the device
        global frozen
        for line in sys.stdin:
            if line.strip() == "stall":
                frozen = time.monotonic()
        os._exit(0)

    async def control_task(fc, start, address, count, registers, values):
        t = (frozen or time.monotonic()) - t0
        registers[0] = 1 if t % (high + low) < high else 0   # coil 0
        registers[1] = int(t / period) & 0xFFFF               # holding register 1 counts

    async def main():
        data = [SimData(0, count=2, values=0, datatype=DataType.REGISTERS)]
        server = ModbusTcpServer(SimDevice(0, simdata=data, action=control_task), address=("127.0.0.1", port))
        await server.serve_forever(background=True)
        threading.Thread(target=control, daemon=True).start()
        print("ready", flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())
""")


class ModbusLab:
    """A pymodbus server whose coil 0 toggles `high`/`low` s and holding register 1 counts every `period` s."""

    def __init__(self, high: float = 0.2, low: float = 0.4, period: float = 0.1, port: int | None = None) -> None:
        self.args = [str(high), str(low), str(period)]
        self.port = port or free_port()
        self.proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> ModbusLab:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout: float = 10.0) -> ModbusLab:
        self.proc = subprocess.Popen([sys.executable, "-c", LAB, *self.args, str(self.port)], text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready or self.proc.stdout.readline().strip() != "ready":
            self.stop()
            raise RuntimeError(f"pymodbus lab on port {self.port} did not start within {timeout} s")
        return self

    def stall(self) -> None:
        assert self.proc and self.proc.stdin
        self.proc.stdin.write("stall\n")
        self.proc.stdin.flush()

    def kill(self) -> None:
        """The device dies at once (SIGKILL), as a power loss would."""
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    def stop(self) -> None:
        if self.proc is not None:
            self.kill()
            for pipe in (self.proc.stdin, self.proc.stdout):
                if pipe:
                    pipe.close()
            self.proc = None


class Ticker:
    """A device thread that emits its heartbeat every `period` s until stalled: CAN frames on a python-can
    `virtual` channel, or "tick N" console lines to whoever connects to a loopback TCP port (socket://)."""

    def __init__(self, period: float = 0.1) -> None:
        self.period, self.stalled, self.n = period, threading.Event(), 0
        self._stop = threading.Event()
        self.channel = f"efm-{os.getpid()}-{id(self)}"
        self._server = socket.create_server(("127.0.0.1", free_port()))
        self._server.settimeout(0.005)
        self.port = self._server.getsockname()[1]
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        bus = can.Bus(interface="virtual", channel=self.channel)
        conns: list[socket.socket] = []
        try:
            next_at = time.monotonic()
            while not self._stop.is_set():
                with contextlib.suppress(TimeoutError):  # the accept timeout paces this loop
                    conns.append(self._server.accept()[0])
                if time.monotonic() >= next_at and not self.stalled.is_set():
                    self.n += 1
                    bus.send(can.Message(arbitration_id=0x705, data=[5], is_extended_id=False))
                    for conn in conns:
                        conn.sendall(f"noise\r\ntick {self.n}\r\n".encode())
                    next_at += self.period
        finally:
            bus.shutdown()
            for conn in conns:
                conn.close()
            self._server.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)


# --- a Modbus TCP device that counts what reaches it


class CountingDevice:
    """A Modbus TCP device of our own that counts what reaches it: coil 0 toggles 1 s on / 2 s off, reads of
    anything else get zeros, other functions exception 01; malformed headers close the connection. Every
    request is kept with its arrival time (`frames`)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.start = time.monotonic()
        self.requests: list[float] = []
        self.frames: list[bytes] = []
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
                        self.frames.append(frame)
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


class Syslog:
    """A UDP collector on 127.0.0.1 for an emulated device's forwarded audit records."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.address = self.sock.getsockname()
        self.seen: list[str] = []

    def wait_for(self, *texts: str, timeout: float = 2.0) -> str | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(TimeoutError):
                self.seen.append(self.sock.recv(65536).decode())
            if match := next((line for line in self.seen if all(t in line for t in texts)), None):
                return match
        return None
