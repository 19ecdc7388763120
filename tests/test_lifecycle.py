"""The device-lifecycle suites (CR 3.2, 3.4, 3.10, 4.2, 7.3, 7.4, 7.6, 7.8) and what they stand on.

- the pieces, offline: derived images and backups, settings and inventory parsing, the `lifecycle:` model, file
  references, lab transfer commands, the SBOM reader;
- against one emulated PLC (insecure: it takes everything) driven as a lab's real device would be (addresses,
  credentials and vendor-kit files exported, a recovery.command that power-cycles it): without
  `safety.allow_lifecycle` the suites send nothing that changes it (its own audit log says so); with it, the
  backup, restore and purge suites leave the accounts, settings and files as they found them, and the firmware
  suites leave it running its original firmware with nothing staged.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import paramiko
import pytest
import yaml
from iec62443_harness import labs
from iec62443_harness.errors import HarnessError
from iec62443_harness.evidence import Evidence
from iec62443_harness.fixtures.lifecycle import (
    Lifecycle,
    changed_character,
    differences,
    flipped,
    lookup,
    parse_json_inventory,
    parse_json_settings,
    parse_text_inventory,
    parse_text_settings,
    same,
    sbom_components,
    truncated,
)
from iec62443_harness.fixtures.monitor import Sightings
from iec62443_harness.fixtures.shell import CHANGES, ManagementShell, lifecycle_changes
from iec62443_harness.target import TargetSpec, find_target_file, load_target, resolve_file

ROOT = Path(__file__).resolve().parent.parent
SUITES = "3_04 or 3_10 or 3_02 or 4_02 or 7_03 or 7_04 or 7_06 or 7_08"
CHANGED = ("file_upload", "file_delete", "firmware_apply", "script_run", "system_restart", "backup_create",
           "backup_restore", "purge", "config_change", "user_add", "user_del", "write ")


# --- derived files


def test_a_flipped_image_differs_in_one_bit() -> None:
    data = bytes(range(256)) * 4
    out, at = flipped(data)
    assert len(out) == len(data) and at == len(data) // 2
    assert [i for i in range(len(data)) if out[i] != data[i]] == [at]
    assert out[at] ^ data[at] == 1
    assert truncated(data) == data[:512]


def test_a_changed_character_keeps_its_kind() -> None:
    text = b'HEAD 1\n{"a": "x9", "b": "cafe"}\nintegrity sha256 0a1f\n'
    end, at = changed_character(text, "end")
    assert at == text.rindex(b"f") and end[at:at + 1] == b"a"  # a hex letter for a hex letter: still hex
    middle, at = changed_character(text, "middle")
    assert at >= len(text) // 2 and chr(middle[at]).isalnum() and middle[at] != text[at]
    assert sum(a != b for a, b in zip(middle, text, strict=True)) == 1
    binary, at = changed_character(b"\x00\x01\x02\x03", "end")
    assert binary != b"\x00\x01\x02\x03" and len(binary) == 4


# --- settings and inventories


def test_settings_reports_parse_to_the_same_paths() -> None:
    as_json = parse_json_settings('{"security": {"lockout": 3, "weak": false, "banner": null}, "n": {"x": 1.0}}')
    as_text = parse_text_settings("[security]\nlockout = 3\nweak = false\nbanner: none\n[n]\nx = 1.0\nnoise line\n")
    assert set(as_json) == set(as_text) == {"security.lockout", "security.weak", "security.banner", "n.x"}
    assert not differences(as_json, as_text, [])
    assert lookup(as_text, "lockout") == ("security.lockout", "3")
    assert same("2.0", 2) and same(True, "true") and not same("3", 4)
    assert differences({"a": 1, "t": 5}, {"a": 2, "t": 6}, ["^t$"]) == ["a: '1' -> '2'"]
    assert parse_json_settings("unknown option '--json'") is None
    assert parse_json_settings("[1, 2]") is None


def test_inventories_parse() -> None:
    assert parse_json_inventory('[{"name": "fw", "version": "2.3.1"}]') == {"fw": "2.3.1"}
    assert parse_json_inventory('{"components": [{"name": "a", "version": "1"}]}') == {"a": "1"}
    assert parse_json_inventory('["fw"]') is None
    assert parse_text_inventory("fw  2.3.1  firmware\nheader line\nlib 0.9.4-dev x\n") == {"fw": "2.3.1",
                                                                                          "lib": "0.9.4-dev"}


def test_the_sbom_is_read_with_cyclonedx(tmp_path: Path) -> None:
    sbom = tmp_path / "sbom.json"
    sbom.write_text(json.dumps({
        "bomFormat": "CycloneDX", "specVersion": "1.5", "version": 1,
        "metadata": {"component": {"type": "device", "name": "Dev", "version": "1.0", "bom-ref": "dev"}},
        "components": [{"type": "library", "name": "lib", "version": "2.0", "bom-ref": "lib",
                        "components": [{"type": "library", "name": "inner", "version": "3", "bom-ref": "in"}]}]}))
    assert sbom_components(sbom) == ("Dev 1.0", {"lib": "2.0", "inner": "3"})
    sbom.write_text("not json")
    with pytest.raises(HarnessError, match="not a CycloneDX JSON document"):
        sbom_components(sbom)


# --- the model


def _spec(**lifecycle: object) -> dict:
    data = yaml.safe_load(find_target_file("sim-plc").read_text())
    data["lifecycle"] = {**data["lifecycle"], **lifecycle}
    return data


def test_the_shipped_targets_declare_the_lifecycle() -> None:
    for name in ("sim-plc", "sim-plc-sl1", "sim-plc-insecure"):
        spec = load_target(find_target_file(name))
        assert spec.safety.allow_lifecycle and spec.lifecycle is not None
        assert spec.lifecycle.update.images.authentic.version == "2.4.0"
    example = load_target(ROOT / "targets" / "examples" / "plc01.yaml")
    assert example.lifecycle is not None and not example.safety.allow_lifecycle
    for name in ("qemu-plc", "qemu-plc-weak"):
        assert load_target(find_target_file(name)).lifecycle is None


def test_the_model_checks_the_lifecycle_section() -> None:
    TargetSpec.model_validate(_spec())
    data = _spec(purge={"operation": "factory_reset", "done": "ok"})
    with pytest.raises(ValueError, match="lifecycle.purge.operation names operation 'factory_reset'"):
        TargetSpec.model_validate(data)
    data = _spec(inventory={"sbom": "/tmp/sbom.json"})
    with pytest.raises(ValueError, match="sbom"):
        TargetSpec.model_validate(data)
    data = _spec()
    data["lifecycle"]["update"]["images"]["authentic"] = {"file": "${X}"}
    with pytest.raises(ValueError, match="authentic needs its version"):
        TargetSpec.model_validate(data)
    with pytest.raises(ValueError, match="method command needs put"):
        TargetSpec.model_validate(_spec(transfer={"method": "command"}))
    unsafe = {k: v for k, v in _spec().items() if k != "safety"}
    assert TargetSpec.model_validate(unsafe).safety.allow_lifecycle is False


def test_lifecycle_operations_are_never_a_side_effect() -> None:
    spec = load_target(find_target_file("sim-plc"))
    changes = lifecycle_changes(spec)
    assert {"firmware_apply", "system_restart", "script_run", "backup_create", "backup_restore",
            "system_purge"} <= changes
    assert not changes & {"firmware_show", "config_show", "config_show_json", "inventory", "inventory_json"}
    assert {"firmware_apply", "system_purge", "backup_restore"} <= CHANGES  # CR 3.7 and 2.1 leave them alone



def test_a_changing_shell_operation_forgets_the_function_seen_before() -> None:
    """Whoever runs it (a suite's shell or the lifecycle driver): after a change, the essential function must be
    seen anew before an attack may start (fixtures.monitor.Sightings)."""
    spec = load_target(find_target_file("sim-plc"))
    allowed = SimpleNamespace(require=lambda _: None, check_write=lambda *_: None)
    target = SimpleNamespace(spec=spec, registry=SimpleNamespace(sightings=Sightings()), guard=lambda _: allowed)
    sent = []

    class Session:
        def __enter__(self):  # type: ignore[no-untyped-def]
            return self

        def __exit__(self, *exc: object) -> None:
            pass

        def run(self, command: str, timeout: float | None = None):  # type: ignore[no-untyped-def]
            sent.append(command)
            return SimpleNamespace(output="ok", exit_status=0)

    shell = ManagementShell(target, SimpleNamespace(session=lambda *_: Session()))  # type: ignore[arg-type]
    creds = SimpleNamespace(username="u", password="p")
    shell.run(creds, "config_show")  # type: ignore[arg-type]
    assert target.registry.sightings.generation == 0
    shell.run(creds, "config_set", key="k", value="v")  # type: ignore[arg-type]
    assert target.registry.sightings.generation == 1
    assert sent == ["config show", "config set k v"]


def test_file_references_resolve_without_redaction(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from iec62443_harness.evidence import redact

    image = tmp_path / "fw.bin"
    image.write_bytes(b"x")
    monkeypatch.setenv("LAB_FW", str(image))
    assert resolve_file("${LAB_FW}", "images.authentic") == image
    assert resolve_file("${KIT_FW}", "images.authentic", {"KIT_FW": str(image)}) == image
    assert redact(str(image)) == str(image)
    with pytest.raises(HarnessError, match="needs environment variable LAB_NONE"):
        resolve_file("${LAB_NONE}", "images.older")
    monkeypatch.setenv("LAB_GONE", str(tmp_path / "gone.bin"))
    with pytest.raises(HarnessError, match="not a readable file"):
        resolve_file("${LAB_GONE}", "images.older")


def test_a_lab_transfer_command_puts_gets_and_removes(tmp_path: Path) -> None:
    device = tmp_path / "device"
    (device / "update").mkdir(parents=True)
    data = _spec(transfer={"method": "command", "put": f"cp {{file}} {device}{{path}}",
                           "get": f"cp {device}{{path}} {{file}}", "remove": f"rm {device}{{path}}"})
    spec = TargetSpec.model_validate(data)
    lc = Lifecycle(SimpleNamespace(spec=spec), None, Evidence())
    path = lc.put(b"image", "/update/", "fw.bin")
    assert path == "/update/fw.bin" and (device / "update" / "fw.bin").read_bytes() == b"image"
    assert lc.get(path) == b"image"
    assert lc.remove(path) == "removed" and not (device / "update" / "fw.bin").exists()
    assert lc.get(path) is None
    lc.restore()  # the put's removal is registered, and already done


# --- against an emulated PLC driven like a real device


class PowerSwitch:
    """What a lab's recovery.command reaches: one connection power-cycles the emulator and copies its new vendor
    kit over the paths the target file's variables name (a real device's kit does not change)."""

    def __init__(self, running: labs.Running, kit: dict[str, Path]) -> None:
        self.running, self.kit, self.cycles = running, kit, 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            with conn:
                self.running.restart()
                self.cycles += 1
                copy_kit(self.running, self.kit)
                conn.sendall(b"cycled\n")

    def command(self) -> str:
        return (f"{sys.executable} -c \"import socket; s = socket.create_connection(('127.0.0.1', {self.port}), "
                "timeout=30); s.settimeout(30); s.recv(16)\"")

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.sock.close()


def copy_kit(running: labs.Running, kit: dict[str, Path]) -> None:
    for var, path in running.files.items():
        shutil.copyfile(path, kit[var])


def device_target(running: labs.Running, folder: Path, switch: PowerSwitch, allow: bool) -> Path:
    """sim-plc-insecure as a lab would write it for this device: Modbus TCP and SSH at its addresses (the ptys
    move with a power cycle), the essential function over Modbus TCP, the power switch as recovery.command."""
    data = yaml.safe_load(find_target_file("sim-plc-insecure").read_text())
    del data["emulator"]
    data["interfaces"] = {name: {**data["interfaces"][name], **running.endpoints[name]}
                          for name in ("modbus_tcp", "ssh")}
    data["essential_function"]["via"] = ["modbus_tcp"]
    data["safety"]["allow_lifecycle"] = allow
    data["recovery"] = {"command": switch.command(), "wait_s": 20}
    path = folder / f"device-{'allowed' if allow else 'locked'}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def run_suites(target: Path, folder: Path, select: str, env: dict[str, str]) -> dict[str, str]:
    reports = folder / "reports"
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--target", str(target),
                           "--reports-dir", str(reports), "-k", select, str(ROOT / "conformance")],
                          cwd=folder, capture_output=True, text=True, timeout=300,
                          env={**os.environ, **env, "PYTHONPATH": str(ROOT)})
    results = reports / target.stem / "latest" / "results.jsonl"
    assert results.is_file(), done.stdout[-3000:] + done.stderr[-2000:]
    outcomes = {}
    for line in results.read_text().splitlines():
        rec = json.loads(line)
        if rec.get("type") == "outcome" and rec.get("reason") != "deselected on the command line":
            outcomes[rec["test"].split("::")[-1]] = f"{rec['verdict']}: {rec.get('reason', '')}"
    assert outcomes, done.stdout[-3000:]
    return outcomes


class Device:
    """The emulated PLC's own view, read over SSH and SFTP as its administrator."""

    def __init__(self, running: labs.Running) -> None:
        self.running = running

    def __enter__(self) -> Device:
        ep = self.running.endpoints["ssh"]
        self.client = paramiko.SSHClient()
        self.client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        self.client.connect(ep["host"], ep["port"], username="admin", timeout=5, allow_agent=False,
                            password=self.running.secrets["SIMPLC_ADMIN_PASSWORD"], look_for_keys=False)
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.close()

    def run(self, command: str) -> str:
        _, out, _ = self.client.exec_command(command, timeout=5)
        return out.read().decode()

    def files(self, folder: str) -> list[str]:
        with self.client.open_sftp() as sftp:
            return sorted(sftp.listdir(folder))

    def state(self) -> dict[str, object]:
        """What a run must leave as it found it."""
        settings = json.loads(json.dumps(parse_text_settings(self.run("config show"))))
        return {"firmware": self.run("firmware show").strip(), "accounts": self.run("user list"),
                "settings": settings, "register 150": self.run("read hr 150").strip(),
                "update": self.files("/update"), "backup": self.files("/backup")}


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    folder = tmp_path_factory.mktemp("lifecycle")
    running = labs.start("simplc", "insecure")
    kit = {var: folder / Path(path).name for var, path in running.files.items()}
    copy_kit(running, kit)
    switch = PowerSwitch(running, kit)
    env = {**running.secrets, **{var: str(path) for var, path in kit.items()}}
    try:
        yield SimpleNamespace(running=running, folder=folder, switch=switch, env=env)
    finally:
        switch.close()
        running.stop()


