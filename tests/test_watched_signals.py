"""Several ways to see the essential function (`essential_function.also`): the target model's checks, which one
the monitor takes when an interface is under attack, and what the evidence says about it."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from iec62443_harness.evidence import Evidence
from iec62443_harness.fixtures.drivers.errors import DriverError
from iec62443_harness.fixtures.monitor import _command_value, monitor_for
from iec62443_harness.fixtures.registry import Registry
from iec62443_harness.target import TargetSpec
from pydantic import ValidationError

from tests.support import ModbusLab

COIL = {"kind": "coil", "address": 0, "high_s": 0.2, "low_s": 0.4}


def spec(port: int, also: list[dict[str, Any]] | None = None, **extra: Any) -> TargetSpec:
    return TargetSpec.model_validate({
        "identity": {"vendor": "test", "model": "lab", "firmware": "1"},
        "component_type": "embedded_device", "security_level": 1,
        "interfaces": {"modbus_tcp": {"host": "127.0.0.1", "port": port}, **extra.pop("interfaces", {})},
        "accounts": extra.pop("accounts", {}),
        "essential_function": {"description": "coil", "via": ["modbus_tcp"], "max_gap_s": 1.0, "signal": COIL,
                               "also": also or []},
    })


@pytest.mark.parametrize(("also", "message"), [
    ({"via": "modbus_tcp", "signal": {"kind": "command", "command": "x", "pattern": "y", "period_s": 1}},
     "a command signal is seen over ssh, not modbus_tcp"),
    ({"via": "ssh", "signal": {"kind": "command", "command": "x", "pattern": "y", "period_s": 1}},
     "'ssh', which interfaces does not declare"),
    ({"via": "can", "signal": {"kind": "can_heartbeat", "can_id": 0x705, "period_s": 0.5},
      "endpoint": {"host": "127.0.0.1"}}, "endpoint is for modbus_tcp only"),
    ({"via": "console", "signal": COIL}, "a coil signal is seen over modbus_tcp or modbus_rtu, not console"),
])
def test_the_model_rejects_a_signal_no_channel_can_carry(also: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        spec(502, [also])


def test_a_command_signal_needs_an_account() -> None:
    command = {"via": "ssh", "signal": {"kind": "command", "command": "uptime", "pattern": r"(\d+)", "period_s": 1}}
    with pytest.raises(ValidationError, match="needs `account`"):
        spec(502, [command], interfaces={"ssh": {"host": "127.0.0.1", "port": 22}})
    ok = spec(502, [{**command, "account": "op"}], interfaces={"ssh": {"host": "127.0.0.1", "port": 22}},
              accounts={"op": {"username": "op", "password": "${OP_PASSWORD}", "role": "operator"}})
    assert [w.via for w in ok.essential_function.watched()] == ["modbus_tcp", "ssh"]


def test_a_command_value_is_its_first_group_or_the_match() -> None:
    assert _command_value(re.compile(r"cycles: (\d+)"), "state run\ncycles: 4711\n") == "4711"
    assert _command_value(re.compile(r"RUN|STOP"), "mode RUN") == "RUN"
    with pytest.raises(DriverError, match="does not match"):
        _command_value(re.compile(r"cycles: (\d+)"), "permission denied")


def test_the_monitor_watches_a_second_endpoint_rather_than_the_attacked_interface() -> None:
    with ModbusLab() as lab:
        registry = Registry(spec(lab.port, [{"via": "modbus_tcp", "signal": COIL, "max_gap_s": 0.9,
                                             "endpoint": {"host": "127.0.0.1", "port": lab.port}}]))
        evidence = Evidence()
        monitor = monitor_for(registry, evidence, attacked="modbus_tcp")
        assert monitor.via == f"modbus_tcp at 127.0.0.1:{lab.port}" and monitor.ef.max_gap_s == 0.9
        assert any("not over the attacked modbus_tcp" in line for line in evidence.lines())
        with monitor:
            monitor.wait_running()
            time.sleep(0.7)
        assert monitor.result is not None and monitor.result.ok and monitor.result.transitions >= 2
        assert registry.bucket("modbus_tcp", f"127.0.0.1:{lab.port}") is not registry.bucket("modbus_tcp")


def test_with_no_other_way_the_evidence_says_the_monitor_shares_the_attacked_channel() -> None:
    evidence = Evidence()
    monitor = monitor_for(Registry(spec(502)), evidence, attacked="modbus_tcp")
    assert monitor.via == "modbus_tcp"
    assert any("shares the attacked channel" in line and "essential_function.also" in line
               for line in evidence.lines())


def test_an_ssh_command_signal_watches_the_emulated_plc() -> None:
    """The coil as `read co 0 1` shows it over the management shell, run as an ordinary account: the way to see
    the function of a device whose only fieldbus is the one under attack."""
    from iec62443_harness.fixtures.target import TargetRun
    from iec62443_harness.target import WatchedSignal, find_target_file, load_target

    path = find_target_file("sim-plc")
    spec = load_target(path)
    also = [WatchedSignal.model_validate({
        "via": "ssh", "account": "viewer", "jitter_s": 0.6, "max_gap_s": 2.8,
        "signal": {"kind": "command", "command": "read co 0 1", "pattern": r"\b([01])\s*$", "period_s": 1.5}})]
    ef = spec.essential_function.model_copy(update={"via": ["modbus_rtu"], "also": also})
    run = TargetRun("sim-plc", path, spec.model_copy(update={"essential_function": ef}))
    run.start()
    try:
        evidence = Evidence()
        monitor = monitor_for(run.registry, evidence, attacked="modbus_rtu")
        assert monitor.via == "ssh"
        with monitor:
            monitor.wait_running()
            time.sleep(2.5)
    finally:
        run.stop()
    assert monitor.result is not None and monitor.result.ok and monitor.result.transitions >= 2, \
        monitor.result and monitor.result.summary()
    assert any("value = " in line for line in evidence.lines())
