"""EDR/HDR/NDR 3.14 Integrity of the boot process (SL 1-4); RE(1) Authenticity of the boot process (SL 2-4).

Judges both rows as manual, with a checklist: the harness has no lab action yet that tampers with a device's
boot image or application bundle and reboots it, so whether a tampered image is refused is a human's check.
On the QEMU targets too: a verified-boot step in the guest is out of scope for now, and the rows stay manual
there. The evidence holds the firmware the target file names and, where the emulator says, its kind.
"""

from __future__ import annotations

import pytest
from iec62443_harness.fixtures.outcomes import manual

INTEGRITY = [
    "Find how the component verifies the integrity of its boot chain (boot loader, kernel or runtime, "
    "application bundle) before it runs each part (documentation: hashes, measured boot, secure boot).",
    "On a lab unit, change one byte of each boot stage and of the application bundle, restart: confirm the "
    "component refuses to run the changed part, and reports it (console, audit record, LED).",
    "Restore the original image and confirm the component starts normally again.",
]
AUTHENTICITY = [
    "Find the keys that sign each boot stage and where the verifying public key or its hash is anchored "
    "(fused, ROM, secure element).",
    "On a lab unit, install a boot image signed with another key (or unsigned) with a valid hash: confirm it "
    "is refused at restart.",
    "Confirm the anchor cannot be replaced without the supplier's authority (EDR/HDR/NDR 3.12).",
]


def _note(target, evidence) -> None:  # type: ignore[no-untyped-def]
    emulator = target.spec.emulator
    kind = f"; emulated by {emulator.kind} ({emulator.profile})" if emulator else ""
    evidence.add("check", f"firmware named by the target file: {target.spec.identity.firmware}{kind}")


@pytest.mark.judges("EDR/HDR/NDR 3.14")
def test_boot_integrity(target, evidence):
    _note(target, evidence)
    manual("no lab action tampers with the boot image and restarts the device: boot integrity is checked by hand",
           INTEGRITY)


@pytest.mark.judges("EDR/HDR/NDR 3.14 RE(1)")
def test_boot_authenticity(target, evidence):
    _note(target, evidence)
    manual("no lab action installs a foreign-signed boot image: boot authenticity is checked by hand", AUTHENTICITY)
