"""EDR/HDR/NDR 3.10 Support for updates (SL 1-4); RE(1) Update authenticity and integrity (SL 2-4).

Judges, through the update path the target file declares (`lifecycle.update`), only with
`safety.allow_lifecycle`:
- EDR/HDR/NDR 3.10: the vendor's authentic image (`images.authentic`) is taken, and after the declared restart
  the device reports the image's version as the one running.
- RE(1): on that path, as CR 3.4 RE(1): an image signed by another key (`images.foreign`), an older authentic
  one (`images.older`, a downgrade) and the authentic one with one bit flipped are each refused and the running
  version stays; refusals count only once the authentic image is seen taken.
The original firmware is brought back after each test as `update.restore` says (reapply `images.original`, or
the target's recovery action), or the test says loudly that it could not. Without a lifecycle section: not-run.
Manual: whether updates can be installed without stopping the essential function, and the vendor's update
process (delivery, notification); they are outside what the device shows.
"""

from __future__ import annotations

import pytest
from iec62443_harness.fixtures.lifecycle import flipped


@pytest.mark.judges("EDR/HDR/NDR 3.10")
def test_authentic_update_is_installed(target, lifecycle, evidence):
    update = lifecycle.need("update")
    lifecycle.allow()
    image = update.images.authentic
    before = lifecycle.remember_version()
    path = lifecycle.put(lifecycle.image("authentic"), update.directory, lifecycle.name_for("authentic"))
    took, answer = lifecycle.apply(path)
    evidence.add("check", f"the vendor's authentic image {image.version} as {path}: {'taken' if took else 'REFUSED'}: "
                          f"{answer!r}")
    assert took, f"the device refuses the vendor's authentic update {image.version} ({answer!r})"
    now = lifecycle.restart()
    evidence.add("check", f"after {update.restart or 'the update'}: running {now} (was {before})")
    assert now == image.version, (f"after the update and {update.restart or 'waiting'} the device reports firmware "
                                  f"{now}, not the installed {image.version}")


@pytest.mark.judges("EDR/HDR/NDR 3.10 RE(1)")
def test_update_refuses_unauthentic_images(target, lifecycle, evidence):
    update = lifecycle.need("update")
    lifecycle.allow()
    images = update.images
    tampered, at = flipped(lifecycle.image("authentic"))
    chosen = [("tampered", f"the vendor's image with one bit flipped at offset {at}", tampered)]
    if images.foreign is not None:
        chosen.append(("foreign", "an image signed by another key", lifecycle.image("foreign")))
    if images.older is not None:
        chosen.append(("older", f"the older authentic image {images.older.version} (a downgrade)",
                       lifecycle.image("older")))
    missing = [name for name in ("foreign", "older") if getattr(images, name) is None]
    if missing:
        evidence.add("check", f"not tried, none declared: images.{', images.'.join(missing)}")
    attempts, _ = lifecycle.try_images(chosen, control=True)
    taken = [f"{a.name} as {a.path} ({a.answer!r})" for a in attempts if a.accepted]
    assert not taken, f"the update path takes images that are not authentic and intact: {'; '.join(taken)}"
    moved = [f"{a.name}: now {a.version}" for a in attempts if a.version != lifecycle.original_version]
    assert not moved, f"the running version changed after a refused image: {'; '.join(moved)}"
