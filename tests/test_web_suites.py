"""The suites' web checks end to end: `pytest conformance -k http --target sim-plc --target sim-plc-insecure`, every
test over https or http judged against the emulated PLC's web UI (sl2: modern TLS, strong sessions, no plain http;
insecure: legacy TLS, weak sessions, the login over plain http too), each with the reason it must give. Quicker and
more pointed than the profiles' oracle run, which judges the rows (all their tests together).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TARGETS = ("sim-plc", "sim-plc-insecure")

# test name -> (verdict on sl2, verdict on insecure, what the insecure reason must say)
EXPECTED = {
    "test_tls_follows_the_policy[https]": ("pass", "fail", "TLS 1.0 is offered"),
    "test_tls_certificate_keys_meet_the_policy[https]": ("pass", "fail", "RSA key of 1024 bits"),
    "test_web_certificate_chain[https]": ("manual", "manual", "self-signed"),
    "test_notice_on_the_web_login_page[https]": ("pass", "fail", "is not the declared one"),
    "test_notice_on_the_web_login_page[http]": ("n/a", "fail", "is not the declared one"),
    "test_web_refuses_the_least_privileged_role_a_change[https]": ("pass", "fail", "from viewer"),
    "test_tls_protects_the_web_interface[https]": ("pass", "fail", "TLS 1.1 is offered"),
    "test_plain_http_carries_no_integrity_protection[http]": ("n/a", "fail", "no integrity protection"),
    "test_tls_encrypts_the_web_interface[https]": ("pass", "pass", ""),
    "test_no_login_over_plain_http[http]": ("n/a", "fail", "a login form sent over http"),
    "test_session_ids_cannot_be_guessed[https]": ("pass", "fail", "sequence"),
    "test_new_session_id_at_login[https]": ("pass", "fail", "fixation"),
    "test_session_id_dies_at_logout[https]": ("pass", "fail", "after logout"),
    "test_session_id_dies_when_idle[https]": ("pass", "fail", "idle"),
    "test_session_cookie_attributes[https]": ("pass", "fail", "lacks Secure, HttpOnly"),
    "test_forged_request_refused[https]": ("pass", "fail", "without its CSRF token"),
    "test_plain_http_gives_no_session[http]": ("n/a", "fail", "over plain http"),
    # FR1/FR2 over https (CR 1.1, 1.5, 1.10, 1.11, 2.5, 2.6, 2.7, 2.8)
    "test_web_serves_nothing_without_login[https]": ("pass", "pass", ""),
    "test_each_web_account_is_an_individual[https]": ("pass", "pass", ""),
    "test_password_alone_is_not_enough_on_the_web[https]": ("fail", "fail", "no second factor"),
    "test_default_credentials_refused[https]": ("pass", "fail", "admin/'admin'"),
    "test_web_login_obscures_the_password[https]": ("pass", "pass", ""),
    "test_same_reply_for_unknown_user_and_wrong_password[https]": ("pass", "fail", "Unknown user"),
    "test_reply_time_does_not_reveal_accounts[https]": ("pass", "fail", "reply time tells an unknown user"),
    "test_account_locks_and_unlocks_in_time[https]": ("pass", "fail", "still accepts the right password"),
    "test_administrator_unlocks[https]": ("pass", "fail", "did not lock"),
    "test_idle_web_session_ends[https]": ("pass", "fail", "still usable"),
    "test_web_session_ends_at_logout[https]": ("pass", "fail", "after the user logged out"),
    "test_administrator_ends_a_web_session[https]": ("not-run", "not-run", "shows no web session"),
    "test_web_sessions_beyond_the_limit_are_refused[https]": ("pass", "fail", "declares no limit"),
    "test_web_event_is_audited[https-login_ok]": ("pass", "pass", ""),
    "test_web_event_is_audited[https-login_failed]": ("pass", "fail", "no audit record of the failed web login"),
    "test_web_event_is_audited[https-access_refused]": ("pass", "not-run", "does not refuse"),
    "test_web_event_is_audited[https-config_change]": ("pass", "pass", ""),
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    reports = tmp_path_factory.mktemp("web-suites")
    args = [a for t in TARGETS for a in ("--target", t)]
    proc = subprocess.run([sys.executable, "-m", "pytest", "conformance", "-k", "http", *args, "--reports-dir",
                           str(reports), "--run-id", "web", "-q", "-p", "no:cacheprovider"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    out = {}
    for name in TARGETS:
        run_dir = reports / name / "web"
        assert (run_dir / "matrix.json").is_file(), proc.stdout[-3000:] + proc.stderr[-3000:]
        results = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines() if line.strip()]
        tests = {}
        for r in results:
            if r.get("test"):
                name_, _, param = r["test"].split("::")[-1].partition("[")
                web = re.search(r"-(https?(?:-[\w.]+)?)\]$", f"-{param}")  # the interface, and a parameter after it
                if web:  # deselected tests are listed too, as not-run
                    tests[f"{name_}[{web.group(1)}]"] = r
        out[name] = {"tests": tests, "matrix": json.loads((run_dir / "matrix.json").read_text()),
                     "text": (run_dir / "results.jsonl").read_text()}
    return out


@pytest.mark.parametrize("test", sorted(EXPECTED))
def test_each_web_check_judges_both_profiles(runs: dict[str, dict], test: str) -> None:
    sl2_want, insecure_want, said = EXPECTED[test]
    sl2, insecure = runs["sim-plc"]["tests"].get(test), runs["sim-plc-insecure"]["tests"].get(test)
    assert sl2 is not None and insecure is not None, sorted(runs["sim-plc"]["tests"])
    assert sl2["verdict"] == sl2_want, (sl2["verdict"], sl2.get("reason"))
    assert insecure["verdict"] == insecure_want, (insecure["verdict"], insecure.get("reason"))
    assert said in insecure.get("reason", ""), insecure.get("reason")


def test_every_web_test_is_expected(runs: dict[str, dict]) -> None:
    assert set(runs["sim-plc-insecure"]["tests"]) == set(EXPECTED)


def test_no_password_or_session_id_in_the_reports(runs: dict[str, dict]) -> None:
    for name in TARGETS:
        text = runs[name]["text"]
        assert "password=admin" not in text and '"password": "admin"' not in text
        assert "sid=1000" not in text  # the insecure device's sequential ids are shown as length and hash only
