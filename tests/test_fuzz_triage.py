"""Crash triage against a device nobody tuned the harness for: two defects in one fuzz group, one masking the
other, both recovered from by the device itself (tests/flawed_device.py).

Every campaign over five seeds reports both, each brought down to (about) the bytes the defect needs; the
fixed twin passes the same campaign; a target that declares its own recovery (`recovery.self_recovery_s`)
ends no test as ERROR after a defect trips; and the signatures and in-case reductions on their own.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from iec62443_harness.evidence import Evidence
from iec62443_harness.fixtures.fuzz.campaign import Campaign, budget_for
from iec62443_harness.fixtures.fuzz.channels import FUNCTION, STOPPED
from iec62443_harness.fixtures.fuzz.strategies import CanFrame
from iec62443_harness.fixtures.fuzz.triage import reductions, request_signature
from iec62443_harness.fixtures.outcomes import TargetUnavailable
from iec62443_harness.fixtures.target import TargetRun
from iec62443_harness.target import load_target

from tests.flawed_device import FlawedDevice, refuses, stalls, target_text

ROOT = Path(__file__).resolve().parent.parent
HEADER_NEEDS, STALL_NEEDS = 7, 8  # bytes each defect needs: the MBAP header; the header and function 43
SLACK = 3  # "at most a few bytes more than the defect needs"


def _run(device: FlawedDevice, tmp_path: Path, **budget: float) -> TargetRun:
    path = tmp_path / "flawed.yaml"
    path.write_text(target_text(device, **budget))  # type: ignore[arg-type]
    run = TargetRun("flawed", path, load_target(path))
    run.start()
    return run


@pytest.fixture(scope="module")
def flawed() -> Iterator[FlawedDevice]:
    device = FlawedDevice(refuse_s=0.5, stall_s=0.5)
    try:
        yield device
    finally:
        device.close()


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_both_defects_are_found_shrunk_and_verified(flawed: FlawedDevice, tmp_path: Path, seed: int) -> None:
    run = _run(flawed, tmp_path, shrink=60.0)  # (15-19 s spent on an idle machine; the rest is for a busy one)
    evidence = Evidence()
    result = Campaign(run, "modbus_tcp", evidence, budget=budget_for(run.spec, "modbus_tcp"), seed=seed).run()
    summary = result.summary()
    header = [f for f in result.findings if f.kind == STOPPED and refuses(f.cases[-1])]
    stall = [f for f in result.findings if f.kind == FUNCTION and stalls(f.cases[-1])]
    assert len(header) == 1 and len(stall) == 1, summary
    for finding, needs in ((header[0], HEADER_NEEDS), (stall[0], STALL_NEEDS)):
        assert finding.reproduced is True, summary
        assert len(finding.cases) == 1 and len(finding.cases[0]) <= needs + SLACK, summary
    assert header[0].signature == "length field below 2 (no function code)"
    assert len(result.findings) == 2, summary  # nothing else: the device has no third defect
    assert result.skipped > 0  # the known header was not sent again
    assert "FINDING" in "\n".join(evidence.lines())


def test_the_fixed_twin_passes_the_same_campaign(tmp_path: Path) -> None:
    twin = FlawedDevice(fixed=True)
    try:
        run = _run(twin, tmp_path)
        result = Campaign(run, "modbus_tcp", Evidence(), budget=budget_for(run.spec, "modbus_tcp"), seed=2).run()
    finally:
        twin.close()
    assert not result.findings, result.summary()
    assert result.cases > 5000 and result.recoveries == 0


def test_health_waits_for_a_device_that_comes_back_by_itself(flawed: FlawedDevice, tmp_path: Path) -> None:
    """The issue's symptom: one refusal of a few tenths of a second failed the 1 s health check for good."""
    run = _run(flawed, tmp_path)
    with socket.create_connection(("127.0.0.1", flawed.port), timeout=1) as sock:
        sock.sendall(bytes.fromhex("00000000000101"))  # the header defect: the listener refuses for 0.5 s
    time.sleep(0.05)
    assert run.health is not None
    run.health.before_test()  # waited, did not give up
    assert run.health.dead is None and not run.health.recovery_tried
    assert any("back by itself" in e.what for e in run.health.events)


def test_a_target_with_no_way_back_is_still_given_up_fast(flawed: FlawedDevice, tmp_path: Path) -> None:
    path = tmp_path / "flawed.yaml"
    path.write_text(target_text(flawed).replace("recovery: {self_recovery_s: 5.0}", ""))
    run = TargetRun("flawed", path, load_target(path))
    run.start()
    assert run.health is not None and not run.health.can_restore
    with socket.create_connection(("127.0.0.1", flawed.port), timeout=1) as sock:
        sock.sendall(bytes.fromhex("00000000000101"))
    time.sleep(0.05)
    with pytest.raises(TargetUnavailable, match="self_recovery_s"):
        run.health.before_test()
    time.sleep(0.6)  # (the device is back for the next test)


