"""The pytest plugin's options and hooks: targets, catalogue markers, verdict recording, reports.

Fixtures (what a test asks for: `target`, `modbus`, `ssh`, ...) live in `plugin/fixtures.py`; this
module decides *which* tests run against *which* targets and interfaces, turns each test's outcome into
a verdict the moment it ends, and writes the report folder.

Nothing happens until a run names a target (`--target`, or the `iec62443_target` ini key): then the
fixtures are registered, and a run given no test paths collects the shipped suites wherever it starts.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib
import os
import re
import shlex
import signal
import sys
import threading
import uuid
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import pytest
from iec62443_harness import __version__
from iec62443_harness.catalogue import check_ids
from iec62443_harness.errors import HarnessError
from iec62443_harness.evidence import Evidence, redact
from iec62443_harness.fixtures.outcomes import Inconclusive, TargetUnavailable, VerdictOutcome
from iec62443_harness.target import (
    INTERFACE_NAMES,
    TargetSpec,
    expand_refs,
    find_target_file,
    load_target,
    resolve_secret,
    search_path,
)
from iec62443_harness.verdicts import Outcome, Verdict, compensation, countermeasure_map

if TYPE_CHECKING:
    from iec62443_harness.report.results import ResultsWriter
    from xdist.workermanage import WorkerController

BACKSTOP_S = 900.0  # per-test time-out when none is configured: drivers time out long before, this catches bugs

# Fixture name -> the interfaces a test using it runs over, when its marker gives no `over=`.
FIXTURE_INTERFACES = {"modbus": ("modbus_tcp", "modbus_rtu"), "ssh": ("ssh",), "console": ("console",),
                      "can_bus": ("can",), "login": ("ssh", "console"), "https": ("https",)}


@dataclass
class LoadedTarget:
    name: str
    path: Path
    spec: TargetSpec
    run_dir: Path | None = None
    writer: ResultsWriter | None = None  # once the run folder exists
    partial: bool = False  # tests left out by selection (-k, -m, --deselect, a path into the suites)
    holds: bool | None = None  # the exit gate on this target's matrix, once written


@dataclass
class HarnessState:
    targets: dict[str, LoadedTarget]
    reports_dir: Path
    run_id: str
    pending: list[tuple[str, Outcome]] = field(default_factory=list)  # recorded before the folders exist
    started: bool = False
    locks: list = field(default_factory=list)  # harness.report.lock.RunLock per target, held until unconfigure
    stopped_by: str | None = None  # "SIGTERM" once one arrived
    finishing: bool = False  # sessionfinish began: a later SIGTERM must not cut the reports short
    previous_sigterm: Callable[[int, FrameType | None], Any] | int | None = None  # to put back at unconfigure
    sigterm_installed: bool = False
    gate: str = "sl-t"  # which rows decide the exit status (harness.report.gate)
    unjudged_failed: bool = False  # a test that judges no row failed: pytest's own failure, kept
    exit_status: int | None = None  # the gate's exit status, once the reports are written
    collected: dict[str, list[str]] = field(default_factory=dict)  # target -> judged test ids, collection order
    role: str = "serial"  # or "controller"/"worker" under pytest-xdist (harness.plugin.xdist)
    worker_pids: list[int] = field(default_factory=list)  # a controller's workers, which a SIGTERM is passed on to


STATE = pytest.StashKey[HarnessState]()
EVIDENCE = pytest.StashKey[Evidence]()
_PHASES = pytest.StashKey[dict[str, tuple[Verdict, str, tuple[str, ...]]]]()
_DURATIONS = pytest.StashKey[list[float]]()
_RECORDED = pytest.StashKey[bool]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("iec62443", "IEC 62443-4-2 conformance harness")
    group.addoption("--target", action="append", default=[], metavar="NAME|PATH",
                    help="target to test: NAME (targets/NAME.yaml, or a shipped target) or a path; repeatable. "
                         "Without it (and without the iec62443_target ini key) the plugin stays off")
    group.addoption("--targets-dir", default=None, metavar="DIR",
                    help="look up target names here first (default: ./targets, then the shipped targets)")
    group.addoption("--reports-dir", default="reports", metavar="DIR",
                    help="where reports/<target>/<run-id>/ are written (default: reports)")
    group.addoption("--run-id", default=None, help="name of the run folder (default: UTC time + random suffix)")
    group.addoption("--fuzz-examples", type=int, default=None, help="override every fuzz budget's examples")
    group.addoption("--fuzz-seconds", type=float, default=None, help="override every fuzz budget's seconds")
    group.addoption("--seed", type=int, default=None, help="seed for fuzz campaigns (printed and stored)")
    group.addoption("--gate", default=None, choices=("sl-t", "any", "none"),
                    help="what makes the exit status 1: sl-t (default) a row that binds at the target's SL-T fails "
                         "or errors, or the run is partial; any: any row fails or errors; none: verdicts never do")
    parser.addini("iec62443_target", "target(s) to test when --target is not given", type="args", default=[])
    parser.addini("iec62443_gate", "the exit gate when --gate is not given: sl-t, any or none", default="sl-t")
    parser.addini("iec62443_targets_dir", "folder where target names are looked up first", default="")


def pytest_configure(config: pytest.Config) -> None:
    names = config.getoption("target") or config.getini("iec62443_target")
    if not names:
        return  # not asked for: other projects in this environment see no fixture, no hook doing anything
    config.addinivalue_line("markers", "judges(*ids, over=None, alternative=None): catalogue rows this test "
                            "judges, the interfaces it runs over, and the alternative (the standard's 'or') it is "
                            "one side of")
    search = search_path(config.getoption("targets_dir") or config.getini("iec62443_targets_dir") or None,
                         config.invocation_params.dir)
    targets: dict[str, LoadedTarget] = {}
    try:
        for name in names:
            path = find_target_file(name, search)
            if path.stem in targets:
                raise HarnessError(f"two targets named {path.stem!r} ({targets[path.stem].path} and {path}): "
                                   "reports are kept by name, so rename one of the files")
            spec = load_target(path)
            for cm in spec.countermeasures:
                check_ids(cm.rows, f"target file {path} (countermeasures)")
            _check_references(path.stem, spec)
            targets[path.stem] = LoadedTarget(path.stem, path, spec)
    except HarnessError as exc:
        raise pytest.UsageError(str(exc)) from None
    from iec62443_harness.plugin import xdist

    now = dt.datetime.now(dt.UTC)
    role = xdist.role(config)
    # every worker of one xdist run writes under the controller's run id
    run_id = (xdist.worker_run_id(config) if role == "worker" else None) or config.getoption("run_id") \
        or f"{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.+-]*", run_id) or run_id == "latest":
        raise pytest.UsageError(f"--run-id {run_id!r} cannot name a run folder: use letters, digits and . _ + - "
                                "(not starting with . or -, and not 'latest')")
    gate = config.getoption("gate") or config.getini("iec62443_gate") or "sl-t"
    if gate not in ("sl-t", "any", "none"):
        raise pytest.UsageError(f"iec62443_gate = {gate!r} in the ini file is not a gate: use sl-t, any or none")
    state = config.stash[STATE] = HarnessState(targets, Path(config.getoption("reports_dir")), run_id, gate=gate,
                                               role=role)
    if role == "controller":
        problem = xdist.refusal(config, list(targets))
        if problem:
            raise pytest.UsageError(problem)
        _lock_targets(state, list(targets))  # the controller holds each real device's lock for all its workers
    _catch_sigterm(state)
    from iec62443_harness.plugin import live

    live.start(config)  # fixtures.progress: a live line on a terminal, summaries into the test reports
    config.pluginmanager.register(importlib.import_module("iec62443_harness.plugin.fixtures"), "iec62443-fixtures")
    if config.args_source is pytest.Config.ArgsSource.INVOCATION_DIR:
        # No test paths given and no testpaths configured (a lab's own folder, or a target path that moved
        # pytest's rootdir away from this project's settings): run the shipped suites.
        import iec62443_harness.conformance as suites

        config.args = [str(Path(suites.__file__).parent)]


def _catch_sigterm(state: HarnessState) -> None:
    """SIGTERM (a CI time-out, `kill`) stops the run the way Ctrl-C does: pytest's interrupt path records the
    unreached tests, writes the end line and the (incomplete) matrix. Put back at unconfigure."""
    if threading.current_thread() is not threading.main_thread():
        return  # signal handlers can only be set from the main thread (pytest run from a thread)

    def on_sigterm(signum: int, frame: object) -> None:
        if state.finishing:
            return  # the reports are being written: a second SIGTERM waits for them (SIGKILL does not)
        state.stopped_by = "SIGTERM"
        for pid in state.worker_pids:  # each worker ends its targets' reports as a serial run would
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGTERM)
        raise KeyboardInterrupt("SIGTERM")

    state.previous_sigterm = signal.signal(signal.SIGTERM, on_sigterm)
    state.sigterm_installed = True


def _check_references(name: str, spec: TargetSpec) -> None:
    """Every `${VAR}` the target file uses that will be resolved during the run is set now, or handed over by
    its emulator: else one line before collection rather than the same error for every test."""
    provided: set[str] = set()
    if spec.emulator is not None:
        from iec62443_harness import labs

        try:
            provided = labs.provides(spec.emulator.kind, spec.emulator.profile)
        except labs.LabError as exc:
            raise HarnessError(f"target {name}: emulator: {exc}") from None
    for key, account in spec.accounts.items():
        for key_field, ref in (("password", account.password), ("private_key_file", account.private_key_file)):
            if not ref:
                continue
            var = ref[2:-1]
            if var in provided:
                continue
            if spec.emulator is not None and var not in os.environ:
                emu = spec.emulator
                raise HarnessError(
                    f"target {name}: accounts.{key}.{key_field} of account {account.username!r} is {ref}, which is not "
                    f"set and which the {emu.kind} emulator (profile {emu.profile}) does not provide: export "
                    f"{var}=... before running, or refer to one it provides ({', '.join(sorted(provided)) or 'none'})")
            resolve_secret(ref, account.username)  # a real device's: set now, and redacted from here on
    # A real device's lifecycle files (images, SBOM) are the lab's: named now, so a run that may use them does not
    # fail test by test. An emulator hands its own over when it starts (Running.files).
    if spec.emulator is None and spec.lifecycle is not None and spec.safety.allow_lifecycle:
        from iec62443_harness.target import resolve_file

        for where, ref in spec.lifecycle.file_refs().items():
            resolve_file(ref, f"target {name}: {where}")
    # An emulated target's recovery is the emulator's restart: its recovery.command is never run.
    if spec.emulator is None and spec.recovery.command:
        for var in re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", spec.recovery.command):
            if var not in os.environ:
                raise HarnessError(f"target {name}: recovery.command needs environment variable {var}, which is "
                                   f"not set: export {var}=... before running")
        expand_refs(spec.recovery.command)  # redacts the values from here on


def _state(config: pytest.Config) -> HarnessState | None:
    return config.stash.get(STATE, None)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every judged test in collection order, before -k/-m deselect any (a merge of runs that each ran a part
    orders its outcomes by it); and the per-test time-out backstop, also where this project's settings are not
    loaded (a lab's folder)."""
    state = _state(config)
    if state is None:
        return
    for item in items:
        rows = _rows(item)
        if rows:
            target = _target_of(item)
            for name in [target] if target else state.targets:
                state.collected.setdefault(name, []).append(_test_id(item))
            # as record_property would: pytest's own --junitxml names the rows, like the harness's junit.xml
            callspec = getattr(item, "callspec", None)
            interface = callspec.params.get("interface") if callspec else None
            item.user_properties += [("requirement", rid) for rid in rows]
            item.user_properties += [("interface", interface)] if interface else []
    if config.getoption("timeout", None) or config.getini("timeout"):
        return
    for item in items:
        if item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(BACKSTOP_S))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    state = _state(metafunc.config)
    if state is None:
        return
    if "_target" in metafunc.fixturenames:  # first, so ids read [target-interface]
        names = list(state.targets)
        metafunc.parametrize("_target", names, ids=names, indirect=True, scope="session")
    marker = metafunc.definition.get_closest_marker("judges")
    if marker is None:
        return
    problem = _marker_problem(metafunc, marker)
    if problem:
        pytest.fail(problem, pytrace=False)
    over = marker.kwargs.get("over")
    if over is None:
        used = [f for f in FIXTURE_INTERFACES if f in metafunc.fixturenames]
        over = FIXTURE_INTERFACES[used[0]] if len(used) == 1 else None
    if over:
        if "interface" not in metafunc.fixturenames:  # e.g. a test that only uses `shell` over ssh
            metafunc.fixturenames.append("interface")
        metafunc.parametrize("interface", list(over), ids=list(over))


