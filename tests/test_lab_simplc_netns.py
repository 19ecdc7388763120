"""The emulated PLC at an address of its own (launcher option `own_address`, labs/netns.py OwnAddress): reachable
there and only there, a second device gets another address, a restart keeps address and ports, stop removes the
namespace and its root-side link, and the namespace of a harness killed with SIGKILL is swept by the next start.
Without namespaces the device stays on loopback, saying so once; `required` refuses instead."""

from __future__ import annotations

import ipaddress
import logging
import os
import signal
import socket
import struct
import subprocess
import sys
from collections.abc import Iterator

import pytest
from iec62443_harness import labs
from iec62443_harness.labs import netns
from iec62443_harness.labs.simplc import launcher

from tests.support import end_process, wait_for

pytestmark = pytest.mark.timeout(90)
needs_netns = pytest.mark.skipif(netns.unavailable() is not None, reason="network namespaces need root and iproute2")
OWN = {"own_address": True}


def read_register(host: str, port: int) -> bytes:
    """Modbus TCP: read holding register 0; the raw reply."""
    with socket.create_connection((host, port), timeout=3) as sock:
        sock.sendall(struct.pack(">HHHBBHH", 7, 0, 6, 1, 3, 0, 1))
        return sock.recv(64)


def link_exists(running: launcher.SimplcRunning) -> bool:
    return os.path.exists(f"/sys/class/net/v62-{running.own.n}")


@pytest.fixture
def started() -> Iterator[list[launcher.SimplcRunning]]:
    devices: list[launcher.SimplcRunning] = []
    yield devices
    for running in devices:
        running.stop()


@needs_netns
def test_own_address_second_device_restart_and_stop(started: list[launcher.SimplcRunning]) -> None:
    first = launcher.start("sl2", options=OWN)
    started.append(first)
    host = first.endpoints["modbus_tcp"]["host"]
    assert ipaddress.ip_address(host) in ipaddress.ip_network("10.62.0.0/16") and host.endswith(".2")
    assert {first.endpoints[n]["host"] for n in ("modbus_tcp", "ssh")} == {host}
    assert first.endpoints["https"]["base_url"] == f"https://{host}:443"
    assert (first.endpoints["modbus_tcp"]["port"], first.endpoints["ssh"]["port"]) == (502, 22)
    assert read_register(host, 502)[7:9] == b"\x03\x02"
    assert first.own.exists() and link_exists(first) and first.own.name == f"simplc-{os.getpid()}-{first.own.n}"
    listening = subprocess.run(["ip", "netns", "exec", first.own.name, "ss", "-Htln"], capture_output=True,
                               text=True, timeout=10).stdout
    assert {line.split()[3] for line in listening.splitlines()} == {f"{host}:{p}" for p in (22, 443, 502)}

    second = launcher.start("insecure", options=OWN)
    started.append(second)
    other = second.endpoints["modbus_tcp"]["host"]
    assert other != host and second.own.name != first.own.name
    assert second.extra_services["debug"] == {"host": other, "port": 9999, "protocol": "tcp"}
    assert second.endpoints["telnet"] == {"host": other, "port": 23}
    assert read_register(other, 502)[7:9] == b"\x03\x02"

    before = {n: dict(first.endpoints[n]) for n in ("modbus_tcp", "ssh")}, first.endpoints["https"]["base_url"]
    name, pid = first.own.name, first.pid
    first.restart()
    assert first.pid != pid and first.own.name == name
    assert ({n: dict(first.endpoints[n]) for n in ("modbus_tcp", "ssh")}, first.endpoints["https"]["base_url"]) \
        == before
    assert read_register(host, 502)[7:9] == b"\x03\x02"

    own = first.own
    first.stop()
    assert not own.exists() and not os.path.exists(f"/sys/class/net/v62-{own.n}")
    assert own.name not in netns.own_namespaces()
    routes = subprocess.run(["ip", "-4", "route", "show", f"10.62.{own.n}.0/30"], capture_output=True, text=True,
                            timeout=10).stdout
    assert not routes.strip()  # nothing is sent there any more (it would leave by the default route)


KILLED_HARNESS = """
import sys, threading
from iec62443_harness.labs.simplc import launcher
running = launcher.start("sl1", options={"own_address": True})
print(running.own.name, running.pid, flush=True)
threading.Event().wait()
"""


@needs_netns
def test_namespace_of_a_killed_harness_is_swept(started: list[launcher.SimplcRunning]) -> None:
    harness = subprocess.Popen([sys.executable, "-c", KILLED_HARNESS], stdout=subprocess.PIPE, text=True)
    try:
        name, device = harness.stdout.readline().split()
        assert netns.own_namespaces()[name][0] == harness.pid
        os.kill(harness.pid, signal.SIGKILL)  # no atexit, no signal handler: the namespace stays behind
        harness.wait(10)
        assert wait_for(lambda: not os.path.exists(f"/proc/{device}"), 10) is not None  # dies with its parent
        assert name in netns.own_namespaces()
        started.append(launcher.start("sl2", options=OWN))  # the next start sweeps it
        assert name not in netns.own_namespaces() and not os.path.exists(f"/run/netns/{name}")
        n = int(name.rsplit("-", 1)[1])
        assert not os.path.exists(f"/sys/class/net/v62-{n}") or started[0].own.n == n
    finally:
        end_process(harness, 3)


def test_without_namespaces_loopback_said_once_or_refused(monkeypatch: pytest.MonkeyPatch,
                                                          caplog: pytest.LogCaptureFixture,
                                                          started: list[launcher.SimplcRunning]) -> None:
    monkeypatch.setattr(launcher, "unavailable", lambda: "network namespaces need root")
    monkeypatch.setattr(launcher, "_fallback_said", False)
    with pytest.raises(labs.LabError, match="need root"):
        launcher.start("sl2", options={"own_address": "required"})
    with pytest.raises(labs.LabError, match="own_address"):
        launcher.start("sl2", options={"own_address": "yes"})
    with caplog.at_level(logging.WARNING, logger=launcher.__name__):
        started.append(launcher.start("sl2", options=OWN))
        started.append(launcher.start("sl2", options=OWN))
    said = [r for r in caplog.records if "no address of its own" in r.getMessage()]
    assert len(said) == 1 and "CR 7.7" in said[0].getMessage()
    assert all(r.own is None and r.endpoints["modbus_tcp"]["host"] == "127.0.0.1" for r in started)


@needs_netns
def test_qemu_guest_namespaces_of_a_gone_owner_are_swept() -> None:
    """The QEMU lab's zone and network namespaces record their maker's pid: a start sweeps those of a process
    that is gone, never those of one alive (this test's own)."""
    from iec62443_harness.labs.qemu import netns as qemu_netns

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    dead = qemu_netns.prefix("qplc").replace(f"-{os.getpid()}-", f"-{gone.pid}-") + "-rtr"
    mine = qemu_netns.prefix("qnet") + "-a"
    for name in (dead, mine):
        subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
    try:
        swept = qemu_netns.sweep()
        assert dead in swept and mine not in swept
        assert not os.path.exists(f"{netns.NETNS_DIR}/{dead}") and os.path.exists(f"{netns.NETNS_DIR}/{mine}")
    finally:
        for name in (dead, mine):
            netns.delete(name)
