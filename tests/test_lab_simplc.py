"""The emulated PLC (labs.simplc) from outside, as the harness meets it: started through `labs.start`,
reached over Modbus TCP and RTU, CAN (slcan on a pty), SSH and the console; its essential function timed;
its seeded input bugs triggered (insecure) and survived (sl2); each fault selected and seen; and nothing
left behind by stop(). Two module-scoped devices (insecure, sl2) keep the run short; every test also has
a hard time limit.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import can
import paramiko
import pytest
import serial
from iec62443_harness import labs
from iec62443_harness.labs import LabError
from pymodbus.framer import FramerRTU

from tests.support import fault

TEST_TIMEOUT_S = 60
REPLY_S = 1.0
HEARTBEAT, SDO_REQUEST, SDO_REPLY = 0x705, 0x605, 0x585
pytestmark = pytest.mark.timeout(TEST_TIMEOUT_S)
ACCOUNT_VARS = {f"SIMPLC_{n}_PASSWORD" for n in ("ADMIN", "ENGINEER", "OPERATOR", "VIEWER", "LOCKTEST", "PWTEST")}


@pytest.fixture(scope="module")
def insecure() -> Iterator[labs.Running]:
    running = labs.start("simplc", "insecure")
    yield running
    running.stop()


@pytest.fixture(scope="module")
def sl2() -> Iterator[labs.Running]:
    running = labs.start("simplc", "sl2")
    yield running
    running.stop()


# --- masters: exact bytes out, exact bytes back


class Tcp:
    """A Modbus TCP master on a raw socket."""

    def __init__(self, running: labs.Running, timeout: float = REPLY_S) -> None:
        ep = running.endpoints["modbus_tcp"]
        self.sock = socket.create_connection((ep["host"], ep["port"]), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.tid = 0

    def __enter__(self) -> Tcp:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def send(self, pdu: bytes, unit: int = 1) -> int:
        self.tid = (self.tid + 1) & 0xFFFF
        self.sock.sendall(struct.pack(">HHHB", self.tid, 0, len(pdu) + 1, unit) + pdu)
        return self.tid

    def _exact(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError(f"closed after {len(data)} of {n} bytes")
            data += chunk
        return data

    def recv(self) -> tuple[int, bytes]:
        tid, _, length, _ = struct.unpack(">HHHB", self._exact(7))
        return tid, self._exact(length - 1)

    def ask(self, pdu: bytes, unit: int = 1) -> bytes:
        tid = self.send(pdu, unit)
        got, reply = self.recv()
        assert got == tid, f"reply to transaction {got}, expected {tid}"
        return reply


def read(fc: int, address: int, count: int = 1) -> bytes:
    return struct.pack(">BHH", fc, address, count)


def registers(reply: bytes) -> list[int]:
    assert reply[0] in (3, 4), f"not a register reply: {reply.hex()}"
    return [int.from_bytes(reply[i:i + 2], "big") for i in range(2, 2 + reply[1], 2)]


def counter(running: labs.Running) -> int:
    with Tcp(running) as tcp:
        return registers(tcp.ask(read(3, 0)))[0]


def rtu_ask(running: labs.Running, pdu: bytes, unit: int = 1) -> bytes | None:
    frame = bytes([unit]) + pdu
    frame += FramerRTU.compute_CRC(frame).to_bytes(2, "big")
    with serial.Serial(running.endpoints["modbus_rtu"]["url"], 19200, timeout=REPLY_S) as port:
        port.reset_input_buffer()
        port.write(frame)
        reply = port.read(3)  # unit, function, then an exception code or a byte count
        if len(reply) < 3:
            return None
        size = 5 if reply[1] & 0x80 else 5 + reply[2] if reply[1] in (1, 2, 3, 4, 23) else 8
        reply += port.read(size - 3)
    assert FramerRTU.check_CRC(reply[:-2], int.from_bytes(reply[-2:], "big")), f"bad CRC: {reply.hex()}"
    assert reply[0] == unit
    return reply[1:-2]


@contextlib.contextmanager
def can_bus(running: labs.Running) -> Iterator[can.BusABC]:
    bus = can.Bus(interface="slcan", channel=running.endpoints["can"]["channel"], bitrate=500_000,
                  sleep_after_open=0)
    try:
        yield bus
    finally:
        bus.shutdown()


def heartbeats(bus: can.BusABC, seconds: float) -> list[float]:
    seen, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        msg = bus.recv(timeout=0.05)
        if msg is not None and msg.arbitration_id == HEARTBEAT:
            assert bytes(msg.data) == b"\x05"
            seen.append(time.monotonic())
    return seen


def drain(bus: can.BusABC) -> None:
    """Drop frames that were on their way before the moment of interest."""
    deadline = time.monotonic() + 1
    while bus.recv(timeout=0.02) is not None and time.monotonic() < deadline:
        pass


def sdo(bus: can.BusABC, data: bytes, timeout: float = REPLY_S) -> bytes | None:
    bus.send(can.Message(arbitration_id=SDO_REQUEST, data=data, is_extended_id=False))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg = bus.recv(timeout=0.05)
        if msg is not None and msg.arbitration_id == SDO_REPLY:
            return bytes(msg.data)
    return None


def sdo_read(index: int) -> bytes:
    return bytes([0x40]) + index.to_bytes(2, "little") + bytes(5)


def sdo_write(index: int, value: int) -> bytes:
    return bytes([0x2B]) + index.to_bytes(2, "little") + b"\0" + value.to_bytes(2, "little") + b"\0\0"


def abort_code(reply: bytes) -> int:
    assert reply[0] == 0x80, f"not an abort: {reply.hex()}"
    return int.from_bytes(reply[4:8], "little")


def console_prompt(running: labs.Running) -> bytes:
    with serial.Serial(running.endpoints["console"]["url"], 115200, timeout=0.1) as port:
        port.reset_input_buffer()
        port.write(b"\r")
        seen, deadline = b"", time.monotonic() + 2
        while b"login: " not in seen and time.monotonic() < deadline:
            seen += port.read(256)
    return seen


@contextlib.contextmanager
def ssh(running: labs.Running, user: str = "admin") -> Iterator[paramiko.SSHClient]:
    ep, client = running.endpoints["ssh"], paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())  # a fresh host key every start
    try:
        client.connect(ep["host"], ep["port"], username=user,
                       password=running.secrets[f"SIMPLC_{user.upper()}_PASSWORD"], timeout=3, banner_timeout=3,
                       auth_timeout=3, look_for_keys=False, allow_agent=False)
        yield client
    finally:
        client.close()


def ssh_login(running: labs.Running, user: str = "admin") -> None:
    with ssh(running, user) as client:
        assert client.get_transport().is_authenticated()


def ssh_exec(running: labs.Running, command: str, user: str = "admin") -> str:
    with ssh(running, user) as client:
        _, stdout, _ = client.exec_command(command, timeout=3)
        return stdout.read().decode()


def group_alive(pid: int) -> bool:
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return False
    return True


def port_free(port: int) -> bool:
    """Free for a new listener (closed connections may linger in TIME_WAIT: servers bind with SO_REUSEADDR)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def running_counter(running: labs.Running, window: float = 0.5) -> bool:
    first = counter(running)
    time.sleep(window)
    return counter(running) != first


