"""The QEMU lab (labs/qemu): build, boot both profiles once, and look at them only from outside.

Each profile boots once for the module (about 5-10 s each under TCG). What the conformance suites must be
able to tell apart is checked here directly: default credentials (CR 1.5), lockout (CR 1.11), the banner
(CR 1.12) and input validation (CR 3.5).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import shutil
import socket
import ssl
import struct
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

if not shutil.which("qemu-system-x86_64"):
    pytest.skip("qemu-system-x86_64 is not installed (apt-get install -y $(cat labs/qemu/apt-packages.txt))",
                allow_module_level=True)

import can  # noqa: E402
import paramiko  # noqa: E402
import serial  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat  # noqa: E402
from iec62443_harness.labs import LabError  # noqa: E402
from iec62443_harness.labs.qemu import build as qbuild  # noqa: E402
from iec62443_harness.labs.qemu import launcher  # noqa: E402
from iec62443_harness.target import find_target_file, load_target  # noqa: E402
from pymodbus.client import ModbusSerialClient, ModbusTcpClient  # noqa: E402

BANNER = launcher.BANNER
REPO = Path(__file__).resolve().parent.parent


# --- clients, each with its own timeouts


def ssh_login(device: launcher.QemuDevice, user: str, password: str) -> paramiko.SSHClient:
    sock = socket.create_connection(("127.0.0.1", device.endpoints["ssh"]["port"]), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    try:
        client.connect("127.0.0.1", device.endpoints["ssh"]["port"], user, password, sock=sock, timeout=10,
                       banner_timeout=10, auth_timeout=10, allow_agent=False, look_for_keys=False)
    except BaseException:
        client.close()
        sock.close()
        raise
    return client


def ssh_accepts(device: launcher.QemuDevice, user: str, password: str) -> bool:
    try:
        ssh_login(device, user, password).close()
    except paramiko.AuthenticationException:
        return False
    return True


def ssh_run(client: paramiko.SSHClient, command: str) -> str:
    _, stdout, _ = client.exec_command(command, timeout=10)
    return stdout.read().decode()


def modbus_raw(port: int, pdu: bytes, timeout: float = 2.0) -> bytes:
    """One request with an MBAP header; the reply ADU, or b'' when the server closed without answering."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(struct.pack(">HHHB", 7, 0, len(pdu) + 1, 1) + pdu)
        try:
            return s.recv(260)
        except (ConnectionResetError, TimeoutError):
            return b""


def tcp_client(device: launcher.QemuDevice) -> ModbusTcpClient:
    client = ModbusTcpClient("127.0.0.1", port=device.endpoints["modbus_tcp"]["port"], timeout=2, retries=0)
    assert client.connect()
    return client


class Console:
    """The serial console through pyserial's socket:// URL."""

    def __init__(self, url: str) -> None:
        self.port = serial.serial_for_url(url, timeout=0.1)
        self.seen = ""

    def expect(self, pattern: str, timeout: float = 15.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.seen += self.port.read(4096).decode(errors="replace")
            if re.search(pattern, self.seen):
                out, self.seen = self.seen, ""
                return out
        raise AssertionError(f"console never showed {pattern!r}; last output: {self.seen[-300:]!r}")

    def send(self, line: str) -> None:
        self.port.write(line.encode() + b"\r")

    def login(self, user: str, password: str) -> str:
        """Wake getty, log in; returns everything shown before the password prompt."""
        self.send("")
        before = self.expect(r"login: ?$")
        self.send(user)
        before += self.expect(r"[Pp]assword: ?$")
        self.send(password)
        return before

    def close(self) -> None:
        self.port.close()


# --- devices: each profile boots once


@pytest.fixture(scope="module")
def syslog_sock():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.5)
    yield sock
    sock.close()


@pytest.fixture(scope="module")
def weak(syslog_sock):
    device = launcher.start("weak", syslog=syslog_sock.getsockname())
    yield device
    device.stop()


@pytest.fixture(scope="module")
def hardened():
    device = launcher.start("hardened")
    yield device
    device.stop()


@pytest.fixture(scope="module")
def locked(hardened):
    """Lock the lockout-test account with threshold failures; {"last": when the last refused attempt was}."""
    for _ in range(launcher.LOCKOUT_THRESHOLD):
        assert not ssh_accepts(hardened, "locktest", "wrong-password")
    return {"last": time.monotonic()}


