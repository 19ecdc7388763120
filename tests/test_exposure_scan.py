"""CR 7.7 against a device the harness has never seen: a small Python TCP service alone at its own address in
a network namespace made here. The one with an undeclared port fails naming it (with its banner), its twin
without it passes; both full scans (TCP 1-65535 and the UDP probes) in one run of well under a minute. And the
pieces: the scanner's open/closed/silent classes, the pacing through the `scan` bucket, loopback refused."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from iec62443_harness.fixtures import exposure, scan
from iec62443_harness.fixtures.safety import Guard, RateBucket
from iec62443_harness.target import Safety, find_target_file, load_target

from tests.support import end_process

ROOT = Path(__file__).resolve().parent.parent
needs_netns = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("ip"),
                                 reason="network namespaces need root and iproute2")
DEVICE = textwrap.dedent("""\
    import socket, sys, threading
    address, ports = sys.argv[1], [int(p) for p in sys.argv[2:]]
    def serve(port):
        srv = socket.create_server((address, port))
        while True:
            conn, _ = srv.accept()
            conn.sendall(b"DEBUG shell v0.1 ready\\r\\n> " if port != 8080 else b"")
            conn.close()
    for port in ports:
        threading.Thread(target=serve, args=(port,), daemon=True).start()
    print("up", flush=True)
    threading.Event().wait()
""")
TARGET = """\
identity: {{vendor: Nobody, model: Unseen, firmware: "0"}}
component_type: embedded_device
security_level: 1
interfaces: {{}}
networks:
  lan: {{address: {address}, namespace: {ns}}}
services:
  - {{name: web, port: 8080}}
safety: {{rates: {{scan: 40000}}}}
scan: {{timeout_s: 0.5}}
"""


def _namespace(name: str, address: str) -> None:
    for argv in (["ip", "netns", "add", name], ["ip", "-n", name, "link", "set", "lo", "up"],
                 ["ip", "-n", name, "link", "add", "d0", "type", "veth", "peer", "name", "d1"],  # both ends inside
                 ["ip", "-n", name, "addr", "add", f"{address}/24", "dev", "d0"],
                 ["ip", "-n", name, "link", "set", "d0", "up"], ["ip", "-n", name, "link", "set", "d1", "up"]):
        subprocess.run(argv, check=True, capture_output=True, timeout=10)


@pytest.fixture
def devices(tmp_path: Path):
    made, procs = [], []
    try:
        for twin, ports in (("open", ["8080", "4444"]), ("closed", ["8080"])):
            name, address = f"h62-{twin}-{secrets.token_hex(3)}", "10.77.0.2"
            made.append(name)
            _namespace(name, address)
            proc = subprocess.Popen(["ip", "netns", "exec", name, sys.executable, "-c", DEVICE, address, *ports],
                                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            procs.append(proc)
            assert proc.stdout.readline().strip() == "up"
            (tmp_path / f"{twin}.yaml").write_text(TARGET.format(address=address, ns=name))
        yield tmp_path
    finally:
        for proc in procs:
            end_process(proc, 3)
        for name in made:
            subprocess.run(["ip", "netns", "delete", name], capture_output=True, timeout=10)


@needs_netns
def test_undeclared_port_fails_named_and_its_twin_passes(devices: Path):
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "conformance", "-k",
                           "cr_7_07", "--reports-dir", str(devices / "reports"), "--run-id", "scan",
                           "--target", str(devices / "open.yaml"), "--target", str(devices / "closed.yaml")],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    elapsed = time.monotonic() - started
    rows = {}
    for twin in ("open", "closed"):
        matrix = devices / "reports" / twin / "scan" / "matrix.json"
        assert matrix.is_file(), proc.stdout[-3000:] + proc.stderr[-2000:]
        rows[twin] = next(r for r in json.loads(matrix.read_text())["rows"] if r["id"] == "CR 7.7")
    assert rows["open"]["verdict"] == "fail", rows["open"]["reason"]
    assert "tcp/4444" in rows["open"]["reason"] and "DEBUG shell" in rows["open"]["reason"]
    assert "8080" not in rows["open"]["reason"]
    assert rows["closed"]["verdict"] == "pass", rows["closed"]["reason"]
    assert elapsed < 60, f"two full scans took {elapsed:.1f} s"
    print(f"\ntwo devices, TCP 1-65535 + UDP probes each, one pytest run: {elapsed:.1f} s")


def test_loopback_and_unspecified_are_shared():
    assert scan.shared_address("127.0.0.1") and scan.shared_address("127.3.4.5") and scan.shared_address("::1")
    assert not scan.shared_address("10.77.0.2")


def test_web_interfaces_are_places_and_declare_their_ports():
    spec = load_target(find_target_file("sim-plc-insecure")).with_endpoints({
        "modbus_tcp": {"host": "10.62.100.2", "port": 502}, "ssh": {"host": "10.62.100.2", "port": 22},
        "https": {"base_url": "https://10.62.100.2:443"}, "http": {"base_url": "http://10.62.100.2"}})
    own, shared = exposure.places(spec)
    assert [p.address for p in own] == ["10.62.100.2"] and not shared
    assert exposure.declared_tcp(spec, own[0]) == {22: "ssh", 502: "modbus", 443: "web", 80: "web-http",
                                                    23: "telnet"}
    elsewhere = exposure.Place("10.62.101.2", None, "networks.other")  # an interface's port is on its own host only
    assert exposure.declared_tcp(spec, elsewhere) == {23: "telnet"}
    web_only = spec.model_copy(update={"interfaces": spec.interfaces.model_copy(update={"modbus_tcp": None,
                                                                                       "ssh": None})})
    assert [(p.address, p.source) for p in exposure.places(web_only)[0]] == [("10.62.100.2",
                                                                              "interfaces.https.base_url")]


def test_scan_paces_through_the_scan_bucket():
    safety = Safety(max_rate_per_s=10, rates={"scan": 2000})
    assert safety.rate_for("scan") == 2000 and safety.rate_for("ssh") == 10
    guard = Guard(safety, "scan", RateBucket(safety.rate_for("scan")))
    started = time.monotonic()
    result = scan.tcp_connect_scan("127.0.0.1", 1, 400, guard, 0.5)  # loopback: only the pacing is looked at
    elapsed = time.monotonic() - started
    assert guard.bucket.taken == 400 and elapsed >= 400 / 2000 * 0.9 - 0.05 * 2000 / 2000
    assert result.closed + len(result.open) + result.silent == 400


def test_guesses_from_first_bytes():
    assert scan.guess_protocol(22, b"SSH-2.0-OpenSSH_9.2\r\n") == "ssh"
    assert scan.guess_protocol(23, b"\xff\xfd\x18\xff\xfd\x20") == "telnet (option negotiation)"
    assert scan.guess_protocol(2323, b"plc login: ") == "plain-text login prompt"
    assert scan.guess_protocol(21, b"220 ready\r\n") == "ftp or smtp greeting"
