"""CR 7.2 Resource management (SL 1-4).

Judges CR 7.2 over modbus_tcp and ssh where it can be observed from outside: HOLD connections are opened
and held at once (paced by the interface's cap, only with `safety.allow_floods`). The device may refuse or
close some (a connection limit is resource management), but while they are held it must keep its essential
function (watched over another channel) and keep serving a client that was connected before (a Modbus read
on its own connection; over ssh a command in a session of an ordinary account), and once they are released
it must accept new connections again. The evidence says how many it held and whether a limit showed.
Manual: how the device bounds memory, CPU, storage and processes for its security functions (checklist).
"""

from __future__ import annotations

import contextlib
import socket
import time

import pytest
from iec62443_harness.evidence import Evidence
from iec62443_harness.fixtures.fuzz.replay import Watch, open_channel
from iec62443_harness.fixtures.outcomes import manual
from iec62443_harness.fixtures.safety import Guard

HOLD = 64
READ = bytes.fromhex("0300000001")


class _Client:
    """The client connected before the exhaustion: is it still served?"""

    def __init__(self, target, interface: str) -> None:  # type: ignore[no-untyped-def]
        self.stack = contextlib.ExitStack()
        self.interface = interface
        if interface == "modbus_tcp":
            from iec62443_harness.fixtures.drivers.modbus import ModbusDriver

            self.driver = self.stack.enter_context(ModbusDriver(target.interface(interface), Evidence(),
                                                                Guard(target.spec.safety, interface)))
            self.served()  # connects
            return
        from iec62443_harness.fixtures.drivers.ssh import SshDriver
        from iec62443_harness.fixtures.sessions import ordinary_account

        creds = ordinary_account(target)
        ssh = SshDriver(target.interface("ssh"), Evidence(), Guard(target.spec.safety, "ssh"))
        self.session = self.stack.enter_context(ssh.session(creds.username, creds.password))

    def served(self) -> bool:
        try:
            if self.interface == "modbus_tcp":
                return self.driver.send_pdu(READ, record=False).kind in ("reply", "exception")
            return self.session.run("whoami").exit_status is not None
        except Exception:  # any failure to be served is the answer sought
            return False

    def close(self) -> None:
        self.stack.close()


def _closed_by_peer(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        return sock.recv(1, socket.MSG_PEEK) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def _hold(host: str, port: int, timeout: float, guard: Guard) -> tuple[list[socket.socket], int]:
    """Open up to HOLD connections and keep them: (the ones still open, how many were refused or closed).
    Stops at the first connect that times out: a device that no longer accepts must not cost HOLD timeouts."""
    socks: list[socket.socket] = []
    refused = 0
    try:
        for _ in range(HOLD):
            guard.pace()
            try:
                socks.append(socket.create_connection((host, port), timeout=timeout))
            except TimeoutError:
                refused += 1
                break
            except OSError:
                refused += 1
        time.sleep(0.2)  # let a device that closes surplus connections do so
        open_ = [sock for sock in socks if not _closed_by_peer(sock)]
    except BaseException:
        for sock in socks:
            sock.close()
        raise
    for sock in set(socks) - set(open_):
        sock.close()
    return open_, refused + len(socks) - len(open_)


@pytest.mark.judges("CR 7.2", over=["modbus_tcp", "ssh"])
def test_connection_exhaustion_is_contained(target, interface, evidence):
    spec = target.spec
    iface = target.require(interface)
    guard = Guard(spec.safety, interface)
    guard.require("floods")
    client = _Client(target, interface)
    watch = Watch(spec, interface, evidence, [guard]) if spec.essential_function is not None else None
    try:
        if watch is not None:
            watch.__enter__()
        socks, refused = _hold(iface.host, iface.port, iface.timeouts.connect_s, guard)
        try:
            held = len(socks)
            served = client.served()
        finally:
            for sock in socks:
                sock.close()
        intact = watch is None or watch.survives(time.monotonic())
    finally:
        client.close()
        if watch is not None:
            watch.__exit__(None, None, None)
    channel = open_channel(spec, interface, Evidence(), Guard(spec.safety, interface))
    try:
        back = channel.answering()
    finally:
        channel.close()
    limit = f"a limit showed: {refused} refused or closed" if refused else "no limit showed"
    evidence.add("check", f"{held} of {HOLD} connections held ({limit}); earlier client served meanwhile: {served}; "
                          f"new connections accepted after release: {back}; essential function intact: {intact}")
    assert intact, f"essential function lost while {held} {interface} connections were held: {watch.lost}"
    assert served, f"a client connected before could not be served while {held} {interface} connections were held"
    assert back, f"{interface} accepts no new connection after {held} held connections were released"


@pytest.mark.judges("CR 7.2")
def test_resource_limits_are_reviewed(target, evidence):
    manual("resource limits inside the device cannot be observed from its interfaces", [
        "The vendor documents the limits on concurrent sessions and connections, memory, CPU and storage that "
        "protect the security functions (audit, authentication) from exhaustion",
        "Audit storage filling up, a flood of failed logins and a flood of connections do not starve the "
        "essential function (compare with the CR 7.1 and CR 2.9 evidence)",
        "Resource limits are configurable, and their defaults are stated in the security manual",
    ])