def test_a_self_recovering_target_has_no_errors_after_a_defect_trips(tmp_path: Path) -> None:
    """The suites through the plugin, as a lab runs them: CR 3.5 trips both defects, the tests after it
    find the device back by itself. No test ends as ERROR."""
    device = FlawedDevice(refuse_s=1.5, stall_s=1.5)
    try:
        path = tmp_path / "flawed.yaml"
        path.write_text(target_text(device, examples=150, shrink=60.0))
        done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--target", str(path),
                               "--reports-dir", str(tmp_path / "reports"), "--run-id", "r", "--seed", "4", "-k",
                               "input_validation or error_handling or resource_management",
                               str(ROOT / "conformance")],
                              cwd=tmp_path, capture_output=True, text=True, timeout=400,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    finally:
        device.close()
    out = done.stdout[-3000:] + done.stderr[-2000:]
    lines = (tmp_path / "reports" / "flawed" / "r" / "results.jsonl").read_text().splitlines()
    outcomes = [json.loads(line) for line in lines if json.loads(line)["type"] == "outcome"]
    errors = [(o["test"], o["reason"]) for o in outcomes if o["verdict"] == "error"]
    assert not errors, f"{errors}: {out}"
    cr35 = [o for o in outcomes if "test_cr_3_05" in o["test"] and o["interface"] == "modbus_tcp"]
    assert cr35 and cr35[0]["verdict"] == "fail", out
    assert "2 distinct finding(s)" in cr35[0]["reason"], out
    findings = [line for line in cr35[0]["evidence"] if "FINDING [modbus_tcp/" in line]
    assert len(findings) == 2 and "length field below 2" in findings[0] and "function lost" in findings[1], out
    assert len(device.trips) > 2
    later = [o for o in outcomes if o["interface"] == "modbus_tcp" and "test_cr_3_05" not in o["test"]]
    assert later and all(o["verdict"] in ("pass", "fail", "manual", "n/a") for o in later), out


# --- signatures and reductions on their own


@pytest.mark.parametrize(("case", "signature"), [
    ("000100000006010300000001", "function 0x03"),
    ("00010000000601", "frame shorter than its length field"),
    ("000100000001", "header cut to 6 bytes"),
    ("00010001000601030000000100", "protocol id not 0"),
    ("00010000000001", "length field below 2 (no function code)"),
    ("0001000001000103", "length field above 254"),
    ("00010000000601030000000100", "header cut to 1 bytes"),  # a whole request, then the broken rest
    ("000100000006010300000001" "00020000000001", "length field below 2 (no function code)"),
    ("000100000006010300000001" "000200000006012b0e010100", "2 requests in one segment"),
])
def test_modbus_tcp_request_signatures(case: str, signature: str) -> None:
    assert request_signature("modbus_tcp", bytes.fromhex(case), unit=1) == signature


def test_other_signatures() -> None:
    assert request_signature("modbus_tcp", bytes.fromhex("000100000006020300000001"), unit=1) == \
        "unit id not the device's"
    assert request_signature("modbus_rtu", bytes.fromhex("0103000000010000"), unit=1) == "CRC wrong"
    assert request_signature("can", CanFrame(0x605, bytes(8)), node_id=5) == "SDO command 0x00"
    assert request_signature("can", CanFrame(0x605, bytes(3)), node_id=5) == "SDO request of 3 bytes"
    assert request_signature("console", b"x") == "console input"


def test_modbus_tcp_reductions_try_the_header_alone_first() -> None:
    frame = bytes.fromhex("0042000000fe01") + bytes(253)
    candidates = list(reductions("modbus_tcp", frame))
    assert candidates[0] == frame[:7]
    assert candidates[1] == bytes.fromhex("00420000000101")  # the header saying so
    assert bytes.fromhex("00420000000301") + frame[7:9] in candidates  # the PDU cut, its length kept consistent
    assert all(len(c) < len(frame) for c in candidates if c[:2] == frame[:2])
    stream = bytes.fromhex("000100000006010300000001") + bytes(20)  # a request, then zeros: a header of length 0
    assert list(reductions("modbus_tcp", stream))[:2] == [bytes(20), stream[:12]]
    few = list(reductions("modbus_tcp", bytes.fromhex("000100000005f72b0eff73"), fields_only=True))
    assert len(few) <= 8 and bytes.fromhex("000100000002f72b") in few
