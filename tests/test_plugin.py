"""The pytest plugin end to end, in a subprocess per run: bad input gives one line, verdicts are recorded
as tests end, every catalogue row lands in the matrix, and a run killed with SIGKILL is not lost."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from iec62443_harness.catalogue import load_catalogue

DEVICELESS = """\
identity: {vendor: Test, model: Bench, firmware: "1"}
component_type: embedded_device
security_level: 2
interfaces: {}
"""

SUITE = '''\
import time
import pytest
from iec62443_harness.fixtures.outcomes import manual, not_applicable, not_run

@pytest.mark.judges("CR 1.1")
def test_observed(target, evidence):
    evidence.add("bench", "observed the thing")
    assert target.spec.security_level == 2

@pytest.mark.judges("CR 1.12")
def test_failing(target):
    assert "banner" == "", "no banner before login"

@pytest.mark.judges("CR 1.5 RE(1)")
def test_manual(target):
    manual("hardware protection cannot be seen from outside", ["open the enclosure", "check the TPM"])

@pytest.mark.judges("CR 2.1")
def test_broken(target):
    raise ConnectionResetError("peer reset")

@pytest.mark.judges("CR 2.2")
def test_na(target):
    not_applicable("no wireless")

@pytest.mark.judges("CR 2.5")
def test_not_allowed(target):
    not_run("floods are not allowed (safety.allow_floods)")

@pytest.mark.judges("CR 2.6")
def test_slow(target):
    time.sleep(float(__import__("os").environ.get("SLOW_S", "0")))
'''


def run(cwd: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})})


@pytest.fixture
def bench(tmp_path: Path) -> Path:
    (tmp_path / "bench.yaml").write_text(DEVICELESS)
    (tmp_path / "test_suite.py").write_text(SUITE)
    return tmp_path


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert "Traceback" not in out, out
    errors = [ln for ln in out.splitlines() if ln.startswith("ERROR:")]
    assert len(errors) == 1, out
    return errors[0]


def test_unknown_target_lists_available(bench: Path) -> None:
    line = one_line_error(run(bench, "--target", "nosuchplc", "test_suite.py"))
    assert "unknown target 'nosuchplc'" in line and "sim-plc" in line


def test_target_file_that_does_not_parse(bench: Path) -> None:
    (bench / "broken.yaml").write_text("identity: {vendor: [unclosed\n")
    line = one_line_error(run(bench, "--target", "broken.yaml", "test_suite.py"))
    assert "does not parse" in line and "line" in line


def test_unknown_key_is_named_with_the_file(bench: Path) -> None:
    (bench / "typo.yaml").write_text(DEVICELESS + "safety: {allow_writes: false, alow_floods: true}\n")
    line = one_line_error(run(bench, "--target", "typo.yaml", "test_suite.py"))
    assert "typo.yaml" in line and "safety.alow_floods" in line and "unknown key" in line


def test_missing_credential_variable_is_named(bench: Path) -> None:
    (bench / "creds.yaml").write_text(DEVICELESS + 'accounts:\n  admin: {username: admin, password: '
                                      '"${BENCH_ADMIN_PASSWORD_UNSET}", role: admin}\n')
    line = one_line_error(run(bench, "--target", "creds.yaml", "test_suite.py"))
    assert "BENCH_ADMIN_PASSWORD_UNSET" in line and "export" in line


def test_literal_password_is_refused(bench: Path) -> None:
    (bench / "literal.yaml").write_text(DEVICELESS + "accounts:\n  admin: {username: admin, password: "
                                        "hunter22, role: admin}\n")
    line = one_line_error(run(bench, "--target", "literal.yaml", "test_suite.py"))
    assert "environment reference" in line and "hunter22" not in line


def test_unknown_catalogue_id_is_a_collection_error(bench: Path) -> None:
    (bench / "test_typo.py").write_text('import pytest\n\n@pytest.mark.judges("CR 1.99")\n'
                                        'def test_x(target):\n    assert target\n')
    proc = run(bench, "--target", "bench.yaml", "test_typo.py")
    assert proc.returncode != 0
    assert "test_typo.py::test_x" in proc.stdout and "'CR 1.99'" in proc.stdout
    assert "not in the catalogue" in proc.stdout


def test_unwritable_reports_folder(bench: Path) -> None:
    blocker = bench / "blocked"
    blocker.write_text("a file where a folder should be")
    line = one_line_error(run(bench, "--target", "bench.yaml", "--reports-dir", str(blocker), "test_suite.py"))
    assert "cannot write reports" in line and "--reports-dir" in line


def test_verdicts_recorded_and_every_row_in_the_matrix(bench: Path) -> None:
    proc = run(bench, "--target", "bench.yaml", "--run-id", "r1", "test_suite.py")
    assert proc.returncode == 1, proc.stdout  # one failing row
    run_dir = bench / "reports" / "bench" / "r1"
    assert (bench / "reports" / "bench" / "latest").resolve() == run_dir.resolve()
    lines = [json.loads(ln) for ln in (run_dir / "results.jsonl").read_text().splitlines()]
    assert lines[0]["type"] == "run" and lines[-1]["type"] == "end"
    verdicts = {ln["rows"][0]: ln["verdict"] for ln in lines if ln["type"] == "outcome"}
    assert verdicts == {"CR 1.1": "pass", "CR 1.12": "fail", "CR 1.5 RE(1)": "manual", "CR 2.1": "error",
                        "CR 2.2": "n/a", "CR 2.5": "not-run", "CR 2.6": "pass"}
    observed = next(ln for ln in lines if ln.get("rows") == ["CR 1.1"])
    assert any("observed the thing" in e for e in observed["evidence"])
    matrix = json.loads((run_dir / "matrix.json").read_text())
    assert [r["id"] for r in matrix["rows"]] == [r.id for r in load_catalogue()]
    by_id = {r["id"]: r for r in matrix["rows"]}
    assert by_id["CR 1.3"]["verdict"] == "not-tested"
    assert by_id["NDR 1.6"]["verdict"] == "n/a"  # an embedded device
    assert by_id["CR 2.1"]["verdict"] == "error"
    for name in ("matrix.csv", "matrix.md", "matrix.html", "junit.xml"):
        assert (run_dir / name).is_file(), name
    assert "SL-C" in proc.stdout and "reports/bench/r1" in proc.stdout


def test_killed_run_leaves_results_that_rebuild(bench: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--target", "bench.yaml",
                             "--run-id", "killed", "test_suite.py"], cwd=bench, env={**os.environ, "SLOW_S": "30"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    results = bench / "reports" / "bench" / "killed" / "results.jsonl"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # until the six fast tests have been recorded
        if results.is_file() and results.read_text().count('"type": "outcome"') >= 6:
            break
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert results.read_text().count('"type": "outcome"') >= 6
    rebuilt = subprocess.run([sys.executable, "-m", "iec62443_harness.cli", "rebuild", str(results.parent)],
                             capture_output=True, text=True, timeout=60)
    assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
    matrix = json.loads((results.parent / "matrix.json").read_text())
    assert matrix["run"]["complete"] is False
    assert {r["id"]: r["verdict"] for r in matrix["rows"]}["CR 1.12"] == "fail"


def test_secrets_never_reach_reports_or_output(bench: Path) -> None:
    secret = "S3cret-Value-771"
    (bench / "creds.yaml").write_text(DEVICELESS + 'accounts:\n  admin: {username: admin, password: '
                                      '"${BENCH_PW}", role: admin}\n')
    (bench / "test_leak.py").write_text(textwrap.dedent('''\
        import pytest

        @pytest.mark.judges("CR 1.1")
        def test_leaky(target, evidence):
            pw = target.account("admin").password
            evidence.add("bench", f"sent password {pw}")
            assert pw == "something else", f"login with {pw} refused"
        '''))
    proc = run(bench, "--target", "creds.yaml", "--run-id", "s", "test_leak.py", env={"BENCH_PW": secret})
    assert proc.returncode == 1
    run_dir = bench / "reports" / "creds" / "s"
    leaked = [p.name for p in run_dir.iterdir() if secret in p.read_text()]
    assert leaked == []
    assert secret not in proc.stdout + proc.stderr
    assert "***" in (run_dir / "results.jsonl").read_text()


def test_write_without_permission_is_not_run(bench: Path) -> None:
    (bench / "test_write.py").write_text(textwrap.dedent('''\
        import pytest

        @pytest.mark.judges("CR 2.1 RE(1)")
        def test_writes(target):
            target.guard("modbus_tcp").check_write("holding_registers", 100)
            assert False, "must not get here: the write was not allowed"
        '''))
    proc = run(bench, "--target", "bench.yaml", "--run-id", "w", "test_write.py")
    lines = [json.loads(ln) for ln in (bench / "reports" / "bench" / "w" / "results.jsonl").read_text().splitlines()]
    outcome = next(ln for ln in lines if ln["type"] == "outcome")
    assert outcome["verdict"] == "not-run", proc.stdout
    assert "allow_writes" in outcome["reason"]


def test_judged_test_without_a_device_is_a_collection_error(bench: Path) -> None:
    (bench / "test_nodevice.py").write_text('import pytest\n\n@pytest.mark.judges("CR 1.12")\n'
                                            'def test_x(evidence):\n    evidence.add("x", "y")\n')
    proc = run(bench, "--target", "bench.yaml", "test_nodevice.py")
    assert proc.returncode != 0 and "uses no `target`" in proc.stdout


def test_over_must_be_a_list(bench: Path) -> None:
    (bench / "test_over.py").write_text('import pytest\n\n@pytest.mark.judges("CR 1.12", over="ssh")\n'
                                        'def test_x(target):\n    assert target\n')
    proc = run(bench, "--target", "bench.yaml", "test_over.py")
    assert proc.returncode != 0 and "over= takes a list" in proc.stdout


def test_run_stopped_early_says_so(bench: Path) -> None:
    run(bench, "--target", "bench.yaml", "--run-id", "x", "-x", "test_suite.py")
    matrix = json.loads((bench / "reports" / "bench" / "x" / "matrix.json").read_text())
    verdicts = {r["id"]: (r["verdict"], r["reason"]) for r in matrix["rows"]}
    assert verdicts["CR 2.6"][0] == "not-run" and "not reached" in verdicts["CR 2.6"][1]
    assert matrix["run"]["complete"] is False


def test_countermeasure_must_name_its_interfaces(bench: Path) -> None:
    (bench / "cm.yaml").write_text(DEVICELESS + 'countermeasures:\n  - rows: ["CR 1.1"]\n'
                                   '    justification: "a firewall in front of everything"\n')
    line = one_line_error(run(bench, "--target", "cm.yaml", "test_suite.py"))
    assert "countermeasures.0.interfaces" in line


EMULATED = DEVICELESS + "emulator: {kind: simplc, profile: sl1}\n"


def test_emulated_target_with_an_unset_variable_is_one_usage_error(bench: Path) -> None:
    (bench / "emu.yaml").write_text(EMULATED + 'accounts:\n'
                                    '  admin: {username: admin, password: "${SIMPLC_ADMIN_PASSWORD}", role: admin}\n'
                                    '  audit: {username: auditor, password: "${BENCH_AUDITOR_PW_UNSET}", role: x}\n')
    proc = run(bench, "--target", "emu.yaml", "test_suite.py")
    line = one_line_error(proc)
    assert "BENCH_AUDITOR_PW_UNSET" in line and "'auditor'" in line and "accounts.audit.password" in line
    assert "export BENCH_AUDITOR_PW_UNSET=" in line and "SIMPLC_ADMIN_PASSWORD" in line  # what it does provide
    assert "collected" not in proc.stdout  # refused before collection, not once per test


def test_emulated_target_takes_provided_and_exported_variables(bench: Path) -> None:
    (bench / "emu.yaml").write_text(EMULATED + 'accounts:\n'
                                    '  admin: {username: admin, password: "${SIMPLC_ADMIN_PASSWORD}", role: admin}\n'
                                    '  audit: {username: auditor, password: "${BENCH_AUDITOR_PW}", role: x}\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIMPLC_")}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--target", "emu.yaml",
                           "--collect-only", "-q", "test_suite.py"], cwd=bench, capture_output=True, text=True,
                          timeout=60, env={**env, "BENCH_AUDITOR_PW": "x-7781"})
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_emulated_target_with_an_unknown_profile(bench: Path) -> None:
    (bench / "emu.yaml").write_text(DEVICELESS + "emulator: {kind: simplc, profile: sl9}\n")
    line = one_line_error(run(bench, "--target", "emu.yaml", "test_suite.py"))
    assert "unknown simplc profile 'sl9'" in line and "sl1" in line


def test_recovery_command_variable_is_checked_up_front(bench: Path) -> None:
    (bench / "rec.yaml").write_text(DEVICELESS + 'recovery: {command: "snmpset -c ${BENCH_COMMUNITY_UNSET} pdu"}\n')
    line = one_line_error(run(bench, "--target", "rec.yaml", "test_suite.py"))
    assert "recovery.command" in line and "export BENCH_COMMUNITY_UNSET=" in line


def test_lab_provides_what_the_emulators_hand_over() -> None:
    from iec62443_harness import labs
    from iec62443_harness.labs.simplc.profile import available, load_profile

    for profile in available():
        assert labs.provides("simplc", profile) == {a.env for a in load_profile(profile).accounts}
    launcher = pytest.importorskip("iec62443_harness.labs.qemu.launcher")
    assert labs.provides("qemu", "weak") == set(launcher.SECRET_ENV.values())


def test_same_run_id_twice_is_refused(bench: Path) -> None:
    first = run(bench, "--target", "bench.yaml", "--run-id", "r1", "test_suite.py")
    assert first.returncode == 1, first.stdout
    results = bench / "reports" / "bench" / "r1" / "results.jsonl"
    before = results.read_text()
    line = one_line_error(run(bench, "--target", "bench.yaml", "--run-id", "r1", "test_suite.py"))
    assert "r1 already exists" in line and "--run-id" in line
    assert results.read_text() == before  # nothing appended to the first run's record


@pytest.mark.parametrize("run_id", ["a/b", "../up", "latest", ".lock"])
def test_run_id_must_be_a_folder_name(bench: Path, run_id: str) -> None:
    line = one_line_error(run(bench, "--target", "bench.yaml", "--run-id", run_id, "test_suite.py"))
    assert "--run-id" in line
    assert not (bench / "reports").exists()


def test_sigterm_stops_the_run_like_ctrl_c(bench: Path) -> None:
    (bench / "test_zz_after.py").write_text('import pytest\n\n@pytest.mark.judges("CR 2.7")\n'
                                            'def test_after(target):\n    assert target\n')
    proc = subprocess.Popen([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--target", "bench.yaml",
                             "--run-id", "term", "test_suite.py", "test_zz_after.py"], cwd=bench,
                            env={**os.environ, "SLOW_S": "60"}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    results = bench / "reports" / "bench" / "term" / "results.jsonl"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # until it sits in the slow test
        if results.is_file() and results.read_text().count('"type": "outcome"') >= 6:
            break
        time.sleep(0.1)
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert time.monotonic() - sent < 15, "SIGTERM must stop the run at once, not after the slow test"
    assert proc.returncode == 2, out  # pytest's "interrupted", as for Ctrl-C (not 143, killed)
    lines = [json.loads(ln) for ln in results.read_text().splitlines()]
    assert lines[-1]["type"] == "end" and lines[-1]["unreached"] == 2 and lines[-1]["signal"] == "SIGTERM"
    matrix = json.loads((results.parent / "matrix.json").read_text())
    assert matrix["run"]["complete"] is False and any("SIGTERM" in n for n in matrix["run"]["notes"])
    verdicts = {r["id"]: (r["verdict"], r["reason"]) for r in matrix["rows"]}
    assert verdicts["CR 2.6"][0] == "not-run" and "interrupted" in verdicts["CR 2.6"][1]
    assert verdicts["CR 2.7"][0] == "not-run" and "not reached" in verdicts["CR 2.7"][1]
    assert verdicts["CR 1.12"][0] == "fail"  # what was recorded before stays
    for name in ("matrix.csv", "matrix.md", "matrix.html", "junit.xml"):
        assert (results.parent / name).is_file(), name
    assert "INCOMPLETE" in out


def test_latest_points_at_the_run_that_finished_last(bench: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--target", "bench.yaml",
                             "--run-id", "mine", "test_suite.py"], cwd=bench, env={**os.environ, "SLOW_S": "4"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    target_dir = bench / "reports" / "bench"
    results = target_dir / "mine" / "results.jsonl"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if results.is_file() and results.read_text().count('"type": "outcome"') >= 6:
            break
        time.sleep(0.1)
    assert os.readlink(target_dir / "latest") == "mine"
    (target_dir / "other").mkdir()  # a run that started after this one (under another lock, or none)
    (target_dir / "latest").unlink()
    (target_dir / "latest").symlink_to("other")
    assert proc.wait(timeout=30) == 1
    assert os.readlink(target_dir / "latest") == "mine"
    assert [p.name for p in target_dir.iterdir() if p.name.startswith(".latest")] == []