def _marker_problem(metafunc: pytest.Metafunc, marker: pytest.Mark) -> str | None:
    where = f"test {metafunc.definition.nodeid}"
    if not marker.args:
        return f"{where} has a judges marker with no catalogue id; name the rows it judges"
    try:
        check_ids(marker.args, where)
    except HarnessError as exc:
        return str(exc)
    if "_target" not in metafunc.fixturenames:
        return f"{where} judges rows but uses no `target` (or driver) fixture: a verdict needs a device"
    alternative = marker.kwargs.get("alternative")
    if alternative is not None and (not isinstance(alternative, str) or not alternative):
        return f"{where}: alternative= takes a name shared by the tests that are alternatives for the row"
    over = marker.kwargs.get("over")
    if over is not None and not isinstance(over, list | tuple):
        return f"{where}: over= takes a list of interfaces, e.g. over=[{over!r}]"
    unknown = [i for i in over or () if i not in INTERFACE_NAMES]
    if unknown:
        return f"{where} runs over unknown interface {unknown[0]!r}; use one of {', '.join(INTERFACE_NAMES)}"
    return None


# --- recording outcomes


def _rows(item: pytest.Item) -> tuple[str, ...]:
    marker = item.get_closest_marker("judges")
    return tuple(marker.args) if marker else ()


