"""CR 7.1 Denial of service protection (SL 1-4) and CR 7.1 RE(1) Manage communication load (SL 2-4).

Judges CR 7.1 over modbus_tcp, modbus_rtu, can, console and ssh: rate-ramped storms on loopback (Modbus
request floods and TCP connection storms, serial request floods, CAN bus load, console input floods, SSH
connection storms), each rate for STEP_S, from a low rate up to the interface's cap (`safety.rates` /
`max_rate_per_s`; for serial lines and CAN, at most what the line or bus carries at its declared baud or bit
rate), only with `safety.allow_floods`. The essential function is watched over another channel
throughout and must survive every step (the device may drop what it cannot serve: a degraded mode); the
storm stops at once when it is lost. The device must answer again after the storms. The evidence gives, per
storm, each rate achieved and the share answered, and the highest rate held with the function intact.
Judges CR 7.1 RE(1) over modbus_tcp and ssh: during a storm at the cap, a legitimate client polling on its
own connection must still be answered (at least MIN_ANSWERED of its polls within `timeouts.reply_s`).
Not exercised: storms below the application layer (Ethernet, ARP, IP, ICMP, UDP): a network load tester on
a real link is needed for those.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from iec62443_harness.evidence import Evidence
from iec62443_harness.fixtures.drivers.modbus import mbap, rtu_frame
from iec62443_harness.fixtures.fuzz.replay import Watch, open_channel
from iec62443_harness.fixtures.safety import Guard, HarmHalted

STEP_S = 0.3  # each rate of a ramp is held this long
RAMP_FACTOR = 8
READ = bytes.fromhex("0300000001")  # read one holding register
SDO_UPLOAD = bytes.fromhex("4000400000000000")  # upload of object 0x4000 (holding register 0 on SimPLC)
STORMS = {  # interface -> (storm, first rate per second)
    "modbus_tcp": (("requests", 250.0), ("connections", 50.0)),
    "modbus_rtu": (("requests", 100.0),),
    "can": (("frames", 250.0),),
    "console": (("bytes", 4096.0),),
    "ssh": (("connections", 20.0),),
}
CHUNK = 64  # console bytes per write
CAN_FRAME_BITS = 130  # an 8-byte standard frame with stuffing and inter-frame space
MAX_CONNECTION_RATE = 1000.0  # connections a second: beyond this the harness's own machine is the limit
MIN_ANSWERED = 0.5
POLL_S = 0.1


@dataclass(frozen=True)
class Step:
    storm: str
    rate: float  # requested, per second
    sent: int
    answered: int | None  # None: answers are not counted for this storm
    seconds: float
    refused: int = 0  # of the answered, those that were error replies (e.g. Modbus exception 06, busy)

    def line(self) -> str:
        share = ""
        if self.answered is not None and self.sent:
            share = f", {self.answered / self.sent:.0%} answered"
            share += f" ({self.refused} of them refused)" if self.refused else ""
        return (f"{self.storm} at {self.rate:.0f}/s: {self.sent} sent in {self.seconds:.2f} s "
                f"({self.sent / self.seconds if self.seconds else 0:.0f}/s){share}")


def top_rate(spec, interface: str, kind: str) -> float:  # type: ignore[no-untyped-def]
    """The highest rate of a storm: the interface's cap, and never more than its medium carries (a serial
    line's bytes at its baud rate, a CAN bus's frames at its bit rate), nor MAX_CONNECTION_RATE."""
    cap = spec.safety.rate_for(interface)
    iface = getattr(spec.interfaces, interface)
    if interface == "modbus_rtu":
        return min(cap, iface.baudrate / (11 * 8))  # 8-byte requests, 11 bits a character
    if interface == "console":
        return min(cap * CHUNK, iface.baudrate / 10)
    if interface == "can":
        return min(cap, iface.bitrate / CAN_FRAME_BITS)
    return min(cap, MAX_CONNECTION_RATE) if kind == "connections" else cap


def ramp(first: float, cap: float) -> list[float]:
    """first, first x RAMP_FACTOR, ... then the cap (a step within a factor 2 of the cap is left out)."""
    rates = []
    rate = first
    while rate * 2 < cap:
        rates.append(rate)
        rate *= RAMP_FACTOR
    return [*rates, cap]


def _paced(guard: Guard, rate: float, seconds: float, send: Callable[[], bool], poll: Callable[[], None]) -> int:
    """Call `send` `rate` times a second for `seconds` (never above the guard's cap); the sends that went out."""
    start, sent, i = time.monotonic(), 0, 0
    while (now := time.monotonic()) < start + seconds:
        guard.pace()
        delay = start + i / rate - now
        if delay > 0:
            time.sleep(delay)
        i += 1
        sent += send()
        poll()
    return sent


class _Frames:
    """Counts whole frames in a byte stream: MBAP (length field) or fixed-size serial replies."""

    def __init__(self, mbap_framing: bool, size: int = 0) -> None:
        self.mbap_framing, self.size, self.buf, self.count, self.errors = mbap_framing, size, bytearray(), 0, 0

    def feed(self, data: bytes) -> None:
        self.buf += data
        if not self.mbap_framing:
            self.count += len(self.buf) // self.size
            del self.buf[:len(self.buf) - len(self.buf) % self.size]
            return
        while len(self.buf) >= 6:
            length = int.from_bytes(self.buf[4:6], "big")
            if not 2 <= length <= 254:
                self.buf.clear()  # out of step: count no more from this stream
                return
            if len(self.buf) < 6 + length:
                return
            self.errors += len(self.buf) > 7 and self.buf[7] & 0x80 != 0
            del self.buf[:6 + length]
            self.count += 1


def _tcp_requests(iface, guard: Guard, rate: float) -> Step:  # type: ignore[no-untyped-def]
    frames = _Frames(mbap_framing=True)
    request = mbap(1, iface.unit_id, READ)
    sock = socket.create_connection((iface.host, iface.port), timeout=iface.timeouts.connect_s)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setblocking(False)

    def send() -> bool:
        try:
            return sock.send(request) == len(request)
        except BlockingIOError:  # the device is not reading: this one is dropped
            return False

    def poll() -> None:
        try:
            while chunk := sock.recv(65536):
                frames.feed(chunk)
        except (BlockingIOError, InterruptedError):
            pass

    start = time.monotonic()
    try:
        sent = _paced(guard, rate, STEP_S, send, poll)
        deadline = time.monotonic() + iface.timeouts.reply_s
        while frames.count < sent and time.monotonic() < deadline:  # the answers still on their way
            poll()
            time.sleep(0.005)
    except OSError:  # reset by the device: what was counted stands
        sent = frames.count
    finally:
        sock.close()
    return Step("requests", rate, sent, frames.count, time.monotonic() - start, frames.errors)


def _connections(host: str, port: int, timeout: float, guard: Guard, rate: float) -> Step:
    attempts = 0

    def send() -> bool:
        nonlocal attempts
        attempts += 1
        try:
            socket.create_connection((host, port), timeout=timeout).close()
        except OSError:
            return False
        return True

    start = time.monotonic()
    accepted = _paced(guard, rate, STEP_S, send, lambda: None)
    return Step("connections", rate, attempts, accepted, time.monotonic() - start)


def _rtu_requests(iface, guard: Guard, rate: float) -> Step:  # type: ignore[no-untyped-def]
    import serial

    frames = _Frames(mbap_framing=False, size=7)  # unit, function, byte count, one register, CRC
    request = rtu_frame(iface.unit_id, READ)
    start = time.monotonic()
    with serial.serial_for_url(iface.url, baudrate=iface.baudrate, timeout=0,
                               write_timeout=iface.timeouts.reply_s) as port:
        def send() -> bool:
            port.write(request)
            return True

        sent = _paced(guard, rate, STEP_S, send, lambda: frames.feed(port.read(port.in_waiting or 1)))
        deadline = time.monotonic() + iface.timeouts.reply_s
        while frames.count < sent and time.monotonic() < deadline:
            frames.feed(port.read(port.in_waiting or 1))
            time.sleep(0.005)
    return Step("requests", rate, sent, frames.count, time.monotonic() - start)


def _can_frames(iface, guard: Guard, rate: float) -> Step:  # type: ignore[no-untyped-def]
    from iec62443_harness.fixtures.drivers.can import CanDriver

    request, reply = 0x600 + iface.node_id, 0x580 + iface.node_id
    counts = {"answered": 0, "garbled": 0}

    def receive(driver: CanDriver) -> None:
        try:
            while driver.recv(0, (reply,), record=False) is not None:
                counts["answered"] += 1
        except ValueError:  # python-can cannot parse a line the overloaded adapter cut short: a lost frame
            counts["garbled"] += 1

    start = time.monotonic()
    with CanDriver(iface, Evidence(head=0, tail=5), guard) as driver:
        def send() -> bool:
            driver.send(request, SDO_UPLOAD, record=False)
            return True

        sent = _paced(guard, rate, STEP_S, send, lambda: receive(driver))
        deadline = time.monotonic() + iface.timeouts.reply_s
        while counts["answered"] < sent and time.monotonic() < deadline:
            receive(driver)
            time.sleep(0.005)
    return Step("frames", rate, sent, counts["answered"], time.monotonic() - start)


def _console_bytes(iface, guard: Guard, rate: float) -> Step:  # type: ignore[no-untyped-def]
    import serial

    line = (b"storm" * CHUNK)[:CHUNK - 1] + b"\r"
    start = time.monotonic()
    with serial.serial_for_url(iface.url, baudrate=iface.baudrate, timeout=0,
                               write_timeout=iface.timeouts.reply_s) as port:
        def send() -> bool:
            try:
                port.write(line)
            except serial.SerialTimeoutException:  # the device is not reading: dropped
                return False
            return True

        sent = _paced(guard, rate / CHUNK, STEP_S, send, port.reset_input_buffer)
    return Step("bytes", rate, sent * CHUNK, None, time.monotonic() - start)


def storm(spec, interface: str, kind: str, guard: Guard, rate: float) -> Step:  # type: ignore[no-untyped-def]
    iface = getattr(spec.interfaces, interface)
    if interface == "modbus_tcp" and kind == "requests":
        return _tcp_requests(iface, guard, rate)
    if kind == "connections":
        return _connections(iface.host, iface.port, iface.timeouts.connect_s, guard, rate)
    if interface == "modbus_rtu":
        return _rtu_requests(iface, guard, rate)
    if interface == "can":
        return _can_frames(_fast_open(spec, iface), guard, rate)
    return _console_bytes(iface, guard, rate)


def _fast_open(spec, iface):  # type: ignore[no-untyped-def]
    """An emulated slcan adapter needs none of python-can's 2 s wait after opening the port."""
    if iface.interface == "slcan" and spec.emulator is not None and "sleep_after_open" not in iface.options:
        return iface.model_copy(update={"options": {**iface.options, "sleep_after_open": 0}})
    return iface


def _answering(target, interface: str) -> bool:  # type: ignore[no-untyped-def]
    channel = open_channel(target.spec, interface, Evidence(), Guard(target.spec.safety, interface))
    try:
        return channel.answering()
    finally:
        channel.close()


@pytest.mark.judges("CR 7.1", over=list(STORMS))
def test_essential_function_survives_storms(target, interface, evidence):
    spec = target.spec
    target.require(interface)
    guard = Guard(spec.safety, interface)  # its own: a halt stops this storm, not the rest of the run
    guard.require("floods")
    held: dict[str, float] = {}
    lost: str | None = None
    watch = Watch(spec, interface, evidence, [guard]) if spec.essential_function is not None else None
    if watch is None:
        evidence.add("check", "no essential function declared: only the device's answers are judged")
    try:
        if watch is not None:
            watch.__enter__()
        for kind, first in STORMS[interface]:
            for rate in ramp(first, top_rate(spec, interface, kind)):
                try:
                    step = storm(spec, interface, kind, guard, rate)
                except HarmHalted as halted:
                    lost = f"{kind} at {rate:.0f}/s: {halted}"
                    break
                evidence.add("storm", step.line())
                if watch is not None and watch.lost:
                    lost = f"{kind} at {rate:.0f}/s: {watch.lost}"
                    break
                held[kind] = rate
            if lost:
                break
        if watch is not None and lost is None and not watch.survives(time.monotonic()):
            lost = f"after the storms: {watch.lost or 'no transition'}"
    finally:
        if watch is not None:
            watch.__exit__(None, None, None)
    summary = ", ".join(f"{kind} up to {rate:.0f}/s" for kind, rate in held.items()) or "no rate"
    evidence.add("check", f"held with the essential function intact: {summary}")
    assert lost is None, f"essential function lost under a storm on {interface} ({lost}); held before: {summary}"
    assert _answering(target, interface), f"the device does not answer on {interface} after the storms"


class _ModbusPoller:
    """A legitimate client: one connection of its own, one read per poll."""

    def __init__(self, spec, interface: str) -> None:  # type: ignore[no-untyped-def]
        from iec62443_harness.fixtures.drivers.modbus import ModbusDriver

        self.driver = ModbusDriver(getattr(spec.interfaces, interface), Evidence(), Guard(spec.safety, interface))

    def __call__(self) -> bool:
        return self.driver.send_pdu(READ, record=False).kind in ("reply", "exception")

    def close(self) -> None:
        self.driver.close()


class _SshPoller:
    """A legitimate client: a connection that gets the server's identification, one per poll."""

    def __init__(self, spec) -> None:  # type: ignore[no-untyped-def]
        self.channel = open_channel(spec, "ssh", Evidence(), Guard(spec.safety, "ssh"))

    def __call__(self) -> bool:
        return self.channel.probe()

    def close(self) -> None:
        self.channel.close()


def _poller(spec, interface: str):  # type: ignore[no-untyped-def]
    return _ModbusPoller(spec, interface) if interface == "modbus_tcp" else _SshPoller(spec)


@pytest.mark.judges("CR 7.1 RE(1)", over=["modbus_tcp", "ssh"])
def test_keeps_communicating_under_load(target, interface, evidence):
    spec = target.spec
    target.require(interface)
    storm_guard = Guard(spec.safety, interface)
    storm_guard.require("floods")
    kind, _ = STORMS[interface][0]
    rate = top_rate(spec, interface, kind)
    steps: list[Step] = []
    stop = threading.Event()

    def flood() -> None:
        while not stop.is_set():
            try:
                steps.append(storm(spec, interface, kind, storm_guard, rate))
            except (HarmHalted, OSError):
                return

    polls: list[bool] = []
    poll = _poller(spec, interface)
    thread = threading.Thread(target=flood, name="storm", daemon=True)
    thread.start()
    try:
        time.sleep(0.1)  # let the storm build up
        end = time.monotonic() + 2 * STEP_S
        while time.monotonic() < end:
            asked = time.monotonic()
            polls.append(poll())
            time.sleep(max(0.0, POLL_S - (time.monotonic() - asked)))
    finally:
        stop.set()
        thread.join(STEP_S + 2 * target.interface(interface).timeouts.reply_s + 1)
        poll.close()  # type: ignore[attr-defined]
    answered = sum(polls) / len(polls) if polls else 0.0
    for step in steps:
        evidence.add("storm", step.line())
    evidence.add("check", f"legitimate polls answered during the {kind} storm at {rate:.0f}/s: "
                          f"{sum(polls)}/{len(polls)}")
    assert answered >= MIN_ANSWERED, (f"under a {kind} storm at {rate:.0f}/s on {interface} only {answered:.0%} of a "
                                      f"legitimate client's polls were answered (at least {MIN_ANSWERED:.0%} needed)")
