"""The SSH driver against real peers: a small paramiko server in this process, configured per test, and
OpenSSH or dropbear when they are installed. Every server listens on 127.0.0.1 only."""

from __future__ import annotations

import shutil
import socket
import statistics
import struct
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import paramiko
import pytest
from iec62443_harness.evidence import Evidence
from iec62443_harness.fixtures.drivers.errors import (
    ConnectionLost,
    DeviceTimeout,
    InterfaceUnavailable,
    ProtocolViolation,
)
from iec62443_harness.fixtures.drivers.ssh import HostKeyMismatch, LoginOutcome, LoginRefused, SshDriver
from iec62443_harness.fixtures.safety import Guard
from iec62443_harness.target import Safety, Ssh, Timeouts

from tests.support import end_process, free_port

HOST_KEY = paramiko.ECDSAKey.generate()
CLIENT_KEY = paramiko.ECDSAKey.generate()
PASSWORD = "right-horse-battery"
TIMEOUTS = Timeouts(connect_s=0.5, reply_s=0.5)


@dataclass
class Config:
    password: str = PASSWORD
    allowed: tuple[str, ...] = ("password", "publickey")
    banner: str | None = None
    lock_after: int | None = None  # failed passwords after which the banner says the account is locked
    two_factor: bool = False  # password and publickey both required
    kbd_instructions: str = ""
    idle_close_s: float | None = None  # the shell closes after this long without input
    auth_delay_s: float = 0.0  # the server thinks this long about each password
    failures: int = 0


@dataclass
class _Auth(paramiko.ServerInterface):
    cfg: Config
    done: set[str] = field(default_factory=set)

    def get_allowed_auths(self, username: str) -> str:
        if self.cfg.two_factor:
            return ",".join(m for m in ("password", "publickey") if m not in self.done)
        return ",".join(self.cfg.allowed)

    def get_banner(self) -> tuple[str | None, str | None]:
        if self.cfg.lock_after is not None and self.cfg.failures >= self.cfg.lock_after:
            return "Account admin is locked: ask an administrator.\n", "en-US"
        return (self.cfg.banner, "en-US") if self.cfg.banner else (None, None)

    def _factor(self, name: str, ok: bool) -> int:
        if not self.cfg.two_factor and name not in self.cfg.allowed and "keyboard-interactive" not in self.cfg.allowed:
            return paramiko.AUTH_FAILED  # paramiko asks even about methods it does not offer
        if not ok:
            self.cfg.failures += 1
            return paramiko.AUTH_FAILED
        self.done.add(name)
        if self.cfg.two_factor and self.done != {"password", "publickey"}:
            return paramiko.AUTH_PARTIALLY_SUCCESSFUL
        return paramiko.AUTH_SUCCESSFUL

    def check_auth_password(self, username: str, password: str) -> int:
        time.sleep(self.cfg.auth_delay_s)
        locked = self.cfg.lock_after is not None and self.cfg.failures >= self.cfg.lock_after
        return self._factor("password", password == self.cfg.password and not locked)

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        return self._factor("publickey", key == CLIENT_KEY)

    def check_auth_interactive(self, username: str, submethods: str) -> paramiko.InteractiveQuery:
        return paramiko.InteractiveQuery("", self.cfg.kbd_instructions, ("Password: ", False))

    def check_auth_interactive_response(self, responses: list[str]) -> int:
        return self._factor("password", list(responses) == [self.cfg.password])

    def check_channel_request(self, kind: str, chanid: int) -> int:
        return paramiko.OPEN_SUCCEEDED if kind == "session" else paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    def check_channel_pty_request(self, *args: object) -> bool:
        return True

    def check_channel_exec_request(self, channel: paramiko.Channel, command: bytes) -> bool:
        if command == b"hasty":  # done and closed before paramiko confirms the request, as some servers do
            channel.sendall(b"hasty\n")
            channel.send_exit_status(0)
            channel.close()
            return True
        threading.Thread(target=_exec, args=(channel, command.decode()), daemon=True).start()
        return True

    def check_channel_shell_request(self, channel: paramiko.Channel) -> bool:
        threading.Thread(target=_shell, args=(channel, self.cfg.idle_close_s), daemon=True).start()
        return True