def _alternative(item: pytest.Item) -> str:
    """The judges marker's `alternative=`: the name of the standard's "or" this test is one side of."""
    marker = item.get_closest_marker("judges")
    return str(marker.kwargs.get("alternative", "")) if marker else ""


def _test_id(item: pytest.Item) -> str:
    """The test's id in results: `conformance/<module>::<test>[params]` wherever the suites were collected from
    (a repo, site-packages, another rootdir), so runs on different machines merge and compare."""
    path, _, rest = item.nodeid.partition("::")
    if Path(str(item.path)).parent.name == "conformance":
        path = f"conformance/{Path(path).name}"
    return f"{path}::{rest}" if rest else path


def _target_of(item: pytest.Item) -> str | None:
    callspec = getattr(item, "callspec", None)
    return callspec.params.get("_target") if callspec else None


def _first_line(text: str, limit: int = 400) -> str:
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    return redact(line if len(line) <= limit else line[:limit] + "...")


def _classify(call: pytest.CallInfo[None], report: pytest.TestReport) -> tuple[Verdict, str, tuple[str, ...]]:
    if call.excinfo is None:
        return (Verdict.PASS, "", ()) if report.passed else (Verdict.ERROR, "no outcome recorded", ())
    exc = call.excinfo.value
    if isinstance(exc, VerdictOutcome):
        return exc.verdict, redact(exc.reason), exc.checklist
    if isinstance(exc, pytest.skip.Exception):
        return Verdict.NOT_RUN, _first_line(f"skipped: {exc.msg}"), ()
    if call.when == "call" and isinstance(exc, AssertionError | pytest.fail.Exception):
        return Verdict.FAIL, _first_line(str(exc) or "assertion failed"), ()
    if isinstance(exc, Inconclusive):
        return Verdict.ERROR, _first_line(f"inconclusive: {exc.reason}"), ()
    kind = "target unavailable" if isinstance(exc, TargetUnavailable) else type(exc).__name__
    phase = "" if call.when == "call" else f"{call.when}: "
    return Verdict.ERROR, _first_line(f"{phase}{kind}: {exc}"), ()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item,
                              call: pytest.CallInfo[None]) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if _state(item.config) is None:
        return report
    _redact_report(report)
    rows = _rows(item)
    if not rows:
        if report.failed:  # the gate judges rows; a failing helper test still fails the run
            item.config.stash[STATE].unjudged_failed = True
        return report
    phases = item.stash.setdefault(_PHASES, {})
    if call.when != "teardown":
        item.stash.setdefault(_DURATIONS, []).append(report.duration)
    if call.when == "call" or call.excinfo is not None:
        phases[call.when] = _classify(call, report)
    if call.when == "teardown":
        # the setup outcome decides when setup did not pass; a teardown error spoils a pass
        verdict, reason, checklist = phases.get("setup") or phases.get("call") or (Verdict.ERROR, "not run", ())
        if verdict is Verdict.PASS and "teardown" in phases:
            verdict, reason, checklist = phases["teardown"]
        ev = item.stash.get(EVIDENCE, None)
        callspec = getattr(item, "callspec", None)
        outcome = Outcome(test=_test_id(item), rows=rows, verdict=verdict, reason=reason,
                          interface=callspec.params.get("interface") if callspec else None,
                          evidence=tuple(ev.lines()) if ev else (), checklist=checklist,
                          alternative=_alternative(item))
        duration = sum(d for d in item.stash.setdefault(_DURATIONS, []))  # setup + call + teardown
        _record(item.config, _target_of(item), outcome, duration=duration + report.duration)
        item.stash[_RECORDED] = True
        compensated = verdict is Verdict.FAIL and _compensation(item, rows, reason) is not None
        report.user_properties.append(("verdict", "compensated" if compensated else str(verdict)))  # as junit.xml
    elif call.when == "call" and report.failed and phases["call"][0] is Verdict.FAIL:
        countermeasure = _compensation(item, rows, phases["call"][1])
        if countermeasure:  # recorded as the FAIL it is; the rollup says "compensated", and so does pytest
            report.outcome = "skipped"
            report.longrepr = (str(item.path), item.location[1] or 0, f"compensated: {countermeasure}")
    elif report.skipped and call.when in phases and isinstance(report.longrepr, tuple):
        # manual, n/a, not-run: a skip to pytest; its message names the verdict, as the harness's junit.xml does
        verdict, reason, _ = phases[call.when]
        report.longrepr = (*report.longrepr[:2], f"{verdict}: {reason}" if reason else str(verdict))
    return report


