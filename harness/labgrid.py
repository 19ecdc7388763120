"""A labgrid place for the run: acquired and released through labgrid's own client, never a lock of our own.

labgrid is what HIL labs already run to share benches (a coordinator, exporters on the bench hosts, places that
people acquire). A target file's `labgrid: {place: NAME}` makes the harness acquire that place for the run with
`labgrid-client -p NAME acquire`, take the interface addresses the file leaves out from the place's resources,
use the place's power port (`labgrid-client power cycle`) as the recovery action when the file names none, and
release the place at the end.

labgrid is not a dependency of the harness: it brings `pyserial-labgrid`, a fork that installs its own `serial`
module over pyserial's in the same environment. So the harness runs `labgrid-client` from wherever labgrid is
installed (`labgrid.client`, $LG_CLIENT, or PATH).

A place stays acquired when the process that acquired it dies, and labgrid has no lease that ends by itself,
so the harness starts a small watchdog (`python -m iec62443_harness.labgrid watch`) before it acquires: it waits
on the harness's pid (a pidfd) and, unless told the place was released, runs `labgrid-client release-from
HOST/USER` once that pid is gone (kill -9 included); `release-from` never releases anyone else's acquisition.

Resources, by name (a match's rename) first, else by class: a NetworkService named modbus_tcp, ssh, https or
http gives that interface's address and port (an unnamed NetworkService is labgrid's ssh service); a
NetworkSerialPort named console or modbus_rtu gives that port's url (rfc2217:// or socket://; unnamed: the
console); a power port (NetworkPowerPort, PDUDaemonPort, USBPowerPort, ...) gives the recovery action.
"""

from __future__ import annotations

import ast
import getpass
import os
import select
import shlex
import shutil
import socket
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from typing import IO, Any

from iec62443_harness.errors import HarnessError

POWER_CLASSES = {"NetworkPowerPort", "PDUDaemonPort", "USBPowerPort", "SiSPMPowerPort", "TasmotaPowerPort",
                 "YKUSHPowerPort", "ModbusTCPCoil"}
SERVICE_INTERFACES = ("modbus_tcp", "ssh", "https", "http")
SERIAL_INTERFACES = ("console", "modbus_rtu")


@dataclass(frozen=True)
class Resource:
    name: str  # the match's rename, else the exporter's resource name
    cls: str
    params: dict[str, Any]


def identity() -> str:
    """HOST/USER as labgrid-client names an acquisition (it reads the same variables)."""
    return f"{os.environ.get('LG_HOSTNAME', socket.gethostname())}/{os.environ.get('LG_USERNAME', getpass.getuser())}"


def parse_show(text: str) -> tuple[str | None, list[Resource]]:
    """`labgrid-client -p PLACE show`: who holds the place ('None' when free) and its acquired resources."""
    holder: str | None = None
    resources: list[Resource] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.strip().startswith("acquired:") and holder is None:
            value = line.split(":", 1)[1].strip()
            holder = None if value in ("", "None") else value
        if line.startswith("Acquired resource '"):
            name = line[len("Acquired resource '"):].split("'", 1)[0]
            block = []
            i += 1
            while i < len(lines) and lines[i].startswith(" "):
                block.append(lines[i])
                i += 1
            try:
                data = ast.literal_eval(textwrap.dedent("\n".join(block)))
            except (ValueError, SyntaxError):
                raise HarnessError(f"labgrid-client show printed resource {name!r} in a form this harness does not "
                                   "read; use labgrid 26.x") from None
            resources.append(Resource(name, str(data.get("cls", "")), dict(data.get("params") or {})))
            continue
        i += 1
    return holder, resources


def endpoints(resources: list[Resource]) -> dict[str, dict[str, Any]]:
    """Interface address fields from the place's resources (harness.target field names)."""
    found: dict[str, dict[str, Any]] = {}
    for res in resources:
        p = res.params
        if res.cls == "NetworkService":
            name = res.name if res.name in SERVICE_INTERFACES else ("ssh" if res.name == res.cls else None)
            if name in ("https", "http"):
                found[name] = {"base_url": f"{name}://{_host(p['address'])}:{int(p.get('port', 443))}"}
            elif name is not None:
                found[name] = {"host": p["address"], "port": int(p.get("port", 22))}
        elif res.cls == "NetworkSerialPort":
            name = res.name if res.name in SERIAL_INTERFACES else ("console" if res.name == res.cls else None)
            if name is not None:
                scheme = "socket" if p.get("protocol") == "raw" else "rfc2217"
                found[name] = {"url": f"{scheme}://{_host(p['host'])}:{int(p['port'])}"}
    return found


def _host(address: str) -> str:
    return f"[{address}]" if ":" in address else address


