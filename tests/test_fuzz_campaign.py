"""Fuzz campaigns: budgets and seeds, shrinking an immediate failure, bisecting a lost essential function
(against a simulated device, in milliseconds), and end to end against the emulated PLC: the insecure profile's
listener crash is found, shrunk, verified, and its stored replay command reproduces it; the hardened profile
passes the same campaign."""

from __future__ import annotations

import shlex
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import iec62443_harness.fixtures.health
import pytest
from iec62443_harness.evidence import Evidence
from iec62443_harness.fixtures.fuzz import campaign as campaign_module
from iec62443_harness.fixtures.fuzz.campaign import Campaign, budget_for, seed_for
from iec62443_harness.fixtures.fuzz.channels import BAD_REPLY, FUNCTION, STOPPED, Channel, Sent
from iec62443_harness.fixtures.outcomes import NotRun
from iec62443_harness.fixtures.registry import Registry
from iec62443_harness.fixtures.target import TargetRun
from iec62443_harness.target import Budget, find_target_file, load_target

ROOT = Path(__file__).resolve().parent.parent
SEED = 20240611


def _stall(case: bytes) -> bool:
    """The simulated defect: Write Multiple Registers whose byte count is not twice its quantity."""
    pdu = case[7:]
    return len(pdu) >= 6 and pdu[0] == 16 and pdu[5] != 2 * int.from_bytes(pdu[3:5], "big")


def _crash(case: bytes) -> bool:
    """The simulated defect: a holding-register read of quantity 0 kills the interface."""
    pdu = case[7:]
    return len(pdu) == 5 and pdu[0] == 3 and pdu[3:5] == b"\0\0"


def _crash_coils(case: bytes) -> bool:
    """Another simulated listener defect, rarer: a coil read of more than 2000 coils."""
    pdu = case[7:]
    return len(pdu) == 5 and pdu[0] == 1 and int.from_bytes(pdu[3:5], "big") > 2000


class FakeDevice:
    """A device that answers at once; each of `defects` either stops its interface or stalls its control task."""

    def __init__(self, *defects: str) -> None:
        self.defects, self.dead, self.stalled, self.received = defects, False, False, 0

    def receive(self, case: bytes) -> Sent:
        self.received += 1
        if ("crash" in self.defects and _crash(case)) or ("crash_coils" in self.defects and _crash_coils(case)):
            self.dead = True
        if "stall" in self.defects and _stall(case):
            self.stalled = True
        return Sent("reply", not self.dead)


class FakeChannel(Channel):
    interface = "modbus_tcp"

    def __init__(self, device: FakeDevice) -> None:
        super().__init__(None, "modbus_tcp", Evidence(), None, replies=False)  # type: ignore[arg-type]
        self.device = device

    def send(self, case):  # type: ignore[no-untyped-def]
        return self.device.receive(case)

    def probe(self) -> bool:
        return not self.device.dead

    def close(self) -> None:
        pass


class FakeWatch:
    """The essential function as the campaign sees it: late (overdue, lost) once the device stalled."""

    def __init__(self, device: FakeDevice) -> None:
        self.device = device
        self.monitor = SimpleNamespace(resolution_s=0.02, via="modbus_rtu")

    def __enter__(self) -> FakeWatch:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def last_seen(self) -> float:
        return 0.0 if self.device.stalled else time.monotonic()

    def overdue(self) -> bool:
        return self.device.stalled

    def survives(self, since: float) -> bool:
        return not self.device.stalled

    @property
    def lost(self) -> str | None:
        return "no transition within max_gap_s" if self.device.stalled else None


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """A target whose device, channel and watch are simulated; `fake(defect)` gives (target, device)."""
    path = find_target_file("sim-plc")

    def make(*defects: str):  # type: ignore[no-untyped-def]
        device = FakeDevice(*defects)
        spec = load_target(path)
        target = SimpleNamespace(name="sim-plc", path=path, spec=spec, registry=Registry(spec), emulator=object(),
                                 recoveries=0)
        target.guard = lambda interface, fresh=False: target.registry.guard(interface)
        target.channel = lambda *a, **k: FakeChannel(device)

        def recover(**_: object) -> None:
            target.recoveries += 1
            device.dead = device.stalled = False

        target.health = SimpleNamespace(restore=recover, can_restore=True)
        monkeypatch.setattr(campaign_module, "Watch", lambda *a, **k: FakeWatch(device))
        monkeypatch.setattr(campaign_module, "ready_for_attack", lambda *a, **k: None)
        monkeypatch.setattr(iec62443_harness.fixtures.health, "liveness", lambda registry, timeout=1.0: (True, "ok"))
        return target, device

    return make


