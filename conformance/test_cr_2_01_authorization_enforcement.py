"""CR 2.1 Authorization enforcement (SL 1-4); RE(1) Authorization enforcement for all users (SL 2-4);
RE(2) Permission mapping to roles (SL 2-4); RE(3) Supervisor override (SL 3-4); RE(4) Dual approval (SL 4).

Judges:
- CR 2.1 and RE(2), over ssh: the management shell enforces the role x operation table the target file
  declares (`policies.roles`; the operations are the keys of `shell.commands`). Every declared normal
  account runs every operation with harmless arguments (a user, a setting and a session that do not
  exist, an unknown role, a random wrong current password: no real password goes into a command): an
  operation of its role must not be refused, any other must be (`shell.denied_pattern`). The device must
  refuse before it looks at the arguments. An account that ran `passwd` must still log in with its own
  password afterwards (else ERROR: the run has lost it).
  Process-image writes apart: only with `safety.allow_writes`, inside `safety.writable.holding_registers`,
  writing back the value the register already holds.
- RE(2), over ssh: an administrator assigns a role (adds a temporary user with the least privileged one),
  the new user's rights are exactly that role's, and the user is removed again.
- CR 2.1 and RE(1), over modbus_tcp, modbus_rtu and can: a master or node that never authenticated writes
  inside the writable range (one value flipped, read back, then restored). The device's answer decides:
  an acknowledged write (the Modbus echo, the SDO download confirmation) is a FAIL whatever the read-back
  shows, which a target file's countermeasure for the row and interface turns into "compensated" in the
  rollup; a refusal (a Modbus exception, an SDO abort) passes unless the value changed all the same; no
  answer is an ERROR.
- CR 2.1, over https: the web interface's state-changing request (`interfaces.https.protected_action`, sent only
  with `safety.allow_config_changes`) is taken from an administrator, with its anti-CSRF token from the device's
  own pages, and refused (not taken) from an account of the least privileged declared role doing the same.
  Nothing is sent over plain http: a login there would put a password on the wire in clear.
Manual: RE(3) supervisor override and RE(4) dual approval (nothing generic to observe).
Not exercised: operations in `shell.commands` the harness knows no harmless arguments for (named in the
evidence).
"""

from __future__ import annotations

import re

import pytest
from iec62443_harness.fixtures.canopen import DOWNLOADED, is_abort, sdo_download16, sdo_upload, show, value16
from iec62443_harness.fixtures.drivers.errors import DeviceTimeout
from iec62443_harness.fixtures.drivers.modbus import EXCEPTION_NAMES, ModbusExceptionReply
from iec62443_harness.fixtures.login import accepted
from iec62443_harness.fixtures.outcomes import inconclusive, manual, not_applicable, not_run
from iec62443_harness.fixtures.roles import (
    HARMLESS,
    ROLE_CHECKLIST,
    current_register,
    harmless_args,
    least_privileged_role,
    role_table,
    temporary_user,
)
from iec62443_harness.fixtures.shell import CHANGES
from iec62443_harness.fixtures.target import Credentials

# --- accounts to exercise the declared table


def role_accounts(target) -> list[Credentials]:  # type: ignore[no-untyped-def]
    accounts = [c for c in target.accounts(purpose="normal") if c.password]
    if not accounts:
        not_run("the target file declares no normal account with a password to exercise the roles with")
    return accounts


