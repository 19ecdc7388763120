"""CR 7.8 Control system component inventory (SL 2-4).

Judges CR 7.8 over ssh through the inventory operations the target file declares (`lifecycle.inventory`;
they only read): the device reports its installed components with their versions (the machine-readable form
when it parses, else the text form); the component that is the firmware (`inventory.firmware_component`) has
the version the target file's identity names (`identity.firmware`); and where the target file names the
vendor's CycloneDX SBOM (`inventory.sbom`, read with cyclonedx-python-lib), every installed component is
declared in it with the same version and every declared one is installed. Not-run where the target file
declares no inventory operation.
"""

from __future__ import annotations

import pytest
from iec62443_harness.fixtures.lifecycle import sbom_components
from iec62443_harness.fixtures.outcomes import not_run


@pytest.mark.judges("CR 7.8")
def test_inventory_matches_identity_and_sbom(target, lifecycle, evidence):
    spec = lifecycle.need("inventory")
    if spec.report is None and spec.machine_readable is None:
        not_run("lifecycle.inventory declares no inventory operation")
    installed, form = lifecycle.inventory()
    evidence.add("check", f"{form}: {', '.join(f'{n} {v}' for n, v in installed.items()) or 'nothing'}")
    assert installed, f"the device's inventory ({form}) lists no component"
    problems = []
    identity = target.spec.identity.firmware
    if spec.firmware_component is not None:
        running = installed.get(spec.firmware_component)
        evidence.add("check", f"{spec.firmware_component}: {running or 'not listed'}; identity.firmware: {identity}")
        if running != identity:
            problems.append(f"{spec.firmware_component} is {running or 'not listed'}, the target file's identity "
                            f"says firmware {identity}")
    else:
        evidence.add("check", "no firmware component named (inventory.firmware_component): identity not compared")
    if spec.sbom is not None:
        path = target.file(spec.sbom, "lifecycle.inventory.sbom")
        device, declared = sbom_components(path)
        evidence.add("check", f"SBOM {path} ({device}): {', '.join(f'{n} {v}' for n, v in declared.items())}")
        problems += [f"{name} {version} is installed but not in the SBOM" for name, version in installed.items()
                     if name not in declared]
        problems += [f"{name} is {installed[name]}, the SBOM says {declared[name]}" for name in installed
                     if name in declared and declared[name] != installed[name]]
        problems += [f"{name} {version} is in the SBOM but not installed" for name, version in declared.items()
                     if name not in installed]
    else:
        evidence.add("check", "no SBOM named (inventory.sbom): the inventory is compared with the identity only")
    assert not problems, f"the component inventory departs from what the target file declares: {'; '.join(problems)}"
