"""CR 1.1 Human user identification and authentication (SL 1-4), RE(1) Unique identification and
authentication (SL 2-4), RE(2) Multifactor authentication for all interfaces (SL 3-4).

Judges, over every interface the target declares:
- CR 1.1: ssh refuses the `none` method and an empty password; the serial console runs nothing before a
  login (a command typed at the login prompt is taken as a user name, not executed); Modbus TCP/RTU and
  CAN answer without any authentication, which fails unless the target file declares a compensating
  countermeasure for them (the rollup then says "compensated", with the justification).
- RE(1): each declared account logs in as itself (the shell's `whoami` names that user, not a shared one).
- RE(2): password alone does not open an ssh session (the server asks for a second factor).
"""

from __future__ import annotations

import re
import secrets

import pytest

from fixtures.canopen import is_abort, sdo_upload
from fixtures.drivers.modbus import ModbusExceptionReply


@pytest.mark.judges("CR 1.1", over=["ssh"])
def test_ssh_requires_authentication(target, ssh, evidence):
    creds = (target.accounts(purpose="lockout_test") or target.accounts())[0]
    none = ssh.try_login(creds.username)
    empty = ssh.try_login(creds.username, "")
    ssh.try_login(creds.username, creds.password)  # leave the failure count clean
    evidence.add("check", f"'none' method -> {none.outcome}; empty password -> {empty.outcome}")
    assert none.outcome != "ACCEPTED", "ssh lets a user in with the 'none' method (no authentication)"
    assert empty.outcome != "ACCEPTED", "ssh accepts an empty password"


@pytest.mark.judges("CR 1.1", over=["console"])
def test_console_runs_nothing_before_login(target, console, evidence):
    iface = target.spec.interfaces.console
    console.wake()
    marker = f"x{secrets.token_hex(4)}"
    console.send_raw(f"echo {marker}\r".encode())
    text, _ = console.read_until(f"{iface.password_prompt}|{iface.login_prompt}", 2.0)
    evidence.add("check", f"typed 'echo {marker}' at the login prompt; the console answered {text!r}")
    console.send_raw(b"\r")  # abandon the login the command started
    console.read_until(iface.login_prompt, 2.0)
    lines = [ln.strip() for ln in text.splitlines()]
    assert marker not in lines, "a command typed at the login prompt was executed"
    assert not re.search(iface.shell_prompt, text.rstrip("\r\n") + " "), "a shell prompt appeared without login"


@pytest.mark.judges("CR 1.1", over=["modbus_tcp", "modbus_rtu"])
def test_modbus_answers_without_authentication(target, modbus, evidence):
    try:
        answer = f"values {modbus.read_holding_registers(0, 1)}"
        refused = False
    except ModbusExceptionReply as exc:
        answer, refused = f"exception {exc.code}", True
    evidence.add("check", f"read holding register 0 with no authentication -> {answer}")
    assert refused, "Modbus has no authentication: any master that reaches the port reads the process image"


@pytest.mark.judges("CR 1.1", over=["can"])
def test_can_answers_without_authentication(target, can_bus, evidence):
    iface = target.spec.interfaces.can
    reply = sdo_upload(can_bus, iface.node_id, iface.sdo_read_index, timeout=iface.timeouts.reply_s)
    evidence.add("check", f"SDO upload of 0x{iface.sdo_read_index:04x} with no authentication -> "
                          f"{bytes(reply.data).hex(' ') if reply else 'no reply'}")
    assert reply is None or is_abort(reply), (
        "CAN has no authentication: any node on the bus reads the device's objects")


@pytest.mark.judges("CR 1.1 RE(1)", over=["ssh"])
def test_each_account_is_an_individual(target, shell, evidence):
    shell.require("whoami", checklist=[
        "Log in with each declared account and confirm the session identifies that individual user.",
        "Confirm no account is shared between people (vendor documentation, user list)."])
    accounts = [c for c in target.accounts(purpose="normal") if c.password]
    assert len({c.username for c in accounts}) >= 2, "the target file declares fewer than two individual accounts"
    for creds in accounts:
        reply = shell.run(creds, "whoami")
        evidence.add("check", f"{creds.username}: whoami -> {reply.output.strip()[:80]!r}")
        assert re.search(rf"\b{re.escape(creds.username)}\b", reply.output), (
            f"a session of {creds.username} does not identify that user: {reply.output.strip()[:80]!r}")


@pytest.mark.judges("CR 1.1 RE(2)", over=["ssh"])
def test_password_alone_is_not_enough(target, ssh, evidence):
    creds = target.admin() or target.accounts()[0]
    result = ssh.try_login(creds.username, creds.password)
    evidence.add("check", f"password of {creds.username} alone -> {result.outcome} {result.allowed_methods}")
    assert result.outcome != "ACCEPTED", "a password alone opens an ssh session: no second factor is required"