def _compensation(item: pytest.Item, rows: tuple[str, ...], reason: str) -> str | None:
    """The compensated reason, as the matrix words it, when the target's countermeasures cover every row this
    failing test judges."""
    target = _target_of(item)
    if target is None:
        return None
    callspec = getattr(item, "callspec", None)
    interface = callspec.params.get("interface") if callspec else None
    cms = countermeasure_map(item.config.stash[STATE].targets[target].spec.countermeasures)
    found = [compensation(row, interface, cms) for row in rows]  # the rollup's own decision, row by row
    if not all(found):
        return None
    seen = f"{reason}; " if reason else ""
    return "; ".join(dict.fromkeys(f"{seen}compensating countermeasure: {j}" for j in found))


def _redact_report(report: pytest.TestReport) -> None:
    """Secrets in an assertion message or captured output must not reach the terminal or JUnit either."""
    if isinstance(report.longrepr, tuple):  # a skip: (path, line, reason)
        path, line, reason = report.longrepr
        report.longrepr = (path, line, redact(reason))
    elif report.longrepr is not None:
        text = str(report.longrepr)
        if redact(text) != text:
            report.longrepr = redact(text)
    report.sections = [(title, redact(body)) for title, body in report.sections]


def _record(config: pytest.Config, target: str | None, outcome: Outcome, duration: float = 0.0) -> None:
    state = _state(config)
    assert state is not None  # recorded only for judged tests, which exist only when the plugin is on
    names = [target] if target else list(state.targets)
    for name in names:
        loaded = state.targets[name]
        if loaded.writer is None:  # not opened yet (or, on an xdist worker, not this worker's target)
            state.pending.append((name, outcome))
        else:
            loaded.writer.outcome(outcome, duration)


