"""Network namespaces for the emulated devices (root and iproute2 only): the QEMU guest's zones and networks
(`labs/qemu/netns.py`) and an address of the emulated PLC's own (`OwnAddress`).

`OwnAddress` is one namespace per device with a veth pair: `10.62.N.2` inside (the device's address), `10.62.N.1`
on the root side (the harness's), N in 100-199 (the QEMU lab uses 10.62.1-3 and 10.62.11-12, all inside its own
namespaces). Its name, `simplc-OWNERPID-N`, says which process made it: a start first sweeps the namespaces whose
owner is dead (a killed harness), and picks N under a lock file, so that parallel harnesses never share a subnet.
Nothing in the root namespace talks to the wider network: the root side gets no IPv6 address and both ends know
each other's MAC address, so no ARP, neighbour discovery or MLD packet is ever sent, only unicast to the device.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from iec62443_harness.labs import LabError

T = TypeVar("T")
CLONE_NEWNET = 0x40000000
NETNS_DIR = "/run/netns"
LOCK_FILE = "/run/lock/iec62443-labs-netns.lock"
LOCK_TIMEOUT_S = 10.0
OWN_SUBNETS = range(100, 200)  # third octet of 10.62.N.0/30
OWN_PREFIX = "simplc"


def unavailable(*tools: str) -> str | None:
    """Why namespaces cannot be made here (root and `ip`, and `tools`), or None when they can."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    missing = [tool for tool in ("ip", *tools) if not shutil.which(tool)]
    if missing:
        return f"{' and '.join(missing)} not installed (apt-get install -y iproute2)"
    return None


def ip(*args: str, ns: str | None = None) -> None:
    """One iproute2 command (inside namespace `ns` when given); a LabError naming it when it fails."""
    argv = ["ip", *(["-n", ns] if ns else []), *args]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    if done.returncode != 0:
        raise LabError(f"{' '.join(argv)} failed ({done.stderr.strip()}): check that network namespaces "
                       "work here (root, iproute2)")


def delete(ns: str) -> None:
    """Remove a namespace's name; the namespace (and its virtual links) goes once nothing holds it."""
    subprocess.run(["ip", "netns", "delete", ns], capture_output=True, timeout=10)


