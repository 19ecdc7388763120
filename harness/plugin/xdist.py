"""Running under pytest-xdist: each target's tests on one worker, one complete run folder per target.

A device is driven by one worker at a time, and one run folder holds one target's whole matrix, so the
controller hands out work by target (`TargetScheduling`, a `--dist loadscope` whose scope is the target), not by
test. Each worker writes the run folder of each target it was given, as the tests end (a killed run still leaves
a readable partial matrix), and sends its folders and gates back; the controller writes no run folder, prints
the workers' matrices and gates on them. The controller holds each real device's run lock for its workers.

With one target there is nothing to share out without splitting that target's matrix over two folders, so more
than one worker is refused on one line. pytest-xdist is optional: nothing here imports it unless it runs.
"""

from __future__ import annotations

from typing import Any

import pytest

_RUN_ID = "iec62443_run_id"  # workerinput key: the controller's run id, shared by every worker
_OUTPUT = "iec62443_runs"  # workeroutput key: {target: {run_dir, holds, partial}}
_UNJUDGED = "iec62443_unjudged_failed"


def role(config: pytest.Config) -> str:
    """'worker' in an xdist worker, 'controller' in the process that distributes tests, else 'serial'."""
    if hasattr(config, "workerinput"):
        return "worker"
    if not config.pluginmanager.hasplugin("xdist") or config.getoption("collectonly", False):
        return "serial"
    if config.getoption("dist", "no") != "no" and config.getoption("tx", None):
        return "controller"
    return "serial"


def worker_run_id(config: pytest.Config) -> str | None:
    return getattr(config, "workerinput", {}).get(_RUN_ID)


def workers(config: pytest.Config) -> int:
    return len(config.getoption("tx", None) or [])


def refusal(config: pytest.Config, names: list[str]) -> str | None:
    """Why this distribution cannot give each target one complete matrix, in one line; None when it can."""
    dist = config.getoption("dist", "no")
    if dist == "each":
        return ("--dist each runs every test on every worker, which drives each device from several workers at "
                "once: use -n N (the harness gives each target to one worker)")
    if len(names) == 1 and workers(config) > 1:
        return (f"-n {workers(config)} with one target ({names[0]}): the harness runs each target on one worker "
                "(one device, one complete matrix), so a second worker would have nothing to do; drop -n, or give "
                "one --target per worker")
    return None


def configure_node(node: Any, run_id: str) -> None:
    node.workerinput[_RUN_ID] = run_id


def worker_pid(node: Any) -> int | None:
    """The worker's process id (execnet reports it when the worker starts), to pass a SIGTERM on to."""
    try:
        return int(node.gateway._rinfo().pid)
    except Exception:  # noqa: BLE001 (an older execnet, a remote gateway): the worker then ends as xdist ends it
        return None


def send_runs(config: pytest.Config, runs: dict[str, dict[str, Any]], unjudged_failed: bool) -> None:
    output = getattr(config, "workeroutput", None)
    if output is not None:
        output[_OUTPUT] = runs
        output[_UNJUDGED] = unjudged_failed


def received(node: Any) -> tuple[dict[str, dict[str, Any]], bool]:
    """What a finished worker sent: its run folders by target, and whether a test judging no row failed."""
    output = getattr(node, "workeroutput", None) or {}
    return dict(output.get(_OUTPUT) or {}), bool(output.get(_UNJUDGED))


def make_scheduler(config: pytest.Config, log: Any, names: list[str]) -> Any:
    from xdist.scheduler import LoadScopeScheduling

    class TargetScheduling(LoadScopeScheduling):
        """One work unit per target: all of a target's tests go to the worker that takes the unit."""

        def _split_scope(self, nodeid: str) -> str:
            return target_of_nodeid(nodeid, names)

    return TargetScheduling(config, log)


def target_of_nodeid(nodeid: str, names: list[str]) -> str:
    """The target a test id runs against: the parameter ids start with it (`test_x[sim-plc-insecure-ssh]`).
    The longest name that fits wins, so `sim-plc` never takes `sim-plc-insecure`'s tests. '' for no target."""
    _, _, params = nodeid.rpartition("::")[2].partition("[")
    for name in sorted(names, key=len, reverse=True):
        if params.startswith(name) and params[len(name):len(name) + 1] in ("-", "]"):
            return name
    return ""
