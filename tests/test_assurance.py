"""The assurance section of the target model, lab actions on a real device (commands), and the audit log's
comparison and parsing (the CR 3.3, 3.9, 6.1, 6.2 and EDR 3.11 suites stand on them)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from iec62443_harness.errors import HarnessError
from iec62443_harness.evidence import Evidence
from iec62443_harness.fixtures.audit_log import Snapshot, compare, parse_jsonl
from iec62443_harness.fixtures.lab import lab_action
from iec62443_harness.fixtures.outcomes import Inconclusive, NotRun
from iec62443_harness.fixtures.registry import Registry
from iec62443_harness.target import load_target

BASE = """\
identity: {vendor: Test, model: Bench, firmware: "1"}
component_type: embedded_device
security_level: 2
interfaces: {modbus_tcp: {host: 127.0.0.1, port: 502}}
"""


def problem(tmp_path: Path, extra: str) -> str:
    path = tmp_path / "bench.yaml"
    path.write_text(BASE + extra)
    with pytest.raises(HarnessError) as info:
        load_target(path)
    return str(info.value)


@pytest.mark.parametrize(("extra", "says"), [
    ("assurance: {self_test: {passed: ok, failed: bad, broken_by: {audit: nothing}}}\n", "names 'nothing'"),
    ("assurance: {tamper: {trip: open}}\n", "tamper.trip names 'open'"),
    ("assurance: {lab_actions: {x: {description: relay, command: /bin/true}}}\n", "needs undo"),
    ("assurance: {lab_actions: {x: {description: relay, command: /bin/true, undo: /bin/true, fault: tamper}}}\n",
     "exactly one of fault"),
    ("assurance: {self_test: {passed: ok, failed: bad, function: '^(\\w+): (\\w+)$'}}\n", "named groups"),
    ("assurance: {tamper: {trip: open, signal: {interface: modbus_rtu, table: coils, address: 3}}, lab_actions: "
     "{open: {description: door, fault: tamper}}}\n", "modbus_rtu"),
    ("assurance: {boot_integrity: {tamper: flash}}\n", "boot_integrity.tamper names 'flash'"),
    ("assurance: {boot_integrity: {tamper: flash}, lab_actions: {flash: {description: a byte of the image, "
     "fault: x}}}\n", "needs essential_function"),
    ("assurance: {owner_trust: {kind: ssh_user_ca, account: nobody}}\n", "names 'nobody'"),
    ("accounts: {op: {username: op, password: '${OP_PW}', role: operator}}\n"
     "assurance: {owner_trust: {kind: ssh_user_ca, account: op}}\n", "needs trust_anchor_install and"),
])
def test_impossible_assurance_is_one_line(tmp_path: Path, extra: str, says: str) -> None:
    message = problem(tmp_path, extra)
    assert says in message and "\n" not in message


def _target(tmp_path: Path, allow: bool = True) -> SimpleNamespace:
    flag = tmp_path / "relay"
    spec = load_target(_write(tmp_path, f"""\
safety: {{allow_config_changes: {str(allow).lower()}}}
assurance:
  lab_actions:
    door: {{description: the door opens, command: "touch {flag}", undo: "rm {flag}", settle_s: 0}}
    broken: {{description: a relay that is not there, command: "/nonexistent/relay on", undo: /bin/true}}
    failing: {{description: a relay that says no, command: /bin/false, undo: /bin/true, settle_s: 0}}
"""))
    return SimpleNamespace(spec=spec, name="bench", emulator=None, flag=flag, registry=Registry(spec))


def _write(tmp_path: Path, extra: str) -> Path:
    path = tmp_path / "bench.yaml"
    path.write_text(BASE + extra)
    return path


def test_a_lab_command_runs_and_is_undone(tmp_path: Path) -> None:
    target, evidence = _target(tmp_path), Evidence()
    before = target.registry.sightings.generation
    with lab_action(target, "door", evidence) as performed:  # type: ignore[arg-type]
        assert target.flag.exists() and performed.action.description == "the door opens"
        during = target.registry.sightings.generation
    assert not target.flag.exists()
    assert any("door undone" in line for line in evidence.lines())
    # what the essential function did before the action (or during it) vouches for nothing after it
    assert before < during < target.registry.sightings.generation


def test_a_lab_action_needs_allow_config_changes_before_anything_runs(tmp_path: Path) -> None:
    target = _target(tmp_path, allow=False)
    with pytest.raises(NotRun, match="allow_config_changes"), lab_action(target, "door", Evidence()):  # type: ignore[arg-type]
        pass
    assert not target.flag.exists()


@pytest.mark.parametrize(("name", "says"), [("broken", "cannot run"), ("failing", "exited with 1")])
def test_a_lab_command_that_fails_is_an_error(tmp_path: Path, name: str, says: str) -> None:
    with pytest.raises(Inconclusive, match=says), lab_action(_target(tmp_path), name, Evidence()):  # type: ignore[arg-type]
        pass


def test_an_emulator_fault_without_an_emulator_is_not_run(tmp_path: Path) -> None:
    spec = load_target(_write(tmp_path, "safety: {allow_config_changes: true}\nassurance: {lab_actions: "
                                        "{door: {description: door, fault: tamper}}}\n"))
    with pytest.raises(NotRun, match="runs no emulator"), \
            lab_action(SimpleNamespace(spec=spec, name="bench", emulator=None, registry=Registry(spec)), "door",  # type: ignore[arg-type]
                       Evidence()):
        pass


def _snap(*records: str) -> Snapshot:
    return Snapshot("test", records)


def test_only_added_records_leave_the_log_unchanged() -> None:
    assert compare(_snap("a", "b"), _snap("a", "b", "c"))[0] == []


def test_a_missing_or_changed_record_is_lost() -> None:
    assert compare(_snap("a", "b", "c"), _snap("a", "c", "d"))[0] == ["b"]
    assert compare(_snap("a", "b"), _snap("a", "B"))[0] == ["b"]


def test_a_cleared_log_is_lost_even_when_as_many_new_records_follow() -> None:
    lost, note = compare(_snap("a", "b"), _snap("x", "y", "z"))
    assert lost == ["a", "b"] and "2 lost" in note


def test_the_oldest_records_may_roll_out_of_a_full_log() -> None:
    lost, note = compare(_snap("a", "b", "c"), _snap("b", "c", "d"))
    assert lost == [] and "rolled out" in note


def test_exported_lines_must_be_json_objects_with_the_fields() -> None:
    good, bad = parse_jsonl(('{"time": 1, "user": "u"}', '{"time": 2}', "plain text", "[1, 2]"), ["time", "user"])
    assert [r for _, r in good] == [{"time": 1, "user": "u"}] and bad == ['{"time": 2}', "plain text", "[1, 2]"]