@pytest.mark.timeout(300)
def test_without_allow_lifecycle_nothing_changes_the_device(lab) -> None:  # type: ignore[no-untyped-def]
    with Device(lab.running) as device:
        before = device.state()
        marker = len(device.run("audit show 1000").splitlines())
    outcomes = run_suites(device_target(lab.running, lab.folder, lab.switch, allow=False), lab.folder, SUITES, lab.env)
    with Device(lab.running) as device:
        after = device.state()
        records = device.run("audit show 1000").splitlines()[marker:]
    changes = [r for r in records if any(f" {word}" in r for word in CHANGED)]
    assert not changes, f"the device audited changes: {changes[:5]}"
    assert after == before
    assert lab.switch.cycles == 0
    reads = ("test_settings_match", "test_settings_report_is_machine", "test_inventory", "test_shared_memory",
             "test_erase_is_verified", "test_version_of_code_protection")
    for test, outcome in outcomes.items():
        if not test.startswith(reads):
            assert outcome.startswith("not-run:") and "safety.allow_lifecycle" in outcome, (test, outcome)
    assert len(outcomes) >= 13, outcomes


@pytest.mark.timeout(300)
def test_the_suites_leave_the_device_as_they_found_it(lab) -> None:  # type: ignore[no-untyped-def]
    target = device_target(lab.running, lab.folder, lab.switch, allow=True)
    with Device(lab.running) as device:
        before = device.state()
    outcomes = run_suites(target, lab.folder, "4_02 or 7_03 or 7_04", lab.env)  # no power cycle in these
    assert lab.switch.cycles == 0
    with Device(lab.running) as device:
        assert device.state() == before
    assert outcomes["test_purge_leaves_nothing_of_the_run[device-allowed-ssh]"].startswith("fail: after system_purge")
    assert outcomes["test_modified_backup_is_refused[device-allowed]"].startswith("fail: the device restores")
    outcomes = run_suites(target, lab.folder, "3_04 or 3_10 or 3_02", lab.env)
    assert lab.switch.cycles >= 5, outcomes  # every image the insecure device staged was undone by a power cycle
    with Device(lab.running) as device:
        state = device.state()
    assert state["firmware"] == "running 2.3.1", state  # the original firmware, nothing pending
    assert state["update"] == [] and state["register 150"] == before["register 150"]
    errors = {test: outcome for test, outcome in outcomes.items() if outcome.startswith("error")}
    assert not errors, errors
    assert outcomes["test_damaged_images_are_refused[device-allowed]"].startswith("fail: the device takes damaged")
    assert outcomes["test_authentic_update_is_installed[device-allowed]"].startswith("pass")


def test_a_real_device_names_its_files_before_the_run(tmp_path: Path) -> None:
    data = yaml.safe_load(find_target_file("sim-plc").read_text())
    del data["emulator"]
    for name, address in {"modbus_tcp": {"host": "127.0.0.1", "port": 1502}, "modbus_rtu": {"url": "/dev/null"},
                          "can": {"channel": "/dev/null"}, "ssh": {"host": "127.0.0.1", "port": 1022},
                          "console": {"url": "/dev/null"},
                          "https": {"base_url": "https://127.0.0.1:1443"}}.items():
        data["interfaces"][name].update(address)
    target = tmp_path / "device.yaml"
    target.write_text(yaml.safe_dump(data))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIMPLC_")}
    env.update({f"SIMPLC_{who}_PASSWORD": "x" for who in ("ADMIN", "ENGINEER", "OPERATOR", "VIEWER", "LOCKTEST",
                                                         "PWTEST")})
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--collect-only", "-q",
                           "--target", str(target), str(ROOT / "conformance")], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, env={**env, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 4, done.stdout[-2000:]
    assert "lifecycle.update.images.authentic.file needs environment variable SIMPLC_FW_AUTHENTIC" in done.stderr