def _exec(chan: paramiko.Channel, command: str) -> None:
    user = chan.get_transport().get_username()
    if command == "whoami":
        chan.sendall(f"{user}\n".encode())
        chan.send_exit_status(0)
    elif command == "fail":
        chan.sendall_stderr(b"fail: no such thing\n")
        chan.send_exit_status(2)
    elif command == "sleep":  # never answers: the driver's timeout must end it
        while not chan.closed and chan.get_transport().is_active():
            time.sleep(0.05)
        return
    elif command == "babble":
        line = b"y" * 1023 + b"\n"
        try:
            for _ in range(4096):
                if chan.closed:
                    return
                chan.sendall(line)
        except (OSError, EOFError, paramiko.SSHException):
            return
        chan.send_exit_status(0)
    elif command == "drop":  # the device goes away in the middle of a command
        chan.sendall(b"going\n")
        chan.get_transport().close()
        return
    else:
        chan.send_exit_status(127)
    chan.shutdown_write()  # EOF, not close: a close could overtake paramiko's reply to the exec request


def _shell(chan: paramiko.Channel, idle_close_s: float | None) -> None:
    user = chan.get_transport().get_username()
    chan.sendall(b"welcome\r\n$ ")
    line, last = b"", time.monotonic()
    try:
        while not chan.closed:
            chan.settimeout(0.05)
            try:
                data = chan.recv(1024)
            except TimeoutError:
                if idle_close_s is not None and time.monotonic() - last > idle_close_s:
                    chan.sendall(b"\r\ntimed out waiting for input: auto-logout\r\n")
                    break
                continue
            if not data:
                break
            last = time.monotonic()
            line += data
            while b"\n" in line:
                cmd, line = line.split(b"\n", 1)
                cmd = cmd.strip()
                if cmd == b"exit":
                    return
                reply = user.encode() if cmd == b"whoami" else b"sh: " + cmd + b": not found"
                chan.sendall(cmd + b"\r\n" + reply + b"\r\n$ ")
    except (OSError, EOFError, paramiko.SSHException):
        pass
    finally:
        chan.close()


def _packet(payload: bytes) -> bytes:
    padding = 8 - (len(payload) + 5) % 8 + 8
    return struct.pack(">IB", len(payload) + padding + 1, padding) + payload + bytes(padding)


def _string(s: bytes) -> bytes:
    return struct.pack(">I", len(s)) + s


class FakeServer:
    """Modes: ssh (paramiko), close (closes after the identification exchange), garbage (binary instead of
    an identification), silent (accepts and never speaks), disconnect (SSH_MSG_DISCONNECT before kex)."""

    def __init__(self, mode: str = "ssh", reason: str = "", **cfg: object) -> None:
        self.mode, self.reason = mode, reason
        self.cfg = Config(**cfg)  # type: ignore[arg-type]
        self.sock = socket.create_server(("127.0.0.1", free_port()), backlog=16)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self._stop = threading.Event()
        self._open: list[socket.socket] = []
        self._transports: list[paramiko.Transport] = []
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._open.append(conn)
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(1.0)
        try:
            if self.mode == "ssh":
                transport = paramiko.Transport(conn)
                self._transports.append(transport)
                transport.add_server_key(HOST_KEY)
                transport.start_server(server=_Auth(self.cfg))
                return
            if self.mode in ("close", "disconnect"):
                conn.sendall(b"SSH-2.0-Fake_1.0\r\n")
                conn.recv(256)
                if self.mode == "disconnect":
                    reason = self.reason.encode()
                    conn.sendall(_packet(b"\x01" + struct.pack(">I", 2) + _string(reason) + _string(b"")))
                    time.sleep(0.2)
            elif self.mode == "garbage":
                conn.sendall(bytes([0, 0xFF, 0x13, 0x80]) + b"garbage\x81\n" + bytes(range(256)))
                self._stop.wait(2.0)
            elif self.mode == "silent":
                self._stop.wait(10.0)
            conn.close()
        except (OSError, EOFError, paramiko.SSHException):
            conn.close()

    def stop(self) -> None:
        self._stop.set()
        self.sock.close()
        for transport in self._transports:
            transport.close()
        for conn in self._open:
            conn.close()
        for thread in self._threads:
            thread.join(2.0)

    def iface(self, **kw: object) -> Ssh:
        return Ssh(host="127.0.0.1", port=self.port, timeouts=TIMEOUTS, **kw)  # type: ignore[arg-type]


@pytest.fixture
def server():
    started: list[FakeServer] = []

    def start(mode: str = "ssh", **cfg: object) -> FakeServer:
        started.append(FakeServer(mode, **cfg))
        return started[-1]

    yield start
    for s in started:
        s.stop()


