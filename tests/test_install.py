"""The harness installed as a lab installs it: a regular (non-editable) install into a fresh environment
leaves other projects alone, exposes one namespace, runs the shipped suites from a lab's own folder, and a
target given by path collects exactly the suites, with the time-out backstop on."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SUITE_ITEM = re.compile(r"^(\S*/)?conformance/test_[a-z_]+_\d+_\d+_\w+\.py::|^test_[a-z_]+_\d+_\d+_\w+\.py::")
SHOW_TIMEOUTS = '''\
def pytest_collection_finish(session):
    marks = [item.get_closest_marker("timeout") for item in session.items]
    print("TIMEOUTS", sorted({m.args[0] if m else None for m in marks}, key=str))
'''


def _run(cmd: list[str], cwd: Path, timeout: float = 300, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "VIRTUAL_ENV"))}
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env={**clean, **env})


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the repository installed from a copy of its sources (a build writes into the tree)."""
    base = tmp_path_factory.mktemp("install")
    source = base / "src"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".venv", ".git", "reports", "build", "*.egg-info",
                                                                 "__pycache__", ".hypothesis", ".ruff_cache"))
    env = base / "venv"
    _run([sys.executable, "-m", "venv", str(env)], base).check_returncode()
    done = _run([str(env / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check", str(source)], base,
                timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return env


def test_only_one_namespace_is_importable(venv: Path) -> None:
    code = ("import importlib.util as u; print([n for n in ('fixtures', 'harness', 'labs', 'conformance') "
            "if u.find_spec(n)]); import iec62443_harness.plugin.hooks, iec62443_harness.labs.simplc")
    done = _run([str(venv / "bin" / "python"), "-c", code], venv)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stdout + done.stderr


def test_an_unrelated_project_is_untouched(venv: Path, tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text("import pytest\n\n@pytest.fixture\ndef target():\n    return 'theirs'\n")
    (tmp_path / "test_theirs.py").write_text("def test_own_fixture(target):\n    assert target == 'theirs'\n")
    done = _run([str(venv / "bin" / "pytest"), "-q"], tmp_path)
    assert done.returncode == 0 and "1 passed" in done.stdout, done.stdout + done.stderr
    assert _run([str(venv / "bin" / "pytest"), "--help"], tmp_path).returncode == 0


def test_a_lab_folder_runs_the_shipped_suites(venv: Path, tmp_path: Path) -> None:
    (tmp_path / "targets").mkdir()
    shutil.copy(ROOT / "targets" / "sim-plc.yaml", tmp_path / "targets" / "mylab.yaml")
    (tmp_path / "show_timeouts.py").write_text(SHOW_TIMEOUTS)
    pytest_bin = str(venv / "bin" / "pytest")
    listed = _run([pytest_bin, "--target", "mylab", "--collect-only", "-q", "-p", "show_timeouts"], tmp_path,
                  PYTHONPATH=str(tmp_path))
    assert listed.returncode == 0, listed.stdout[-3000:] + listed.stderr[-3000:]
    items = [ln for ln in listed.stdout.splitlines() if "::" in ln]
    assert len(items) > 80 and all(SUITE_ITEM.match(ln) for ln in items), listed.stdout[-3000:]
    assert "TIMEOUTS [900.0]" in listed.stdout, listed.stdout[-500:]
    # one cheap suite end to end: the emulator starts from the installed package and the report is written
    done = _run([pytest_bin, "--target", "mylab", "-q", "-k", "system_use_notification"], tmp_path, timeout=600)
    assert done.returncode in (0, 1), done.stdout[-3000:] + done.stderr[-3000:]
    assert (tmp_path / "reports" / "mylab" / "latest" / "matrix.json").is_file(), done.stdout[-3000:]


def test_a_target_path_elsewhere_collects_only_the_suites(tmp_path: Path) -> None:
    """From the repository, a target file outside it moves pytest's rootdir away from pyproject.toml; the
    plugin still collects the suites alone (not tests/) and keeps the time-out backstop."""
    shutil.copy(ROOT / "targets" / "sim-plc.yaml", tmp_path / "plc01.yaml")
    (tmp_path / "show_timeouts.py").write_text(SHOW_TIMEOUTS)
    done = _run([sys.executable, "-m", "pytest", "--target", str(tmp_path / "plc01.yaml"), "--collect-only", "-q",
                 "-p", "show_timeouts"], ROOT, PYTHONPATH=str(tmp_path))
    items = [ln for ln in done.stdout.splitlines() if "::" in ln]
    assert done.returncode == 0 and items, done.stdout[-3000:] + done.stderr[-3000:]
    assert all(SUITE_ITEM.match(ln) for ln in items), [ln for ln in items if not SUITE_ITEM.match(ln)][:3]
    assert "TIMEOUTS [900.0]" in done.stdout, done.stdout[-500:]
