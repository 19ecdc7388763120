"""manifest.json and the sealed evidence bundle: a run records what it ran with and the hash of every file;
`iec62443 seal` packs it and prints the manifest's hash; `iec62443 verify` finds any edited byte."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest
from iec62443_harness.report import REPORT_FILES
from iec62443_harness.report.seal import seal_main, verify, verify_main

from tests.test_plugin import DEVICELESS, SUITE, run

SECRET = "Seal-Pw-55871"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real run whose target file (wrongly) mentions a password in a comment: target.yaml must not."""
    bench = tmp_path_factory.mktemp("bench")
    (bench / "plc.yaml").write_text(DEVICELESS + f"# the admin password used to be {SECRET}\naccounts:\n"
                                    '  admin: {username: admin, password: "${SEAL_PW}", role: admin}\n')
    (bench / "test_suite.py").write_text(SUITE)
    proc = run(bench, "--target", "plc.yaml", "--run-id", "r1", "test_suite.py", env={"SEAL_PW": SECRET})
    assert proc.returncode == 1, proc.stdout
    return bench / "reports" / "plc" / "r1"


def _sealed(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[Path, str]:
    assert seal_main([str(run_dir), "-o", str(tmp_path / "bundle.tar.gz")]) == 0
    out = capsys.readouterr().out
    digest = out.split("manifest sha256 ")[1].strip()
    return tmp_path / "bundle.tar.gz", digest


def test_the_manifest_records_versions_and_hashes(run_dir: Path) -> None:
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert set(manifest["files"]) == {"results.jsonl", "target.yaml", *REPORT_FILES}
    for name, digest in manifest["files"].items():
        assert hashlib.sha256((run_dir / name).read_bytes()).hexdigest() == digest, name
    env = manifest["environment"]
    assert env["harness_version"] and env["python"]
    assert {"iec62443-harness", "pytest", "pydantic", "compliance-trestle"} <= set(env["packages"])
    assert len(manifest["catalogue_sha256"]) == 64
    assert manifest["target_file_sha256"] == manifest["files"]["target.yaml"]
    target = (run_dir / "target.yaml").read_text()
    assert SECRET not in target and "used to be ***" in target and "${SEAL_PW}" in target
    assert verify(run_dir) == ([], hashlib.sha256((run_dir / "manifest.json").read_bytes()).hexdigest())


def test_a_sealed_bundle_verifies(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bundle, digest = _sealed(run_dir, tmp_path, capsys)
    assert verify_main([str(bundle), "--manifest-sha256", digest]) == 0
    assert f"intact: every file matches manifest sha256 {digest}" in capsys.readouterr().out
    assert verify_main([str(bundle), "--manifest-sha256", "0" * 64]) == 1
    assert "the manifest was altered" in capsys.readouterr().err


def _rewrite(bundle: Path, change: dict[str, bytes]) -> None:
    """The bundle with some members' contents replaced, everything else as it was."""
    with tarfile.open(bundle, "r:gz") as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]
    with tarfile.open(bundle, "w:gz") as tar:
        for member, data in members:
            data = change.get(member.name.split("/", 1)[1], data)
            member.size = len(data)
            tar.addfile(member, io.BytesIO(data))


def test_editing_one_byte_makes_verify_fail(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bundle, digest = _sealed(run_dir, tmp_path, capsys)
    csv_bytes = bytearray((run_dir / "matrix.csv").read_bytes())
    at = csv_bytes.index(b",fail,")
    csv_bytes[at + 1:at + 2] = b"F"  # fail -> Fail: one byte
    _rewrite(bundle, {"matrix.csv": bytes(csv_bytes)})
    assert verify_main([str(bundle)]) == 1
    err = capsys.readouterr().err
    assert "matrix.csv: sha256" in err and "edited" in err and err.count("\n") == 1


def test_an_edit_with_a_matching_manifest_needs_the_printed_hash(run_dir: Path, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    bundle, digest = _sealed(run_dir, tmp_path, capsys)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    md = (run_dir / "matrix.md").read_bytes().replace(b"fail", b"pass", 1)
    manifest["files"]["matrix.md"] = hashlib.sha256(md).hexdigest()
    _rewrite(bundle, {"matrix.md": md, "manifest.json": json.dumps(manifest).encode()})
    assert verify_main([str(bundle)]) == 0  # consistent in itself...
    capsys.readouterr()
    assert verify_main([str(bundle), "--manifest-sha256", digest]) == 1  # ...but not what was sealed


def test_a_damaged_archive_fails(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bundle, _ = _sealed(run_dir, tmp_path, capsys)
    data = bytearray(bundle.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit inside the compressed stream
    bundle.write_bytes(bytes(data))
    assert verify_main([str(bundle)]) == 1
    err = capsys.readouterr().err
    lines = err.splitlines()  # the archive no longer reads, or the members it yields differ: one line each
    assert lines and all(ln.startswith("iec62443 verify: ") for ln in lines)
    assert all("damaged" in ln or "edited" in ln or "missing" in ln for ln in lines)


def test_a_run_folder_that_changed_is_not_sealed(run_dir: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    copy = tmp_path / "plc" / "r1"
    copy.mkdir(parents=True)
    for p in run_dir.iterdir():
        copy.joinpath(p.name).write_bytes(p.read_bytes())
    (copy / "notes.txt").write_text("added later")
    assert seal_main([str(copy)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "notes.txt: not in the manifest" in err and "iec62443 rebuild" in err
