"""Promises about the tree itself: emulated devices stay devices, suites document what they judge."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from iec62443_harness.catalogue import catalogue_index

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "iec62443_harness"
MOUNTED = ("fixtures", "conformance", "labs", "targets")  # design-card folders mounted into the namespace
SOURCES = [p for folder in ("harness", *MOUNTED, "tests", "benchmarks") for p in sorted((ROOT / folder).rglob("*.py"))]


def _imports(path: Path) -> set[str]:
    """Every module name `path` imports, in full (`iec62443_harness.fixtures.drivers.modbus`)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


@pytest.mark.parametrize("path", sorted((ROOT / "labs").rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT)))
def test_emulated_devices_never_import_the_harness(path: Path) -> None:
    ours = {n for n in _imports(path) if n.split(".")[0] == PACKAGE}
    outside = sorted(n for n in ours if not n.startswith(f"{PACKAGE}.labs") and n != f"{PACKAGE}.labs")
    assert not outside, f"{path} imports the harness ({outside[0]}): a device must not"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_code_imports_only_through_the_one_namespace(path: Path) -> None:
    bare = sorted(n for n in _imports(path) if n.split(".")[0] in ("harness", *MOUNTED))
    assert not bare, f"{path} imports {bare[0]!r}: write iec62443_harness.{bare[0].removeprefix('harness.')}"


def test_every_package_folder_is_shipped() -> None:
    import tomllib

    setup = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(setup["packages"])
    mounts = {folder: name for name, folder in setup["package-dir"].items()}
    found = set()
    for folder in ("harness", *MOUNTED):
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder).parts
            found.add(".".join((mounts[folder], *rel)))
    assert found == listed, f"pyproject.toml packages differ from the folders: {sorted(found ^ listed)}"


def _judged_rows(path: Path) -> set[str]:
    rows = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "judges"):
            rows.update(a.value for a in node.args if isinstance(a, ast.Constant))
    return rows


MODULES = sorted((ROOT / "conformance").glob("test_*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_each_suite_module_documents_its_rows(path: Path) -> None:
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    assert doc, f"{path.name} has no docstring saying which rows it judges"
    # "CR 1.1 RE(1)" may be written as "RE(1)" after its CR has been named
    for row in _judged_rows(path):
        base, _, enhancement = row.partition(" RE")
        assert base in doc and (not enhancement or f"RE{enhancement}" in doc), f"{path.name}: {row} not in docstring"
    assert re.search(r"\bSL\b", doc), f"{path.name}: the docstring does not say at which SL"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_suite_module_names_follow_their_requirement(path: Path) -> None:
    rows = _judged_rows(path)
    for row in rows:
        assert row in catalogue_index(), f"{path.name} judges {row!r}, which is not in the catalogue"
    number = re.match(r"test_[a-z_]+?_(\d+)_(\d+)_", path.name)
    assert number, f"{path.name} is not named test_<cr|type>_<fr>_<nn>_<title>.py"
    fr, nn = int(number.group(1)), int(number.group(2))
    if rows:
        assert any(re.search(rf"\b{fr}\.{nn}\b", r) for r in rows), f"{path.name} judges none of {fr}.{nn}'s rows"


@pytest.mark.parametrize("path", [p for p in sorted((ROOT / "harness").rglob("*.py")) if "plugin" not in p.parts],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_the_core_imports_no_pytest(path: Path) -> None:
    ours = {n.split(".")[0] for n in _imports(path)}
    assert not ours & {"pytest", "_pytest"}, f"{path} imports pytest: the core must stay usable without it"


BUILDERS = {"Guard", "RateBucket", "ModbusDriver", "SshDriver", "ConsoleDriver", "CanDriver", "ModbusChannel",
            "CanChannel", "ConsoleChannel", "SshChannel"}
MAY_BUILD = {"fixtures/registry.py", "fixtures/fuzz/channels.py",  # the registry, and the channel table it uses
             "fixtures/safety.py"}  # a guard's private bucket, for unit tests only


@pytest.mark.parametrize("path", [p for folder in ("harness", "fixtures", "conformance", "benchmarks")
                                  for p in sorted((ROOT / folder).rglob("*.py"))],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_only_the_registry_builds_drivers_and_guards(path: Path) -> None:
    """One place maps an interface to its code and owns the rate buckets: a driver or guard built elsewhere
    would pace through a bucket of its own and break the per-interface cap."""
    if str(path.relative_to(ROOT)) in MAY_BUILD:
        return
    built = sorted({node.func.id for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
                    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in BUILDERS})
    assert not built, f"{path.relative_to(ROOT)} builds {', '.join(built)} itself: ask the target's registry"
