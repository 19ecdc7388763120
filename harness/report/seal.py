"""A run's manifest and sealed evidence bundle.

Every run folder gets `manifest.json` (written last by `write_reports`): the harness and dependency versions
the run ran with, the sha256 of the catalogue used for the rollup, of the target file as read (secrets
redacted: `target.yaml`), and of every file of the run. `iec62443 seal RUN_DIR` packs the folder as one
`.tar.gz` and prints the sha256 of its manifest; `iec62443 verify BUNDLE|RUN_DIR [--manifest-sha256 HEX]`
re-hashes every file and reports each that was edited, removed or added. The printed hash is the anchor: kept
apart from the bundle (an assessment record, a ticket), it also catches an edit made together with the manifest.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import sys
import tarfile
from pathlib import Path
from typing import Any

from iec62443_harness import __version__
from iec62443_harness.catalogue import CATALOGUE_FILE
from iec62443_harness.errors import HarnessError
from iec62443_harness.report.results import RESULTS_FILE, TARGET_COPY, now_iso

MANIFEST = "manifest.json"
MANIFEST_SCHEMA = "iec62443-harness/manifest"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_manifest(run_dir: Path, matrix: dict[str, Any], files: list[str]) -> Path:
    """manifest.json for `files` (names in run_dir) of the run whose matrix is given."""
    run = matrix["run"]
    hashes = {name: sha256((run_dir / name).read_bytes()) for name in [RESULTS_FILE, TARGET_COPY, *files]
              if (run_dir / name).is_file()}
    manifest = {
        "schema": MANIFEST_SCHEMA, "schema_version": 1,
        "run": {k: run.get(k) for k in ("target", "run_id", "started", "ended", "complete", "partial")},
        "generated": {"at": now_iso(), "harness_version": __version__},
        "environment": run.get("environment") or {},  # what the run itself ran with (its results header)
        "catalogue_sha256": matrix["generated"]["catalogue_sha256"], "catalogue": CATALOGUE_FILE.name,
        "target_file_sha256": hashes.get(TARGET_COPY),  # the target file as read, secrets redacted
        "files": hashes,
    }
    path = run_dir / MANIFEST
    path.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


# --- reading a run folder or a bundle


def _read_dir(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(path.iterdir()) if p.is_file() and not p.name.startswith(".")}


def _read_bundle(path: Path) -> dict[str, bytes]:
    """Every regular file of the archive by its name below the top folder; links or odd paths are problems."""
    files: dict[str, bytes] = {}
    try:
        with tarfile.open(path, "r:gz") as tar:
            for member in tar.getmembers():
                if member.isdir():
                    continue
                name = member.name.split("/", 1)[-1]
                if not member.isfile() or "/" in name or name.startswith("."):
                    raise HarnessError(f"{path} holds {member.name!r}, which a sealed bundle never has: it was "
                                       "altered; ask for the bundle again")
                data = tar.extractfile(member)
                if data is None:  # a regular file always has its data; checked above
                    raise HarnessError(f"{path} holds {member.name!r} without data: it was altered")
                files[name] = data.read()
    except (tarfile.TarError, OSError, EOFError, ValueError) as exc:
        raise HarnessError(f"{path} is not a readable bundle ({exc.__class__.__name__}: {exc}): it is damaged or "
                           "not made by iec62443 seal; ask for the bundle again") from None
    return files


def verify(path: Path, manifest_sha256: str | None = None) -> tuple[list[str], str | None]:
    """(problems, the manifest's sha256) of a run folder or a bundle; no problems: every file is as sealed."""
    path = Path(path)
    if not path.exists():
        raise HarnessError(f"{path} does not exist: give a bundle (.tar.gz) or a run folder")
    files = _read_dir(path) if path.is_dir() else _read_bundle(path)
    if MANIFEST not in files:
        raise HarnessError(f"{path} has no {MANIFEST}: rebuild the run folder (iec62443 rebuild) to write one")
    digest = sha256(files[MANIFEST])
    try:
        listed = json.loads(files[MANIFEST])["files"]
        assert isinstance(listed, dict)
    except (ValueError, KeyError, TypeError, AssertionError):
        return [f"{MANIFEST} is not a manifest: it was altered"], digest
    problems = []
    if manifest_sha256 and digest != manifest_sha256.lower():
        problems.append(f"{MANIFEST} has sha256 {digest}, not the {manifest_sha256} given: the manifest was altered "
                        "or belongs to another bundle")
    for name, want in listed.items():
        if name not in files:
            problems.append(f"{name}: listed in the manifest, missing")
        elif sha256(files[name]) != want:
            problems.append(f"{name}: sha256 {sha256(files[name])} differs from the manifest's {want}: edited")
    problems += [f"{name}: not in the manifest: added" for name in files if name not in listed and name != MANIFEST]
    return problems, digest


def seal(run_dir: Path, out: Path | None = None) -> tuple[Path, str]:
    """Pack a run folder whose files match its manifest as one .tar.gz; (archive, manifest sha256)."""
    run_dir = Path(run_dir).resolve()
    problems, digest = verify(run_dir)
    if problems:
        raise HarnessError(f"{run_dir} does not match its manifest ({problems[0]}): rebuild it with "
                           f"iec62443 rebuild {run_dir} before sealing")
    files = _read_dir(run_dir)
    top = f"{run_dir.parent.name}-{run_dir.name}"
    out = Path(out) if out else run_dir.parent / f"{top}.tar.gz"
    with tarfile.open(out, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"{top}/{name}")
            info.size, info.mode, info.mtime = len(data), 0o644, 0  # the same bytes give the same members
            tar.addfile(info, io.BytesIO(data))
    assert digest is not None  # a folder with no problems has its manifest
    return out, digest


# --- the commands


def seal_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="iec62443 seal", description="Pack a run folder as one .tar.gz evidence "
                                     "bundle and print the sha256 of its manifest (keep it: verify checks it).")
    parser.add_argument("run_dir", type=Path, help="a run folder, e.g. reports/plc01/latest")
    parser.add_argument("-o", "--output", type=Path, help="the archive (default: <target>-<run-id>.tar.gz beside it)")
    args = parser.parse_args(argv)
    try:
        out, digest = seal(args.run_dir, args.output)
    except HarnessError as exc:
        print(f"iec62443 seal: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"iec62443 seal: cannot write the bundle ({exc.strerror}): choose a writable -o path", file=sys.stderr)
        return 2
    print(f"sealed {out}")
    print(f"manifest sha256 {digest}")
    return 0


def verify_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="iec62443 verify", description="Check that every file of a sealed bundle "
                                     "(or a run folder) is as its manifest lists it. Exit 0: intact; 1: altered.")
    parser.add_argument("bundle", type=Path, help="a .tar.gz made by iec62443 seal, or a run folder")
    parser.add_argument("--manifest-sha256", metavar="HEX", help="the hash seal printed: also catches an edited "
                        "manifest")
    args = parser.parse_args(argv)
    try:
        problems, digest = verify(args.bundle, args.manifest_sha256)
    except HarnessError as exc:
        print(f"iec62443 verify: {exc}", file=sys.stderr)
        return 1
    for problem in problems:
        print(f"iec62443 verify: {args.bundle}: {problem}", file=sys.stderr)
    if problems:
        return 1
    anchored = "" if args.manifest_sha256 else " (give --manifest-sha256 to check the manifest itself)"
    print(f"intact: every file matches manifest sha256 {digest}{anchored}")
    return 0
