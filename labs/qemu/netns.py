"""Zones and a conduit for the QEMU guest, made of network namespaces (optional; needs root).

    eng (10.62.2.10) ─┐
                      ├─ rtr (nftables conduit policy) ── ctl: bridge ── tap ── guest eth1 (10.62.1.10)
    ent (10.62.3.10) ─┘

The guest keeps its user-mode NIC for the harness's loopback endpoints and gets a second NIC on a tap
device that is created inside the control zone, so nothing of this ever touches the root namespace. The
router forwards only what the conduit allows: from the engineering zone SSH and Modbus; from the
enterprise zone Modbus is refused with a TCP reset and everything else is dropped silently; nothing
leaves the control zone unless it answers an allowed connection.
"""

from __future__ import annotations

import fcntl
import os
import re
import secrets
import struct
import subprocess
from dataclasses import dataclass

from iec62443_harness.labs import LabError
from iec62443_harness.labs.netns import delete, orphaned, run_in
from iec62443_harness.labs.netns import ip as _ip
from iec62443_harness.labs.netns import unavailable as _unavailable

GUEST_IP = "10.62.1.10"
GUEST_MAC = "52:54:00:62:44:01"  # how the guest tells its zone NIC from the user-mode one
ZONE_HOSTS = {"eng": "10.62.2.10", "ent": "10.62.3.10"}
CONDUIT = f"""
table inet conduit {{
    chain forward {{
        type filter hook forward priority 0; policy drop;
        ct state established,related accept
        iifname "eng" ip daddr {GUEST_IP} tcp dport {{ 22, 502 }} accept
        iifname "ent" ip daddr {GUEST_IP} tcp dport 502 reject with tcp reset
    }}
}}
"""
_TUNSETIFF = 0x400454CA
_IFF_TAP, _IFF_NO_PI = 0x0002, 0x1000


_OWNED = re.compile(r"^(?:qplc|qnet)-(\d+)-[0-9a-f]+-\w+$")  # KIND-OWNERPID-TOKEN-ZONE


def prefix(kind: str) -> str:
    """A fresh name prefix for one guest's namespaces ('qplc' zones, 'qnet' networks) that records the process
    making them, so that a later start can sweep them once that process is gone (a harness killed mid-run)."""
    return f"{kind}-{os.getpid()}-{secrets.token_hex(3)}"


def sweep() -> list[str]:
    """Delete the guests' namespaces whose owner process is gone; the names deleted."""
    stale = [m[0] for m in orphaned(_OWNED)]
    for name in stale:
        delete(name)  # its veths and taps go with it
    return stale


def unavailable() -> str | None:
    """Why zones cannot be made here, or None when they can."""
    if reason := _unavailable("nft"):
        return reason.replace("iproute2", "iproute2 nftables")
    if not os.path.exists("/dev/net/tun"):
        return "/dev/net/tun is missing (no tap devices in this sandbox)"
    return None


def _in_ns(ns: str, *argv: str, stdin: str | None = None) -> None:
    done = subprocess.run(["ip", "netns", "exec", ns, *argv], input=stdin, capture_output=True, text=True,
                          timeout=10)
    if done.returncode != 0:
        raise LabError(f"{argv[0]} in namespace {ns} failed ({done.stderr.strip()}): check nftables")


@dataclass
class Zones:
    """The namespaces of one guest; `ns(zone)` names the namespace of 'eng', 'ent', 'ctl' or 'rtr'."""

    prefix: str
    tap_fd: int = -1

    def ns(self, zone: str) -> str:
        return f"{self.prefix}-{zone}"

    def create(self) -> Zones:
        reason = unavailable()
        if reason:
            raise LabError(f"cannot make the QEMU guest's zones: {reason}")
        try:
            for zone in ("rtr", "ctl", *ZONE_HOSTS):
                _ip("netns", "add", self.ns(zone))
                _ip("link", "set", "lo", "up", ns=self.ns(zone))
            rtr = self.ns("rtr")
            # veth pairs made straight inside the namespaces: never an interface in the root namespace
            _ip("link", "add", "ctl", "netns", rtr, "type", "veth", "peer", "name", "r0", "netns", self.ns("ctl"))
            _ip("addr", "add", "10.62.1.1/24", "dev", "ctl", ns=rtr)
            _ip("link", "set", "ctl", "up", ns=rtr)
            for zone, host in ZONE_HOSTS.items():
                gateway = host.rsplit(".", 1)[0] + ".1"
                _ip("link", "add", zone, "netns", rtr, "type", "veth", "peer", "name", "e0", "netns", self.ns(zone))
                _ip("addr", "add", f"{gateway}/24", "dev", zone, ns=rtr)
                _ip("link", "set", zone, "up", ns=rtr)
                _ip("addr", "add", f"{host}/24", "dev", "e0", ns=self.ns(zone))
                _ip("link", "set", "e0", "up", ns=self.ns(zone))
                _ip("route", "add", "default", "via", gateway, ns=self.ns(zone))
            _in_ns(rtr, "sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward")
            _in_ns(rtr, "nft", "-f", "-", stdin=CONDUIT)
            ctl = self.ns("ctl")
            _ip("link", "add", "br0", "type", "bridge", ns=ctl)
            _ip("link", "set", "r0", "master", "br0", "up", ns=ctl)
            self.tap_fd = _open_tap(ctl, "t0")
            _ip("link", "set", "t0", "master", "br0", "up", ns=ctl)
            _ip("link", "set", "br0", "up", ns=ctl)
        except BaseException:
            self.destroy()
            raise
        return self

    def qemu_args(self) -> list[str]:
        """The zone NIC for QEMU; pass `tap_fd` to the child (Popen pass_fds)."""
        return ["-netdev", f"tap,id=z0,fd={self.tap_fd}", "-device", f"virtio-net-pci,netdev=z0,mac={GUEST_MAC}"]

    def close_tap(self) -> None:
        """Our copy of the tap descriptor: once QEMU holds its own, the tap lives as long as QEMU."""
        if self.tap_fd >= 0:
            os.close(self.tap_fd)
            self.tap_fd = -1

    def destroy(self) -> None:
        self.close_tap()
        for zone in ("eng", "ent", "ctl", "rtr"):  # deleting a namespace deletes its virtual links
            subprocess.run(["ip", "netns", "delete", self.ns(zone)], capture_output=True, timeout=10)