def driver(srv: FakeServer, evidence: Evidence | None = None, **iface: object) -> SshDriver:
    guard = Guard(Safety(max_rate_per_s=10_000), "ssh")
    return SshDriver(srv.iface(**iface), evidence if evidence is not None else Evidence(), guard)


# --- probe


def test_probe_reads_identification_and_offered_algorithms(server):
    ev = Evidence()
    probe = driver(server(), ev).probe()
    assert probe.ident.startswith("SSH-2.0-paramiko")
    assert "ecdsa-sha2-nistp256" in probe.host_key_types
    assert "curve25519-sha256@libssh.org" in probe.kex
    assert "aes128-ctr" in probe.ciphers_c2s and "aes128-ctr" in probe.ciphers_s2c
    assert "hmac-sha2-256" in probe.macs_c2s and probe.compression_s2c[0] == "none"
    assert any("probe -> SSH-2.0-paramiko" in line for line in ev.lines())


def test_probe_of_a_server_closing_mid_handshake_is_connection_lost(server):
    with pytest.raises(ConnectionLost, match="closed the connection before the key exchange"):
        driver(server("close")).probe()


def test_probe_of_garbage_is_a_protocol_violation(server):
    with pytest.raises(ProtocolViolation, match="no SSH identification"):
        driver(server("garbage")).probe()


def test_probe_of_a_silent_server_times_out_in_bounded_time(server):
    start = time.monotonic()
    with pytest.raises(DeviceTimeout):
        driver(server("silent")).probe()
    assert time.monotonic() - start < TIMEOUTS.connect_s + 0.5


def test_nothing_listening_is_interface_unavailable(server):
    srv = server()
    srv.stop()
    with pytest.raises(InterfaceUnavailable, match="cannot connect"):
        driver(srv).probe()
    with pytest.raises(InterfaceUnavailable):
        driver(srv).try_login("admin", PASSWORD)


# --- login classification


def test_right_password_is_accepted_and_wrong_one_rejected(server):
    ev = Evidence()
    drv = driver(server(), ev)
    assert drv.try_login("admin", PASSWORD).outcome is LoginOutcome.ACCEPTED
    bad = drv.try_login("admin", "wrong-password")
    assert bad.outcome is LoginOutcome.REJECTED and bad.elapsed_s < 1.0
    lines = "\n".join(ev.lines())
    assert "login admin (password) -> ACCEPTED" in lines and "login admin (password) -> REJECTED" in lines
    assert PASSWORD not in lines and "wrong-password" not in lines
    assert "host key ecdsa-sha2-nistp256 SHA256:" in lines and "(not pinned)" in lines


def test_banner_is_returned_and_recorded(server):
    ev = Evidence()
    result = driver(server(banner="Authorized use only.\n"), ev).try_login("admin", "nope")
    assert result.outcome is LoginOutcome.REJECTED
    assert result.banner == "Authorized use only.\n"
    assert any("banner: 'Authorized use only.\\n'" in line for line in ev.lines())


def test_password_against_a_publickey_only_server_is_method_not_allowed(server):
    srv = server(allowed=("publickey",))
    result = driver(srv).try_login("admin", PASSWORD)
    assert result.outcome is LoginOutcome.METHOD_NOT_ALLOWED
    assert result.allowed_methods == ("publickey",)
    assert driver(srv).try_login("admin", pkey=CLIENT_KEY).outcome is LoginOutcome.ACCEPTED


def test_none_authentication_lists_the_methods(server):
    result = driver(server()).try_login("admin")
    assert result.outcome is LoginOutcome.METHOD_NOT_ALLOWED
    assert set(result.allowed_methods) == {"password", "publickey"}


def test_keyboard_interactive_carries_the_password(server):
    srv = server(allowed=("keyboard-interactive",))
    drv = driver(srv)
    assert drv.try_login("admin", PASSWORD).outcome is LoginOutcome.ACCEPTED
    assert drv.try_login("admin", "wrong").outcome is LoginOutcome.REJECTED


def test_second_factor_required_is_partial(server):
    srv = server(two_factor=True)
    partial = driver(srv).try_login("admin", PASSWORD)
    assert partial.outcome is LoginOutcome.PARTIAL and partial.allowed_methods == ("publickey",)
    assert driver(srv).try_login("admin", PASSWORD, pkey=CLIENT_KEY).outcome is LoginOutcome.ACCEPTED


