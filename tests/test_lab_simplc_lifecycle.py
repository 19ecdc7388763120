"""The emulated PLC leaves no password on disk, however it ends: the launcher takes the ready JSON through a
pipe, and the device removes its run directory on SIGTERM, SIGINT and its parent's death (even SIGKILL)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from iec62443_harness import labs

pytestmark = pytest.mark.timeout(60)


def group_alive(pid: int) -> bool:
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return False
    return True


def files_holding(root: Path, secrets: list[str]) -> list[Path]:
    """Every regular file under `root` that contains one of `secrets`."""
    found = []
    for path in root.rglob("*") if root.is_dir() else ():
        try:
            if path.is_file() and path.stat().st_size < 64 << 20:
                data = path.read_bytes()
                if any(secret.encode() in data for secret in secrets):
                    found.append(path)
        except OSError:
            continue  # gone meanwhile
    return found


def test_no_password_on_disk_while_running() -> None:
    running = labs.start("simplc", "sl1")
    try:
        run_dir = Path(running.control).parent
        assert run_dir.is_dir()
        assert files_holding(run_dir, list(running.secrets.values())) == []
        assert not list(run_dir.glob("ready*"))
    finally:
        running.stop()
    assert not run_dir.exists()


def test_harness_killed_with_sigkill_leaves_no_password_and_no_run_dir() -> None:
    code = ("import json, os, signal\n"
            "from iec62443_harness import labs\n"
            "r = labs.start('simplc', 'sl2')\n"
            "print(json.dumps({'pid': r.pid, 'control': r.control, 'secrets': r.secrets}), flush=True)\n"
            "os.kill(os.getpid(), signal.SIGKILL)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-500:]
    info = json.loads(proc.stdout.splitlines()[-1])
    pid, run_dir, secrets = info["pid"], Path(info["control"]).parent, list(info["secrets"].values())
    try:
        deadline = time.monotonic() + 8
        while (group_alive(pid) or run_dir.exists()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not group_alive(pid), "the device outlived its harness"
        assert not run_dir.exists(), f"the run dir stayed: {sorted(p.name for p in run_dir.iterdir())}"
        leftovers = [p for d in Path(tempfile.gettempdir()).glob("simplc-*") for p in files_holding(d, secrets)]
        assert leftovers == []
    finally:
        if group_alive(pid):
            os.killpg(pid, signal.SIGKILL)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_foreground_ready_file_removed_on_exit(tmp_path: Path, sig: signal.Signals) -> None:
    ready = tmp_path / "ready.json"
    proc = subprocess.Popen([sys.executable, "-m", "iec62443_harness.labs.simplc", "--profile", "sl1",
                             "--ready-file", str(ready)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while not ready.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.02)
        info = json.loads(ready.read_text())
        assert oct(ready.stat().st_mode & 0o777) == "0o600"
        own_dir = Path(info["control"]).parent
        assert own_dir.is_dir()
        proc.send_signal(sig)
        assert proc.wait(8) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
    assert not ready.exists()
    assert not own_dir.exists()
    assert list(tmp_path.iterdir()) == []
