"""Suites run through a labgrid place: a real labgrid coordinator and exporter on 127.0.0.1 export the emulated
PLC's Modbus TCP endpoint and its serial console (through ser2net, as a bench host exports a serial port); the
harness acquires the place for the run (locked during it), takes the addresses from the place, and the place is
free afterwards, also after kill -9 of the harness (its watchdog releases it).

labgrid is installed apart from the harness (its pyserial fork would replace pyserial in .venv): from $LG_CLIENT's
folder when set, else a venv made once at .venv/labgrid (`pip install labgrid==26.*`, what the README says).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from iec62443_harness import labs
from iec62443_harness.errors import HarnessError
from iec62443_harness.labgrid import Place, Resource, endpoints, parse_show, with_place
from iec62443_harness.target import TargetSpec

from tests.support import end_process, free_port, wait_for

ROOT = Path(__file__).resolve().parents[1]
LABGRID_VENV = ROOT / ".venv" / "labgrid"
SUITES = ["conformance/test_cr_3_05_input_validation.py", "conformance/test_cr_1_12_system_use_notification.py"]
SER2NET = shutil.which("ser2net") or ("/usr/sbin/ser2net" if Path("/usr/sbin/ser2net").exists() else None)
needs_ser2net = pytest.mark.skipif(SER2NET is None, reason="ser2net is not installed: apt-get install ser2net "
                                "(tests/apt-packages.txt)")


def _labgrid_bin() -> Path:
    if os.environ.get("LG_CLIENT"):
        return Path(os.environ["LG_CLIENT"]).parent
    if not (LABGRID_VENV / "bin" / "labgrid-client").exists():
        subprocess.run([sys.executable, "-m", "venv", str(LABGRID_VENV)], check=True, timeout=120)
        subprocess.run([str(LABGRID_VENV / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check",
                        "labgrid==26.*"], check=True, timeout=600)
    return LABGRID_VENV / "bin"


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """The emulated PLC, a coordinator and an exporter exporting its Modbus TCP endpoint, and a place on it."""
    bindir = _labgrid_bin()
    work = tmp_path_factory.mktemp("labgrid")
    plc = labs.start("simplc", "sl2")
    procs: list[subprocess.Popen] = []
    switch = None
    try:
        mb = plc.endpoints["modbus_tcp"]  # its own address: loopback here, a namespace's address elsewhere
        # the console's pty on the network, raw TCP (stock pyserial's rfc2217 client waits in vain for ser2net's
        # answer to its modem-control option: that is what labgrid's pyserial fork fixes); no mDNS announcement
        serial_port = free_port()
        (work / "ser2net.yaml").write_text(textwrap.dedent(f"""\
            connection: &console
              accepter: tcp,127.0.0.1,{serial_port}
              connector: serialdev,{plc.endpoints['console']['url']},115200n81,local
              options: {{kickolduser: true, mdns: false}}
            """))
        procs.append(subprocess.Popen([SER2NET, "-n", "-u", "-c", str(work / "ser2net.yaml"), "-P",
                                       str(work / "ser2net.pid")],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        relay: list[str] = []  # the bench's switched outlet: a simple REST power switch, as labgrid drives one
        switch = _power_switch(relay)
        coordinator = f"127.0.0.1:{free_port()}"
        procs.append(subprocess.Popen([str(bindir / "labgrid-coordinator"), "-l", coordinator], cwd=work,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        (work / "exporter.yaml").write_text(textwrap.dedent(f"""\
            plc:
              modbus_tcp:
                cls: NetworkService
                address: "{mb['host']}"
                port: {mb['port']}
                username: modbus
              console:
                cls: NetworkSerialPort
                host: 127.0.0.1
                port: {serial_port}
                protocol: raw
              power:
                cls: NetworkPowerPort
                model: simplerest
                host: "http://127.0.0.1:{switch.server_address[1]}/relay/{{index}}/{{value}}"
                index: 0
            """))
        client = [str(bindir / "labgrid-client"), "-x", coordinator]
        place = f"plc-{os.getpid()}"

        def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
            return subprocess.run([*client, *args], capture_output=True, text=True, timeout=30, check=check)

        assert wait_for(lambda: run("places", check=False).returncode == 0, 30) is not None, "coordinator down"
        procs.append(subprocess.Popen([str(bindir / "labgrid-exporter"), "-c", coordinator, "-n", "bench1",
                                       str(work / "exporter.yaml")], cwd=work, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL))
        assert wait_for(lambda: "bench1/plc/NetworkSerialPort" in run("resources", check=False).stdout, 30) is not None
        run("-p", place, "create")
        run("-p", place, "add-match", "bench1/plc/NetworkService/modbus_tcp", "bench1/plc/NetworkSerialPort/console",
            "bench1/plc/NetworkPowerPort/power")
        target = work / "lab-plc.yaml"
        target.write_text(textwrap.dedent(f"""\
            schema_version: 1
            identity: {{vendor: Open 62443 Lab, model: SimPLC, firmware: "2.3.1"}}
            component_type: embedded_device
            security_level: 2
            labgrid: {{place: {place}, coordinator: "{coordinator}", client: "{bindir / 'labgrid-client'}"}}
            interfaces:
              modbus_tcp: {{unit_id: 1, timeouts: {{connect_s: 1.0, reply_s: 0.5}}}}
              console:
                login_prompt: "login: ?$"
                password_prompt: "[Pp]assword: ?$"
                shell_prompt: "[$#>] ?$"
                timeouts: {{connect_s: 1.0, reply_s: 2.0}}
            policies: {{banner: "Authorized use only. Activity is logged."}}
            safety:
              allow_fuzzing: true
              max_rate_per_s: 20000
              fuzz_budget: {{modbus_tcp: {{examples: 400, seconds: 3}}}}
            """))
        yield {"place": place, "run": run, "target": target, "work": work, "client": client,
               "coordinator": coordinator, "bindir": bindir, "relay": relay}
    finally:
        if switch is not None:
            switch.shutdown()
            switch.server_close()
        for proc in reversed(procs):
            end_process(proc, 5)
        plc.stop()


def _power_switch(relay: list[str]) -> ThreadingHTTPServer:
    """GET /relay/0/1 switches the outlet on, /relay/0/0 off (labgrid's simplerest model); the switchings kept."""

    class Switch(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            value = self.path.rstrip("/").rsplit("/", 1)[-1]
            if value in ("0", "1"):
                relay.append(value)
            body = (relay[-1] if relay else "1").encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Switch)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _holder(bench: dict) -> str | None:
    return parse_show(bench["run"]("-p", bench["place"], "show").stdout)[0]


def _harness(bench: dict, reports: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "pytest", *SUITES, "--target", str(bench["target"]),
                             "--reports-dir", str(reports), "-p", "no:cacheprovider", *extra],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@needs_ser2net
def test_a_suite_runs_through_a_place_locked_during_the_run_and_free_after(bench: dict, tmp_path: Path) -> None:
    assert _holder(bench) is None
    proc = _harness(bench, tmp_path, "-k", "modbus_tcp or console_login")
    held = wait_for(lambda: _holder(bench) is not None or proc.poll() is not None, 60)
    during = _holder(bench)
    out, _ = proc.communicate(timeout=240)
    assert held is not None and during is not None, out  # acquired while the suite ran
    acquired = next(line for line in out.splitlines() if f"labgrid place {bench['place']} acquired (" in line)
    assert all(f"{res}," in acquired or f"{res})" in acquired for res in
               ("console NetworkSerialPort", "modbus_tcp NetworkService", "power NetworkPowerPort")), acquired
    assert _holder(bench) is None, out  # released at the end
    run_dir = (tmp_path / "lab-plc" / "latest").resolve()
    outcomes = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()[1:]]
    by_interface = {o["interface"]: o for o in outcomes if o.get("type") == "outcome" and o["verdict"] != "not-run"}
    # the verdicts came from the device reached at the place's addresses: it answered the fuzz campaign over
    # Modbus TCP, and showed its notice on the console through the bench's serial port server
    fuzzed, console = by_interface["modbus_tcp"], by_interface["console"]
    assert fuzzed["verdict"] in ("pass", "fail", "manual") and any("cases" in ln for ln in fuzzed["evidence"]), fuzzed
    assert console["verdict"] == "pass", console