def test_lockout_only_when_the_server_says_so(server):
    srv = server(banner="Authorized use only. Accounts lock after 3 failures.\n", lock_after=3)
    drv = driver(srv)
    outcomes = [drv.try_login("admin", "wrong").outcome for _ in range(3)]
    assert outcomes == [LoginOutcome.REJECTED] * 3  # a policy banner that mentions locking is no lockout
    locked = drv.try_login("admin", PASSWORD)
    assert locked.outcome is LoginOutcome.LOCKED_OUT and "locked" in (locked.banner or "")


def test_lock_said_in_a_keyboard_interactive_prompt(server):
    srv = server(allowed=("keyboard-interactive",), kbd_instructions="The account is locked.")
    assert driver(srv).try_login("admin", "wrong").outcome is LoginOutcome.LOCKED_OUT


def test_disconnect_reason_is_kept_and_a_lock_in_it_recognised(server):
    plain = driver(server("disconnect", reason="Too many authentication failures")).try_login("admin", "x")
    assert plain.outcome is LoginOutcome.DISCONNECTED and "Too many authentication failures" in plain.detail
    locked = driver(server("disconnect", reason="Account locked for 300 s")).try_login("admin", "x")
    assert locked.outcome is LoginOutcome.LOCKED_OUT


def test_server_closing_mid_handshake_is_disconnected(server):
    result = driver(server("close")).try_login("admin", PASSWORD)
    assert result.outcome is LoginOutcome.DISCONNECTED


def test_garbage_instead_of_an_identification_is_a_protocol_violation(server):
    with pytest.raises(ProtocolViolation, match="instead of an SSH identification"):
        driver(server("garbage")).try_login("admin", PASSWORD)


def test_silent_server_is_a_timeout_in_bounded_time(server):
    srv = server("silent")
    result = driver(srv).try_login("admin", PASSWORD)
    assert result.outcome is LoginOutcome.TIMEOUT
    assert result.elapsed_s < TIMEOUTS.connect_s + 0.5
    start = time.monotonic()
    with pytest.raises(DeviceTimeout):
        driver(srv).session("admin", PASSWORD)
    assert time.monotonic() - start < TIMEOUTS.connect_s + 0.5


def test_slow_answer_to_a_password_is_a_timeout(server):
    drv = driver(server(auth_delay_s=1.0))
    drv.auth_timeout_s = 0.3
    result = drv.try_login("admin", PASSWORD)
    assert result.outcome is LoginOutcome.TIMEOUT and 0.3 <= result.elapsed_s < 0.8


def test_host_key_pin_is_checked(server):
    srv = server()
    ev = Evidence()
    assert driver(srv, ev, host_key_fingerprint=HOST_KEY.fingerprint).try_login("admin", PASSWORD).outcome \
        is LoginOutcome.ACCEPTED
    assert any("matches the pin" in line for line in ev.lines())
    with pytest.raises(HostKeyMismatch, match=r"is not a pinned one \(SHA256:AAAA"):
        driver(srv, host_key_fingerprint="SHA256:" + "A" * 43).try_login("admin", PASSWORD)
    # a server has several host keys: a list pins each of them
    pins = ["SHA256:" + "B" * 43, HOST_KEY.fingerprint]
    assert driver(srv, host_key_fingerprint=pins).try_login("admin", PASSWORD).outcome is LoginOutcome.ACCEPTED


def test_failed_login_is_fast(server):
    """Median time of a failed password on a fresh connection, 50 attempts (TCP_NODELAY matters: ~87 ms)."""
    drv = driver(server())
    times = []
    for _ in range(50):
        result = drv.try_login("admin", "wrong")
        assert result.outcome is LoginOutcome.REJECTED
        times.append(result.elapsed_s)
    median = statistics.median(times)
    print(f"\nfailed login against the in-process paramiko server: median {median * 1000:.1f} ms of 50")
    assert median < 0.05


# --- sessions


def test_session_runs_commands_with_exit_status(server):
    ev = Evidence()
    with driver(server(), ev).session("admin", PASSWORD) as s:
        who = s.run("whoami")
        assert (who.output, who.exit_status) == ("admin\n", 0)
        failed = s.run("fail")
        assert failed.exit_status == 2 and "no such thing" in failed.output
    assert any("exec 'whoami' -> exit 0: admin" in line for line in ev.lines())