def our_qemu_children() -> list[int]:
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            comm = stat.read_text().split("(", 1)[1].rsplit(")", 1)[0]
        except (OSError, IndexError):
            continue
        if int(fields[1]) == os.getpid() and comm.startswith("qemu-system"):  # children not yet reaped count
            pids.append(int(stat.parent.name))
    return pids


# --- the image


def test_image_is_built_outside_the_repository_and_cached():
    image = qbuild.build()
    assert REPO not in image.directory.parents
    assert image.kernel.stat().st_size > 1_000_000 and image.initrd.stat().st_size > 1_000_000
    started = time.monotonic()
    again = qbuild.build()
    assert again.directory == image.directory
    assert time.monotonic() - started < 10  # cached: only the input key is computed (one apt-cache call)
    assert image.manifest["inputs"]["kernel"].startswith("linux-image-")


def test_target_files_validate_and_take_the_endpoints(hardened):
    for name, profile, level in (("qemu-plc", "hardened", 2), ("qemu-plc-weak", "weak", 1)):
        spec = load_target(find_target_file(name))
        assert spec.emulator is not None and spec.emulator.kind == "qemu" and spec.emulator.profile == profile
        assert spec.security_level == level
        accounts = {a.password.strip("${}") for a in spec.accounts.values()}
        assert accounts == set(hardened.secrets)
        filled = spec.with_endpoints(hardened.endpoints)
        assert filled.interfaces.ssh.port == hardened.endpoints["ssh"]["port"]
        assert filled.interfaces.can.channel.startswith("socket://127.0.0.1:")
    spec = load_target(find_target_file("qemu-plc"))
    assert spec.policies.banner == BANNER
    assert spec.policies.lockout.threshold == launcher.LOCKOUT_THRESHOLD
    assert spec.policies.lockout.unlock_after_s == launcher.LOCKOUT_UNLOCK_S


# --- both profiles: every interface answers


@pytest.fixture(params=["weak", "hardened"])
def device(request):
    return request.getfixturevalue(request.param)


def test_ready_and_endpoints_on_loopback_below_the_ephemeral_range(device):
    assert 0 < device.ready_s < 60
    ports = [device.endpoints[n]["port"] for n in ("ssh", "modbus_tcp")]
    ports += [int(device.endpoints[n][k].rsplit(":", 1)[1]) for n, k in
              (("console", "url"), ("modbus_rtu", "url"), ("can", "channel"), ("https", "base_url"))]
    assert len(set(ports)) == 6 and all(p < 32768 for p in ports)
    assert set(device.secrets) == {"QEMU_ADMIN_PASSWORD", "QEMU_OPERATOR_PASSWORD", "QEMU_LOCKTEST_PASSWORD"}


