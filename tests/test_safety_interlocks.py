"""Safety interlocks under fault injection: each case reproduces what a reviewer did to the harness and asserts
what must happen, judged at the device (what reached it, what its audit log says) or from the verdicts.

- a pinned SSH host key that is not the device's: every test over ssh ends as ERROR before a credential, a
  fuzz case or a storm is sent;
- a device whose control task never ran, or whose CAN node is silent from the start: fuzz, storm and
  exhaustion tests end as ERROR ("before the attack"), never FAIL;
- every `safety.allow_*` false: nothing but valid reads reaches the device (no write, no malformed frame, no
  flood);
- `allow_config_changes: false`: the role and session suites change nothing (the device's own audit log);
- a halt ends the attack it stopped, not the tests after it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import paramiko
import pytest
import yaml
from iec62443_harness import labs
from iec62443_harness.fixtures.target import TargetRun
from iec62443_harness.target import find_target_file, load_target

from tests.support import CountingDevice

ROOT = Path(__file__).resolve().parent.parent


def _run(target_file: Path, tmp_path: Path, select: str, timeout: float = 300) -> dict[str, list[tuple[str, str]]]:
    """Run the selected suites against `target_file`; the outcomes by test id: [(verdict, reason)]."""
    reports = tmp_path / "reports"
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--target", str(target_file),
                           "--reports-dir", str(reports), "-k", select, str(ROOT / "conformance")],
                          cwd=tmp_path, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    results = reports / target_file.stem / "latest" / "results.jsonl"
    assert results.is_file(), done.stdout[-3000:] + done.stderr[-2000:]
    outcomes: dict[str, list[tuple[str, str]]] = {}
    for line in results.read_text().splitlines():
        rec = json.loads(line)
        if rec.get("type") == "outcome" and rec.get("reason") != "deselected on the command line":
            outcomes.setdefault(rec["test"], []).append((rec["verdict"], rec.get("reason", "")))
    assert outcomes, done.stdout[-3000:]
    return outcomes


def _variant(tmp_path: Path, base: str, name: str, **changes: object) -> Path:
    """A copy of a shipped target file with some keys changed (dotted paths)."""
    data = yaml.safe_load(find_target_file(base).read_text())
    for dotted, value in changes.items():
        node = data
        *parents, last = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_a_wrong_host_key_pin_stops_every_ssh_test(tmp_path: Path) -> None:
    target = _variant(tmp_path, "sim-plc", "pinned", **{"interfaces.ssh.host_key_fingerprint": "SHA256:" + "A" * 43})
    outcomes = _run(target, tmp_path, "ssh and (symmetric_key or input_validation or denial_of_service)")
    assert len(outcomes) >= 3
    for test, results in outcomes.items():
        assert all(verdict == "error" for verdict, _ in results), (test, results)
        assert all("is not a pinned one" in reason and "nothing more is sent over ssh" in reason
                   for _, reason in results), (test, results)


@pytest.mark.parametrize(("fault", "select"), [
    ("stall", "(input_validation or denial_of_service or resource_management) and modbus_tcp"),
    ("can_off", "(input_validation or error_handling or denial_of_service) and can"),
])
def test_a_device_down_before_the_attack_is_an_error_not_a_fail(tmp_path: Path, fault: str, select: str) -> None:
    target = _variant(tmp_path, "sim-plc", "faulty", **{"emulator.faults": [fault]})  # no "can" in the name: -k
    outcomes = _run(target, tmp_path, select)
    assert len(outcomes) >= 3
    for test, results in outcomes.items():
        verdicts = [verdict for verdict, _ in results]
        assert "fail" not in verdicts and "pass" not in verdicts, (test, results)
        assert any("before the attack" in reason for _, reason in results), (test, results)


def test_nothing_but_reads_reaches_a_device_that_allows_nothing(tmp_path: Path) -> None:
    device = CountingDevice()
    try:
        target = tmp_path / "locked.yaml"
        target.write_text(f"""\
identity: {{vendor: Test, model: Counting device, firmware: "1"}}
component_type: embedded_device
security_level: 2
interfaces:
  modbus_tcp: {{host: 127.0.0.1, port: {device.port}, timeouts: {{connect_s: 1.0, reply_s: 0.5}}}}