def test_command_closed_before_its_confirmation_still_counts(server):
    with driver(server()).session("admin", PASSWORD) as s:
        result = s.run("hasty")
        assert (result.output, result.exit_status) == ("hasty\n", 0)


def test_session_refused_raises_login_refused(server):
    with pytest.raises(LoginRefused) as info:
        driver(server()).session("admin", "wrong")
    assert info.value.result.outcome is LoginOutcome.REJECTED


def test_command_that_never_ends_times_out_and_the_session_survives(server):
    with driver(server()).session("admin", PASSWORD) as s:
        start = time.monotonic()
        with pytest.raises(DeviceTimeout, match="not finished within 0.3 s"):
            s.run("sleep", timeout=0.3)
        assert time.monotonic() - start < 1.0
        assert s.run("whoami").output == "admin\n"


def test_babbling_command_is_cut_at_the_size_cap(server):
    with driver(server()).session("admin", PASSWORD) as s, pytest.raises(ProtocolViolation, match="babbling"):
        s.run("babble", timeout=10)


def test_a_long_dump_passes_under_a_raised_cap(server):
    with driver(server()).session("admin", PASSWORD) as s:
        result = s.run("babble", timeout=20, max_output=8 << 20)  # a whole audit log, say
    assert len(result.output) == 4096 * 1024 and result.exit_status == 0


def test_connection_dropped_during_a_command_is_connection_lost(server):
    with driver(server()).session("admin", PASSWORD) as s, pytest.raises(ConnectionLost):
        s.run("drop")


def test_shell_send_expect_and_timeout(server):
    with driver(server()).session("admin", PASSWORD) as s, s.shell() as sh:
        assert sh.expect(r"\$ $").endswith("welcome\r\n$ ")
        sh.send("whoami")
        assert "admin" in sh.expect(r"admin\r\n\$ ")
        with pytest.raises(DeviceTimeout) as info:
            sh.expect("never-printed", timeout=0.2)
        assert info.value.seen == ""
        sh.send("exit")
        assert sh.wait_closed(1.0) and not sh.alive()


def test_idle_shell_closed_by_the_server_is_observed(server):
    with driver(server(idle_close_s=0.3)).session("admin", PASSWORD) as s, s.shell() as sh:
        sh.expect(r"\$ $")
        assert sh.alive()
        assert not sh.wait_closed(0.1)
        start = time.monotonic()
        assert sh.wait_closed(2.0)
        assert 0.1 < time.monotonic() - start < 1.5
        assert not sh.alive()


def test_several_sessions_at_once(server):
    drv = driver(server())
    sessions = [drv.session(f"user{i}", PASSWORD) for i in range(4)]
    try:
        shells = [s.shell() for s in sessions]
        for i, (s, sh) in enumerate(zip(sessions, shells, strict=True)):
            assert s.run("whoami").output == f"user{i}\n"
            sh.expect(r"\$ $")
        assert all(s.alive() for s in sessions)
    finally:
        for s in sessions:
            s.close()
    assert not any(s.alive() for s in sessions)


def test_sessions_opened_from_threads(server):
    drv = driver(server())
    results: list[str] = []

    def one(i: int) -> None:
        with drv.session(f"user{i}", PASSWORD) as s:
            results.append(s.run("whoami").output)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert sorted(results) == [f"user{i}\n" for i in range(4)]


# --- real servers, when installed


def _wait_for_ident(port: int, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {log.read_text(errors='replace')[-500:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                if s.recv(4).startswith(b"SSH-"):
                    return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError("server did not answer within 5 s")


@pytest.fixture
def real_server(tmp_path: Path):
    procs: list[subprocess.Popen] = []

    def start(argv: list[str], port: int) -> int:
        log = tmp_path / f"server-{len(procs)}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
        procs.append(proc)
        _wait_for_ident(port, proc, log)
        return port

    yield start
    for proc in procs:
        end_process(proc, 3)


def _sshd(tmp_path: Path, real_server, **options: str) -> int:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "host")], check=True)
    (tmp_path / "authorized_keys").write_text(f"{CLIENT_KEY.get_name()} {CLIENT_KEY.get_base64()}\n")
    (tmp_path / "banner").write_text("Authorized use only.\n")
    port = free_port()
    config = {"ListenAddress": f"127.0.0.1:{port}", "HostKey": str(tmp_path / "host"), "PidFile": "none",
              "UsePAM": "no", "StrictModes": "no", "AuthorizedKeysFile": str(tmp_path / "authorized_keys"),
              "PermitRootLogin": "prohibit-password", "Banner": str(tmp_path / "banner"), **options}
    (tmp_path / "sshd_config").write_text("".join(f"{k} {v}\n" for k, v in config.items()))
    Path("/run/sshd").mkdir(exist_ok=True)
    return real_server(["/usr/sbin/sshd", "-D", "-e", "-f", str(tmp_path / "sshd_config")], port)


