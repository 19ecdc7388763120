"""The emulated PLC's maintenance functions, from outside: SFTP file transfer by role, firmware update and
signed scripts (CR 3.2, 3.4, 3.10), backup and restore (CR 7.3, 7.4), purge (CR 4.2), settings and
inventory reports with the SBOM (CR 7.6, 7.8), audit protection and export (CR 3.9, 6.1), the self-test
(CR 3.3) and the tamper switch (CR 3.11). Each profile's difference is seen through SSH, SFTP, Modbus and
syslog only. Module-scoped devices keep the run short; tests that change the device's state for good
(restart, purge) start their own.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest
from iec62443_harness import labs

from tests.support import Syslog, fault

pytestmark = pytest.mark.timeout(60)
SWITCH_DI = 10  # sl2's enclosure switch


# --- clients


class Client:
    """One SSH connection as a user of the device: exec commands, SFTP."""

    def __init__(self, running: labs.Running, user: str = "admin", password: str | None = None) -> None:
        ep = running.endpoints["ssh"]
        sock = socket.create_connection((ep["host"], ep["port"]), timeout=3)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.t = paramiko.Transport(sock)
        self.t.banner_timeout = self.t.handshake_timeout = self.t.auth_timeout = 5
        try:
            self.t.connect(username=user, password=password or running.secrets[f"SIMPLC_{user.upper()}_PASSWORD"])
        except Exception:
            self.t.close()
            raise

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.t.close()

    def run(self, command: str) -> tuple[str, int]:
        chan = self.t.open_session(timeout=3)
        chan.settimeout(5)
        chan.exec_command(command)
        out = b""
        while chunk := chan.recv(65536):
            out += chunk
        assert chan.status_event.wait(3), f"no exit status for {command!r}"
        return out.decode().rstrip("\n"), chan.exit_status

    def sftp(self) -> paramiko.SFTPClient:
        return paramiko.SFTPClient.from_transport(self.t)


def run(running: labs.Running, command: str, user: str = "admin") -> tuple[str, int]:
    with Client(running, user) as client:
        return client.run(command)


def upload(running: labs.Running, data: bytes, path: str, user: str = "engineer") -> None:
    with Client(running, user) as client, client.sftp() as sftp, sftp.open(path, "wb") as f:
        f.write(data)


def download(running: labs.Running, path: str, user: str = "engineer") -> bytes:
    with Client(running, user) as client, client.sftp() as sftp, sftp.open(path, "rb") as f:
        return f.read()


def audit_lines(running: labs.Running, count: int = 200) -> list[str]:
    out, status = run(running, f"audit show {count}")
    assert status == 0, out
    return out.splitlines()


def kit(running: labs.Running, name: str) -> bytes:
    return Path(running.files[name]).read_bytes()


def modbus(running: labs.Running, pdu: bytes) -> bytes:
    ep = running.endpoints["modbus_tcp"]
    with socket.create_connection((ep["host"], ep["port"]), timeout=2) as sock:
        sock.sendall(struct.pack(">HHHB", 1, 0, len(pdu) + 1, 1) + pdu)
        head = b""
        while len(head) < 7:
            head += sock.recv(7 - len(head))
        length = struct.unpack(">H", head[4:6])[0] - 1
        body = b""
        while len(body) < length:
            body += sock.recv(length - len(body))
    return body


def counter(running: labs.Running) -> int:
    return int.from_bytes(modbus(running, struct.pack(">BHH", 3, 0, 1))[2:4], "big")


def discrete_input(running: labs.Running, address: int) -> int:
    return modbus(running, struct.pack(">BHH", 2, address, 1))[2] & 1


def revision(running: labs.Running) -> str:
    """MajorMinorRevision (object 0x02) by Read Device Identification, specific object access."""
    reply = modbus(running, bytes([0x2B, 0x0E, 0x04, 0x02]))
    assert reply[:3] == bytes([0x2B, 0x0E, 0x04]) and reply[7] == 0x02, reply.hex()
    return reply[9:9 + reply[8]].decode()


@pytest.fixture(scope="module")
def syslog() -> Iterator[Syslog]:
    collector = Syslog()
    yield collector
    collector.sock.close()


def _start(profile: str, syslog: Syslog | None = None) -> labs.Running:
    return labs.start("simplc", profile, syslog=syslog.address if syslog else None)


@pytest.fixture(scope="module")
def insecure() -> Iterator[labs.Running]:
    running = _start("insecure")
    yield running
    running.stop()


@pytest.fixture(scope="module")
def sl1() -> Iterator[labs.Running]:
    running = _start("sl1")
    yield running
    running.stop()


@pytest.fixture(scope="module")
def sl2(syslog: Syslog) -> Iterator[labs.Running]:
    running = _start("sl2", syslog)
    yield running
    running.stop()


@pytest.fixture
def fresh() -> Iterator[callable]:
    """fresh(profile) -> a device of its own, for tests that change it for good."""
    started: list[labs.Running] = []

    def start(profile: str) -> labs.Running:
        started.append(_start(profile))
        return started[-1]

    yield start
    for running in started:
        running.stop()


# --- item 2: SFTP


def test_sftp_folders_and_rights_by_role(sl2: labs.Running) -> None:
    with Client(sl2, "engineer") as eng, eng.sftp() as sftp:
        assert sorted(sftp.listdir("/")) == ["backup", "log", "update"]
        with sftp.open("/update/notes.txt", "wb") as f:
            f.write(b"hello")
        assert "notes.txt" in sftp.listdir("/update")
        assert sftp.stat("/update/notes.txt").st_size == 5
        with sftp.open("/update/notes.txt", "rb") as f:
            assert f.read() == b"hello"
        assert json.loads(sftp.open("/log/audit.log").read().splitlines()[0])["event"]
        with pytest.raises(PermissionError):  # the protected audit log is read-only, even for an admin
            sftp.open("/log/audit.log", "wb").write(b"{}")
        with pytest.raises(FileNotFoundError):
            sftp.open("/etc/passwd", "rb")
    for user in ("viewer", "operator"):
        with Client(sl2, user) as client, client.sftp() as sftp:
            with pytest.raises(PermissionError):
                sftp.open(f"/update/{user}.bin", "wb").write(b"x")
            with pytest.raises(PermissionError):
                sftp.open("/update/notes.txt", "rb")
            with pytest.raises(PermissionError):
                sftp.open("/log/audit.log", "rb")
            with pytest.raises(PermissionError):
                sftp.listdir("/log")
            with pytest.raises(PermissionError):
                sftp.stat("/log/audit.log")
    with Client(sl2, "admin") as admin, admin.sftp() as sftp:
        with pytest.raises(PermissionError):
            sftp.open("/log/audit.log", "wb").write(b"{}")
        sftp.remove("/update/notes.txt")
        assert "notes.txt" not in sftp.listdir("/update")
    lines = audit_lines(sl2)
    assert any("permission_denied user=viewer source=sftp:127.0.0.1:" in ln and "file_upload: sftp write "
               "/update/viewer.bin" in ln for ln in lines), lines[-20:]
    assert any("permission_denied user=operator" in ln and "audit_export: sftp read /log/audit.log" in ln
               for ln in lines)
    assert any("file_upload user=engineer" in ln and "/update/notes.txt (5 bytes)" in ln for ln in lines)
    assert any("permission_denied user=admin" in ln and "/log/audit.log is read-only" in ln for ln in lines)
    assert any("file_delete user=admin" in ln for ln in lines)


def test_sftp_file_size_is_bounded(sl2: labs.Running) -> None:
    with Client(sl2, "engineer") as eng, eng.sftp() as sftp:
        f = sftp.open("/update/huge.bin", "wb")
        f.seek(16 << 20)
        with pytest.raises(OSError):
            f.write(b"x")
            f.flush()
        with contextlib.suppress(OSError):
            f.close()
        assert "huge.bin" not in sftp.listdir("/update")


def test_insecure_sftp_lets_anyone_rewrite_the_audit_log(insecure: labs.Running) -> None:
    forged = json.dumps({"time": "2020-01-01T00:00:00.000Z", "user": "nobody", "event": "forged",
                         "outcome": "success", "source": "x"}) + "\n"
    with Client(insecure, "viewer") as viewer, viewer.sftp() as sftp:
        with sftp.open("/log/audit.log", "wb") as f:
            f.write(forged.encode())
        with sftp.open("/update/anything.bin", "wb") as f:  # no role enforcement at all
            f.write(b"x")
    lines = audit_lines(insecure)
    assert "forged user=nobody" in lines[0]
    assert not any("login_ok user=viewer" in ln for ln in lines)  # the viewer's own traces are gone


# --- item 3: firmware and scripts


def variants(running: labs.Running) -> dict[str, bytes]:
    good = kit(running, "SIMPLC_FW_AUTHENTIC")
    out = {"authentic": good, "older": kit(running, "SIMPLC_FW_OLDER"), "foreign": kit(running, "SIMPLC_FW_FOREIGN"),
           "truncated": good[:len(good) // 2], "garbage": os.urandom(4096)}
    for offset in (0, 9, 40, 200, len(good) // 2, len(good) - 40, len(good) - 1):
        flipped = bytearray(good)
        flipped[offset] ^= 0x01
        out[f"flip@{offset}"] = bytes(flipped)
    return out


EXPECTED = {  # variant -> what each profile answers (None: staged)
    "insecure": {},
    "sl1": {"truncated": "integrity check failed", "garbage": "not a firmware image", "flip": "any"},
    "sl2": {"older": "downgrade from 2.3.1 to 2.2.0 refused", "foreign": "signature not from the vendor",
            "truncated": "integrity check failed", "garbage": "not a firmware image", "flip": "any"},
}


@pytest.mark.parametrize("profile", ["insecure", "sl1", "sl2"])
def test_firmware_verification_per_profile(profile: str, request: pytest.FixtureRequest) -> None:
    running = request.getfixturevalue(profile)
    answers = {}
    with Client(running, "engineer") as eng, eng.sftp() as sftp:
        for name, data in variants(running).items():
            with sftp.open(f"/update/{name}.bin", "wb") as f:
                f.write(data)
            answers[name] = eng.run(f"firmware apply /update/{name}.bin")
        shown = eng.run("firmware show")[0]
    expected = EXPECTED[profile]
    for name, (out, status) in answers.items():
        reason = expected.get(name.split("@")[0])
        if reason is None:
            assert status == 0 and out.startswith("firmware staged: ") and out.endswith("; active after restart"), \
                (name, out)
        else:
            assert status == 1 and out.startswith("firmware rejected: "), (name, out)
            assert reason == "any" or out == f"firmware rejected: {reason}", (name, out)
    assert answers["authentic"][0] == "firmware staged: 2.4.0; active after restart"
    if profile == "insecure":
        assert answers["garbage"][0] == "firmware staged: unknown; active after restart"
    if profile == "sl1":
        assert answers["foreign"][0].startswith("firmware staged: 2.4.0") and answers["older"][1] == 0
    assert shown.splitlines()[0] == "running 2.3.1" and shown.splitlines()[1].startswith("pending ")
    lines = audit_lines(running)
    assert any("firmware_apply user=engineer" in ln and "outcome=success" in ln for ln in lines)
    if profile != "insecure":
        assert any("firmware_apply user=engineer" in ln and "outcome=failure" in ln and "/update/garbage.bin: not a "
                   "firmware image" in ln for ln in lines)


def test_firmware_refusal_forwarded_to_syslog_and_roles(sl2: labs.Running, syslog: Syslog) -> None:
    upload(sl2, kit(sl2, "SIMPLC_FW_FOREIGN"), "/update/foreign-again.bin")
    assert run(sl2, "firmware apply /update/foreign-again.bin", "engineer") == (
        "firmware rejected: signature not from the vendor", 1)
    line = syslog.wait_for("event=firmware_apply user=engineer", "foreign-again.bin: signature not from the vendor")
    assert line and "outcome=failure" in line, syslog.seen[-3:]
    for user in ("viewer", "operator"):
        assert run(sl2, "firmware apply /update/foreign-again.bin", user) == (
            "permission denied: firmware_apply needs role engineer", 1)
    assert run(sl2, "firmware show", "viewer")[1] == 0
    assert run(sl2, "firmware apply /backup/x.bin", "engineer") == (
        "firmware rejected: /backup/x.bin is not under /update/", 1)


def test_restart_activates_staged_firmware_and_keeps_control_running(fresh) -> None:
    running = fresh("sl2")
    assert revision(running) == "2.3.1"
    upload(running, kit(running, "SIMPLC_FW_AUTHENTIC"), "/update/fw.bin")
    with Client(running, "engineer") as eng:
        assert eng.run("firmware apply /update/fw.bin")[1] == 0
        assert eng.run("firmware show")[0] == "running 2.3.1\npending 2.4.0"
        shell = eng.t.open_session()  # an interactive session that the restart must end
        shell.get_pty()
        shell.invoke_shell()
        before, t0 = counter(running), time.monotonic()
        assert eng.run("system restart") == ("restarting: firmware 2.4.0 running; sessions end now", 0)
        deadline = time.monotonic() + 2
        while eng.t.is_active() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not eng.t.is_active(), "the restart left the SSH connection open"
    assert time.monotonic() - t0 < 1.0
    time.sleep(0.25)
    assert run(running, "firmware show", "viewer") == ("running 2.4.0", 0)
    assert revision(running) == "2.4.0"
    assert counter(running) != before  # the control task ran on
    assert any("system_restart user=engineer" in ln and "firmware 2.3.1 -> 2.4.0" in ln
               for ln in audit_lines(running))
    upload(running, kit(running, "SIMPLC_FW_AUTHENTIC"), "/update/fw-same.bin")  # same version: no downgrade
    assert run(running, "firmware apply /update/fw-same.bin", "engineer")[1] == 0


@pytest.mark.parametrize("profile", ["sl1", "sl2"])
def test_only_vendor_signed_scripts_run(profile: str, request: pytest.FixtureRequest) -> None:
    running = request.getfixturevalue(profile)
    upload(running, kit(running, "SIMPLC_SCRIPT_UNSIGNED"), "/update/unsigned.txt")
    upload(running, kit(running, "SIMPLC_SCRIPT_SIGNED"), "/update/signed.bin")
    signed = bytearray(kit(running, "SIMPLC_SCRIPT_SIGNED"))
    signed[60] ^= 1
    upload(running, bytes(signed), "/update/tampered.bin")
    assert modbus(running, struct.pack(">BHH", 6, 150, 1))[0] == 6
    for name in ("unsigned.txt", "tampered.bin"):
        assert run(running, f"script run /update/{name}", "engineer") == (
            "script rejected: not signed by the vendor", 1)
    assert modbus(running, struct.pack(">BHH", 3, 150, 1))[2:4] == (1).to_bytes(2, "big")
    out, status = run(running, "script run /update/signed.bin", "engineer")
    assert status == 0 and out.endswith("script done: 2 commands") and "ok: hr 150 = 4242" in out, out
    assert modbus(running, struct.pack(">BHH", 3, 150, 1))[2:4] == (4242).to_bytes(2, "big")
    assert run(running, "script run /update/signed.bin", "operator")[0] == (
        "permission denied: script_run needs role engineer")
    lines = audit_lines(running)
    assert any("script_run user=engineer" in ln and "outcome=failure" in ln for ln in lines)


def test_insecure_runs_any_uploaded_script(insecure: labs.Running) -> None:
    upload(insecure, b"# a script nobody signed\nconfig set banner PWNED by script\nwhoami\n", "/update/evil.sh",
           user="viewer")
    out, status = run(insecure, "script run /update/evil.sh", "viewer")
    assert status == 0 and "ok: banner = PWNED by script" in out and out.endswith("script done: 2 commands"), out
    assert "banner = PWNED by script" in run(insecure, "config show")[0]


# --- item 4: backup and restore


def edit_backup(data: bytes, integrity: str | None) -> bytes:
    """Make the viewer an admin in a backup, then write the integrity line as `integrity` says."""
    head, body, _ = data.split(b"\n", 2)
    doc = json.loads(body)
    for account in doc["accounts"]:
        if account["username"] == "viewer":
            account["role"] = "admin"
    body = json.dumps(doc).encode()
    tail = b"integrity none" if integrity is None else f"integrity {integrity} {hashlib.sha256(body).hexdigest()}"
    return head + b"\n" + body + b"\n" + (tail.encode() if isinstance(tail, str) else tail) + b"\n"


def roles(running: labs.Running) -> dict[str, str]:
    return {line.split()[0]: line.split()[1] for line in run(running, "user list")[0].splitlines()}


def test_backup_and_restore_sl2(sl2: labs.Running) -> None:
    out, status = run(sl2, "backup create", "engineer")
    assert status == 0 and out.startswith("backup written: /backup/backup-"), out
    path = out.split(": ", 1)[1]
    data = download(sl2, path)
    assert data.startswith(b"SIMPLC-BACKUP 1\n") and b"integrity hmac-sha256 " in data
    assert not any(secret.encode() in data for secret in sl2.secrets.values())
    assert run(sl2, "config set banner Changed after the backup")[1] == 0
    assert run(sl2, "user add tempuser viewer Temp-pass-123!")[1] == 0
    before = counter(sl2)
    assert run(sl2, f"backup restore {path}", "engineer") == (f"backup restored: {path}", 0)
    assert "banner = Authorized use only. Activity is logged." in run(sl2, "config show")[0]
    assert "tempuser" not in roles(sl2)
    time.sleep(0.25)  # a few 100 ms scans
    assert counter(sl2) != before  # the control task ran throughout
    for integrity in ("sha256", "hmac-sha256", None):
        upload(sl2, edit_backup(data, integrity), "/backup/edited.bin")
        assert run(sl2, "backup restore /backup/edited.bin", "engineer") == (
            "backup rejected: integrity check failed", 1)
    assert roles(sl2)["viewer"] == "viewer"
    assert any("backup_restore user=engineer" in ln and "outcome=failure" in ln and "integrity check failed" in ln
               for ln in audit_lines(sl2))
    assert run(sl2, "backup create", "operator") == ("permission denied: backup_create needs role engineer", 1)
    with Client(sl2, "operator") as client, client.sftp() as sftp, pytest.raises(PermissionError):
        sftp.open(path, "rb")


def test_backup_sl1_catches_damage_not_edits(sl1: labs.Running) -> None:
    path = run(sl1, "backup create", "engineer")[0].split(": ", 1)[1]
    data = download(sl1, path)
    assert b"\nintegrity sha256 " in data
    damaged = bytearray(data)
    damaged[data.index(b'"role"') + 10] ^= 0x01
    upload(sl1, bytes(damaged), "/backup/damaged.bin")
    assert run(sl1, "backup restore /backup/damaged.bin", "engineer") == (
        "backup rejected: integrity check failed", 1)
    upload(sl1, edit_backup(data, "sha256"), "/backup/edited.bin")
    try:
        assert run(sl1, "backup restore /backup/edited.bin", "engineer") == ("backup restored: /backup/edited.bin", 0)
        assert roles(sl1)["viewer"] == "admin"
    finally:
        assert run(sl1, f"backup restore {path}", "engineer")[1] == 0
    assert roles(sl1)["viewer"] == "viewer"


def test_backup_insecure_restores_anything_parseable(insecure: labs.Running) -> None:
    path = run(insecure, "backup create", "viewer")[0].split(": ", 1)[1]
    data = download(insecure, path, user="viewer")
    assert data.rstrip(b"\n").endswith(b"integrity none")
    upload(insecure, edit_backup(data, None), "/backup/edited.bin", user="viewer")
    assert run(insecure, "backup restore /backup/edited.bin", "viewer")[1] == 0
    assert roles(insecure)["viewer"] == "admin"
    assert run(insecure, f"backup restore {path}")[1] == 0
    upload(insecure, b"not a backup at all", "/backup/junk.bin")
    assert run(insecure, "backup restore /backup/junk.bin") == ("backup rejected: not a backup", 1)


# --- item 5: purge


def _dirty(running: labs.Running) -> None:
    """Run-time changes a purge must undo."""
    assert run(running, "user add tempadmin admin Temp-pass-123!x")[1] == 0
    assert run(running, "config set banner Changed at run time")[1] == 0
    old = running.secrets["SIMPLC_PWTEST_PASSWORD"]
    assert run(running, f"passwd {old} New-pass-456!y", "pwtest") == ("password changed", 0)
    assert run(running, "backup create", "engineer")[1] == 0
    upload(running, kit(running, "SIMPLC_FW_AUTHENTIC"), "/update/fw.bin")
    assert run(running, "firmware apply /update/fw.bin", "engineer")[1] == 0


def listing(running: labs.Running, folder: str) -> list[str]:
    with Client(running, "admin") as admin, admin.sftp() as sftp:
        return sorted(sftp.listdir(folder))


def test_purge_sl2_returns_to_the_provisioned_state(fresh) -> None:
    running = fresh("sl2")
    _dirty(running)
    assert run(running, "system purge", "engineer") == ("permission denied: system_purge needs role admin", 1)
    assert run(running, "system purge") == ("purge done: provisioned state restored; sessions end now", 0)
    time.sleep(0.3)
    lines = audit_lines(running)
    assert "purge user=admin" in lines[0] and lines[0].endswith("purge done")
    assert all("purge" not in ln for ln in lines[1:])  # only this connection's login follows
    assert "tempadmin" not in roles(running)
    assert run(running, "whoami", "pwtest") == ("pwtest (operator)", 0)  # the provisioned password again
    assert "banner = Authorized use only. Activity is logged." in run(running, "config show")[0]
    assert listing(running, "/backup") == [] and listing(running, "/update") == []
    assert run(running, "firmware show") == ("running 2.3.1", 0)


def test_purge_insecure_leaves_data_behind(fresh) -> None:
    running = fresh("insecure")
    _dirty(running)
    assert run(running, "system purge", "viewer")[1] == 0  # no role enforcement
    time.sleep(0.3)
    assert "tempadmin" in roles(running)
    assert listing(running, "/backup") == ["backup-1.bin"]
    with pytest.raises(paramiko.AuthenticationException):
        Client(running, "pwtest")  # the changed password stayed
    with Client(running, "pwtest", "New-pass-456!y") as client:
        assert client.run("whoami")[0] == "pwtest (operator)"


# --- item 6: settings and inventory reports, SBOM


def test_config_show_reports_network_and_security(sl2: labs.Running, insecure: labs.Running) -> None:
    text = run(sl2, "config show", "viewer")[0]
    port = sl2.endpoints["modbus_tcp"]["port"]
    assert f"interface modbus_tcp: protocol=modbus-tcp host=127.0.0.1 port={port} enabled=true" in text
    assert "interface telnet: protocol=telnet enabled=false" in text
    for key in ("lockout_threshold = 3", "password_min_length = 10", "max_sessions = 2", "role_enforcement = true",
                "banner = Authorized use only", "ssh_kex = ", "ssh_ciphers = ", "firmware_check = signature (fixed)"):
        assert key in text, key
    report = json.loads(run(sl2, "config show --json", "viewer")[0])
    assert report["network"]["interfaces"]["ssh"] == {"protocol": "ssh", "host": "127.0.0.1",
                                                      "port": sl2.endpoints["ssh"]["port"], "enabled": True}
    assert report["security"]["lockout_threshold"] == 3 and report["security"]["role_enforcement"] is True
    assert "aes128-cbc" not in report["security"]["ssh_algorithms"]["ciphers"]
    assert report["firmware"]["running"]
    assert run(insecure, "config show --json") == ("unknown option '--json'", 2)
    assert f"interface telnet: protocol=telnet host=127.0.0.1 port={insecure.endpoints['telnet']['port']}" in \
        run(insecure, "config show")[0]


def sbom_components(running: labs.Running) -> set[tuple[str, str]]:
    doc = json.loads(kit(running, "SIMPLC_SBOM"))
    assert doc["bomFormat"] == "CycloneDX" and doc["specVersion"] == "1.5"
    assert doc["metadata"]["component"]["type"] == "device"
    return {(c["name"], c["version"]) for c in doc["components"]}


@pytest.mark.parametrize("profile", ["insecure", "sl1", "sl2"])
def test_inventory_matches_the_sbom_except_insecure(profile: str, request: pytest.FixtureRequest) -> None:
    running = request.getfixturevalue(profile)
    rows = json.loads(run(running, "inventory --json", "viewer")[0])
    assert all(set(row) == {"name", "version", "type"} for row in rows)
    names = {row["name"] for row in rows}
    assert {"simplc-firmware", "pymodbus", "paramiko", "python"} <= names
    text = run(running, "inventory", "viewer")[0]
    assert all(row["name"] in text and row["version"] in text for row in rows)
    installed = {(row["name"], row["version"]) for row in rows if row["name"] != "simplc-firmware"}
    declared = {c for c in sbom_components(running) if c[0] != "simplc-firmware"}
    if profile == "insecure":
        assert installed - declared == {("simplc-debug-monitor", "0.9.4-dev")}
    else:
        assert installed == declared


# --- item 7: audit protection and export, self-test, tamper


def test_audit_rights_export_clear_rotate_sl2(fresh) -> None:
    running = fresh("sl2")
    assert run(running, "audit export --json", "viewer")[1] == 1
    out, status = run(running, "audit export --json", "engineer")
    records = [json.loads(line) for line in out.splitlines()]
    assert status == 0 and records
    assert {"time", "user", "role", "event", "outcome", "source"} <= set(records[0])
    assert any(r["event"] == "login_ok" and r["user"] == "engineer" and r["role"] == "engineer" for r in records)
    assert run(running, "audit clear", "engineer") == ("permission denied: audit_clear needs role admin", 1)
    out, status = run(running, "audit clear")
    assert status == 0 and out.startswith("audit log cleared: ")
    lines = audit_lines(running)
    assert "audit_clear user=admin" in lines[0] and "records cleared" in lines[0]
    assert run(running, "audit rotate", "engineer")[1] == 1
    assert run(running, "audit rotate")[0].startswith("audit log rotated: ")
    assert "audit_rotate user=admin" in audit_lines(running)[0]
    rotated = download(running, "/log/audit.log.1").decode()
    assert '"event": "audit_clear"' in rotated


def test_insecure_audit_cleared_by_a_viewer_without_trace(fresh) -> None:
    running = fresh("insecure")
    assert run(running, "audit clear", "viewer")[0].startswith("audit log cleared: ")
    lines = audit_lines(running)
    assert not any("audit_clear" in ln for ln in lines) and len(lines) <= 2  # this session's login at most


def test_selftest_and_audit_broken(sl2: labs.Running, sl1: labs.Running, insecure: labs.Running) -> None:
    out, status = run(sl2, "selftest", "viewer")
    assert status == 0 and out.splitlines()[-1] == "selftest: passed"
    for name in ("authentication", "audit", "firmware-verification", "role-enforcement"):
        assert f"{name}: ok" in out.splitlines()
    with fault(sl2, "audit_broken"):
        out, status = run(sl2, "selftest", "viewer")
        assert status == 1 and "audit: FAILED (records are not kept)" in out and out.endswith("selftest: failed")
        assert run(sl2, "backup create", "viewer")[1] == 1  # refused, but not recorded
    assert not any("permission_denied user=viewer" in ln and "backup_create: backup create" in ln
                   for ln in audit_lines(sl2))
    assert run(sl2, "selftest", "viewer")[0].endswith("selftest: passed")
    with fault(sl1, "audit_broken"):
        assert run(sl1, "selftest")[0].endswith("selftest: failed")
    out, status = run(insecure, "selftest")
    assert status == 127 and out.startswith("unknown command 'selftest'")


def test_tamper_switch_sl2(sl2: labs.Running, syslog: Syslog, insecure: labs.Running) -> None:
    assert discrete_input(sl2, SWITCH_DI) == 0
    with fault(sl2, "tamper"):
        assert discrete_input(sl2, SWITCH_DI) == 1
        line = syslog.wait_for("event=tamper")
        assert line and 'detail="enclosure opened"' in line and line.startswith("<33>"), syslog.seen[-3:]
    assert discrete_input(sl2, SWITCH_DI) == 0
    lines = audit_lines(sl2)
    assert any("tamper user=- source=enclosure outcome=alert enclosure opened" in ln for ln in lines)
    assert any("tamper user=- source=enclosure outcome=success enclosure closed" in ln for ln in lines)
    with fault(insecure, "tamper"):  # no switch: nothing notices
        assert discrete_input(insecure, SWITCH_DI) == 0
    assert not any("tamper" in ln for ln in audit_lines(insecure))
