"""The rate cap holds per interface, whoever sends: counted at the device, not in the harness.

A small Modbus TCP device of our own (a thread in this process) timestamps every request it receives. The
harness runs the CR 7.1, CR 7.1 RE(1) and CR 3.5 suites against it in a subprocess, with the target file's cap
at 20 requests/s and the essential function watched over the same (attacked) interface, so a storm or a fuzz
campaign, the monitor, the health check and a poller all send at once. No 1 s window may hold more than 20.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import CountingDevice

CAP = 20


TARGET = """\
identity: {{vendor: Test, model: Counting device, firmware: "1"}}
component_type: embedded_device
security_level: 1
interfaces:
  modbus_tcp: {{host: 127.0.0.1, port: {port}, timeouts: {{connect_s: 1.0, reply_s: 0.5}}}}
essential_function:
  description: coil 0 toggles 1 s on / 2 s off
  via: [modbus_tcp]
  signal: {{kind: coil, address: 0, high_s: 1.0, low_s: 2.0}}
  jitter_s: 0.2
  max_gap_s: 2.6
safety:
  allow_fuzzing: true
  allow_floods: true
  max_rate_per_s: {cap}
  storms: {{step_s: 1.0}}
  fuzz_budget: {{modbus_tcp: {{examples: 200, seconds: 3}}}}
"""


@pytest.fixture
def device():  # type: ignore[no-untyped-def]
    dev = CountingDevice()
    try:
        yield dev
    finally:
        dev.close()


def test_storms_fuzzing_monitor_and_poller_together_stay_under_the_cap(device: CountingDevice, tmp_path: Path) -> None:
    (tmp_path / "counting.yaml").write_text(TARGET.format(port=device.port, cap=CAP))
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--target",
                           str(tmp_path / "counting.yaml"), "--reports-dir", str(tmp_path / "reports"), "-k",
                           "denial_of_service or input_validation", "--seed", "1", str(root / "conformance")],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(root)})
    out = done.stdout[-3000:] + done.stderr[-2000:]
    assert "passed" in done.stdout or "failed" in done.stdout, out
    assert len(device.requests) > 3 * CAP, f"the suites sent only {len(device.requests)} requests: {out}"
    most, at = device.busiest_second()
    assert most <= CAP, f"{most} requests arrived within one second (from +{at:.2f} s), cap {CAP}/s: {out}"