def check_account(target, shell, creds: Credentials, operations: list[str], evidence,  # type: ignore[no-untyped-def]
                  args: dict[str, object] | None = None) -> list[str]:
    """Run each operation as `creds` on one connection; the departures from its role's declared rights."""
    allowed = role_table(target)[creds.role]
    args = args or harmless_args(target)
    denied_rx = re.compile(target.spec.shell.denied_pattern, re.IGNORECASE)
    refused, done = [], []
    with shell.ssh.session(creds.username, creds.password) as session:
        for op in operations:
            output = session.run(shell.command(op, **args)).output
            (refused if denied_rx.search(output) else done).append(op)
    if "user_add" in done:  # should the device have accepted the unknown role after all, take the user away
        admin = target.admin()
        if admin is not None:
            shell.run(admin, "user_del", user=args["user"])
    if "passwd" in done and not accepted(shell.ssh.try_login(creds.username, creds.password)):
        inconclusive(f"{creds.username} no longer logs in with its password after `passwd` with a wrong "
                           "current password: the device changed it anyway; restore the account by hand")
    evidence.add("check", f"{creds.username} ({creds.role}): ran {', '.join(done) or 'nothing'}; refused "
                          f"{', '.join(refused) or 'nothing'}")
    who = f"{creds.username} ({creds.role})"
    beyond, withheld = [op for op in done if op not in allowed], [op for op in refused if op in allowed]
    problems = [f"{who} may {', '.join(beyond)}, beyond its role"] if beyond else []
    if withheld:
        problems.append(f"{who} is refused {', '.join(withheld)}, which its role may do")
    return problems


# --- the tests


@pytest.mark.judges("CR 2.1", "CR 2.1 RE(2)", over=["ssh"])
def test_shell_enforces_the_role_table(target, shell, evidence):
    roles = role_table(target)
    commands = target.spec.shell.commands
    operations = [op for op in HARMLESS if op in commands]
    if not target.spec.safety.allow_config_changes:  # even with harmless arguments: only where the file allows
        held_back = [op for op in operations if op in CHANGES]
        operations = [op for op in operations if op not in CHANGES]
        if held_back:
            evidence.add("check", f"not exercised without safety.allow_config_changes: {', '.join(held_back)}")
        if not operations:
            not_run("every declared operation changes the device, and safety.allow_config_changes is false")
    untested = sorted(set(commands) - set(operations) - {"write"})
    undeclared = sorted({op for ops in roles.values() for op in ops} - set(commands))
    if untested:
        evidence.add("check", f"not exercised (no harmless arguments known): {', '.join(untested)}")
    if undeclared:
        evidence.add("check", f"in policies.roles but not in shell.commands, so not exercised: {', '.join(undeclared)}")
    if not operations:
        manual("the target file declares no shell operation the harness can run harmlessly", ROLE_CHECKLIST)
    accounts = role_accounts(target)
    unexercised = sorted(set(roles) - {c.role for c in accounts})
    if unexercised:
        evidence.add("check", f"roles with no declared normal account, not exercised: {', '.join(unexercised)}")
    wrong = [w for creds in accounts for w in check_account(target, shell, creds, operations, evidence)]
    assert not wrong, f"the shell departs from the declared roles: {'; '.join(wrong)}"
    if all(set(operations) <= roles[c.role] for c in accounts):
        manual("every exercised account's role may run every exercised operation, so no refusal could be "
               "observed: enforcement was not seen (declare a less privileged role and an account with it)",
               ROLE_CHECKLIST)


@pytest.mark.judges("CR 2.1", "CR 2.1 RE(2)", over=["ssh"])
def test_shell_writes_follow_the_role_table(target, shell, evidence):
    if not shell.has("write"):
        not_applicable("the target file declares no write operation on the shell (shell.commands.write)")
    role_table(target)
    address, value = current_register(target, shell, evidence)
    wrong = []
    for creds in role_accounts(target):
        args = {**harmless_args(target), "address": address, "value": value}
        wrong += check_account(target, shell, creds, ["write"], evidence, args)
    assert not wrong, f"the shell departs from the declared roles: {'; '.join(wrong)}"