class Place:
    """One place, held for one run: `acquire()`, then `resources`, `power_command()`, and `release()`."""

    def __init__(self, place: str, *, coordinator: str | None = None, client: str | None = None,
                 timeout_s: float = 30.0) -> None:
        self.place, self.timeout_s = place, timeout_s
        self.coordinator = coordinator or os.environ.get("LG_COORDINATOR")
        self.client = client or os.environ.get("LG_CLIENT") or shutil.which("labgrid-client")
        if not self.client:
            raise HarnessError(f"labgrid place {place}: labgrid-client not found; install labgrid apart from the "
                               "harness (README, 'Several targets and shared benches') and set LG_CLIENT or "
                               "labgrid.client in the target file to its labgrid-client")
        self.resources: list[Resource] = []
        self.acquired = False
        self._watchdog: subprocess.Popen[bytes] | None = None

    def command(self, *args: str) -> list[str]:
        base = [self.client or "labgrid-client"] + (["-x", self.coordinator] if self.coordinator else [])
        return [*base, "-p", self.place, *args]

    def _run(self, *args: str) -> str:
        try:
            done = subprocess.run(self.command(*args), capture_output=True, text=True, timeout=self.timeout_s,
                                  check=False)
        except subprocess.TimeoutExpired:
            raise HarnessError(f"labgrid place {self.place}: `labgrid-client {args[0]}` did not answer within "
                               f"{self.timeout_s:g} s; is the coordinator ({self.coordinator or 'default'}) "
                               "running?") from None
        except OSError as exc:
            raise HarnessError(f"labgrid place {self.place}: cannot run {self.client}: {exc.strerror}") from None
        if done.returncode != 0:
            said = next((ln.strip() for ln in reversed((done.stderr or done.stdout).splitlines()) if ln.strip()), "")
            raise HarnessError(f"labgrid place {self.place}: labgrid-client {args[0]} failed: {said or 'no reason'}")
        return done.stdout

    def show(self) -> tuple[str | None, list[Resource]]:
        return parse_show(self._run("show"))

    def acquire(self) -> None:
        """Acquire the place (refused on one line when someone holds it) and read its resources."""
        self._start_watchdog()
        try:
            self._run("acquire")
        except HarnessError:
            self._stop_watchdog()
            raise
        self.acquired = True
        _, self.resources = self.show()

    def power_command(self) -> str | None:
        """`labgrid-client ... power cycle` when the place has a power port, as a recovery.command."""
        if not any(r.cls in POWER_CLASSES for r in self.resources):
            return None
        return shlex.join(self.command("power", "cycle"))

    def release(self) -> None:
        if self.acquired:
            self.acquired = False
            try:
                self._run("release")
            except HarnessError as exc:
                sys.stderr.write(f"{exc}; release it with `labgrid-client -p {self.place} release`\n")
        self._stop_watchdog()

    def _start_watchdog(self) -> None:
        release = self.command("release-from", identity())
        self._watchdog = subprocess.Popen(  # its own session: a Ctrl-C to the run does not end it first
            [sys.executable, "-m", "iec62443_harness.labgrid", "watch", str(os.getpid()), *release],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)

    def _stop_watchdog(self) -> None:
        dog, self._watchdog = self._watchdog, None
        if dog is None:
            return
        try:
            assert dog.stdin is not None
            dog.stdin.write(b"released\n")
            dog.stdin.close()
            dog.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            dog.kill()
            dog.wait()


def with_place(spec: Any, place: Place, target: str) -> Any:
    """`spec` (a TargetSpec) with the addresses it leaves out taken from the acquired place, and the place's power
    cycle as recovery.command when it names none. HarnessError naming what is still missing."""
    from iec62443_harness.target import _ADDRESS_FIELDS

    given = endpoints(place.resources)
    updated = {}
    for name in spec.interfaces.declared():
        iface = getattr(spec.interfaces, name)
        # the file's own address wins: the place fills only what it leaves out
        fields = {k: v for k, v in given.get(name, {}).items()
                  if k in _ADDRESS_FIELDS[name] and getattr(iface, k) is None}
        iface = iface.model_copy(update=fields)
        missing = [f for f in _ADDRESS_FIELDS[name] if getattr(iface, f) is None]
        if missing:
            have = ", ".join(f"{r.name} ({r.cls})" for r in place.resources) or "none"
            raise HarnessError(f"target {target}: interfaces.{name} needs {', '.join(missing)}, which neither the "
                               f"target file nor labgrid place {place.place} gives (its resources: {have}); add a "
                               f"resource named {name} to the place, or the address to the target file")
        updated[name] = iface
    recovery = spec.recovery
    if recovery.command is None and place.power_command():
        recovery = recovery.model_copy(update={"command": place.power_command()})
    return spec.model_copy(update={"interfaces": spec.interfaces.model_copy(update=updated), "recovery": recovery})


def watch(pid: int, release: list[str], stdin: IO[bytes]) -> int:
    """The watchdog: wait until `pid` is gone or stdin says 'released'; when the harness died still holding the
    place, run `release` (a `release-from` of the harness's own acquisition)."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        pidfd = None  # gone already
    if pidfd is not None:
        ready, _, _ = select.select([pidfd, stdin.fileno()], [], [])
        if stdin.fileno() in ready and stdin.readline().strip() == b"released":
            return 0
    for _ in range(3):  # the coordinator may be busy: try a few times
        try:
            if subprocess.run(release, capture_output=True, timeout=60, check=False).returncode == 0:
                return 0
        except (OSError, subprocess.TimeoutExpired):
            pass
    return 1


if __name__ == "__main__" and len(sys.argv) > 3 and sys.argv[1] == "watch":
    sys.exit(watch(int(sys.argv[2]), sys.argv[3:], sys.stdin.buffer))