def test_budget_and_seed_come_from_the_target_file_unless_overridden() -> None:
    spec = load_target(find_target_file("sim-plc"))
    options = {"fuzz_examples": None, "fuzz_seconds": 2.5, "seed": 7}
    config = SimpleNamespace(getoption=options.get)
    assert budget_for(spec, "modbus_tcp") == spec.safety.fuzz_budget["modbus_tcp"]
    assert budget_for(spec, "modbus_tcp", config) == Budget(examples=3000, seconds=2.5)
    budgets = {k: v for k, v in spec.safety.fuzz_budget.items() if k != "console"}
    bare = spec.model_copy(update={"safety": spec.safety.model_copy(update={"fuzz_budget": budgets})})
    assert budget_for(bare, "console") == Budget()  # undeclared: the model's default
    assert seed_for(config) == 7
    assert 0 <= seed_for(SimpleNamespace(getoption=lambda name: None)) < 1 << 32  # a fresh one, printed by the run


def test_fuzzing_not_allowed_by_the_target_file_is_not_run() -> None:
    path = find_target_file("sim-plc")
    spec = load_target(path)
    spec = spec.model_copy(update={"safety": spec.safety.model_copy(update={"allow_fuzzing": False})})
    target = SimpleNamespace(name="x", path=path, spec=spec, emulator=None, registry=Registry(spec))
    with pytest.raises(NotRun, match="allow_fuzzing"):
        Campaign(target, "modbus_tcp", Evidence(), budget=Budget(examples=1, seconds=1), seed=1).run()


def test_an_immediate_failure_is_shrunk_and_verified(fake) -> None:  # type: ignore[no-untyped-def]
    target, device = fake("crash")
    result = Campaign(target, "modbus_tcp", Evidence(), budget=Budget(examples=200, seconds=5), seed=SEED,
                      groups=["read"]).run()
    assert len(result.findings) == 1
    finding = result.findings[0]
    assert finding.kind == STOPPED and finding.reproduced is True and "alone" in finding.shrunk_by
    assert [c.hex() for c in finding.cases] == ["000000000006010300000000"]  # the plainest: tid and address 0
    assert finding.signature == "function 0x03" and finding.hits >= 1
    command = finding.replay_command("sim-plc")
    assert command is not None and shlex.split(command)[-1] == "000000000006010300000000"
    assert "--expect stops-answering" in command


def test_a_group_goes_on_after_a_finding_and_reports_each_signature_once(fake) -> None:  # type: ignore[no-untyped-def]
    """Two listener defects in one group: the frequent one is triaged once, counted after that and no longer
    sent; the rarer one is found behind it."""
    target, device = fake("crash", "crash_coils")
    result = Campaign(target, "modbus_tcp", Evidence(), budget=Budget(examples=400, seconds=5), seed=SEED,
                      groups=["read"]).run()
    by_signature = {f.signature: f for f in result.findings}
    assert set(by_signature) == {"function 0x03", "function 0x01"}, result.summary()
    assert all(f.reproduced and len(f.cases) == 1 for f in result.findings)
    assert _crash(by_signature["function 0x03"].cases[0]) and _crash_coils(by_signature["function 0x01"].cases[0])
    assert result.examples > 20  # it went on fuzzing after both


def test_a_failure_of_a_kind_not_judged_is_reported_unshrunk(fake) -> None:  # type: ignore[no-untyped-def]
    target, device = fake("crash")
    result = Campaign(target, "modbus_tcp", Evidence(), budget=Budget(examples=200, seconds=5), seed=SEED,
                      groups=["read"], shrink_kinds={BAD_REPLY}).run()
    assert [(f.kind, f.shrunk_by) for f in result.findings] == [(STOPPED, "not shrunk: another row judges it")]
    assert target.recoveries == 1  # only to leave the device working