essential_function:
  description: coil 0 toggles 1 s on / 2 s off
  via: [modbus_tcp]
  signal: {{kind: coil, address: 0, high_s: 1.0, low_s: 2.0}}
  max_gap_s: 2.6
safety:
  writable: {{coils: [[100, 110]], holding_registers: [[100, 110]]}}
""")
        outcomes = _run(target, tmp_path, "modbus_tcp")
    finally:
        device.close()
    assert outcomes
    reads = [f for f in device.frames if len(f) == 12 and f[7] in (1, 2, 3, 4)]
    others = [f.hex() for f in device.frames if f not in reads]
    assert not others, f"{len(others)} frames other than valid reads reached the device: {others[:5]}"
    assert len(device.frames) < 100, f"{len(device.frames)} requests: a flood reached the device"
    for test, results in outcomes.items():
        if any(word in test for word in ("input_validation", "error_handling", "denial_of_service",
                                         "resource_management", "deterministic_output")):
            assert all(verdict in ("not-run", "manual") for verdict, _ in results), (test, results)


def _audit(running: labs.Running, admin_env: str) -> list[dict]:
    ep = running.endpoints["ssh"]
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    client.connect(ep["host"], ep["port"], username="admin", password=running.secrets[admin_env], timeout=5,
                   allow_agent=False, look_for_keys=False)
    try:
        _, out, _ = client.exec_command("audit show 1000", timeout=5)
        text = out.read().decode()
    finally:
        client.close()
    return [{"line": line} for line in text.splitlines() if line.strip()]


def test_no_config_change_without_allow_config_changes(tmp_path: Path) -> None:
    running = labs.start("simplc", "sl2")
    try:
        data = yaml.safe_load(find_target_file("sim-plc").read_text())
        del data["emulator"]
        for name, fields in running.endpoints.items():
            if name in data["interfaces"]:
                data["interfaces"][name].update(fields)
        data["safety"]["allow_config_changes"] = False
        data["safety"]["allow_lifecycle"] = False  # else its image files must be exported too (checked at configure)
        target = tmp_path / "device.yaml"
        target.write_text(yaml.safe_dump(data))
        env = {k: v for k, v in running.secrets.items()}
        os.environ.update(env)  # the target file's ${SIMPLC_...} references, as a lab would export them
        try:
            outcomes = _run(target, tmp_path, "ssh and (authorization_enforcement or remote_session_termination)")
        finally:
            for key in env:
                os.environ.pop(key, None)
        changes = [r["line"] for r in _audit(running, "SIMPLC_ADMIN_PASSWORD")
                   if any(word in r["line"] for word in ("config_change", "password_change", "session_killed",
                                                         "user_add", "user_del", "account_"))]
    finally:
        running.stop()
    assert not changes, f"the device audited changes: {changes[:5]}"
    killed = [results for test, results in outcomes.items() if "remote_session_termination" in test]
    assert killed and all(v == "not-run" for results in killed for v, _ in results), killed


def test_a_halt_ends_with_the_test_it_stopped() -> None:
    spec = load_target(find_target_file("sim-plc"))
    run = TargetRun("sim-plc", find_target_file("sim-plc"), spec)
    run.begin_test()
    first = run.guard("modbus_tcp")
    first.halt("essential function lost")
    assert run.guard("modbus_tcp") is first and run.guard("modbus_tcp").halted
    run.begin_test()
    second = run.guard("modbus_tcp")
    assert second is not first and second.halted is None
    assert second.bucket is first.bucket  # one rate bucket per interface for the whole run


def test_safe_state_is_judged_right_at_a_low_rate_cap(tmp_path: Path) -> None:
    """At 20 requests/s the first read after the silence is the master talking again: the outputs are read in
    that one request, so a device that leaves its safe state on hearing the master still passes."""
    target = _variant(tmp_path, "sim-plc", "slow", **{"safety.max_rate_per_s": 20})
    outcomes = _run(target, tmp_path, "deterministic_output")
    assert [v for results in outcomes.values() for v, _ in results] == ["pass"], outcomes