@pytest.mark.judges("CR 2.1 RE(2)", over=["ssh"])
def test_administrator_assigns_a_role(target, shell, ssh, evidence):
    target.guard("ssh").require("config_changes")  # adds and removes a user
    roles = role_table(target)
    operations = [op for op in HARMLESS if op in target.spec.shell.commands]
    with temporary_user(target, shell, evidence) as creds:
        login = ssh.try_login(creds.username, creds.password)
        assert accepted(login), f"the user the administrator added cannot log in ({login.outcome})"
        wrong = check_account(target, shell, creds, operations, evidence)
    evidence.add("check", f"role {creds.role} declares: {', '.join(sorted(roles[creds.role]))}")
    assert not wrong, f"the assigned role is not what the new user gets: {'; '.join(wrong)}"


@pytest.mark.judges("CR 2.1", "CR 2.1 RE(1)", over=["modbus_tcp", "modbus_rtu"])
def test_modbus_write_needs_authorization(target, modbus, interface, evidence):
    writable = target.spec.safety.writable.holding_registers
    target.guard(interface).require("writes")
    if not writable:
        not_run("safety.writable.holding_registers declares no register the harness may write")
    address = writable[0][0]
    old = modbus.read_holding_registers(address, 1)[0]
    try:
        try:  # no reply, or a lost connection, raises: the device's silence decides nothing (ERROR)
            modbus.write_register(address, old ^ 1)
            acknowledged, answer = True, "write acknowledged (echo)"
        except ModbusExceptionReply as exc:
            name = EXCEPTION_NAMES.get(exc.code, "unknown code")
            acknowledged, answer = False, f"refused with exception {exc.code:02x} ({name})"
        now = modbus.read_holding_registers(address, 1)[0]
    finally:
        if modbus.read_holding_registers(address, 1)[0] != old:
            modbus.write_register(address, old)
    evidence.add("check", f"unauthenticated write of {old ^ 1} to holding register {address} (was {old}): "
                          f"{answer}; reads back {now}; restored to {old}")
    assert not acknowledged, (f"{interface} acknowledges a write to holding register {address} from a master that "
                              "never authenticated: no authorization is enforced for devices and software processes")
    assert now != old ^ 1, (f"{interface} refuses a write to holding register {address} from a master that never "
                            "authenticated, yet the value changed")


@pytest.mark.judges("CR 2.1", "CR 2.1 RE(1)", over=["can"])
def test_can_write_needs_authorization(target, can_bus, evidence):
    iface = target.spec.interfaces.can
    if iface.sdo_write_index is None:
        not_run("the target file names no CAN object the harness may write (interfaces.can.sdo_write_index)")
    target.guard("can").check_write("can_ids", 0x600 + iface.node_id)
    index, node, wait = iface.sdo_write_index, iface.node_id, iface.timeouts.reply_s
    before = sdo_upload(can_bus, node, index, timeout=wait)
    if before is None:
        raise DeviceTimeout(f"can SDO upload of 0x{index:04x}: no reply within {wait} s; check the node id and the bus")
    if is_abort(before):
        not_run(f"object 0x{index:04x} cannot be read ({show(before)}), so a write could not be undone; "
                "nothing written")
    old = value16(before)
    try:
        reply = sdo_download16(can_bus, node, index, old ^ 1, timeout=wait)
        after = sdo_upload(can_bus, node, index, timeout=wait)
        now = value16(after) if after is not None and not is_abort(after) else None
    finally:
        check = sdo_upload(can_bus, node, index, timeout=wait)
        if check is None or is_abort(check) or value16(check) != old:
            sdo_download16(can_bus, node, index, old, timeout=wait)
    evidence.add("check", f"unauthenticated SDO write of {old ^ 1} to 0x{index:04x} (was {old}): {show(reply)}; "
                          f"reads back {now}; restored to {old}")
    if reply is None:
        raise DeviceTimeout(f"can SDO download to 0x{index:04x}: no reply within {wait} s, so whether the write was "
                            "taken is unknown; check the node and the bus")
    confirmed = len(reply.data) >= 1 and reply.data[0] == DOWNLOADED
    if not (confirmed or is_abort(reply)):
        inconclusive(f"can SDO download to 0x{index:04x} answered {show(reply)}: neither a confirmation nor an "
                           "abort, so inconclusive")
    assert not confirmed, (
        f"CAN node {node} confirms a write to object 0x{index:04x} from a node that never authenticated: no "
        "authorization is enforced for devices and software processes")
    assert now != old ^ 1, (f"CAN node {node} aborts a write to object 0x{index:04x} from a node that never "
                            "authenticated, yet the value changed")


