"""The core (harness/) and the test-facing helpers (fixtures/) type-check clean under mypy, with pydantic's
plugin for the target model. mypy cannot follow pyproject's package-dir mapping (the folders are mounted
into one namespace), so the check runs on a tree of symbolic links laid out the way the namespace is."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOT_CHECKED = r"^iec62443_harness/(conformance|labs|targets)/"  # suites and devices: their own tests check them


def _namespace_tree(into: Path) -> Path:
    """`into`/iec62443_harness laid out as installed: the core's files, each mounted folder beside them."""
    mapping = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    top = into / "iec62443_harness"
    top.mkdir()
    for entry in (ROOT / mapping["iec62443_harness"]).iterdir():
        (top / entry.name).symlink_to(entry)
    for package, folder in mapping.items():
        if package != "iec62443_harness":
            (top / package.rsplit(".", 1)[1]).symlink_to(ROOT / folder)
    return into


def test_core_and_fixtures_type_check(tmp_path: Path) -> None:
    pytest.importorskip("mypy", reason="mypy is a dev dependency: pip install -e '.[dev]'")
    tree = _namespace_tree(tmp_path)
    command = [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"),
               "--cache-dir", str(tmp_path / ".mypy_cache"), "--exclude", NOT_CHECKED, "-p", "iec62443_harness"]
    done = subprocess.run(command, cwd=tree, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "MYPYPATH": str(tree)}, check=False)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