def pytest_deselected(items: list[pytest.Item]) -> None:
    from iec62443_harness.report.results import DESELECTED

    for item in items:
        if _state(item.config) is not None and _rows(item):
            _record(item.config, _target_of(item),
                    Outcome(_test_id(item), _rows(item), Verdict.NOT_RUN, DESELECTED))


# --- the report folder


def _config_record(spec: TargetSpec) -> dict:
    return spec.model_dump(mode="json", exclude_none=True)


def _point_latest(run_dir: Path) -> None:
    """`<target>/latest` -> this run folder, replaced atomically (a reader sees the old link or the new one)."""
    tmp = run_dir.parent / f".latest-{os.getpid()}"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(run_dir.name)
    tmp.replace(run_dir.parent / "latest")


def _is_partial(run_dir: Path) -> bool:
    """Whether a run folder's results header says tests were left out by selection."""
    import json

    try:
        with (run_dir / "results.jsonl").open(encoding="utf-8") as fh:
            selection = json.loads(fh.readline()).get("selection") or {}
    except (OSError, ValueError, AttributeError):
        return False  # unreadable or older: as good as complete, a partial run does not replace it
    return bool(selection.get("deselected") or selection.get("paths"))


def _may_take_latest(run_dir: Path, partial: bool) -> bool:
    """`latest` names the newest run that was not limited by selection; a partial run takes it only while
    there is none (no `latest`, a dangling one, or one naming another partial run)."""
    latest = run_dir.parent / "latest"
    return not partial or not latest.exists() or _is_partial(latest)