@pytest.mark.judges("CR 2.1", over=["https"])
def test_web_refuses_the_least_privileged_role_a_change(target, https, interface, evidence):
    rec = target.require(interface)
    action = rec.protected_action
    if rec.login is None:
        manual(f"interfaces.{interface}.login is not declared: the harness cannot log in to try the request",
               ["Log in to the web interface with the least privileged role and confirm every change of "
                "configuration is refused."])
    if action is None:
        manual(f"interfaces.{interface}.protected_action is not declared: no state-changing request to try",
               ["Declare a harmless state-changing request of the web interface and rerun, or log in with the "
                "least privileged role and confirm the web interface refuses every change of configuration."])
    target.guard(interface).require("config_changes")  # before the first byte: the request changes the device
    admin = target.admin()
    if admin is None or admin.password is None:
        not_run("the target file declares no administrator account with a password to show the request is taken")
    role = least_privileged_role(target)
    low = [c for c in target.accounts(role=role, purpose="normal") if c.password]
    if role == target.spec.policies.administrator_role or not low:
        not_run(f"no normal account with a password has a role less privileged than {admin.role} to try it with")
    with https.session(admin.username, admin.password) as session:
        genuine = session.action(action, note=f"as {admin.username} ({admin.role})")
        if rec.login.logout is not None:
            session.logout()
    evidence.add("check", f"{action.method} {action.path} as {admin.username} ({admin.role}): "
                          f"{'taken' if genuine.done else 'NOT taken'} ({genuine.detail})")
    if not genuine.done:
        inconclusive(f"the declared protected_action is not taken from {admin.username} either ({genuine.detail}): a "
                     f"refusal for {role} would mean nothing; check interfaces.{interface}.protected_action")
    creds = low[0]
    with https.session(creds.username, creds.password) as session:
        tried = session.action(action, note=f"as {creds.username} ({role}), with its token")
        if rec.login.logout is not None:
            session.logout()
    evidence.add("check", f"the same request as {creds.username} ({role}): "
                          f"{'TAKEN' if tried.done else 'refused' if tried.refused else 'not taken'} ({tried.detail})")
    if tried.status >= 500:
        inconclusive(f"the request as {creds.username} got status {tried.status}: neither taken nor refused")
    assert not tried.done, (f"the web interface takes a state-changing request ({action.method} {action.path}) from "
                            f"{creds.username}, of the least privileged role {role} ({tried.detail})")


@pytest.mark.judges("CR 2.1 RE(3)")
def test_supervisor_override(target):
    manual("a supervisor override is a procedure and a role design: nothing generic to observe", [
        "Confirm the component lets a supervisor (a designated role) override the normal authorization in an "
        "emergency, for a limited time (vendor documentation, configuration).",
        "Perform an override on the component and confirm it needs the supervisor's own authentication.",
        "Confirm the override, its user and its end are written to the audit log.",
        "Confirm normal authorization is restored automatically when the override ends."])


@pytest.mark.judges("CR 2.1 RE(4)")
def test_dual_approval(target):
    manual("dual approval applies to actions the asset owner designates: nothing generic to observe", [
        "List the actions the asset owner requires dual approval for (site security plan).",
        "Attempt each with a single authorized user and confirm the component does not perform it.",
        "Confirm it is performed only after a second, different authorized user approves it.",
        "Confirm both approvals are attributed to their users in the audit log."])
