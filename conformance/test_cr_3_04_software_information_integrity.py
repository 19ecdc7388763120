"""CR 3.4 Software and information integrity (SL 1-4); RE(1) Authenticity of software and information (SL 2-4);
RE(2) Automated notification of integrity violations (SL 3-4).

Judges, through the update path the target file declares (`lifecycle.update`: a transfer, then the apply
operation), only with `safety.allow_lifecycle`:
- CR 3.4: images derived from the vendor's authentic one, knowing nothing of its format (one bit of the middle
  byte flipped, the first half only, random bytes of the same size), are each refused; the running version is
  unchanged after each; the essential function holds throughout (watched over its own channel).
- RE(1): an image signed by another key (`images.foreign`) and an older authentic one (`images.older`: a
  downgrade) are each refused, the running version unchanged.
- RE(2): the refusal of the tampered image is reported within `update.notify_within_s`: an audit record
  (`audit_show`) and a syslog message saying that the image (named, or as a firmware, image, update, integrity or
  signature matter) failed, in every channel the target file declares.
Before refusals count, the device must take the vendor's authentic image (else ERROR: nothing concluded). Every
image taken is undone: the original firmware comes back as `update.restore` says (reapply, or the target's
recovery action), or the test says loudly that it could not. Without a lifecycle section: not-run.
"""

from __future__ import annotations

import re
import time

import pytest
from iec62443_harness.fixtures.audit import FAILURE, AuditTrail
from iec62443_harness.fixtures.lifecycle import flipped, garbage, truncated
from iec62443_harness.fixtures.outcomes import not_run

UPDATE_WORDS = r"firmware|image|update|upgrade|integrity|signature|verif"


def _taken(attempts) -> list[str]:  # type: ignore[no-untyped-def]
    return [f"{a.name} as {a.path} ({a.answer!r})" for a in attempts if a.accepted]


def _moved(attempts, before: str) -> list[str]:  # type: ignore[no-untyped-def]
    return [f"{a.name}: now {a.version}" for a in attempts if a.version != before]


@pytest.mark.judges("CR 3.4")
def test_damaged_images_are_refused(target, lifecycle, evidence):
    lifecycle.need("update")
    lifecycle.allow()
    authentic = lifecycle.image("authentic")
    tampered, at = flipped(authentic)
    images = [("tampered", f"the vendor's image with one bit flipped at offset {at}", tampered),
              ("truncated", "the first half of the vendor's image", truncated(authentic)),
              ("garbage", "random bytes", garbage(len(authentic)))]
    attempts, function = lifecycle.try_images(images, control=True, watch=True)
    before = lifecycle.original_version
    evidence.add("check", f"essential function during the attempts: {function}")
    taken = _taken(attempts)
    assert not taken, f"the device takes damaged software: {'; '.join(taken)}"
    moved = _moved(attempts, before)
    assert not moved, f"the running version changed after a refused image (was {before}): {'; '.join(moved)}"
    assert not function.startswith("LOST"), f"the essential function was lost while images were refused: {function}"


@pytest.mark.judges("CR 3.4 RE(1)")
def test_unauthentic_images_are_refused(target, lifecycle, evidence):
    update = lifecycle.need("update")
    images = update.images
    if images.foreign is None and images.older is None:
        not_run("the target file names neither an image signed by another key (lifecycle.update.images.foreign) nor "
                "an older authentic one (images.older)")
    lifecycle.allow()
    chosen = []
    if images.foreign is not None:
        chosen.append(("foreign", "an image signed by another key", lifecycle.image("foreign")))
    else:
        evidence.add("check", "no image signed by another key declared (images.foreign): not tried")
    if images.older is not None:
        chosen.append(("older", f"the older authentic image {images.older.version} (a downgrade)",
                       lifecycle.image("older")))
    else:
        evidence.add("check", "no older image declared (images.older): a downgrade was not tried")
    attempts, _ = lifecycle.try_images(chosen, control=True)
    taken = _taken(attempts)
    assert not taken, f"the device takes software that is not authentic: {'; '.join(taken)}"
    moved = _moved(attempts, lifecycle.original_version)
    assert not moved, f"the running version changed after a refused image: {'; '.join(moved)}"


@pytest.mark.judges("CR 3.4 RE(2)")
def test_integrity_violation_is_reported(target, lifecycle, shell, evidence):
    update = lifecycle.need("update")
    lifecycle.allow()
    trail = AuditTrail(target, shell, evidence)  # MANUAL when the records can be read nowhere
    tampered, at = flipped(lifecycle.image("authentic"))
    mark = trail.mark()
    path = lifecycle.put(tampered, update.directory, lifecycle.name_for("tampered"))
    took, answer = lifecycle.apply(path)
    refused_at = time.monotonic()
    evidence.add("check", f"tampered image (one bit flipped at offset {at}) as {path}: "
                          f"{'TAKEN' if took else 'refused'}: {answer!r}")
    assert not took, (f"the device takes the tampered image {path} ({answer!r}): it detects no integrity violation, "
                      "so it has none to report")
    # the record names the image, or at least says what failed; and it says it failed
    about = re.compile(rf"{re.escape(path.rsplit('/', 1)[-1])}|{UPDATE_WORDS}", re.IGNORECASE)
    found: dict[str, str] = {}
    while set(found) < trail.channels and time.monotonic() - refused_at < update.notify_within_s:
        for record in trail.records(mark):
            if record.channel not in found and about.search(record.text) and re.search(FAILURE, record.text, re.I):
                found[record.channel] = record.text
                evidence.add("audit", f"{record.channel} after {time.monotonic() - refused_at:.2f} s: {record.text}")
        time.sleep(0.1)
    missing = sorted(trail.channels - set(found))
    assert not missing, (f"the refusal of {path} is not reported in {' and '.join(missing)} within "
                         f"{update.notify_within_s:g} s (update.notify_within_s); seen in: "
                         f"{', '.join(sorted(found)) or 'nothing'}")