@needs_ser2net
def test_the_place_is_released_after_kill_9_of_the_harness(bench: dict, tmp_path: Path) -> None:
    proc = _harness(bench, tmp_path, "-k", "modbus_tcp", "--fuzz-seconds", "60")
    try:
        assert wait_for(lambda: _holder(bench) is not None, 60) is not None, "the harness never acquired the place"
        time.sleep(1.0)  # into the campaign
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        assert wait_for(lambda: _holder(bench) is None, 30) is not None, "the place stayed acquired"
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)


@needs_ser2net
def test_a_taken_place_refuses_the_run_on_one_line(bench: dict, tmp_path: Path) -> None:
    place = Place(bench["place"], coordinator=bench["coordinator"], client=str(bench["bindir"] / "labgrid-client"))
    place.acquire()  # someone else's run (same user here: labgrid says "already acquired")
    try:
        with pytest.raises(HarnessError, match=f"labgrid place {bench['place']}: labgrid-client acquire failed"):
            Place(bench["place"], coordinator=bench["coordinator"],
                  client=str(bench["bindir"] / "labgrid-client")).acquire()
    finally:
        place.release()
    assert _holder(bench) is None


@needs_ser2net
def test_the_places_power_port_is_the_recovery_action(bench: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")  # labgrid's REST power driver must reach the switch directly
    place = Place(bench["place"], coordinator=bench["coordinator"], client=str(bench["bindir"] / "labgrid-client"))
    place.acquire()
    try:
        command = place.power_command()
        assert command is not None and command.endswith(f"-p {bench['place']} power cycle")
        before = len(bench["relay"])
        # as TargetHealth runs a recovery.command: split, no shell
        done = subprocess.run(shlex.split(command), capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        assert bench["relay"][before:] == ["0", "1"]  # the outlet went off, then on again
    finally:
        place.release()


def test_resources_map_to_interface_addresses() -> None:
    found = endpoints([Resource("modbus_tcp", "NetworkService", {"address": "10.62.0.2", "port": 502}),
                       Resource("NetworkService", "NetworkService", {"address": "10.62.0.2", "port": 22}),
                       Resource("https", "NetworkService", {"address": "fe80::1", "port": 8443}),
                       Resource("NetworkSerialPort", "NetworkSerialPort", {"host": "bench1", "port": 3001}),
                       Resource("modbus_rtu", "NetworkSerialPort", {"host": "bench1", "port": 3002,
                                                                    "protocol": "raw"})])
    assert found == {"modbus_tcp": {"host": "10.62.0.2", "port": 502}, "ssh": {"host": "10.62.0.2", "port": 22},
                     "https": {"base_url": "https://[fe80::1]:8443"}, "console": {"url": "rfc2217://bench1:3001"},
                     "modbus_rtu": {"url": "socket://bench1:3002"}}


def _lab_spec(**interfaces: dict) -> TargetSpec:
    return TargetSpec.model_validate({
        "identity": {"vendor": "V", "model": "M", "firmware": "1"}, "component_type": "embedded_device",
        "security_level": 1, "labgrid": {"place": "bench3", "client": "/opt/labgrid/bin/labgrid-client"},
        "interfaces": interfaces})


def test_the_place_fills_what_the_file_leaves_out_and_its_power_port_recovers() -> None:
    place = Place("bench3", coordinator="coord:20408", client="/opt/labgrid/bin/labgrid-client")
    place.resources = [Resource("modbus_tcp", "NetworkService", {"address": "10.62.0.2", "port": 502}),
                       Resource("ssh", "NetworkService", {"address": "10.62.0.2", "port": 22}),
                       Resource("NetworkPowerPort", "NetworkPowerPort", {"model": "rest", "host": "pdu", "index": "3"})]
    spec = with_place(_lab_spec(modbus_tcp={}, ssh={"host": "192.0.2.7", "port": 2222}), place, "plc")
    assert (spec.interfaces.modbus_tcp.host, spec.interfaces.modbus_tcp.port) == ("10.62.0.2", 502)
    assert (spec.interfaces.ssh.host, spec.interfaces.ssh.port) == ("192.0.2.7", 2222)  # the file's own wins
    assert spec.recovery.command == ("/opt/labgrid/bin/labgrid-client -x coord:20408 -p bench3 power cycle")


def test_an_address_neither_gives_is_one_line_naming_the_place() -> None:
    place = Place("bench3", client="/opt/labgrid/bin/labgrid-client")
    place.resources = [Resource("modbus_tcp", "NetworkService", {"address": "10.62.0.2", "port": 502})]
    with pytest.raises(HarnessError, match="interfaces.console needs url, which neither the target file nor labgrid "
                                           "place bench3 gives"):
        with_place(_lab_spec(modbus_tcp={}, console={}), place, "plc")
    assert with_place(_lab_spec(modbus_tcp={}), place, "plc").recovery.command is None  # no power port, none