# Two networks of their own for the guest (CR 5.1 segmentation): each a namespace holding a tap whose host side
# has the peer address; the guest's NIC on it has the device address. Each namespace routes the other network
# through the guest, so whatever the guest forwards between its NICs arrives at the other peer.
SEGMENTS = {"zone_a": ("52:54:00:62:44:0a", "10.62.11.1", "10.62.11.10"),
            "zone_b": ("52:54:00:62:44:0b", "10.62.12.1", "10.62.12.10")}  # name: guest MAC, guest IP, peer IP


@dataclass
class Segments:
    """Two namespaces, `ns(name)` for each of SEGMENTS, each with a tap for one guest NIC."""

    prefix: str
    tap_fds: dict[str, int] | None = None

    def ns(self, name: str) -> str:
        return f"{self.prefix}-{name[-1]}"

    def create(self) -> Segments:
        reason = unavailable()
        if reason:
            raise LabError(f"cannot make the QEMU guest's networks: {reason}")
        self.tap_fds = {}
        try:
            for name, (_, guest, peer) in SEGMENTS.items():
                ns = self.ns(name)
                _ip("netns", "add", ns)
                _ip("link", "set", "lo", "up", ns=ns)
                self.tap_fds[name] = _open_tap(ns, "t0")
                _ip("addr", "add", f"{peer}/24", "dev", "t0", ns=ns)
                _ip("link", "set", "t0", "up", ns=ns)
                for other, (_, _, other_peer) in SEGMENTS.items():
                    if other != name:
                        _ip("route", "add", other_peer.rsplit(".", 1)[0] + ".0/24", "via", guest, ns=ns)
        except BaseException:
            self.destroy()
            raise
        return self

    def qemu_args(self) -> list[str]:
        """One NIC per network; pass `fds()` to the child (Popen pass_fds)."""
        args = []
        for i, (name, (mac, _, _)) in enumerate(SEGMENTS.items()):
            args += ["-netdev", f"tap,id=s{i},fd={self.tap_fds[name]}",
                     "-device", f"virtio-net-pci,netdev=s{i},mac={mac}"]
        return args

    def fds(self) -> tuple[int, ...]:
        return tuple((self.tap_fds or {}).values())

    def close_taps(self) -> None:
        for fd in (self.tap_fds or {}).values():
            os.close(fd)
        self.tap_fds = {}

    def endpoints(self) -> dict[str, dict[str, str]]:
        return {name: {"namespace": self.ns(name)} for name in SEGMENTS}

    def destroy(self) -> None:
        self.close_taps()
        for name in SEGMENTS:
            subprocess.run(["ip", "netns", "delete", self.ns(name)], capture_output=True, timeout=10)


def _open_tap(ns: str, name: str) -> int:
    """A tap device created inside namespace `ns` (by a thread that entered it: the process stays put)."""

    def work() -> int:
        fd = os.open("/dev/net/tun", os.O_RDWR)
        fcntl.ioctl(fd, _TUNSETIFF, struct.pack("16sH", name.encode(), _IFF_TAP | _IFF_NO_PI))
        return fd

    try:
        return run_in(ns, work)
    except (OSError, LabError) as exc:
        raise LabError(f"cannot create a tap device in namespace {ns} ({exc}): check /dev/net/tun and root rights") \
            from None