def _limited_paths(config: pytest.Config) -> list[str]:
    """The command-line paths that narrow the shipped suites to some of their modules or tests."""
    import iec62443_harness.conformance as suites

    root = Path(suites.__file__).resolve().parent
    limited = []
    for arg in config.args:
        path_part, sep, rest = arg.partition("::")
        path = (config.invocation_params.dir / path_part).resolve()
        if path == root or path in root.parents:
            return []  # the whole of the shipped suites is collected
        if root in path.parents:
            limited.append(f"conformance/{path.relative_to(root).as_posix()}{sep}{rest}")
    return limited


def _run_folder_taken(run_dir: Path, run_id: str) -> pytest.UsageError:
    return pytest.UsageError(f"run folder {run_dir} already exists (--run-id {run_id} was used before): pass a "
                             "new --run-id, or leave it out for a fresh one")


def _lock_targets(state: HarnessState, names: list[str]) -> None:
    """Each real device's run lock, and a new run folder name, before anything is written or sent. An emulated
    target is not locked: every run starts its own emulator, so two runs never share a device. An xdist worker
    takes no lock: its controller holds them for the whole run."""
    from iec62443_harness.report.lock import LOCK_FILE, RunLock

    for name in names:
        loaded = state.targets[name]
        target_dir = state.reports_dir / loaded.name
        run_dir = target_dir / state.run_id
        try:
            target_dir.mkdir(parents=True, exist_ok=True)
            if loaded.spec.emulator is None and state.role != "worker":
                state.locks.append(RunLock.acquire(target_dir / LOCK_FILE, loaded.name, state.run_id))
        except HarnessError as exc:
            raise pytest.UsageError(str(exc)) from None
        except OSError as exc:
            raise pytest.UsageError(f"cannot write reports to {run_dir}: {exc.strerror}; make the folder "
                                    "writable or pass --reports-dir DIR") from None
        if run_dir.exists() or run_dir.is_symlink():
            raise _run_folder_taken(run_dir, state.run_id)


def _open_reports(state: HarnessState, config: pytest.Config, names: list[str]) -> None:
    """The run folders of `names` (every target; on an xdist worker, the target it is about to run)."""
    from iec62443_harness.report.environment import environment
    from iec62443_harness.report.results import DESELECTED, TARGET_COPY, ResultsWriter, now_iso

    _lock_targets(state, names)
    started = now_iso()
    env = environment()
    paths = _limited_paths(config)
    for loaded in (state.targets[name] for name in names):
        run_dir = state.reports_dir / loaded.name / state.run_id
        deselected = sum(1 for name, out in state.pending if name == loaded.name and out.reason == DESELECTED)
        loaded.partial = bool(deselected or paths)
        try:
            take_latest = _may_take_latest(run_dir, loaded.partial)
            run_dir.mkdir()  # new: checked above (under the lock, for a real device)
            if take_latest:
                _point_latest(run_dir)
            writer = ResultsWriter(run_dir / "results.jsonl")
            # the target file as the run read it, secrets redacted: part of the evidence (and of the manifest)
            (run_dir / TARGET_COPY).write_text(redact(loaded.path.read_text(encoding="utf-8")), encoding="utf-8")
        except FileExistsError:
            raise _run_folder_taken(run_dir, state.run_id) from None
        except OSError as exc:
            raise pytest.UsageError(f"cannot write reports to {run_dir}: {exc.strerror}; make the folder "
                                    "writable or pass --reports-dir DIR") from None
        spec = loaded.spec
        countermeasures = countermeasure_map(spec.countermeasures)
        writer.header({
            "harness_version": __version__, "run_id": state.run_id, "target": loaded.name,
            "target_file": str(loaded.path), "identity": spec.identity.model_dump(),
            "component_type": spec.component_type.code, "security_level": spec.security_level,
            "config": _config_record(spec), "countermeasures": countermeasures, "started": started,
            "command": redact(shlex.join(["pytest", *config.invocation_params.args])), "gate": state.gate,
            "selection": {"deselected": deselected, "paths": paths}, "environment": env,
            "collected": state.collected.get(loaded.name, []),
        })
        loaded.run_dir, loaded.writer = run_dir, writer
    for name, outcome in state.pending:
        opened_writer = state.targets[name].writer if name in names else None
        if opened_writer is not None:
            opened_writer.outcome(outcome, 0.0)
    state.pending = [(name, outcome) for name, outcome in state.pending if name not in names]
    state.started = True