def _tls(device: launcher.QemuDevice, version: ssl.TLSVersion) -> tuple[str, str, bytes] | None:
    """(protocol, cipher, certificate SHA-256) of a handshake offering only `version`; None when refused."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    ctx.set_ciphers("ALL:@SECLEVEL=0")  # let the client offer what the weak build may accept
    ctx.minimum_version = ctx.maximum_version = version
    port = int(device.endpoints["https"]["base_url"].rsplit(":", 1)[1])
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
                ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            tls.sendall(b"GET / HTTP/1.0\r\n\r\n")
            assert b"QEMU PLC status" in tls.recv(4096) + tls.recv(4096)
            return tls.version() or "", tls.cipher()[0], hashlib.sha256(tls.getpeercert(True) or b"").digest()
    except ssl.SSLError:
        return None


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1 is deprecated:DeprecationWarning")  # offered on purpose
def test_https_status_page_with_the_pinned_certificate_and_the_profiles_tls(device):
    pin = bytes.fromhex(device.endpoints["https"]["certificate_sha256"].replace(":", ""))
    modern = _tls(device, ssl.TLSVersion.TLSv1_2)
    assert modern is not None and modern[2] == pin
    old = _tls(device, ssl.TLSVersion.TLSv1)
    if device.profile == "weak":
        assert old is not None and old[0] == "TLSv1"
    else:
        assert old is None and "ECDHE-ECDSA" in modern[1]


def test_ssh_login_and_exec_with_the_pinned_host_key(device):
    client = ssh_login(device, "admin", device.secrets["QEMU_ADMIN_PASSWORD"])
    try:
        key = client.get_transport().get_remote_server_key()
        pins = device.endpoints["ssh"]["host_key_fingerprint"]  # the weak build pins its RSA key too
        assert launcher._fingerprint(key) in (pins if isinstance(pins, list) else [pins])
        assert "uid=1000(admin)" in ssh_run(client, "id")
    finally:
        client.close()


def test_modbus_tcp_control_task_toggles_coil_and_counts(device):
    client = tcp_client(device)
    try:
        coils, counts = set(), []
        deadline = time.monotonic() + 3.5  # one full 3 s cycle, with margin
        while time.monotonic() < deadline:
            coils.add(client.read_coils(0, count=1).bits[0])
            counts.append(client.read_holding_registers(0, count=1).registers[0])
            time.sleep(0.1)
    finally:
        client.close()
    assert coils == {True, False}
    assert counts[-1] - counts[0] >= 2


def test_modbus_rtu_over_the_serial_port(device):
    client = ModbusSerialClient(port=device.endpoints["modbus_rtu"]["url"], baudrate=19200, parity="E",
                                timeout=2, retries=1)
    assert client.connect()
    try:
        reply = client.read_holding_registers(0, count=2, device_id=1)
    finally:
        client.close()
    assert not reply.isError() and len(reply.registers) == 2


def test_console_login(device):
    console = Console(device.endpoints["console"]["url"])
    try:
        console.login("admin", device.secrets["QEMU_ADMIN_PASSWORD"])
        console.expect(r"[$#] ?$")
        console.send("id")
        assert "uid=1000(admin)" in console.expect(r"[$#] ?$")
        console.send("exit")
    finally:
        console.close()


def test_can_heartbeat_and_sdo_reach_the_same_process_image(device):
    bus = can.Bus(interface="slcan", channel=device.endpoints["can"]["channel"], bitrate=500000,
                  sleep_after_open=0)
    try:
        beats = []
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and len(beats) < 2:
            msg = bus.recv(0.5)
            if msg is not None and msg.arbitration_id == 0x701:
                beats.append(bytes(msg.data))
        assert beats and beats[0] == b"\x05"

        def sdo(data: bytes) -> bytes:
            bus.send(can.Message(arbitration_id=0x601, data=data, is_extended_id=False))
            deadline = time.monotonic() + 2
            while time.monotonic() < deadline:
                msg = bus.recv(0.5)
                if msg is not None and msg.arbitration_id == 0x581:
                    return bytes(msg.data)
            raise AssertionError("no SDO reply within 2 s")

        assert sdo(bytes([0x40, 0x00, 0x10, 0, 0, 0, 0, 0]))[0] == 0x43  # device type
        assert sdo(bytes([0x2B, 0x64, 0x40, 0]) + struct.pack("<H", 4321) + bytes(2))[0] == 0x60
    finally:
        bus.shutdown()
    client = tcp_client(device)
    try:
        assert client.read_holding_registers(100, count=1).registers == [4321]
    finally:
        client.close()


# --- what tells the profiles apart


def test_default_credentials_weak_accepts(weak):
    assert ssh_accepts(weak, "admin", "admin")
    assert ssh_accepts(weak, "root", "root")


def test_default_credentials_hardened_refuses(hardened):
    assert not ssh_accepts(hardened, "admin", "admin")
    assert not ssh_accepts(hardened, "root", "root")
    assert len(hardened.secrets["QEMU_ADMIN_PASSWORD"]) >= 12


def test_banner_hardened_before_authentication(hardened):
    transport = paramiko.Transport(socket.create_connection(("127.0.0.1", hardened.endpoints["ssh"]["port"]), 10))
    try:
        transport.start_client(timeout=10)
        with pytest.raises(paramiko.BadAuthenticationType):
            transport.auth_none("nobody-in-particular")
        assert BANNER in (transport.get_banner() or b"").decode()
    finally:
        transport.close()
    console = Console(hardened.endpoints["console"]["url"])
    try:
        console.send("")
        assert BANNER in console.expect(r"login: ?$")
    finally:
        console.close()


def test_banner_weak_absent(weak):
    client = ssh_login(weak, "admin", "admin")
    try:
        assert client.get_transport().get_banner() is None
    finally:
        client.close()
    console = Console(weak.endpoints["console"]["url"])
    try:
        console.send("")
        assert "WARNING" not in console.expect(r"login: ?$")
    finally:
        console.close()


def test_lockout_hardened_refuses_the_right_password_once_locked(hardened, locked):
    assert not ssh_accepts(hardened, "locktest", hardened.secrets["QEMU_LOCKTEST_PASSWORD"])
    assert ssh_accepts(hardened, "operator", hardened.secrets["QEMU_OPERATOR_PASSWORD"])  # others unaffected
    console = Console(hardened.endpoints["console"]["url"])  # one tally for SSH and the console
    try:
        console.login("locktest", hardened.secrets["QEMU_LOCKTEST_PASSWORD"])
        assert "Login incorrect" in console.expect(r"Login incorrect|[$#] ?$")
    finally:
        console.close()
    locked["last"] = time.monotonic()


def test_lockout_weak_never_locks(weak):
    for _ in range(launcher.LOCKOUT_THRESHOLD + 2):
        assert not ssh_accepts(weak, "locktest", "wrong-password")
    assert ssh_accepts(weak, "locktest", weak.secrets["QEMU_LOCKTEST_PASSWORD"])


def test_syslog_forwards_failed_logins(weak, syslog_sock):
    assert not ssh_accepts(weak, "operator", "not-the-password")
    lines = []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            lines.append(syslog_sock.recv(2048).decode(errors="replace"))
        except TimeoutError:
            continue
        if any("operator" in line and "sshd" in line for line in lines):
            return
    raise AssertionError(f"no syslog line about the failed login; got {lines[-5:]}")


def test_owner_ca_hardened_only_the_administrators_install_it(hardened):
    key = Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode()
    operator = ssh_login(hardened, "operator", hardened.secrets["QEMU_OPERATOR_PASSWORD"])
    try:
        assert "permission denied" in ssh_run(operator, f"/usr/sbin/trust-anchor install '{key}'")
    finally:
        operator.close()
    admin = ssh_login(hardened, "admin", hardened.secrets["QEMU_ADMIN_PASSWORD"])
    try:
        assert "installed" in ssh_run(admin, f"/usr/sbin/trust-anchor install '{key}'")
        assert ssh_run(admin, "/usr/sbin/trust-anchor list").strip() == key
        assert "removed" in ssh_run(admin, "/usr/sbin/trust-anchor remove")
        assert ssh_run(admin, "/usr/sbin/trust-anchor list").strip() == ""
    finally:
        admin.close()


def test_input_validation_hardened_answers_exceptions_and_keeps_running(hardened):
    port = hardened.endpoints["modbus_tcp"]["port"]
    bad_count = bytes([0x10, 0, 100, 0, 2, 3, 1, 2, 3])  # 2 registers, byte count 3
    assert modbus_raw(port, bad_count)[7:] == bytes([0x90, 0x03])
    outside = bytes([0x06, 0, 0, 0, 1])  # the counter register is not writable
    assert modbus_raw(port, outside)[7:] == bytes([0x86, 0x02])
    assert launcher.modbus_read(port)


def test_stall_and_resume(hardened):
    port = hardened.endpoints["modbus_tcp"]["port"]
    hardened.set_fault("stall")
    try:
        assert not launcher.modbus_read(port, timeout=1.0)
    finally:
        hardened.set_fault(None)
    assert launcher.modbus_read(port, timeout=2.0)
    with pytest.raises(LabError, match="unknown fault"):
        hardened.set_fault("melt")


def test_lockout_hardened_unlocks_after_the_configured_time(hardened, locked):
    remaining = locked["last"] + launcher.LOCKOUT_UNLOCK_S + 1 - time.monotonic()
    if remaining > 0:
        time.sleep(remaining)
    assert ssh_accepts(hardened, "locktest", hardened.secrets["QEMU_LOCKTEST_PASSWORD"])


def test_lockout_hardened_admin_unlocks(hardened, locked):
    for _ in range(launcher.LOCKOUT_THRESHOLD):
        assert not ssh_accepts(hardened, "locktest", "wrong-password")
    assert not ssh_accepts(hardened, "locktest", hardened.secrets["QEMU_LOCKTEST_PASSWORD"])
    operator = ssh_login(hardened, "operator", hardened.secrets["QEMU_OPERATOR_PASSWORD"])
    try:  # only the administrators' group may reset another account's tally
        ssh_run(operator, "/usr/sbin/faillock --user locktest --reset")
    finally:
        operator.close()
    assert not ssh_accepts(hardened, "locktest", hardened.secrets["QEMU_LOCKTEST_PASSWORD"])
    admin = ssh_login(hardened, "admin", hardened.secrets["QEMU_ADMIN_PASSWORD"])
    try:
        ssh_run(admin, "/usr/sbin/faillock --user locktest --reset")
    finally:
        admin.close()
    assert ssh_accepts(hardened, "locktest", hardened.secrets["QEMU_LOCKTEST_PASSWORD"])


def _bundle_members(data: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]


def _verifies(key: Path, public: bool, app: bytes, sig: bytes, tmp_path: Path) -> bool:
    (tmp_path / "app.tar").write_bytes(app)
    (tmp_path / "app.sig").write_bytes(sig)
    pub = ["-pubin"] if public else []
    done = subprocess.run(["openssl", "pkeyutl", "-verify", *pub, "-inkey", str(key), "-rawin", "-in",
                           str(tmp_path / "app.tar"), "-sigfile", str(tmp_path / "app.sig")], capture_output=True)
    return done.returncode == 0


def test_bundle_is_signed_by_the_build_key_and_the_faults_change_it_in_place(tmp_path):
    image = qbuild.build()
    original = image.bundle.read_bytes()
    built = _bundle_members(original)
    assert set(built) == {"app.tar", "app.sig"}
    assert launcher.BUNDLE_MARK in _bundle_members(built["app.tar"])["plcd"]
    assert _verifies(image.directory / "signing.pem", False, built["app.tar"], built["app.sig"], tmp_path)
    tampered, detail = launcher.changed_bundle(original, tmp_path, foreign=False)
    assert len(tampered) == len(original) and "signature left as built" in detail
    changed = _bundle_members(tampered)
    assert changed["app.sig"] == built["app.sig"] and changed["app.tar"] != built["app.tar"]
    assert launcher.BUNDLE_MARK_CHANGED in _bundle_members(changed["app.tar"])["plcd"]
    assert not _verifies(image.directory / "signing.pem", False, changed["app.tar"], changed["app.sig"], tmp_path)
    foreign, _ = launcher.changed_bundle(original, tmp_path, foreign=True)
    signed = _bundle_members(foreign)
    assert len(foreign) == len(original) and signed["app.tar"] == changed["app.tar"]
    assert _verifies(tmp_path / "foreign.pem", False, signed["app.tar"], signed["app.sig"], tmp_path)
    assert not _verifies(image.directory / "signing.pem", False, signed["app.tar"], signed["app.sig"], tmp_path)


def test_tampered_bundle_hardened_refuses_plcd_until_restored(hardened):
    port = hardened.endpoints["modbus_tcp"]["port"]
    hardened.set_fault("tamper_bundle")
    try:
        assert hardened.fault == "tamper_bundle"
        time.sleep(3)  # plcd would be up a second after SSH
        assert not launcher.modbus_read(port, timeout=1.0)
        assert ssh_accepts(hardened, "admin", hardened.secrets["QEMU_ADMIN_PASSWORD"])  # the rest of the boot ran
    finally:
        hardened.set_fault(None)
    assert hardened.fault is None and launcher.modbus_read(port, timeout=2.0)


def test_tampered_bundle_weak_runs_it_and_logs_its_mark(weak, syslog_sock):
    weak.set_fault("tamper_bundle")
    try:
        lines = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not any("bundle-mark:tampered" in ln for ln in lines):
            with contextlib.suppress(TimeoutError):
                lines.append(syslog_sock.recv(2048).decode(errors="replace"))
        assert any("plcd" in ln and "bundle-mark:tampered" in ln for ln in lines), lines[-5:]
        assert launcher.modbus_read(weak.endpoints["modbus_tcp"]["port"], timeout=2.0)
    finally:
        weak.set_fault(None)


def test_input_validation_weak_crashes_and_restart_recovers(weak):
    port = weak.endpoints["modbus_tcp"]["port"]
    assert modbus_raw(port, bytes([0x10, 0, 100, 0, 2, 3, 1, 2, 3])) == b""  # no reply: the runtime died
    time.sleep(0.5)
    assert not launcher.modbus_read(port, timeout=1.0)
    weak.restart()
    assert launcher.modbus_read(port)
    assert 0 < weak.ready_s < 60


def test_stop_leaves_no_process_and_frees_the_ports(weak):
    pid, port = weak.pid, weak.endpoints["modbus_tcp"]["port"]
    weak.stop()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert launcher._port_free(port)
    assert pid not in our_qemu_children()
    weak.stop()  # idempotent


def test_interpreter_exit_stops_a_device_left_running(tmp_path):
    script = ("from iec62443_harness.labs.qemu.launcher import start\n"
              "device = start('weak')\n"
              "print(device.pid, flush=True)\n")  # exits without stop(): atexit must end QEMU
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr[-500:]
    pid = int(done.stdout.split()[-1])
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_a_killed_harness_takes_its_guest_with_it():
    """kill -9 skips atexit: the guest's parent-death signal must end QEMU anyway (a CI timeout does this)."""
    script = ("import os, time\nfrom iec62443_harness.labs.qemu.launcher import start\n"
              "device = start('weak')\nprint(device.pid, flush=True)\ntime.sleep(120)\n")
    harness = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        pid = int(harness.stdout.readline())
    finally:
        harness.kill()
        harness.wait(timeout=10)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.1)
    assert not _alive(pid), f"QEMU {pid} outlived its killed harness"