def _real(port: int, evidence: Evidence | None = None) -> SshDriver:
    iface = Ssh(host="127.0.0.1", port=port, timeouts=Timeouts(connect_s=2, reply_s=2))
    guard = Guard(Safety(max_rate_per_s=10_000), "ssh")
    return SshDriver(iface, evidence if evidence is not None else Evidence(), guard)


needs_sshd = pytest.mark.skipif(not Path("/usr/sbin/sshd").exists() or not shutil.which("ssh-keygen"),
                                reason="OpenSSH server not installed (apt-get install openssh-server)")
needs_dropbear = pytest.mark.skipif(not shutil.which("dropbear") or not shutil.which("dropbearkey"),
                                    reason="dropbear not installed (apt-get install dropbear-bin)")


@needs_sshd
def test_openssh(tmp_path, real_server):
    port = _sshd(tmp_path, real_server)
    drv = _real(port)
    probe = drv.probe()
    assert probe.ident.startswith("SSH-2.0-OpenSSH") and "ssh-ed25519" in probe.host_key_types
    assert "chacha20-poly1305@openssh.com" in probe.ciphers_c2s
    rejected = drv.try_login("root", "certainly-not-the-password")
    assert rejected.outcome is LoginOutcome.REJECTED and rejected.banner == "Authorized use only.\n"
    with drv.session("root", pkey=CLIENT_KEY) as s:
        result = s.run("id -un; echo oops >&2; exit 3")
        assert result.output.split() == ["root", "oops"] and result.exit_status == 3
        with s.shell() as sh:
            sh.send("echo shell-$((6*7))")
            sh.expect("shell-42")
            sh.send("exit")
            assert sh.wait_closed(2)
    times = [drv.try_login("root", "wrong").elapsed_s for _ in range(10)]
    print(f"\nfailed login against OpenSSH: median {statistics.median(times) * 1000:.1f} ms of 10")


@needs_sshd
def test_openssh_without_passwords_is_method_not_allowed(tmp_path, real_server):
    port = _sshd(tmp_path, real_server, PasswordAuthentication="no", KbdInteractiveAuthentication="no")
    result = _real(port).try_login("root", "whatever")
    assert result.outcome is LoginOutcome.METHOD_NOT_ALLOWED and "publickey" in result.allowed_methods


@needs_sshd
def test_openssh_max_auth_tries_then_disconnect_is_not_a_lockout(tmp_path, real_server):
    port = _sshd(tmp_path, real_server, MaxAuthTries="1")
    drv = _real(port)
    for _ in range(3):
        result = drv.try_login("root", "wrong")
        assert result.outcome is LoginOutcome.DISCONNECTED
        assert "Too many authentication failures" in result.detail


@needs_dropbear
def test_dropbear(tmp_path, real_server):
    key = tmp_path / "host"
    subprocess.run(["dropbearkey", "-t", "ed25519", "-f", str(key)], check=True, capture_output=True)
    port = free_port()
    real_server(["dropbear", "-F", "-E", "-p", f"127.0.0.1:{port}", "-r", str(key)], port)
    drv = _real(port)
    probe = drv.probe()
    assert probe.ident.startswith("SSH-2.0-dropbear") and "ssh-ed25519" in probe.host_key_types
    assert drv.try_login("nobody-here", "wrong").outcome is LoginOutcome.REJECTED


@needs_dropbear
def test_dropbear_without_passwords_is_method_not_allowed(tmp_path, real_server):
    key = tmp_path / "host"
    subprocess.run(["dropbearkey", "-t", "ed25519", "-f", str(key)], check=True, capture_output=True)
    port = free_port()
    real_server(["dropbear", "-F", "-E", "-s", "-p", f"127.0.0.1:{port}", "-r", str(key)], port)
    result = _real(port).try_login("root", "whatever")
    assert result.outcome is LoginOutcome.METHOD_NOT_ALLOWED and result.allowed_methods == ("publickey",)

