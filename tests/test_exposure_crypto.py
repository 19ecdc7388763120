"""The crypto suites (CR 1.9, CR 1.14, CR 4.3) against real OpenSSH servers on loopback ports: a weak
configuration (hmac-sha1, diffie-hellman-group14-sha1, ssh-rsa, CBC) fails each row naming every rejected
algorithm, a hardened one passes; and the reference judges single algorithms as the data file says."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from iec62443_harness.fixtures import crypto

from tests.support import end_process, free_port

ROOT = Path(__file__).resolve().parent.parent
WEAK = {"KexAlgorithms": "diffie-hellman-group14-sha1,curve25519-sha256@libssh.org",
        "HostKeyAlgorithms": "ssh-rsa,rsa-sha2-512", "Ciphers": "aes128-cbc,aes128-ctr",
        "MACs": "hmac-sha1,hmac-sha2-256"}
WEAK_NAMES = ("diffie-hellman-group14-sha1", "ssh-rsa", "aes128-cbc", "hmac-sha1")
HARDENED = {"KexAlgorithms": "curve25519-sha256,curve25519-sha256@libssh.org,diffie-hellman-group16-sha512",
            "HostKeyAlgorithms": "ssh-ed25519,rsa-sha2-512",
            "Ciphers": "chacha20-poly1305@openssh.com,aes256-gcm@openssh.com,aes128-ctr",
            "MACs": "hmac-sha2-256-etm@openssh.com,hmac-sha2-512-etm@openssh.com"}
TARGET = """\
identity: {{vendor: Test, model: sshd, firmware: "1"}}
component_type: embedded_device
security_level: 2
interfaces:
  ssh: {{host: 127.0.0.1, port: {port}, timeouts: {{connect_s: 3, reply_s: 3}}}}
accounts:
  admin: {{username: admin, password: "${{SSHD_ADMIN_PASSWORD}}", role: admin}}
"""
ROWS = ("CR 1.9", "CR 1.14", "CR 4.3")
needs_sshd = pytest.mark.skipif(not Path("/usr/sbin/sshd").exists() or not shutil.which("ssh-keygen"),
                                reason="OpenSSH server not installed (apt-get install openssh-server)")


def test_reference_judges_as_its_data_says():
    assert crypto.judge_algorithm("mac", "hmac-sha1-etm@openssh.com")  # SHA-1, even encrypt-then-MAC
    assert crypto.judge_algorithm("kex", "diffie-hellman-group-exchange-sha1")
    assert crypto.judge_algorithm("host key", "ssh-dss") and crypto.judge_algorithm("host key", "ssh-rsa")
    assert crypto.judge_algorithm("cipher", "aes256-cbc")
    assert crypto.judge_algorithm("cipher", "made-up-cipher@example.com")  # unknown: not acceptable
    for kind, name in (("kex", "ecdh-sha2-nistp256"), ("host key", "ecdsa-sha2-nistp256"),  # NIST curves pass
                       ("cipher", "aes128-ctr"), ("mac", "hmac-sha2-256"), ("kex", "mlkem768x25519-sha256")):
        assert not crypto.judge_algorithm(kind, name), name
    small = crypto.Inventory("SSH-2.0-x", (), ("rsa-sha2-256",), (), (),
                             {"rsa-sha2-256": crypto.HostKey("rsa-sha2-256", "ssh-rsa", 1024, "SHA256:x")})
    assert [str(f) for f in crypto.judge(small)] == ["rsa-sha2-256 (host key: 1024-bit RSA key (at least 2048))"]
    assert "version" in crypto.reference().label and "ssh-audit v3.9" in crypto.reference().label


def _sshd(folder: Path, options: dict[str, str]) -> tuple[subprocess.Popen, int]:
    folder.mkdir()
    for kind, extra in (("ed25519", []), ("rsa", ["-b", "2048"])):
        subprocess.run(["ssh-keygen", "-q", "-t", kind, *extra, "-N", "", "-f", str(folder / kind)], check=True)
    port = free_port()
    config = {"ListenAddress": f"127.0.0.1:{port}", "HostKey": str(folder / "ed25519"), "PidFile": "none",
              "UsePAM": "no", "StrictModes": "no", **options}
    text = "".join(f"{k} {v}\n" for k, v in config.items()) + f"HostKey {folder / 'rsa'}\n"
    (folder / "sshd_config").write_text(text)
    Path("/run/sshd").mkdir(exist_ok=True)
    proc = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", str(folder / "sshd_config")],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        probe = subprocess.run(["ssh-keyscan", "-T", "1", "-p", str(port), "127.0.0.1"], capture_output=True)
        if probe.stdout:
            return proc, port
        time.sleep(0.05)
    end_process(proc, 3)
    raise RuntimeError("sshd did not answer within 5 s")


@needs_sshd
def test_weak_openssh_fails_naming_each_algorithm_and_hardened_passes(tmp_path):
    servers = [_sshd(tmp_path / name, options) for name, options in (("weak", WEAK), ("hardened", HARDENED))]
    try:
        args = []
        for name, (_, port) in zip(("weak", "hardened"), servers, strict=True):
            (tmp_path / f"{name}.yaml").write_text(TARGET.format(port=port))
            args += ["--target", str(tmp_path / f"{name}.yaml")]
        started = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "conformance", "-k",
                               "cr_1_09 or cr_1_14 or cr_4_03", "--reports-dir", str(tmp_path / "reports"),
                               "--run-id", "crypto", *args], cwd=ROOT, capture_output=True, text=True, timeout=120,
                              env={**os.environ, "SSHD_ADMIN_PASSWORD": "not-a-real-password"})
        elapsed = time.monotonic() - started
    finally:
        for server, _ in servers:
            end_process(server, 3)
    rows = {}
    for name in ("weak", "hardened"):
        matrix = tmp_path / "reports" / name / "crypto" / "matrix.json"
        assert matrix.is_file(), proc.stdout[-3000:] + proc.stderr[-2000:]
        rows[name] = {r["id"]: r for r in json.loads(matrix.read_text())["rows"]}
    for rid in ROWS:
        weak, hardened = rows["weak"][rid], rows["hardened"][rid]
        assert weak["verdict"] == "fail", (rid, weak["reason"])
        missing = [n for n in WEAK_NAMES if n not in weak["reason"]]
        assert not missing, f"{rid} does not name {missing}: {weak['reason']}"
        assert "ssh-ed25519" not in weak["reason"] and "curve25519" not in weak["reason"]
        assert hardened["verdict"] == "pass", (rid, hardened["reason"])
    print(f"\ncrypto suites against two sshd targets: {elapsed:.1f} s")