# --- reaching every interface


@pytest.mark.parametrize("profile", ["insecure", "sl2"])
def test_every_interface_answers(profile: str, request: pytest.FixtureRequest) -> None:
    running = request.getfixturevalue(profile)
    assert running.ready_s < 3.0, f"start-up took {running.ready_s:.2f} s"
    with Tcp(running) as tcp:
        assert tcp.ask(read(3, 0, 2))[:2] == b"\x03\x04"
    assert rtu_ask(running, read(3, 0, 2))[:2] == b"\x03\x04"
    with can_bus(running) as bus:
        assert heartbeats(bus, 0.7), "no CAN heartbeat within 0.7 s"
    ssh_login(running)
    assert b"login: " in console_prompt(running)
    assert set(running.secrets) == ACCOUNT_VARS


def test_passwords_factory_default_only_where_the_profile_has_one(insecure: labs.Running,
                                                                  sl2: labs.Running) -> None:
    assert insecure.secrets["SIMPLC_ADMIN_PASSWORD"] == "admin"
    randoms = [v for k, v in insecure.secrets.items() if k != "SIMPLC_ADMIN_PASSWORD"] + list(sl2.secrets.values())
    assert len(set(randoms)) == len(randoms)
    for password in randoms:  # strong enough for every profile's rules
        assert len(password) >= 12
        assert sum(any(f(c) for c in password) for f in (str.islower, str.isupper, str.isdigit)) == 3


