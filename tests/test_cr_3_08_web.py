"""CR 3.8 end to end: `pytest --target <file>` against the web interface in tests/webapp.py, strong and weak.

Each run is a subprocess whose target file points at a WebApp served from this process (https with a pinned
certificate, plain http beside it, and a console socket the run's liveness check asks). The strong device
must earn a pass on every check, the weak one a fail on every check.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.certs import make_cert
from tests.webapp import USERS, WebApp, console_socket, server_context

ROOT = Path(__file__).resolve().parent.parent
SUITE = "conformance/test_cr_3_08_session_integrity.py"

TARGET = """\
identity: {{vendor: Test, model: WebBench, firmware: "1"}}
component_type: embedded_device
security_level: 2
interfaces:
  console: {{url: "{console}", timeouts: {{connect_s: 1, reply_s: 1}}}}
  https:
    base_url: "{https}"
    certificate_sha256: "{fingerprint}"
    session_cookie: SID
    login:
      path: /login
      success_marker: "Logged in as"
      failure_marker: "Invalid user name or password"
      lockout_marker: "(?i)locked"
      logout: {{path: /logout}}
      session_probe: /status
      session_probe_marker: "Logged in as"
    csrf: {{source: form, name: csrf_token, page: /status}}
    protected_action: {{path: /config, fields: {{ntp_server: 127.0.0.1}}, done_marker: saved}}
    timeouts: {{connect_s: 2, reply_s: 2}}
  http:
    base_url: "{http}"
    session_cookie: SID
    login: {{path: /login, success_marker: "Logged in as", failure_marker: "Invalid"}}
accounts:
  admin: {{username: admin, password: "${{WEB_ADMIN_PASSWORD}}", role: admin}}
  viewer: {{username: viewer, password: "${{WEB_VIEWER_PASSWORD}}", role: viewer}}
policies:
  session: {{idle_timeout_s: 1.0}}
safety: {{allow_config_changes: true, max_rate_per_s: 1000}}
"""


@pytest.fixture(scope="module", params=["strong", "weak"])
def run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict]]:
    variant = request.param
    strong = variant == "strong"
    folder = tmp_path_factory.mktemp(f"web-{variant}")
    cert = make_cert(folder)
    tls = server_context(str(cert.cert), str(cert.key))
    with WebApp(strong=strong, tls=tls) as app, console_socket() as console:
        plain = WebApp(strong=strong, redirect_to=app.base_url if strong else None)
        try:
            fp = ":".join(f"{b:02X}" for b in __import__("hashlib").sha256(cert.der).digest())
            target = folder / f"web-{variant}.yaml"
            target.write_text(TARGET.format(console=console, https=app.base_url, http=plain.base_url, fingerprint=fp))
            env = {**os.environ, "WEB_ADMIN_PASSWORD": USERS["admin"][0], "WEB_VIEWER_PASSWORD": USERS["viewer"][0]}
            proc = subprocess.run([sys.executable, "-m", "pytest", SUITE, "--target", str(target), "--reports-dir",
                                   str(folder / "reports"), "--run-id", "r", "-q", "-p", "no:cacheprovider"],
                                  cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
        finally:
            plain.stop()
    run_dir = folder / "reports" / target.stem / "r"
    assert (run_dir / "matrix.json").is_file(), proc.stdout[-3000:] + proc.stderr[-3000:]
    results = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines() if line.strip()]
    tests = {r["test"].split("::")[-1]: r for r in results if r.get("test")}
    matrix = json.loads((run_dir / "matrix.json").read_text())
    if os.environ.get("KEEP_WEB_REPORTS"):
        print(run_dir)
    yield variant, {"tests": tests, "matrix": matrix, "out": proc.stdout[-4000:]}


def _verdicts(outcome: dict) -> dict[str, str]:
    return {name.split("[")[0]: r["verdict"] for name, r in outcome["tests"].items()}


def test_strong_device_passes_every_check(run: tuple[str, dict]) -> None:
    variant, outcome = run
    if variant != "strong":
        pytest.skip("the weak device is judged below")
    verdicts = _verdicts(outcome)
    assert set(verdicts.values()) == {"pass"}, (verdicts, outcome["out"])
    row = next(r for r in outcome["matrix"]["rows"] if r["id"] == "CR 3.8")
    assert row["verdict"] == "pass", row


def test_weak_device_fails_every_check(run: tuple[str, dict]) -> None:
    variant, outcome = run
    if variant != "weak":
        pytest.skip("the strong device is judged above")
    verdicts = _verdicts(outcome)
    assert set(verdicts.values()) == {"fail"}, (verdicts, outcome["out"])
    assert len(verdicts) == 7, verdicts
    row = next(r for r in outcome["matrix"]["rows"] if r["id"] == "CR 3.8")
    assert row["verdict"] == "fail", row
    reasons = " ".join(r.get("reason", "") for r in outcome["tests"].values())
    for said in ("sequence", "fixation", "after logout", "idle", "Secure", "CSRF", "plain http"):
        assert said in reasons, (said, reasons)


def test_no_password_or_session_id_in_the_report(run: tuple[str, dict]) -> None:
    _, outcome = run
    text = json.dumps(outcome["tests"]) + json.dumps(outcome["matrix"])
    for password, _role in USERS.values():
        assert password not in text
    assert textwrap.shorten(text, 10)  # the report is not empty
