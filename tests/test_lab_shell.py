"""The emulated PLC's management plane: accounts, audit, sessions, shell, SSH and console, in-process.

Each test runs the real servers on 127.0.0.1 (or a pty) against a small stand-in device, so it does not
depend on the process image or control task; clients are paramiko (with TCP_NODELAY) and pyserial.
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import fields
from types import SimpleNamespace

import paramiko
import pytest
import serial
from iec62443_harness.labs import LabError
from iec62443_harness.labs.simplc import accounts as accounts_module
from iec62443_harness.labs.simplc.accounts import Accounts, AuthResult
from iec62443_harness.labs.simplc.audit import AuditLog
from iec62443_harness.labs.simplc.console import Console
from iec62443_harness.labs.simplc.profile import AccountSpec, Profile
from iec62443_harness.labs.simplc.sessions import Sessions
from iec62443_harness.labs.simplc.shell import ROLE_OPERATIONS, Shell
from iec62443_harness.labs.simplc.ssh import WEAK, Server, serve_ssh

from tests.support import wait_for

PASSWORDS = {"admin": "Adm1n-pass!", "eng": "Eng1n-pass!", "oper": "0per-pass!A", "view": "V1ew-pass!x"}
ROLES = {"admin": "admin", "eng": "engineer", "oper": "operator", "view": "viewer"}
HARDENED = {"lockout_threshold": 3, "lockout_unlock_s": 0.6, "password_min_length": 10, "password_classes": 3,
            "password_history": 2, "banner": "AUTHORIZED USE ONLY\nAll access is logged."}
INSECURE = {"role_enforcement": False, "ssh_weak_algorithms": True, "console_echo_password": True,
            "reveal_unknown_user": True, "audit_failed_logins": False}


class Image:
    """A tiny process image: 100 of each table, out-of-range raises like the real one."""

    def __init__(self) -> None:
        self.tables = {t: [0] * 100 for t in ("co", "di", "hr", "ir")}

    def read(self, table: str, address: int, count: int) -> list[int]:
        if not 0 <= address <= address + count <= 100:
            raise ValueError(f"address {address} count {count} outside 0-99")
        return self.tables[table][address:address + count]

    def write(self, table: str, address: int, values: list[int]) -> None:
        self.read(table, address, len(values))
        self.tables[table][address:address + len(values)] = values


def make_device(syslog: tuple[str, int] | None = None, **settings: object) -> SimpleNamespace:
    specs = tuple(AccountSpec(user, role, f"SIMPLC_{user.upper()}_PASSWORD") for user, role in ROLES.items())
    profile = Profile(name="test", accounts=specs, **settings)
    audit = AuditLog(syslog)
    return SimpleNamespace(
        profile=profile, image=Image(), audit=audit, accounts=Accounts(profile, PASSWORDS, audit),
        sessions=Sessions(profile.max_sessions), fault=None, started=time.time(),
        settings={f.name: getattr(profile, f.name) for f in fields(profile)
                  if f.name not in ("name", "accounts", "extra", "input_bugs")})


@pytest.fixture
def lab() -> Iterator[Callable[..., tuple[SimpleNamespace, Server]]]:
    """lab(**settings) -> (device, ssh server); everything started here is closed afterwards."""
    servers: list[Server] = []

    def start(**settings: object) -> tuple[SimpleNamespace, Server]:
        device = make_device(**settings)
        servers.append(Server(device, "127.0.0.1", 0, login_grace_s=2.0))
        return device, servers[-1]

    yield start
    for server in servers:
        server.close()


@pytest.fixture
def console() -> Iterator[Callable[..., tuple[SimpleNamespace, serial.Serial]]]:
    """console(**settings) -> (device, pyserial port on the console's pty)."""
    opened: list[tuple[Console, serial.Serial]] = []

    def start(**settings: object) -> tuple[SimpleNamespace, serial.Serial]:
        device = make_device(**settings)
        con = Console(device)
        port = serial.Serial(con.path, 115200, timeout=0.05)
        opened.append((con, port))
        return device, port

    yield start
    for con, port in opened:
        port.close()
        con.close()


# --- clients


def transport(server: Server, cls: type[paramiko.Transport] = paramiko.Transport) -> paramiko.Transport:
    sock = socket.create_connection((server.host, server.port), timeout=2)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # paramiko's own connect pays ~87 ms to Nagle
    t = cls(sock)
    t.banner_timeout = t.handshake_timeout = t.auth_timeout = 3
    return t


def login(server: Server, user: str, password: str | None = None) -> paramiko.Transport:
    t = transport(server)
    try:
        t.connect(username=user, password=PASSWORDS.get(user, "x") if password is None else password)
    except Exception:
        t.close()
        raise
    return t


def refused(server: Server, user: str, password: str) -> bool:
    try:
        login(server, user, password).close()
    except paramiko.AuthenticationException:
        return True
    return False


def run(t: paramiko.Transport, command: str) -> tuple[str, int]:
    chan = t.open_session(timeout=2)
    chan.settimeout(4)
    chan.exec_command(command)
    out = b""
    while chunk := chan.recv(4096):
        out += chunk
    assert chan.status_event.wait(2), "no exit status"
    return out.decode(), chan.exit_status


def ssh(server: Server, user: str, command: str) -> tuple[str, int]:
    t = login(server, user)
    try:
        return run(t, command)
    finally:
        t.close()


class Screen:
    """An interactive shell channel (or a serial line) read until a pattern shows."""

    def __init__(self, read: Callable[[], bytes], write: Callable[[bytes], object]) -> None:
        self.read, self.write, self.seen = read, write, ""

    @classmethod
    def shell(cls, t: paramiko.Transport) -> tuple[Screen, paramiko.Channel]:
        chan = t.open_session(timeout=2)
        chan.get_pty()
        chan.invoke_shell()
        chan.settimeout(0.05)

        def read() -> bytes:
            try:
                return chan.recv(4096) or b"\0"  # NUL marks the end of the channel
            except TimeoutError:
                return b""

        return cls(read, chan.sendall), chan

    def expect(self, pattern: str, timeout: float = 3.0) -> str:
        deadline = time.monotonic() + timeout
        while not (match := re.search(pattern, self.seen)):
            if time.monotonic() > deadline:
                raise AssertionError(f"{pattern!r} not seen within {timeout} s; got {self.seen[-300:]!r}")
            self.seen += self.read().decode("utf-8", "replace")
        text, self.seen = self.seen[:match.end()], self.seen[match.end():]
        return text

    def quiet(self, seconds: float) -> bytes:
        """Everything that arrives within `seconds`."""
        got, deadline = b"", time.monotonic() + seconds
        while time.monotonic() < deadline:
            got += self.read()
        return got

    def line(self, text: str) -> None:
        self.write(text.encode() + b"\r")


def serial_screen(port: serial.Serial) -> Screen:
    return Screen(lambda: port.read(4096), port.write)


def events(device: SimpleNamespace, name: str) -> list[dict]:
    return [e for e in device.audit.entries() if e["event"] == name]


# --- SSH login, lockout, banner, algorithms


def test_ssh_login_ok_bad_password_unknown_user_and_publickey(lab):
    device, server = lab(**HARDENED)
    t = login(server, "admin")
    assert t.remote_version == "SSH-2.0-SimPLC_1.0"
    assert run(t, "whoami") == ("admin (admin)\n", 0)
    t.close()
    assert refused(server, "admin", "wrong")
    assert refused(server, "nobody", "wrong")
    with pytest.raises(paramiko.BadAuthenticationType) as exc:
        t = transport(server)
        try:
            t.connect(username="admin", pkey=paramiko.ECDSAKey.generate())
        finally:
            t.close()
    assert exc.value.allowed_types == ["password"]
    ok, bad = events(device, "login_ok"), events(device, "login_failed")
    assert ok[0]["user"] == "admin" and re.fullmatch(r"ssh:127\.0\.0\.1:\d+", ok[0]["source"])
    assert [(e["user"], e["detail"]) for e in bad] == [("admin", "bad_password"), ("nobody", "unknown_user")]


def test_lockout_then_timed_unlock_and_admin_unlock(lab):
    device, server = lab(**HARDENED)
    for _ in range(3):
        assert refused(server, "oper", "wrong")
    assert refused(server, "oper", PASSWORDS["oper"]), "locked even for the right password"
    assert events(device, "account_locked")[0]["user"] == "oper"
    assert events(device, "login_failed")[-1]["detail"] == "locked"
    time.sleep(0.7)  # lockout_unlock_s 0.6
    login(server, "oper").close()

    for _ in range(3):
        assert refused(server, "oper", "wrong")
    assert "locked" in ssh(server, "admin", "user list")[0].splitlines()[2]  # admin, eng, oper, view
    assert ssh(server, "admin", "user unlock oper") == ("user oper unlocked\n", 0)
    login(server, "oper").close()
    assert events(device, "user_unlock")[0]["detail"] == "oper"


def test_lockout_waits_for_admin_when_no_unlock_time(lab):
    device, server = lab(lockout_threshold=2)
    for _ in range(2):
        assert refused(server, "view", "wrong")
    assert device.accounts.authenticate("view", PASSWORDS["view"], "test") is AuthResult.LOCKED
    device.accounts.unlock("view", actor="admin", source="test")
    assert device.accounts.authenticate("view", PASSWORDS["view"], "test") is AuthResult.OK


def test_banner_before_authentication_only_when_configured(lab):
    _, hardened = lab(**HARDENED)
    t = transport(hardened)
    with pytest.raises(paramiko.AuthenticationException):
        t.connect(username="nobody", password="x")  # the banner arrives even though login fails
    assert t.get_banner() == b"AUTHORIZED USE ONLY\r\nAll access is logged.\r\n"
    t.close()
    _, insecure = lab(**INSECURE)
    t = login(insecure, "admin")
    assert t.get_banner() is None
    t.close()


def kexinit(server: Server) -> tuple[bytes, dict[str, list[str]]]:
    """The server's identification line and the name lists of its KEXINIT, read from a raw socket."""
    with socket.create_connection((server.host, server.port), timeout=2) as sock:
        sock.sendall(b"SSH-2.0-probe\r\n")
        stream = sock.makefile("rb")
        version = stream.readline()
        length = int.from_bytes(stream.read(4), "big")
        packet = stream.read(length)
    payload = packet[1:length - packet[0]]
    assert payload[0] == 20  # SSH_MSG_KEXINIT
    lists, pos = [], 17  # message byte and 16-byte cookie
    for _ in range(6):
        size = int.from_bytes(payload[pos:pos + 4], "big")
        lists.append(payload[pos + 4:pos + 4 + size].decode().split(","))
        pos += 4 + size
    return version, dict(zip(("kex", "hostkey", "cipher", "cipher_sc", "mac", "mac_sc"), lists, strict=True))


def test_algorithms_offered_differ_and_weak_ones_really_work(lab):
    _, hardened = lab(**HARDENED)
    _, weak = lab(**INSECURE)
    baseline = threading.active_count()
    version, strong_lists = kexinit(hardened)
    assert version == b"SSH-2.0-SimPLC_1.0\r\n"
    _, weak_lists = kexinit(weak)
    for key, names in (("kex", WEAK["kex"]), ("cipher", WEAK["ciphers"]), ("mac", WEAK["digests"])):
        assert not set(names) & set(strong_lists[key]), key
        assert set(names) <= set(weak_lists[key]), key
    assert "curve25519-sha256@libssh.org" in strong_lists["kex"] and "aes256-gcm@openssh.com" in strong_lists["cipher"]

    from iec62443_harness.labs.simplc.ssh import _Transport  # a client that speaks the weak algorithms too

    def weak_client(server: Server) -> paramiko.Transport:
        t = transport(server, _Transport)
        options = t.get_security_options()
        options.kex, options.ciphers, options.digests = ["diffie-hellman-group1-sha1"], ["3des-cbc"], ["hmac-sha1"]
        return t

    t = weak_client(weak)
    t.connect(username="admin", password=PASSWORDS["admin"])
    assert run(t, "whoami")[1] == 0
    t.close()
    t = weak_client(hardened)
    with pytest.raises(paramiko.SSHException):
        t.connect(username="admin", password=PASSWORDS["admin"])
    t.close()
    # probes and refused clients vanished mid-handshake: their server threads must be gone
    assert wait_for(lambda: threading.active_count() <= baseline, 4.0)


# --- shell over exec and interactive channels


def test_exec_and_interactive_shell(lab):
    device, server = lab(**HARDENED)
    t = login(server, "oper")
    assert run(t, "write 5 42") == ("ok: hr 5 = 42\n", 0)
    assert device.image.tables["hr"][5] == 42
    assert run(t, "read hr 4 3") == ("hr 4: 0 42 0\n", 0)
    assert run(t, "read hr 99 5")[1] == 1
    assert run(t, "frobnicate")[1] == 127
    assert run(t, "write 5")[1] == 2
    screen, chan = Screen.shell(t)
    screen.expect(r"oper@simplc\$ $")
    screen.line("wh\x7f\x7fwhoami")  # line editing: two backspaces
    assert "oper (operator)" in screen.expect(r"oper@simplc\$ $")
    screen.line("exit")
    screen.expect("logout")
    assert chan.status_event.wait(2) and chan.exit_status == 0
    t.close()
    write = events(device, "write")[0]
    assert (write["user"], write["outcome"], write["detail"]) == ("oper", "success", "hr 5 = 42")
    assert [e["detail"] for e in events(device, "logout")] == ["exit"]


def test_role_table_and_enforcement(lab):
    device, server = lab(**HARDENED)
    assert ssh(server, "view", "write 1 1") == ("permission denied: write needs role operator\n", 1)
    denied = events(device, "permission_denied")[0]
    assert (denied["user"], denied["outcome"]) == ("view", "denied")
    expected = {  # the role table, checked through the interpreter the SSH and console shells share
        "view": {"whoami": 0, "read hr 0": 0, "config show": 0, "write 1 1": 1, "audit show": 1, "user list": 1},
        "oper": {"write 1 1": 0, "audit show": 1, "session list": 1, "config set max_sessions 3": 1},
        "eng": {"audit show 2": 0, "user list": 1, "user unlock view": 1},
        "admin": {"user list": 0, "session list": 0, "config set max_sessions 3": 0, "audit show": 0},
    }
    for user, commands in expected.items():
        shell = Shell(device, user, "test")
        for command, status in commands.items():
            result = shell.execute(command)
            assert result.status == status, (user, command, result.output)
    assert ROLE_OPERATIONS["engineer"] >= ROLE_OPERATIONS["operator"] >= ROLE_OPERATIONS["viewer"]
    assert device.settings["max_sessions"] == 3 and device.sessions.limit == 3
    assert events(device, "config_change")[0]["detail"] == "max_sessions: none -> 3"
    assert Shell(device, "admin", "test").execute("config set modbus_writable 1").status == 2

    device, server = lab(**INSECURE)  # role_enforcement off: every user may do everything
    assert ssh(server, "view", "write 1 7") == ("ok: hr 1 = 7\n", 0)
    assert ssh(server, "view", "user list")[1] == 0


def test_password_rules_and_history(lab):
    device, server = lab(**HARDENED)
    shell = Shell(device, "oper", "test")
    old = PASSWORDS["oper"]
    assert shell.execute(f"passwd {old} Short1!").output.startswith("password too short")
    assert shell.execute(f"passwd {old} alllowercaseletters").output.startswith("password too simple")
    assert shell.execute("passwd wrong New-pass1!A").output.startswith("password unchanged")
    assert shell.execute(f"passwd {old} {old}").output.startswith("password reused")
    assert shell.execute(f"passwd {old} Second-pw1!").output == "password changed"
    assert shell.execute(f"passwd Second-pw1! {old}").output.startswith("password reused")  # history 2
    assert shell.execute("passwd Second-pw1! Third-pw1!!").status == 0
    assert shell.execute(f"passwd Third-pw1!! {old}").status == 0  # outside the last 2 again
    admin = Shell(device, "admin", "test")
    assert admin.execute("user add newbie viewer weak").output.startswith("password too short")
    assert admin.execute("user add newbie viewer Str0ng-enough").output == "user newbie added with role viewer"
    assert device.accounts.authenticate("newbie", "Str0ng-enough", "test") is AuthResult.OK
    changes = events(device, "password_change")
    assert [e["outcome"] for e in changes].count("success") == 3
    audit_text = " ".join(str(e) for e in device.audit.entries())
    assert "Str0ng-enough" not in audit_text and "Second-pw1!" not in audit_text, "no password in the audit trail"


def test_account_administration(lab):
    device, _ = lab(**HARDENED)
    admin = Shell(device, "admin", "test")
    assert admin.execute("user disable view").output == "user view disabled"
    assert device.accounts.authenticate("view", PASSWORDS["view"], "test") is AuthResult.DISABLED
    assert admin.execute("user enable view").status == 0
    assert admin.execute("user del admin").output.startswith("refused: you cannot")
    assert admin.execute("user del view").output == "user view removed"
    assert device.accounts.authenticate("view", PASSWORDS["view"], "test") is AuthResult.UNKNOWN_USER
    assert admin.execute("user add Bad! viewer Str0ng-enough").output.startswith("bad user name")
    assert [e["event"] for e in device.audit.entries() if e["event"].startswith("user_")] == [
        "user_disable", "user_enable", "user_remove", "user_remove", "user_add"]


# --- sessions


def test_session_limit_refuses_one_more(lab):
    device, server = lab(**HARDENED, max_sessions=2)
    open_ = [Screen.shell(login(server, user)) for user in ("oper", "view")]
    for screen, _ in open_:
        screen.expect(r"\$ $")
    t = login(server, "eng")
    screen, chan = Screen.shell(t)
    screen.expect("too many sessions: 2 of 2 open")
    assert chan.status_event.wait(2) and chan.exit_status == 1
    assert run(t, "whoami")[1] == 0, "exec channels do not count as sessions"
    t.close()
    assert events(device, "session_refused")[0]["user"] == "eng"
    for _, chan in open_:
        chan.get_transport().close()


def test_admin_kills_a_session(lab):
    device, server = lab(**HARDENED)
    victim, chan = Screen.shell(login(server, "oper"))
    victim.expect(r"\$ $")
    listing, _ = ssh(server, "admin", "session list")
    session_id = re.search(r"(\d+)\s+oper\s", listing).group(1)
    assert ssh(server, "admin", f"session kill {session_id}") == (f"session {session_id} killed\n", 0)
    assert wait_for(lambda: chan.closed, 2.0), "the killed session's channel is really closed"
    assert len(device.sessions) == 0
    assert events(device, "session_killed")[0]["detail"].startswith(f"session {session_id} of oper from ssh:")
    chan.get_transport().close()


def test_idle_timeout_ends_the_session(lab):
    device, server = lab(**HARDENED, idle_timeout_s=0.4)
    screen, chan = Screen.shell(login(server, "view"))
    screen.expect(r"\$ $")
    start = time.monotonic()
    screen.expect("idle timeout: no input for 0.4 s, session closed", timeout=3)
    assert 0.3 < time.monotonic() - start < 2.0
    assert wait_for(lambda: chan.closed, 2.0)
    assert events(device, "logout")[0]["detail"] == "idle"
    chan.get_transport().close()


# --- audit and syslog


def test_audit_records_and_syslog_datagram():
    collector = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    collector.bind(("127.0.0.1", 0))
    collector.settimeout(2)
    device = make_device(syslog=collector.getsockname(), **HARDENED)
    server = Server(device, "127.0.0.1", 0, login_grace_s=2.0)
    try:
        assert refused(server, "bob", "guess")
        datagram = collector.recv(2048).decode()
    finally:
        server.close()
        collector.close()
        device.audit.close()
    assert re.fullmatch(r"<84>1 \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z simplc simplc \d+ login_failed - "
                        r"event=login_failed user=bob source=ssh:127\.0\.0\.1:\d+ outcome=failure "
                        r"detail=unknown_user", datagram), datagram  # authpriv(10) warning(4)
    entry = device.audit.entries()[0]
    assert set(entry) == {"ts", "event", "user", "role", "source", "outcome", "detail"}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", entry["ts"])
    with pytest.raises(LabError, match="not loopback"):
        AuditLog(("192.0.2.1", 514))


def test_failed_logins_unaudited_when_the_profile_says_so():
    device = make_device(**INSECURE)
    assert device.accounts.authenticate("admin", "wrong", "test") is AuthResult.BAD_PASSWORD
    assert device.accounts.authenticate("admin", PASSWORDS["admin"], "test") is AuthResult.OK
    assert [e["event"] for e in device.audit.entries()] == ["login_ok"]


def test_unknown_users_cost_a_hash_only_when_hardened(monkeypatch):
    calls = []
    real = accounts_module._hash
    monkeypatch.setattr(accounts_module, "_hash", lambda *a: calls.append(1) or real(*a))
    for settings, hashes in ((HARDENED, 1), (INSECURE, 0)):
        device = make_device(**settings)
        calls.clear()
        assert device.accounts.authenticate("ghost", "x", "test") is AuthResult.UNKNOWN_USER
        assert len(calls) == hashes, settings


# --- console


def console_login(screen: Screen, user: str, password: str) -> str:
    screen.expect("simplc login: $")
    screen.line(user)
    screen.expect("Password: $")
    screen.line(password)
    return screen.expect(r"[$#] $|(?:Login incorrect|Unknown user|Wrong password)\r\n")


def test_console_login_hardened(console):
    device, port = console(**HARDENED)
    screen = serial_screen(port)
    assert screen.quiet(0.2) == b"", "quiet until CR or LF"
    screen.line("")
    assert "AUTHORIZED USE ONLY\r\nAll access is logged.\r\n" in screen.expect("simplc login: $")
    screen.write(b"admin\r")
    screen.expect("Password: $")
    screen.line(PASSWORDS["admin"])
    after = screen.expect(r"admin@simplc# $")
    assert PASSWORDS["admin"] not in after, "no password echo"
    screen.line("whoami")
    assert "admin (admin)" in screen.expect(r"# $")
    screen.line("exit")
    assert "Login incorrect" in console_login(screen, "ghost", "whatever")
    assert "Login incorrect" in console_login(screen, "admin", "wrong")
    sources = {e["source"] for e in device.audit.entries()}
    assert sources == {"console"}


def test_console_login_insecure_echo_and_reveal(console):
    device, port = console(**INSECURE)
    screen = serial_screen(port)
    screen.write(b"\n")
    assert "Unknown user" in console_login(screen, "ghost", "whatever")
    assert "Wrong password" in console_login(screen, "admin", "wrong")
    assert PASSWORDS["view"] in console_login(screen, "view", PASSWORDS["view"]), "password echoed"


def test_console_session_counts_and_idles_back_to_login(console):
    device, port = console(**HARDENED, max_sessions=1, idle_timeout_s=0.5)
    server = Server(device, "127.0.0.1", 0, login_grace_s=2.0)
    try:
        screen = serial_screen(port)
        screen.line("")
        console_login(screen, "oper", PASSWORDS["oper"])
        ssh_screen, chan = Screen.shell(login(server, "view"))
        ssh_screen.expect("too many sessions: 1 of 1 open")
        chan.get_transport().close()
        screen.expect("idle timeout: no input for 0.5 s, session closed\r\n", timeout=3)
        screen.expect("simplc login: $")
    finally:
        server.close()


# --- faults


def test_ssh_faults(lab):
    device, server = lab(**HARDENED)
    t = login(server, "oper")
    screen, chan = Screen.shell(t)
    screen.expect(r"\$ $")

    device.fault = "silent"
    screen.line("whoami")
    assert screen.quiet(0.4) == b"", "an open session stops answering"
    probe = socket.create_connection((server.host, server.port), timeout=2)
    probe.settimeout(0.4)
    with pytest.raises(TimeoutError):
        probe.recv(64)  # accepted, never answered
    device.fault = None
    probe.settimeout(2)
    assert probe.recv(64).startswith(b"SSH-2.0-SimPLC_1.0"), "answers again once the fault clears"
    probe.close()

    device.fault = "slow"
    screen.line("id")
    start = time.monotonic()
    screen.expect(r"\$ $")
    assert time.monotonic() - start > 1.2
    start = time.monotonic()
    login(server, "view").close()
    assert time.monotonic() - start > 1.2

    device.fault = "reset"
    assert wait_for(lambda: chan.closed, 2.0), "existing connections are closed"
    # a reset (even during connect), or at least an end of stream
    with contextlib.suppress(ConnectionResetError), socket.create_connection((server.host, server.port), 2) as probe:
        assert probe.recv(64) == b""
    t.close()


def test_console_faults(console):
    device, port = console(**HARDENED)
    screen = serial_screen(port)
    device.fault = "silent"
    screen.line("")
    assert screen.quiet(0.4) == b""
    device.fault = "garbage"
    screen.line("")
    noise = screen.quiet(0.4)
    assert noise and b"login" not in noise
    device.fault = "slow"
    screen.line("")
    start = time.monotonic()
    screen.expect("simplc login: $")
    assert time.monotonic() - start > 1.2
    device.fault = None
    screen.line("eng")
    screen.expect("Password: $")
    screen.line(PASSWORDS["eng"])
    screen.expect(r"\$ $")
    device.fault = "reset"  # a serial line cannot be reset: the session drops instead
    assert wait_for(lambda: len(device.sessions) == 0, 2.0)
    device.fault = None
    screen.line("")
    screen.expect("simplc login: $")


def test_serve_ssh_listens_on_return():
    device = make_device(**HARDENED)
    server = serve_ssh(device, "127.0.0.1", 0)
    try:
        assert server.port > 0 and server.fingerprint.startswith("SHA256:")
        assert ssh(server, "admin", "id")[0].startswith("user=admin role=admin")
    finally:
        server.close()
