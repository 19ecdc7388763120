"""CR 3.7 Error handling (SL 1-4).

Judges CR 3.7 over modbus_tcp, modbus_rtu and can: requests built to take each error path of the protocol
(an unknown function or command, an address or object that does not exist, a quantity out of range, a
request too short or too long, another unit) must be answered with an error the protocol defines (Modbus
exception codes 01-0B, exactly two bytes; CiA 301 SDO abort codes) or not at all, must reveal nothing (no
stack trace, source path, exception name, runtime or version), and must leave the device answering. Then
a short fuzz campaign (an eighth of the interface's fuzz budget; needs `safety.allow_fuzzing`) judges every
error reply the same way. Over ssh, malformed management commands given by an ordinary account must get
error messages that reveal nothing either: commands no device has, and each read-only command the target
file declares (`shell.commands`) with malformed arguments. The directed requests are malformed frames:
they are sent only with `safety.allow_fuzzing`, checked before the first byte.
Not exercised: whether errors are logged for the operator (CR 2.8 judges audit events).
"""

from __future__ import annotations

import pytest
from iec62443_harness.fixtures.fuzz.campaign import Campaign, budget_for, seed_for
from iec62443_harness.fixtures.fuzz.channels import BAD_REPLY, leak
from iec62443_harness.fixtures.fuzz.strategies import CanFrame
from iec62443_harness.fixtures.fuzz.watch import ready_for_attack
from iec62443_harness.fixtures.links.modbus import PROBE_PDU, mbap, rtu_frame
from iec62443_harness.fixtures.sessions import ordinary_account
from iec62443_harness.fixtures.shell import CHANGES
from iec62443_harness.target import Budget

MODBUS_ERRORS = {  # request PDU -> the error path it takes
    "41": "unknown (user-defined) function 65",
    "2a": "reserved function 42",
    "01ffff0001": "read coils at address 65535",
    "0100000000": "read coils, quantity 0",
    "01000007d1": "read coils, quantity 2001 (limit 2000)",
    "0100": "read coils cut after the function code's first byte",
    "01000000010000": "read coils with two bytes too many",
    "2b0d0100": "encapsulated interface transport of an unsupported MEI type",
}
OTHER_UNIT = 0xF7
SDO_ERRORS = {  # data to 0x600+node -> the error path it takes (no download: nothing is written)
    "0000200000000000": "command specifier 0 as a first request",
    "40ff7f0000000000": "upload of object 0x7FFF",
    "4000207f00000000": "upload of sub-index 0x7F",
    "4000200000": "upload request of 5 bytes",
    "e000200000000000": "reserved command specifier 7",
}
ANY_SHELL = ("no-such-command-7f3a", "%s%s%s%n", "A" * 300, "\x1b[6n\x07")  # wrong on every device
# For a declared command's placeholders: values no argument takes (a missing argument or a large number may
# well be valid, e.g. "show everything", and then the output is data, not an error message).
BAD_ARGUMENTS = ("-1", "%n%n", "x" * 200, "'\"")
FUZZ_SHARE = 8  # the reply-judging campaign gets 1/FUZZ_SHARE of the interface's fuzz budget


def _directed(target, interface: str) -> dict[bytes | CanFrame, str]:  # type: ignore[no-untyped-def]
    iface = target.interface(interface)
    if interface == "can":
        node = 0x600 + iface.node_id
        return {CanFrame(node, bytes.fromhex(data)): why for data, why in SDO_ERRORS.items()}
    unit = iface.unit_id
    if interface == "modbus_rtu":
        return {rtu_frame(unit, bytes.fromhex(pdu)): why for pdu, why in MODBUS_ERRORS.items()}
    cases = {mbap(i + 1, unit, bytes.fromhex(pdu)): why for i, (pdu, why) in enumerate(MODBUS_ERRORS.items())}
    cases[mbap(len(cases) + 1, OTHER_UNIT, PROBE_PDU)] = f"read addressed to unit {OTHER_UNIT}"
    return cases


@pytest.mark.judges("CR 3.7", over=["modbus_tcp", "modbus_rtu", "can"])
def test_error_replies_are_protocol_errors_that_reveal_nothing(target, interface, evidence, request):
    target.guard(interface).require("fuzzing")  # malformed requests: never a byte without the permission
    target.require(interface)
    problems: list[str] = []
    channel = target.channel(interface, evidence, replies=True)
    try:
        ready_for_attack(target, interface, None, evidence, channel)  # a device silent already cannot go silent
        for case, why in _directed(target, interface).items():
            sent = channel.ask(case)
            evidence.add("check", f"{why}: {sent.reply}{'' if sent.alive else ', then NO ANSWER'}"
                                  f"{f' -- {sent.problem}' if sent.problem else ''}")
            if sent.problem:
                problems.append(f"{why}: {sent.problem}")
            if not sent.alive:
                problems.append(f"{why}: the device stopped answering")
                break
    finally:
        channel.close()
    assert not problems, f"{len(problems)} error path(s) mishandled on {interface}: " + "; ".join(problems)

    full = budget_for(target.spec, interface, request.config)
    budget = Budget(examples=max(1, full.examples // FUZZ_SHARE), seconds=full.seconds / FUZZ_SHARE)
    result = Campaign(target, interface, evidence, budget=budget, seed=seed_for(request.config), replies=True,
                      watch=False, shrink_kinds={BAD_REPLY}).run()
    bad = [f for f in result.findings if f.kind == BAD_REPLY]
    assert not bad, result.summary()
    if result.findings:  # crashes are CR 3.5's to judge; say what was seen
        evidence.add("check", f"also seen while fuzzing (judged by CR 3.5): {result.summary()}")


@pytest.mark.judges("CR 3.7", over=["ssh"])
def test_shell_errors_reveal_nothing(target, ssh, evidence):
    creds = ordinary_account(target)
    leaks = []
    with ssh.session(creds.username, creds.password) as session:
        for command in (*ANY_SHELL, *_malformed_commands(target)):
            result = session.run(command)
            found = leak(result.output.encode("utf-8", "replace"), command.encode())
            evidence.add("check", f"{command[:40]!r} -> exit {result.exit_status}: {result.output[:160]!r}"
                                  f"{f' REVEALS {found!r}' if found else ''}")
            if found:
                leaks.append(f"{command[:40]!r} reveals {found!r}")
    assert not leaks, "management shell error messages reveal internals: " + "; ".join(leaks)


def _malformed_commands(target) -> list[str]:  # type: ignore[no-untyped-def]
    """Each declared command that changes nothing, with every placeholder filled by malformed values: error
    paths of this device's own grammar, from its target file."""
    import string

    commands = []
    for operation, template in target.spec.shell.commands.items():
        if operation in CHANGES or operation == "write":
            continue
        fields = [name for _, name, _, _ in string.Formatter().parse(template) if name]
        if not fields:
            continue
        commands += [template.format(**dict.fromkeys(fields, bad)) for bad in BAD_ARGUMENTS]
    return list(dict.fromkeys(commands))