def test_essential_function_seen_from_outside(sl2: labs.Running) -> None:
    """Coil 0: 1 s on, 2 s off, each edge within ~0.1 s; the counter counts 10 per second."""
    edges: list[tuple[float, int]] = []
    with Tcp(sl2) as tcp:
        c0, t0 = registers(tcp.ask(read(3, 0)))[0], time.monotonic()
        last, deadline = None, time.monotonic() + 8
        while len(edges) < 3 and time.monotonic() < deadline:
            bit = tcp.ask(read(1, 0))[2] & 1
            now = time.monotonic()
            if last is not None and bit != last:
                edges.append((now, bit))
                assert tcp.ask(read(2, 0))[2] & 1 == bit  # discrete input 0 mirrors coil 0
            last = bit
            time.sleep(0.01)
        c1, t1 = registers(tcp.ask(read(3, 0)))[0], time.monotonic()
        hr, ir = registers(tcp.ask(read(3, 0)))[0], registers(tcp.ask(read(4, 0)))[0]
    assert len(edges) == 3, f"coil 0 edges seen: {edges}"
    durations = {edges[0][1]: edges[1][0] - edges[0][0], edges[1][1]: edges[2][0] - edges[1][0]}
    assert abs(durations[1] - 1.0) < 0.15, f"on for {durations[1]:.3f} s"
    assert abs(durations[0] - 2.0) < 0.15, f"off for {durations[0]:.3f} s"
    assert 8 <= ((c1 - c0) & 0xFFFF) / (t1 - t0) <= 12
    assert 0 <= (ir - hr) & 0xFFFF <= 1


def test_heartbeat_every_500_ms(sl2: labs.Running) -> None:
    with can_bus(sl2) as bus:
        beats = heartbeats(bus, 2.2)
    gaps = [b - a for a, b in zip(beats, beats[1:], strict=False)]
    assert len(gaps) >= 3 and all(0.4 < g < 0.6 for g in gaps), gaps


def test_one_image_behind_tcp_rtu_and_can(sl2: labs.Running) -> None:
    value = random.randrange(1, 60000)
    with Tcp(sl2) as tcp:
        assert tcp.ask(struct.pack(">BHH", 6, 150, value))[0] == 6
    assert registers(rtu_ask(sl2, read(3, 150))) == [value]
    with can_bus(sl2) as bus:
        reply = sdo(bus, sdo_read(0x4000 + 150))
        assert reply is not None and reply[0] == 0x4B and int.from_bytes(reply[4:6], "little") == value
        assert sdo(bus, sdo_write(0x4000 + 151, value + 1)) == b"\x60" + (0x4097).to_bytes(2, "little") + bytes(5)
    with Tcp(sl2) as tcp:
        assert registers(tcp.ask(read(3, 150, 2))) == [value, value + 1]


def test_write_policy(insecure: labs.Running, sl2: labs.Running) -> None:
    with Tcp(insecure) as tcp:
        assert tcp.ask(struct.pack(">BHH", 6, 5, 42)) == struct.pack(">BHH", 6, 5, 42)  # open: anything goes
    with Tcp(sl2) as tcp:
        assert tcp.ask(struct.pack(">BHH", 6, 5, 42)) == b"\x86\x02"  # outside [100, 199]
        assert tcp.ask(struct.pack(">BHH", 5, 5, 0xFF00)) == b"\x85\x02"
        assert tcp.ask(struct.pack(">BHHB", 16, 198, 3, 6) + bytes(6)) == b"\x90\x02"  # 198..200 crosses the edge
        assert tcp.ask(struct.pack(">BHHB", 16, 197, 3, 6) + bytes(6)) == struct.pack(">BHH", 16, 197, 3)
        assert tcp.ask(read(3, 1000)) == b"\x83\x02"  # outside the image
    with can_bus(sl2) as bus:
        assert abort_code(sdo(bus, sdo_write(0x4000 + 5, 1))) == 0x06010000
        assert abort_code(sdo(bus, sdo_write(0x3000 + 0, 1))) == 0x06010002  # discrete inputs are read-only
        assert abort_code(sdo(bus, sdo_read(0x9000))) == 0x06020000
        assert sdo(bus, sdo_read(0x5000))[0] == 0x4B