def _alive(pid: int) -> bool:
    """Running, not a zombie waiting to be reaped."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


# --- optional zones: the guest behind a conduit, reached only from namespaces made for it

PROBE = """
import socket, struct, sys
try:
    s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2)
except ConnectionRefusedError:
    sys.exit(print("refused"))
except OSError:
    sys.exit(print("silent"))
s.settimeout(2)
if sys.argv[2] == "502":
    s.sendall(struct.pack(">HHHBBHH", 1, 0, 6, 1, 3, 0, 1))
print("answered", s.recv(64)[:8])
"""


def test_zones_conduit_allows_refuses_and_drops():
    from iec62443_harness.labs.qemu import netns

    reason = netns.unavailable()
    if reason:
        pytest.skip(f"zones not available: {reason}")
    device = launcher.start("hardened", options={"zones": True})
    try:
        def probe(zone: str, port: int) -> str:
            done = subprocess.run(["ip", "netns", "exec", device.zones.ns(zone), sys.executable, "-c", PROBE,
                                   netns.GUEST_IP, str(port)], capture_output=True, text=True, timeout=15)
            return done.stdout.strip()

        assert probe("eng", 502).startswith("answered")
        assert probe("eng", 22).startswith("answered b'SSH-2.0")
        assert probe("ent", 502) == "refused"
        assert probe("ent", 22) == "silent"
        assert launcher.modbus_read(device.endpoints["modbus_tcp"]["port"])  # loopback endpoints still work
        names = [device.zones.ns(z) for z in ("eng", "ent", "ctl", "rtr")]
    finally:
        device.stop()
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10).stdout
    assert not any(name in listed for name in names)


# --- bad input: one line, no process left behind


def test_bad_profile_fault_and_option():
    with pytest.raises(LabError, match="unknown qemu profile"):
        launcher.start("medium")
    with pytest.raises(LabError, match="unknown fault"):
        launcher.start("weak", faults=("melt",))
    with pytest.raises(LabError, match="unknown qemu option"):
        launcher.start("weak", options={"turbo": True})


def test_port_taken():
    before = our_qemu_children()  # the module's hardened device may still be running
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(LabError, match=f"port {port} \\(ssh\\) is already in use"):
            launcher.start("weak", options={"ports": {"ssh": port}})
    assert our_qemu_children() == before


def test_port_taken_between_pick_and_bind_is_picked_again(monkeypatch):
    """Another process takes a picked port before QEMU binds it: QEMU fails, start() picks new ports."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        picks = iter([taken])
        real_randint, real_free = launcher.random.randint, launcher._port_free
        monkeypatch.setattr(launcher.random, "randint", lambda a, b: next(picks, None) or real_randint(a, b))
        monkeypatch.setattr(launcher, "_port_free", lambda port: port == taken or real_free(port))
        device = launcher.start("weak")
        try:
            assert device.endpoints["ssh"]["port"] != taken
            assert launcher.modbus_read(device.endpoints["modbus_tcp"]["port"])
        finally:
            device.stop()


def test_qemu_missing(monkeypatch):
    monkeypatch.setattr(launcher, "QEMU", "qemu-system-not-installed")
    with pytest.raises(LabError, match="not found: apt-get install"):
        launcher.start("weak")


def test_kernel_package_not_found(monkeypatch, tmp_path):
    monkeypatch.setattr(qbuild, "KERNEL_META", "linux-image-no-such-flavour")
    with pytest.raises(LabError, match="no Debian kernel package found.*apt-get update"):
        qbuild.build(cache_dir=tmp_path)


def test_never_ready_is_bounded_and_cleans_up():
    before = our_qemu_children()
    started = time.monotonic()
    with pytest.raises(LabError, match="not ready within 1 s"):
        launcher.start("weak", options={"ready_timeout_s": 1})
    assert time.monotonic() - started < 20
    assert our_qemu_children() == before