def pytest_collection_finish(session: pytest.Session) -> None:
    state = _state(session.config)
    if state is None or session.config.option.collectonly or state.role == "worker":
        return  # a worker opens a target's folder when it is handed that target's tests (pytest_runtest_protocol)
    if any(_rows(item) for item in session.items) or state.pending:
        _open_reports(state, session.config, list(state.targets))


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    """An xdist worker runs whole targets (harness.plugin.xdist): it writes the run folder of each target it was
    given, from that target's first test on, and no other."""
    state = _state(item.config)
    if state is None:
        return
    from iec62443_harness.plugin import live

    live.current(item.config, item)
    if state.role != "worker":
        return
    name = _target_of(item)
    if name is not None and state.targets[name].writer is None:
        _open_reports(state, item.config, [name])


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    state = _state(session.config)
    if state is None:
        return
    state.finishing = True
    if state.role == "controller":
        _finish_controller(session, state, exitstatus)
        return
    if not state.started:
        if state.role == "worker":
            from iec62443_harness.plugin import xdist

            xdist.send_runs(session.config, {}, state.unjudged_failed)
        return
    from iec62443_harness.report import load_matrix, write_reports
    from iec62443_harness.report.gate import exit_status as gate_exit
    from iec62443_harness.report.results import INTERRUPTED, NOT_REACHED

    opened = [loaded for loaded in state.targets.values() if loaded.writer is not None]
    unreached = [item for item in session.items if _rows(item) and not item.stash.get(_RECORDED, False)
                 and ((name := _target_of(item)) is None or state.targets[name].writer is not None)]
    for item in unreached:  # stopped early (-x, Ctrl-C, SIGTERM, a crash): say so rather than "not tested"
        reason = INTERRUPTED if item.stash.get(_PHASES, None) is not None else NOT_REACHED
        _record(session.config, _target_of(item), Outcome(_test_id(item), _rows(item), Verdict.NOT_RUN, reason))
    for loaded in opened:
        assert loaded.writer is not None and loaded.run_dir is not None  # opened: both exist
        run_dir = loaded.run_dir
        loaded.writer.end(int(exitstatus), len(unreached), state.stopped_by)
        try:
            write_reports(run_dir)
            loaded.holds = load_matrix(run_dir)["summary"]["gate"]["holds"]
        except (OSError, HarnessError) as exc:
            sys.stderr.write(f"could not write the matrix for {loaded.name}: {exc}; rebuild it with "
                             f"`iec62443 rebuild {run_dir}`\n")
        try:  # `latest`: the run that finished last, not merely the one that started last
            if _may_take_latest(run_dir, loaded.partial):
                _point_latest(run_dir)
        except OSError as exc:
            sys.stderr.write(f"could not point {run_dir.parent / 'latest'} at this run: {exc.strerror}\n")
    # The exit status is the gate's (harness.report.gate): a FAIL above SL-T is reported, not fatal. A matrix
    # that could not be written judges nothing: pytest's own status stands then.
    judged = [loaded.holds for loaded in opened]
    if None not in judged:
        session.exitstatus = state.exit_status = gate_exit(int(exitstatus), all(judged), state.unjudged_failed)
    if state.role == "worker":  # what the controller reports and gates on (pytest_testnodedown)
        from iec62443_harness.plugin import xdist

        xdist.send_runs(session.config, {loaded.name: {"run_dir": str(loaded.run_dir), "holds": loaded.holds,
                                                       "partial": loaded.partial} for loaded in opened},
                        state.unjudged_failed)