def test_writes_audited_and_settings_live_through_the_shell(sl2: labs.Running) -> None:
    with Tcp(sl2) as tcp:
        assert tcp.ask(struct.pack(">BHH", 6, 160, 7))[0] == 6
        assert tcp.ask(struct.pack(">BHH", 6, 7, 7)) == b"\x86\x02"
    audit = ssh_exec(sl2, "audit show 50")
    assert re.search(r"write user=- source=modbus_tcp:127\.0\.0\.1:\d+ outcome=success hr 160", audit), audit
    assert re.search(r"write user=- source=modbus_tcp:127\.0\.0\.1:\d+ outcome=denied hr 7", audit), audit
    assert "ok" in ssh_exec(sl2, "config set modbus_writes none")
    try:
        with Tcp(sl2) as tcp:
            assert tcp.ask(struct.pack(">BHH", 6, 160, 8)) == b"\x86\x01"  # writes now disabled
    finally:
        assert "ok" in ssh_exec(sl2, "config set modbus_writes ranges")
    with Tcp(sl2) as tcp:
        assert tcp.ask(struct.pack(">BHH", 6, 160, 8))[0] == 6


def test_verbose_errors_leak_only_on_insecure(insecure: labs.Running, sl2: labs.Running) -> None:
    with Tcp(insecure) as tcp:
        leaky = tcp.ask(read(3, 999, 5))
    assert leaky[:2] == b"\x83\x02" and b"Python" in leaky and b"Traceback" in leaky
    with Tcp(sl2) as tcp:
        assert tcp.ask(read(3, 999, 5)) == b"\x83\x02"


def test_rate_limit(insecure: labs.Running, sl2: labs.Running) -> None:
    """8000 pipelined reads: sl2 (2000/s per connection) answers the excess with exception 06."""
    counts = {}
    for running in (insecure, sl2):
        with Tcp(running, timeout=5) as tcp:
            tcp.sock.sendall(b"".join(struct.pack(">HHHB", i, 0, 6, 1) + read(3, 0) for i in range(8000)))
            replies = [tcp.recv()[1][:2] for _ in range(8000)]
        counts[running] = replies.count(b"\x83\x06")
    assert counts[insecure] == 0
    assert counts[sl2] > 1000


def test_sl2_survives_the_seeded_bug_inputs(sl2: labs.Running) -> None:
    with Tcp(sl2) as tcp:
        assert tcp.ask(struct.pack(">BHHB", 16, 100, 2, 3) + bytes(3)) == b"\x90\x03"  # byte count != 2 * quantity
        assert tcp.ask(read(3, 0, 0)) == b"\x83\x03"
        assert tcp.ask(read(4, 0, 126)) == b"\x84\x03"
        assert tcp.ask(b"\x41\x00") == b"\xc1\x01"  # unknown function
        assert tcp.ask(read(3, 0), unit=7) == b"\x83\x0b"
    assert rtu_ask(sl2, struct.pack(">BHHB", 16, 100, 2, 3) + bytes(3)) == b"\x90\x03"
    with can_bus(sl2) as bus:
        assert abort_code(sdo(bus, b"\xff" + bytes(7))) == 0x05040001
        assert abort_code(sdo(bus, b"\x40\x00")) == 0x05040001
        assert len(heartbeats(bus, 1.2)) >= 2
    assert running_counter(sl2)
    with Tcp(sl2) as tcp:  # the listener still accepts
        assert tcp.ask(read(3, 0))[0] == 3


# --- the insecure profile's seeded bugs, each seen from outside, then a restart


def test_bug_fc16_byte_count_stalls_control(insecure: labs.Running) -> None:
    assert running_counter(insecure)
    with Tcp(insecure) as tcp:
        reply = tcp.ask(struct.pack(">BHHB", 16, 300, 4, 5) + bytes(5))
    assert reply[:2] == b"\x90\x03"
    assert not running_counter(insecure), "the counter should have frozen"
    with can_bus(insecure) as bus:
        assert heartbeats(bus, 1.2) == []
    insecure.restart()
    assert running_counter(insecure)


def test_bug_bad_read_quantity_crashes_tcp_listener(insecure: labs.Running) -> None:
    with Tcp(insecure) as tcp:
        tcp.send(read(3, 17, 0))
        with pytest.raises((ConnectionError, OSError)):
            tcp.recv()
    with pytest.raises(ConnectionRefusedError):
        Tcp(insecure)
    assert rtu_ask(insecure, read(3, 0))[0] == 3  # the rest of the device lives on
    insecure.restart()
    with Tcp(insecure) as tcp:
        assert tcp.ask(read(3, 0))[0] == 3


