"""SAR/EDR/HDR/NDR 2.4 Mobile code (SL 1-4) and RE(1) Mobile code authenticity check (SL 2-4).

Judges both rows as manual: whether a component runs mobile code (scripts, macros, applets, PLC
programs downloaded at run time), and what it checks before it does, is a matter of its design. The
evidence lists the management operations the target file declares and names those whose name or
command suggests transferring or running code, for the human to start from.
"""

from __future__ import annotations

import re

import pytest
from iec62443_harness.fixtures.outcomes import manual

CODE_WORDS = re.compile(r"upload|download|install|script|exec|eval|run|program|firmware|update|load|file|"
                        r"transfer|app|plugin|macro", re.IGNORECASE)


def _declared_code_paths(target, evidence) -> None:  # type: ignore[no-untyped-def]
    commands = target.spec.shell.commands
    suspect = [f"{op} ({cmd!r})" for op, cmd in commands.items() if CODE_WORDS.search(f"{op} {cmd}")]
    evidence.add("check", f"shell operations declared: {', '.join(commands) or 'none'}")
    evidence.add("check", "operations that may transfer or run code: " + (", ".join(suspect) or "none by name"))


@pytest.mark.judges("SAR/EDR/HDR/NDR 2.4")
def test_mobile_code_is_controlled(target, evidence):
    _declared_code_paths(target, evidence)
    manual("which mobile code the component accepts is a design matter; the declared operations are listed", [
        "List every way code reaches the component at run time: program downloads from the engineering tool, "
        "scripts, web content, firmware updates, plug-ins (vendor documentation).",
        "For each, confirm the component can restrict it: which technologies, from which sources, by whom.",
        "Confirm unauthorized mobile code is refused (try a download with a role that may not program).",
        "Confirm every transfer and execution of mobile code is written to the audit log."])


@pytest.mark.judges("SAR/EDR/HDR/NDR 2.4 RE(1)")
def test_mobile_code_authenticity(target, evidence):
    _declared_code_paths(target, evidence)
    manual("the authenticity check of mobile code needs signed and tampered code for the component", [
        "Confirm the component checks the integrity and origin of mobile code (signature, certificate) "
        "before it runs it (vendor documentation).",
        "Transfer a correctly signed program: confirm it is accepted.",
        "Transfer the same program with one byte changed, and one signed by an untrusted key: confirm both are "
        "refused, nothing of them runs, and the refusal is audited."])