def _finish_controller(session: pytest.Session, state: HarnessState, exitstatus: int) -> None:
    """Under xdist the workers wrote the run folders (pytest_testnodedown brought them here): gate on them."""
    from iec62443_harness.report.gate import exit_status as gate_exit

    missing = [loaded.name for loaded in state.targets.values() if loaded.run_dir is None]
    for name in missing:
        run_dir = state.reports_dir / name / state.run_id
        if run_dir.exists():  # a stopped run: its worker was told (SIGTERM) and ends the folder by itself
            sys.stderr.write(f"target {name}: the run stopped before its worker reported; what it reached is in "
                             f"{run_dir} (`iec62443 rebuild {run_dir}` if its matrix is missing)\n")
        else:
            sys.stderr.write(f"target {name}: no worker ran its tests, so it has no run folder in this run\n")
    judged = [loaded.holds for loaded in state.targets.values()]
    state.started = len(missing) < len(state.targets)
    if not missing and None not in judged:
        session.exitstatus = state.exit_status = gate_exit(int(exitstatus), all(judged), state.unjudged_failed)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: WorkerController) -> None:
    state = _state(node.config)
    if state is not None:
        from iec62443_harness.plugin import xdist

        xdist.configure_node(node, state.run_id)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodeready(node: WorkerController) -> None:
    state = _state(node.config)
    if state is not None:
        from iec62443_harness.plugin import xdist

        pid = xdist.worker_pid(node)
        if pid is not None:
            state.worker_pids.append(pid)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: WorkerController, error: object) -> None:
    state = _state(node.config)
    if state is None:
        return
    from iec62443_harness.plugin import xdist

    runs, unjudged_failed = xdist.received(node)
    state.unjudged_failed |= unjudged_failed
    for name, run in runs.items():
        loaded = state.targets[name]
        loaded.run_dir, loaded.holds, loaded.partial = Path(run["run_dir"]), run["holds"], run["partial"]


@pytest.hookimpl(optionalhook=True, tryfirst=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Each target's tests on one worker (harness.plugin.xdist), whatever --dist was asked for."""
    state = _state(config)
    if state is None:
        return None
    from iec62443_harness.plugin import xdist

    return xdist.make_scheduler(config, log, list(state.targets))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, exitstatus: int, config: pytest.Config) -> None:
    state = _state(config)
    if state is None or not state.started:
        return
    from iec62443_harness.report import load_matrix
    from iec62443_harness.report.summary import render_summary

    for loaded in state.targets.values():
        run_dir = loaded.run_dir
        if run_dir is None:
            continue  # never started (a worker that stopped before it), said at sessionfinish
        try:
            matrix = load_matrix(run_dir)
        except HarnessError:
            continue  # said at sessionfinish
        terminalreporter.write_sep("=", f"IEC 62443-4-2 matrix: {loaded.name}")
        terminalreporter.write(render_summary(matrix, run_dir, terminalreporter.hasmarkup,
                                              terminalreporter._tw.fullwidth))
        latest = run_dir.parent / "latest"
        if loaded.partial and latest.resolve() != run_dir.resolve():
            terminalreporter.write_line(f"{latest} still names {latest.resolve().name}, the last run that was not "
                                        "limited by selection")
    if state.exit_status is not None:
        terminalreporter.write_line(f"exit status {state.exit_status}: gate {state.gate}"
                                    + (f" (pytest's own: {int(exitstatus)})" if int(exitstatus) != state.exit_status
                                       else ""))


def pytest_unconfigure(config: pytest.Config) -> None:
    state = _state(config)
    if state is None:
        return
    from iec62443_harness.plugin import live

    live.stop(config)
    for lock in state.locks:  # after sessionfinish wrote every report
        lock.release()
    state.locks.clear()
    if state.sigterm_installed:
        signal.signal(signal.SIGTERM, state.previous_sigterm if state.previous_sigterm is not None
                      else signal.SIG_DFL)
        state.sigterm_installed = False