def run_in(ns: str, fn: Callable[[], T], timeout: float = 10.0) -> T:
    """`fn()` in a short-lived thread that entered namespace `ns` (a network namespace belongs to a thread), so
    every socket or device it makes lives there while the rest of the process stays put. Its exceptions are
    raised here; a LabError when the namespace cannot be entered."""
    result: dict[str, object] = {}

    def work() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            with open(f"{NETNS_DIR}/{ns}") as nsf:
                if libc.setns(nsf.fileno(), CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), f"setns: {os.strerror(ctypes.get_errno())}")
        except OSError as exc:
            result["enter"] = exc
            return
        try:
            result["value"] = fn()
        except BaseException as exc:  # handed to the caller's thread
            result["error"] = exc

    thread = threading.Thread(target=work, name=f"in-netns-{ns}", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise LabError(f"work inside network namespace {ns} did not end within {timeout:g} s: the machine may be "
                       "overloaded")
    if "enter" in result:
        raise LabError(f"cannot enter network namespace {ns} ({result['enter']}): it must exist and this needs root")
    if "error" in result:
        raise result["error"]  # type: ignore[misc]
    return result["value"]  # type: ignore[return-value]


def alive(pid: int) -> bool:
    """Whether process `pid` still exists (the owner a namespace's name records)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    """Across processes: one harness at a time sweeps and picks a subnet."""
    os.makedirs(os.path.dirname(LOCK_FILE), exist_ok=True)
    fd = os.open(LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + LOCK_TIMEOUT_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise LabError(f"{LOCK_FILE} stayed locked for {LOCK_TIMEOUT_S:g} s: another harness is stuck "
                                   "making a namespace; end it") from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)  # releases the lock


_OWN_NAME = re.compile(rf"^{OWN_PREFIX}-(\d+)-(\d+)$")


def named(pattern: re.Pattern[str]) -> list[re.Match[str]]:
    """The namespaces whose names match `pattern` (group 1: the pid of the process that made them)."""
    try:
        names = os.listdir(NETNS_DIR)
    except FileNotFoundError:
        return []
    return [m for name in names if (m := pattern.match(name))]


def orphaned(pattern: re.Pattern[str]) -> list[re.Match[str]]:
    """Those of them whose owner process is gone (a harness killed before it could clean up)."""
    return [m for m in named(pattern) if not alive(int(m[1]))]


def own_namespaces() -> dict[str, tuple[int, int]]:
    """Every device namespace there is: name -> (owner pid, subnet N)."""
    return {m[0]: (int(m[1]), int(m[2])) for m in named(_OWN_NAME)}


def sweep() -> list[str]:
    """Remove the device namespaces whose owner process is gone, with the root side of their veth pair."""
    stale = orphaned(_OWN_NAME)
    for m in stale:
        with contextlib.suppress(LabError):
            ip("link", "delete", _host_link(int(m[2])))
        delete(m[0])
    return [m[0] for m in stale]


def _host_link(n: int) -> str:
    return f"v62-{n}"  # the root side of the pair (an interface name has at most 15 characters)


def _mac(n: int, end: int) -> str:
    return f"02:62:00:00:{n:02x}:{end:02x}"  # locally administered


@dataclass
class OwnAddress:
    """A network namespace of one device's own: `address` inside it, `host_address` on the root side."""

    n: int
    owner: int

    @property
    def name(self) -> str:
        return f"{OWN_PREFIX}-{self.owner}-{self.n}"

    @property
    def address(self) -> str:
        return f"10.62.{self.n}.2"

    @property
    def host_address(self) -> str:
        return f"10.62.{self.n}.1"

    @classmethod
    def create(cls) -> OwnAddress:
        if reason := unavailable():
            raise LabError(f"cannot give the device an address of its own: {reason}")
        with _locked():
            sweep()
            taken = {n for _, n in own_namespaces().values()}
            free = [n for n in OWN_SUBNETS if n not in taken and not os.path.exists(f"/sys/class/net/{_host_link(n)}")]
            if not free:
                raise LabError(f"all {len(OWN_SUBNETS)} device subnets 10.62.{OWN_SUBNETS[0]}-{OWN_SUBNETS[-1]}.0/30 "
                               "are in use: stop some emulated devices")
            made = cls(free[0], os.getpid())
            made._build()
        return made

    def _build(self) -> None:
        ns, link = self.name, _host_link(self.n)
        try:
            ip("netns", "add", ns)
            ip("link", "set", "lo", "up", ns=ns)
            ip("link", "add", link, "address", _mac(self.n, 1), "type", "veth",
               "peer", "name", "eth0", "address", _mac(self.n, 2), "netns", ns)
            if os.path.exists("/proc/sys/net/ipv6"):  # no link-local address: no DAD, router solicitation, MLD
                ip("link", "set", link, "addrgenmode", "none")
                ip("link", "set", "eth0", "addrgenmode", "none", ns=ns)
            ip("addr", "add", f"{self.host_address}/30", "dev", link)
            ip("addr", "add", f"{self.address}/30", "dev", "eth0", ns=ns)
            ip("neigh", "replace", self.address, "lladdr", _mac(self.n, 2), "dev", link, "nud", "permanent")
            ip("neigh", "replace", self.host_address, "lladdr", _mac(self.n, 1), "dev", "eth0", "nud", "permanent",
               ns=ns)
            ip("link", "set", link, "up")
            ip("link", "set", "eth0", "up", ns=ns)
        except BaseException:
            self.destroy()
            raise

    def destroy(self) -> None:
        """The root side first (it goes at once, even while a dying device still holds the namespace)."""
        if os.path.exists(f"/sys/class/net/{_host_link(self.n)}"):
            subprocess.run(["ip", "link", "delete", _host_link(self.n)], capture_output=True, timeout=10)
        delete(self.name)

    def exists(self) -> bool:
        return os.path.exists(f"{NETNS_DIR}/{self.name}")