def test_bug_can_command_byte_stalls_control(insecure: labs.Running) -> None:
    with can_bus(insecure) as bus:
        assert abort_code(sdo(bus, b"\xf3" + bytes(7))) == 0x05040001
        assert heartbeats(bus, 1.2) == []
    assert not running_counter(insecure)
    insecure.restart()
    assert running_counter(insecure)


def test_bug_short_sdo_crashes_can_service(insecure: labs.Running) -> None:
    with can_bus(insecure) as bus:
        assert sdo(bus, b"\x40\x00", timeout=0.5) is None
        assert heartbeats(bus, 1.2) == []
        assert sdo(bus, sdo_read(0x4000)) is None
    assert running_counter(insecure), "the control task should run on"
    insecure.restart()
    with can_bus(insecure) as bus:
        assert heartbeats(bus, 0.7)


# --- faults


def test_fault_stall(sl2: labs.Running) -> None:
    with fault(sl2, "stall"):
        time.sleep(0.2)
        assert not running_counter(sl2)
        with can_bus(sl2) as bus:
            assert heartbeats(bus, 1.2) == []
    assert running_counter(sl2)


def test_fault_silent_keeps_connections_open(sl2: labs.Running) -> None:
    with Tcp(sl2) as tcp:
        with fault(sl2, "silent"):
            tcp.send(read(3, 0))
            with pytest.raises(TimeoutError):  # no answer, and no close either
                tcp.recv()
            assert rtu_ask(sl2, read(3, 0)) is None
        assert tcp.ask(read(3, 0))[0] == 3  # the same connection answers again


def test_fault_reset(sl2: labs.Running) -> None:
    with Tcp(sl2) as tcp:
        assert tcp.ask(read(3, 0))[0] == 3
        with fault(sl2, "reset"):
            with pytest.raises(ConnectionError):
                tcp.send(read(3, 0))
                tcp.recv()
            with pytest.raises(ConnectionError), Tcp(sl2) as fresh:
                fresh.send(read(3, 0))
                fresh.recv()
    with Tcp(sl2) as tcp:
        assert tcp.ask(read(3, 0))[0] == 3


def test_fault_garbage(sl2: labs.Running) -> None:
    with Tcp(sl2) as tcp, fault(sl2, "garbage"):
        tid = tcp.send(read(3, 0))
        time.sleep(0.2)
        junk = tcp.sock.recv(512)
    assert junk and not (junk[:2] == tid.to_bytes(2, "big") and junk[7:9] == b"\x03\x02")


def test_fault_slow(sl2: labs.Running) -> None:
    with Tcp(sl2, timeout=3) as tcp, fault(sl2, "slow"):
        started = time.monotonic()
        assert tcp.ask(read(3, 0))[0] == 3
        assert time.monotonic() - started >= 1.3


def test_fault_can_off(sl2: labs.Running) -> None:
    with can_bus(sl2) as bus:
        with fault(sl2, "can_off"):
            drain(bus)
            assert heartbeats(bus, 1.2) == []
            assert sdo(bus, sdo_read(0x4000), timeout=0.5) is None
        assert heartbeats(bus, 0.7)


def test_unknown_fault_is_one_line_error(sl2: labs.Running) -> None:
    with pytest.raises(LabError, match="unknown simplc fault 'melt'") as err:
        sl2.set_fault("melt")
    assert "\n" not in str(err.value)
    with socket.socket(socket.AF_UNIX) as sock:  # the control socket itself refuses it too
        sock.settimeout(2)
        sock.connect(sl2.control)
        sock.sendall(json.dumps({"fault": "melt"}).encode() + b"\n")
        answer = sock.makefile("rb").readline().decode()
    assert answer.startswith("error: unknown fault 'melt'") and answer.count("\n") == 1


# --- the rest of the device's behaviour