def test_a_lost_function_is_bisected_to_the_case_that_cost_it(fake) -> None:  # type: ignore[no-untyped-def]
    target, device = fake("stall")
    evidence = Evidence()
    result = Campaign(target, "modbus_tcp", evidence, budget=Budget(examples=200, seconds=5), seed=SEED,
                      groups=["write"]).run()
    assert len(result.findings) == 1
    finding = result.findings[0]
    assert finding.kind == FUNCTION and finding.reproduced is True and finding.shrunk_by.startswith("bisection")
    assert len(finding.cases) == 1 and _stall(finding.cases[0])
    assert any("FINDING" in line for line in evidence.lines())


def test_a_loss_caused_by_an_earlier_group_lets_the_next_group_resume(fake) -> None:  # type: ignore[no-untyped-def]
    target, device = fake("stall")
    campaign = Campaign(target, "modbus_tcp", Evidence(), budget=Budget(examples=400, seconds=4), seed=SEED,
                        groups=["write", "read"])
    result = campaign.run()
    assert [f.group for f in result.findings] == ["write"]
    assert result.examples > 2  # the read group ran after the write group's finding


# --- end to end against the emulated PLC


@pytest.fixture(scope="module")
def insecure():  # type: ignore[no-untyped-def]
    path = find_target_file("sim-plc-insecure")
    run = TargetRun(path.stem, path, load_target(path))
    run.start()
    yield run
    run.stop()


@pytest.fixture(scope="module")
def crash_finding(insecure):  # type: ignore[no-untyped-def]
    result = Campaign(insecure, "modbus_tcp", Evidence(), budget=Budget(examples=100, seconds=3), seed=SEED,
                      groups=["read"], watch=False).run()
    assert result.findings, result.summary()
    return result.findings[0]


def test_the_insecure_listener_crash_is_found_with_a_minimal_verified_input(crash_finding) -> None:  # type: ignore[no-untyped-def]
    assert crash_finding.kind == STOPPED and crash_finding.reproduced is True
    assert len(crash_finding.cases) == 1
    pdu = crash_finding.cases[0][7:]
    assert pdu[0] in (3, 4) and not 1 <= int.from_bytes(pdu[3:5], "big") <= 125  # the seeded class


def _replay(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "iec62443_harness.cli", "replay", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=False)


def test_the_stored_replay_command_reproduces_the_failure(crash_finding) -> None:  # type: ignore[no-untyped-def]
    command = shlex.split(crash_finding.replay_command("sim-plc-insecure"))
    assert command[:2] == ["iec62443", "replay"]
    done = _replay(*command[2:])
    assert done.returncode == 1, done.stdout + done.stderr
    assert "REPRODUCED: stops answering" in done.stdout


def test_the_same_input_does_not_fail_the_hardened_profile(crash_finding) -> None:  # type: ignore[no-untyped-def]
    done = _replay("--target", "sim-plc", "--interface", "modbus_tcp", "--hex", crash_finding.cases[0].hex())
    assert done.returncode == 0, done.stdout + done.stderr
    assert "not reproduced" in done.stdout


def test_a_stored_can_failure_replays_in_can_notation() -> None:
    done = _replay("--target", "sim-plc-insecure", "--interface", "can", "--expect", "stops-answering",
                   "--hex", "605#")
    assert done.returncode == 1, done.stdout + done.stderr


def test_a_stored_loss_of_the_essential_function_replays() -> None:
    """The seeded stall (an SDO command byte of 0xF0-0xFF), as a campaign stores it: the function is lost."""
    done = _replay("--target", "sim-plc-insecure", "--interface", "can", "--expect", "function-lost",
                   "--hex", "605#FF64500073C5F70B")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "essential function" in done.stdout and "LOST" in done.stdout


def test_replay_errors_are_one_line_with_exit_2() -> None:
    done = _replay("--target", "sim-plc", "--interface", "can", "--hex", "nonsense")
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    assert "ID#DATA" in done.stderr


def test_the_hardened_profile_passes_the_same_campaign() -> None:
    path = find_target_file("sim-plc")
    run = TargetRun(path.stem, path, load_target(path))
    run.start()
    try:
        result = Campaign(run, "modbus_tcp", Evidence(), budget=Budget(examples=100, seconds=3), seed=SEED,
                          groups=["read"], watch=False).run()
    finally:
        run.stop()
    assert not result.findings, result.summary()
    assert result.cases > 100
