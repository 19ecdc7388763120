"""CR 7.2 Resource management (SL 1-4).

Judges CR 7.2 over modbus_tcp and ssh where it can be observed from outside: HOLD connections are opened
and held at once (paced by the interface's cap, only with `safety.allow_floods`). The device may refuse or
close some (a connection limit is resource management), but while they are held it must keep its essential
function (watched over another channel) and keep serving a client that was connected before (a Modbus read
on its own connection; over ssh a command in a session of an ordinary account), and once they are released
it must accept new connections again. The evidence says how many it held and whether a limit showed. The
holding starts only once the device answers and its function is seen running (else ERROR).
Manual: how the device bounds memory, CPU, storage and processes for its security functions (checklist).
"""

from __future__ import annotations

import contextlib
import time

import pytest
from iec62443_harness.fixtures.drivers.errors import DriverError
from iec62443_harness.fixtures.floods import HOLD, hold_connections
from iec62443_harness.fixtures.fuzz.watch import Watch, ready_for_attack
from iec62443_harness.fixtures.links.modbus import PROBE_PDU
from iec62443_harness.fixtures.outcomes import manual


class _Client:
    """The client connected before the exhaustion, through the registry: is it still served? Over ssh it
    runs the target file's `whoami` (or `config_show`) command in a session opened before, else logs in anew."""

    def __init__(self, target, interface: str) -> None:  # type: ignore[no-untyped-def]
        self.stack = contextlib.ExitStack()
        self.interface = interface
        self.driver = target.registry.driver(interface)
        if interface == "modbus_tcp":
            self.stack.enter_context(self.driver)
            self.served()  # connects
            return
        from iec62443_harness.fixtures.sessions import ordinary_account

        self.creds = ordinary_account(target)
        commands = target.spec.shell.commands
        self.command = commands.get("whoami") or commands.get("config_show")
        if self.command is not None:
            self.session = self.stack.enter_context(self.driver.session(self.creds.username, self.creds.password))

    def served(self) -> bool:
        try:
            if self.interface == "modbus_tcp":
                return self.driver.send_pdu(PROBE_PDU, record=False).kind in ("reply", "exception")
            if self.command is not None:
                return self.session.run(self.command).exit_status is not None
            return self.driver.try_login(self.creds.username, self.creds.password).outcome == "ACCEPTED"
        except DriverError:  # not served: the answer sought (any other exception is a harness bug: ERROR)
            return False

    def close(self) -> None:
        self.stack.close()


@pytest.mark.judges("CR 7.2", over=["modbus_tcp", "ssh"])
def test_connection_exhaustion_is_contained(target, interface, evidence):
    spec = target.spec
    guard = target.guard(interface)
    guard.require("floods")
    iface = target.require(interface)
    watch = Watch(target.registry, interface, evidence, [guard]) if spec.essential_function is not None else None
    with watch if watch is not None else contextlib.nullcontext():
        ready_for_attack(target, interface, watch, evidence)
        client = _Client(target, interface)
        try:
            socks, refused = hold_connections(iface.host, iface.port, iface.timeouts.connect_s, guard)
            try:
                held = len(socks)
                served = client.served()
            finally:
                for sock in socks:
                    sock.close()
            intact = watch is None or watch.survives(time.monotonic())
        finally:
            client.close()
    channel = target.channel(interface, guard=target.registry.guard(interface))
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