def test_safe_state_on_comm_loss(insecure: labs.Running, sl2: labs.Running) -> None:
    """Output coil 1 follows command coil 101; sl2 drops it to 0 once the master is silent for 2 s."""
    for running in (insecure, sl2):
        with Tcp(running) as tcp:
            assert tcp.ask(struct.pack(">BHH", 5, 101, 0xFF00))[0] == 5
    time.sleep(0.3)
    with can_bus(insecure) as bus_i, can_bus(sl2) as bus_s:  # watched over CAN: Modbus stays silent
        assert sdo(bus_i, sdo_read(0x2001))[4] == 1
        assert sdo(bus_s, sdo_read(0x2001))[4] == 1
        time.sleep(2.5)
        assert sdo(bus_i, sdo_read(0x2001))[4] == 1
        assert sdo(bus_s, sdo_read(0x2001))[4] == 0
    for running in (insecure, sl2):
        with Tcp(running) as tcp:
            assert tcp.ask(struct.pack(">BHH", 5, 101, 0))[0] == 5


def test_undeclared_debug_service_only_on_insecure(insecure: labs.Running, sl2: labs.Running) -> None:
    assert sl2.extra_services == {}
    debug = insecure.extra_services["debug"]
    with socket.create_connection((debug["host"], debug["port"]), timeout=REPLY_S) as sock:
        sock.sendall(b"peek hr 0\r\n")  # no login: the service is wide open
        text, deadline = "", time.monotonic() + REPLY_S
        while text.count("> ") < 2 and time.monotonic() < deadline:
            text += sock.recv(1024).decode()
    assert "debug monitor" in text and "Python" in text
    assert re.search(r"> \d+\r\n> $", text), text


# --- life cycle


def test_start_errors_are_one_line() -> None:
    for call, words in ((lambda: labs.start("simplc", "sl9"), "unknown simplc profile 'sl9'"),
                        (lambda: labs.start("simplc", "sl1", faults=("melt",)), "unknown simplc fault 'melt'"),
                        (lambda: labs.start("simplc", "sl1", options={"turbo": 1}), "unknown simplc option")):
        with pytest.raises(LabError, match=words) as err:
            call()
        assert "\n" not in str(err.value)


def test_taken_port_is_a_lab_error() -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        with pytest.raises(LabError, match=f"port {port} for modbus_tcp is taken") as err:
            labs.start("simplc", "sl1", options={"ports": {"modbus_tcp": port}})
    assert "\n" not in str(err.value)


def test_sl1_start_restart_stop_leaves_nothing() -> None:
    running = labs.start("simplc", "sl1", faults=("can_off",))
    try:
        assert running.fault == "can_off"
        with can_bus(running) as bus:
            assert heartbeats(bus, 0.7) == []
        first_pid, secrets = running.pid, dict(running.secrets)
        tcp_port, ssh_port = running.endpoints["modbus_tcp"]["port"], running.endpoints["ssh"]["port"]
        running.restart()
        assert running.pid != first_pid and not group_alive(first_pid)
        assert running.secrets == secrets
        assert running.endpoints["modbus_tcp"]["port"] == tcp_port  # free again at once: kept
        assert running.fault == "can_off"
        ssh_login(running, "operator")
        assert counter(running) >= 0
    finally:
        running.stop()
    assert not group_alive(running.pid)
    assert port_free(tcp_port) and port_free(ssh_port)
    running.stop()  # idempotent


def test_foreground_run_stops_on_ctrl_c(tmp_path: Path) -> None:
    ready = tmp_path / "ready.json"
    proc = subprocess.Popen([sys.executable, "-m", "iec62443_harness.labs.simplc", "--profile", "sl1",
                             "--ready-file", str(ready)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while not ready.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.02)
        info = json.loads(ready.read_text())
        assert set(info["endpoints"]) == {"modbus_tcp", "modbus_rtu", "can", "ssh", "console", "https"}
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=5)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
    assert proc.returncode == 0
    assert b"ready in" in out and b"Traceback" not in out
    assert port_free(info["endpoints"]["modbus_tcp"]["port"])
    assert port_free(int(info["endpoints"]["https"]["base_url"].rsplit(":", 1)[1]))


def test_device_exits_when_its_parent_dies() -> None:
    """A harness killed without cleanup (os._exit: no atexit) must not leave its device running."""
    code = "import labs, os; r = labs.start('simplc', 'sl1'); print(r.pid, r.control, flush=True); os._exit(0)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=20).stdout.split()
    pid, control = int(out[0]), Path(out[1])
    try:
        deadline = time.monotonic() + 5
        while group_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not group_alive(pid)
    finally:
        if group_alive(pid):
            os.killpg(pid, signal.SIGKILL)
        if control.parent.name.startswith("simplc-"):  # the run directory the killed harness left
            shutil.rmtree(control.parent, ignore_errors=True)
