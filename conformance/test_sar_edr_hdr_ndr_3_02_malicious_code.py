"""SAR/EDR/HDR/NDR 3.2 Protection from malicious code (SL 1-4); HDR 3.2 RE(1) Report version of code protection
(SL 2-4, host devices only).

Judges SAR/EDR/HDR/NDR 3.2 (EDR, HDR, NDR), only with `safety.allow_lifecycle`: code that is not authorised is
neither installed nor run.
- Through the declared update path (`lifecycle.update`): an image signed by another key (`images.foreign`) is
  refused (once the vendor's authentic one is seen taken, else nothing is concluded).
- Over the management plane (`lifecycle.code`): code the vendor did not sign (`code.unsigned`), put on the device
  through `lifecycle.transfer`, is refused by the run operation and, where the target file names what the code
  changes (`code.effect`, a holding register read over Modbus), that change is not seen; the vendor-signed code
  (`code.signed`) must run (its change seen) before a refusal counts. The register is put back afterwards.
Every image taken is undone (the original firmware comes back, or the test says loudly it could not). Without
a lifecycle section: not-run. SAR 3.2 (software applications) is a matter of documentation: manual.
HDR 3.2 RE(1): manual (the version of a host's malicious-code protection is read on the host); n/a on the other
component types.
"""

from __future__ import annotations

import re

import pytest
from iec62443_harness.fixtures.lifecycle import NotRestored
from iec62443_harness.fixtures.outcomes import inconclusive, manual, not_run

CODE_INTERFACES = ("modbus_tcp", "modbus_rtu")


def _register_interface(target) -> str:  # type: ignore[no-untyped-def]
    found = next((i for i in CODE_INTERFACES if target.interface(i) is not None), None)
    if found is None:
        not_run("lifecycle.code.effect names a holding register, but the target file declares no Modbus interface to "
                "read it over")
    return found


def _run_code(lifecycle, evidence, slug: str, data: bytes) -> tuple[bool, str]:  # type: ignore[no-untyped-def]
    code = lifecycle.spec.code
    path = lifecycle.put(data, code.directory, lifecycle.name_for(slug, suffix=""))
    reply = lifecycle.run(code.run, path=path)
    refused = bool(re.search(code.rejected, reply.output))
    evidence.add("check", f"{slug} code ({len(data)} bytes) as {path}: {'refused' if refused else 'RUN'}: "
                          f"{reply.line!r}")
    lifecycle.remove(path)
    return refused, reply.line


def _code_is_refused(target, lifecycle, evidence) -> list[str]:  # type: ignore[no-untyped-def]
    """Problems with unsigned code over the management plane (empty: refused and not run)."""
    code = lifecycle.spec.code
    effect = code.effect
    modbus = None
    if effect is not None:
        interface = _register_interface(target)
        target.guard(interface).check_write("holding_registers", effect.holding_register)  # to put it back
        modbus = target.driver(interface, evidence)
    try:
        def register() -> int | None:
            return modbus.read_holding_registers(effect.holding_register, 1)[0] if modbus is not None else None

        original = register()
        if original is not None:
            lifecycle.on_restore(f"holding register {effect.holding_register} back to {original}",
                                 lambda: _put_back(target, interface, evidence, effect.holding_register, original))
            if original == effect.value:  # the code's change would not show: start from another value
                modbus.write_register(effect.holding_register, original ^ 1)
        start = register()
        refused, answer = _run_code(lifecycle, evidence, "unsigned", lifecycle.file(code.unsigned,
                                                                                   "lifecycle.code.unsigned"))
        after = register()
        changed = after is not None and after == effect.value and after != start
        if after is not None:
            evidence.add("check", f"holding register {effect.holding_register}: {start} before, {after} after the "
                                  "unsigned code")
        problems = []
        if not refused:
            problems.append(f"unsigned code is run ({answer!r})")
        if changed:
            problems.append(f"unsigned code took effect: holding register {effect.holding_register} = {after}")
        if problems or code.signed is None:
            if code.signed is None:
                evidence.add("check", "no vendor-signed code declared (lifecycle.code.signed): the refusal is taken "
                                      "as the device's word, without a control")
            return problems
        if start is not None:
            modbus.write_register(effect.holding_register, start)
        signed_refused, signed_answer = _run_code(lifecycle, evidence, "signed",
                                                  lifecycle.file(code.signed, "lifecycle.code.signed"))
        ran = register()
        if ran is not None:
            evidence.add("check", f"holding register {effect.holding_register}: {ran} after the signed code")
        if signed_refused or (ran is not None and ran != effect.value):
            inconclusive(f"the vendor-signed code does not run either ({signed_answer!r}): the refusal of the unsigned "
                         "code shows nothing (check lifecycle.code)")
        return problems
    finally:
        if modbus is not None:
            modbus.close()


def _put_back(target, interface: str, evidence, address: int, value: int) -> str:  # type: ignore[no-untyped-def]
    with target.driver(interface, evidence) as modbus:
        modbus.write_register(address, value)
        now = modbus.read_holding_registers(address, 1)[0]
    if now != value:
        raise NotRestored(f"holding register {address} reads {now} after writing {value}")
    return f"reads {now}"


@pytest.mark.judges("SAR/EDR/HDR/NDR 3.2")
def test_unauthorised_code_is_neither_installed_nor_run(target, lifecycle, evidence):
    if target.spec.component_type.code == "SAR":
        manual("for a software application, protection from malicious code is the supplier's documented "
               "qualification of the protection mechanisms it is compatible with", [
                   "Obtain the supplier's list of malicious-code protection mechanisms qualified with the application.",
                   "Confirm the application runs with them enabled, and the documentation says how to configure them."])
    spec = lifecycle.need()  # the lifecycle section itself
    update, code = spec.update, spec.code
    if (update is None or update.images.foreign is None) and code is None:
        not_run("the target file declares neither an image signed by another key (lifecycle.update.images.foreign) "
                "nor code to run over the management plane (lifecycle.code)")
    lifecycle.allow()
    problems = []
    if update is not None and update.images.foreign is not None:
        attempts, _ = lifecycle.try_images([("foreign", "an image signed by another key", lifecycle.image("foreign"))],
                                           control=True)
        problems += [f"{a.name} is installed as {a.path} ({a.answer!r})" for a in attempts if a.accepted]
    else:
        evidence.add("check", "no image signed by another key declared (images.foreign): not tried on the update path")
    if code is not None:
        problems += _code_is_refused(target, lifecycle, evidence)
    else:
        evidence.add("check", "no code declared (lifecycle.code): nothing pushed over the management plane")
    assert not problems, f"the device installs or runs code that is not authorised: {'; '.join(problems)}"


@pytest.mark.judges("HDR 3.2 RE(1)")
def test_version_of_code_protection_is_reported(target, evidence):
    manual("the version of a host's malicious-code protection is read on the host itself", [
        "Find the malicious-code protection on the host (anti-virus, application allow-listing) and its version "
        "and signature or rule-set date.",
        "Confirm the host reports that version through its management interface or to a central tool.",
        "Confirm an out-of-date protection is flagged."])
