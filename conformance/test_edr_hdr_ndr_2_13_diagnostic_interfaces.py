"""EDR/HDR/NDR 2.13 Use of physical diagnostic and test interfaces (SL 2-4) and RE(1) Active monitoring
(SL 3-4).

Judges EDR/HDR/NDR 2.13 over the serial console, the physical diagnostic interface the harness reaches:
before a login it shows nothing but its notice and a login prompt, and a command typed at the login
prompt is not run. The command is one the target file declares (`config_show`, else `whoami`); its
output when logged in is taken first, and no line of it may appear in the answer at the login prompt.
Manual: the other physical diagnostic and test interfaces (JTAG, SWD, factory test pads, service USB)
that no test can reach over the wire, so the row stays manual until a human has checked them; and RE(1),
active monitoring of those interfaces.
"""

from __future__ import annotations

import re

import pytest
from iec62443_harness.fixtures.outcomes import inconclusive, manual, not_run
from iec62443_harness.fixtures.sessions import ordinary_account

PROBE_OPERATIONS = ("config_show", "whoami")


@pytest.mark.judges("EDR/HDR/NDR 2.13", over=["console"])
def test_console_needs_a_login(target, console, evidence):
    iface = target.spec.interfaces.console
    commands = target.spec.shell.commands
    op = next((o for o in PROBE_OPERATIONS if o in commands), None)
    if op is None:
        not_run("the target file declares neither config_show nor whoami to type at the login prompt")
    command = commands[op]
    creds = ordinary_account(target)
    login = console.login(creds.username, creds.password)
    if login.outcome != "accepted":
        inconclusive(f"{creds.username} cannot log in on the console ({login.outcome}): check the account")
    reference = console.run(command)
    console.logout()
    shown = [ln.strip() for ln in reference.splitlines() if ln.strip() and ln.strip() != command]
    assert shown, f"{command!r} shows nothing when logged in, so it cannot tell whether it runs before a login"

    before = console.wake()
    evidence.add("check", f"shown before login: {before!r}")
    console.send_raw(command.encode() + b"\r")
    answer, _ = console.read_until(f"{iface.password_prompt}|{iface.login_prompt}", iface.timeouts.reply_s)
    console.send_raw(b"\r")  # an empty password ends the login the command started
    console.read_until(iface.login_prompt, iface.timeouts.reply_s + 5.0)  # failed logins may be answered late
    leaked = [ln for ln in shown if ln in answer]
    evidence.add("check", f"typed {command!r} at the login prompt; the console answered {answer!r}")
    assert not leaked, f"{command!r} typed at the login prompt runs: its output appears ({leaked[0]!r})"
    assert not re.search(iface.shell_prompt, answer.rstrip("\r\n") + " "), "a shell prompt appears without a login"


@pytest.mark.judges("EDR/HDR/NDR 2.13")
def test_other_diagnostic_interfaces(target):
    manual("physical diagnostic and test interfaces other than the serial console cannot be reached by the harness", [
        "List every physical diagnostic and test interface of the component (JTAG, SWD, UART test points, "
        "factory test pads, service USB, boot-mode pins) from the vendor's documentation and the hardware.",
        "For each, confirm it is disabled in the field firmware, or protected (authentication, fuses, locked "
        "debug access port) so that it cannot be used without authorization.",
        "Try to attach a debugger or a test adapter to each on a lab unit and confirm access is refused.",
        "Confirm enabling any of them needs an authorized role and is audited."])


@pytest.mark.judges("EDR/HDR/NDR 2.13 RE(1)")
def test_active_monitoring(target):
    manual("active monitoring of diagnostic interfaces needs physical access to them", [
        "Confirm the component monitors its diagnostic and test interfaces for use (documentation).",
        "Connect to each on a lab unit (serial console login attempts, a debug probe) and confirm the use is "
        "detected and recorded in the audit log, with an alarm where the component claims one."])
