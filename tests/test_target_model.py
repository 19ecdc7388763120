"""The target model: what a target file may say, and the one line it gets when it says something impossible."""

from __future__ import annotations

from pathlib import Path

import pytest
from iec62443_harness.errors import HarnessError
from iec62443_harness.target import load_target, suggested_variable

BASE = """\
identity: {vendor: Test, model: Bench, firmware: "1"}
component_type: embedded_device
security_level: 2
interfaces: {}
"""


def load(tmp_path: Path, extra: str, name: str = "bench") -> object:
    path = tmp_path / f"{name}.yaml"
    path.write_text(BASE + extra)
    return load_target(path)


def problem(tmp_path: Path, extra: str, name: str = "bench") -> str:
    with pytest.raises(HarnessError) as info:
        load(tmp_path, extra, name)
    message = str(info.value)
    assert "\n" not in message and "Value error" not in message
    return message


@pytest.mark.parametrize(("key", "ranges", "why"), [
    ("holding_registers", "[[-5, 199]]", "0-65535"),
    ("holding_registers", "[[100, 70000]]", "0-65535"),
    ("coils", "[[0, 7], [65535, 65536]]", "0-65535"),
    ("coils", "[[-1, -1]]", "0-65535"),
    ("can_ids", "[[0x100, 0x20000000]]", "0-0x1FFFFFFF"),
    ("can_ids", "[[-1, 5]]", "0-0x1FFFFFFF"),
])
def test_writable_range_out_of_bounds_is_refused_at_load(tmp_path: Path, key: str, ranges: str, why: str) -> None:
    message = problem(tmp_path, f"safety: {{writable: {{{key}: {ranges}}}}}\n")
    assert f"safety.writable.{key}" in message and "out of bounds" in message and why in message


def test_writable_range_reversed_is_refused(tmp_path: Path) -> None:
    message = problem(tmp_path, "safety: {writable: {coils: [[20, 10]]}}\n")
    assert "safety.writable.coils" in message and "reversed" in message and "[10, 20]" in message


def test_writable_ranges_at_the_bounds_are_accepted(tmp_path: Path) -> None:
    spec = load(tmp_path, "safety: {writable: {coils: [[0, 65535]], holding_registers: [[7, 7]], "
                          "can_ids: [[0, 0x1FFFFFFF]]}}\n")
    assert spec.safety.writable.can_ids == [(0, 0x1FFFFFFF)]  # type: ignore[attr-defined]


def test_literal_password_hint_names_a_variable_for_this_account(tmp_path: Path) -> None:
    message = problem(tmp_path, "accounts:\n  operator: {username: op1, password: hunter22, role: op}\n",
                      name="line-3-plc")
    assert "accounts.operator.password" in message and "${LINE_3_PLC_OPERATOR_PASSWORD}" in message
    assert "PLC01" not in message and "hunter22" not in message and "export LINE_3_PLC_OPERATOR_PASSWORD" in message


def test_literal_key_file_hint(tmp_path: Path) -> None:
    message = problem(tmp_path, "accounts:\n  admin: {username: a, private_key_file: /root/.ssh/id, role: r}\n")
    assert "${BENCH_ADMIN_KEY_FILE}" in message


def test_suggested_variable_is_a_valid_name() -> None:
    assert suggested_variable("01-plc", "admin") == "_01_PLC_ADMIN_PASSWORD"
    assert suggested_variable("plc01", "admin") == "PLC01_ADMIN_PASSWORD"


@pytest.mark.parametrize("path", sorted((Path(__file__).resolve().parent.parent / "targets").rglob("*.yaml")),
                         ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_shipped_target_file_loads(path: Path) -> None:
    """The shipped targets and the annotated example a lab copies hold to the strict model as they stand."""
    spec = load_target(path)
    assert spec.schema_version == 1
