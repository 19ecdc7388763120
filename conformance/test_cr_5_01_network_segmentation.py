"""CR 5.1 Network segmentation (SL 1-4).

Judges CR 5.1 on a device attached to several networks (`networks:` in the target file, each with the
device's address, the harness's `peer` address there and the network namespace the harness reaches it from):
for every ordered pair of networks, a UDP datagram carrying a fresh nonce is sent from the peer on one network
to the peer on the other, whose route goes through the device; the device must not forward it. First the
device must be seen answering on the sending network (a TCP connect to a declared port, or an ICMP port
unreachable), else nothing is concluded. A datagram that arrives is the FAIL, with its source, nonce and the
TTL it arrived with (one less than sent: routed by the device). A target that declares fewer than two networks
is n/a on its word, for a human to confirm; an emulated target whose emulator could not attach its networks
(no root here) is manual.
"""

from __future__ import annotations

import itertools
import secrets
import socket
import struct
import time

import pytest
from iec62443_harness.fixtures import netns
from iec62443_harness.fixtures.outcomes import inconclusive, manual, not_applicable

SEND_TTL = 64
TRIES = 3
IP_RECVTTL = getattr(socket, "IP_RECVTTL", 12)  # Linux's value; Python's socket module does not name it


def _listener(address: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.IPPROTO_IP, IP_RECVTTL, 1)
    sock.bind((address, 0))
    return sock


def _sender(address: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, SEND_TTL)
    sock.bind((address, 0))
    return sock


def _device_answers(target, name: str, net, timeout: float, evidence) -> str | None:  # type: ignore[no-untyped-def]
    """How the device showed it is there on this network (None: it did not)."""
    ports = sorted({s.port for s in target.spec.services if s.port and s.protocol == "tcp"})

    def probe() -> str | None:
        for port in ports[:2]:
            with socket.socket() as sock:
                sock.settimeout(timeout)
                if sock.connect_ex((net.address, port)) == 0:
                    return f"tcp/{port} accepted a connection"
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(timeout)
            sock.connect((net.address, 9))
            try:
                sock.send(b"iec62443-harness segmentation check")
                sock.recv(64)
                return "udp/9 answered"
            except ConnectionRefusedError:
                return "udp/9: ICMP port unreachable"
            except OSError:
                return None

    target.guard("scan").pace()
    seen = netns.run_in(net.namespace, probe, timeout * 4 + 5)
    evidence.add("check", f"network {name}: device {net.address} {seen or 'did not answer'}")
    return seen


def _arrived(listener: socket.socket, nonce: bytes, wait_s: float) -> tuple[str, int | None] | None:
    deadline = time.monotonic() + wait_s
    while (left := deadline - time.monotonic()) > 0:
        listener.settimeout(left)
        try:
            data, ancillary, _, source = listener.recvmsg(256, socket.CMSG_SPACE(4))
        except TimeoutError:
            return None
        if data == nonce:
            ttl = next((struct.unpack("i", d[:4])[0] for level, kind, d in ancillary
                        if level == socket.IPPROTO_IP and kind == socket.IP_TTL), None)
            return f"{source[0]}:{source[1]}", ttl
    return None


@pytest.mark.judges("CR 5.1")
def test_device_does_not_forward_between_its_networks(target, evidence):
    declared = target.declared_networks
    if len(declared) < 2:
        not_applicable(f"the target file declares {len(declared)} network(s): the device is not multi-homed",
                       ["Confirm the component has a single network attachment (no second NIC, no bridge, no "
                        "routed VLAN), or declare its networks under `networks:` with a peer address on each."])
    nets = target.spec.networks
    if missing := [n for n in declared if n not in nets]:
        manual(f"the emulator did not attach network(s) {', '.join(missing)} (they need network namespaces: "
               "root): forwarding between the device's networks was not tried",
               ["Run as root so the emulator can attach its networks, or check forwarding on the device."])
    usable = {n: net for n, net in nets.items() if net.peer}
    if len(usable) < 2:
        manual("fewer than two networks give a `peer` address for the harness: nothing can be sent across",
               ["Give each network in `networks:` a peer address of the harness host, routed through the device."])
    timeout = target.spec.scan.timeout_s
    for name, net in usable.items():
        if _device_answers(target, name, net, timeout, evidence) is None:
            inconclusive(f"the device does not answer at {net.address} on network {name}: a datagram it never "
                         "received says nothing about forwarding")
    forwarded = []
    guard = target.guard("scan")
    for (a, net_a), (b, net_b) in itertools.permutations(usable.items(), 2):
        listener = netns.run_in(net_b.namespace, lambda net_b=net_b: _listener(net_b.peer), 10)
        sender = netns.run_in(net_a.namespace, lambda net_a=net_a: _sender(net_a.peer), 10)
        try:
            port = listener.getsockname()[1]
            nonce = f"iec62443 segmentation {a}->{b} {secrets.token_hex(8)}".encode()
            got = None
            for _ in range(TRIES):
                guard.pace()
                sender.sendto(nonce, (net_b.peer, port))
                if got := _arrived(listener, nonce, timeout):
                    break
        finally:
            listener.close()
            sender.close()
        sent = f"{a} {net_a.peer} -> {b} {net_b.peer}:{port} (routed via {net_a.address}), {TRIES} tries"
        if got:
            source, ttl = got
            hop = f", TTL {ttl} (sent with {SEND_TTL}: routed by the device)" if ttl is not None else ""
            evidence.add("check", f"FORWARDED: {sent}: {nonce.decode()!r} arrived from {source}{hop}")
            forwarded.append(f"{a} -> {b}: {nonce.decode()!r} arrived at {net_b.peer} from {source}{hop}")
        else:
            evidence.add("check", f"not forwarded: {sent}: nothing arrived within {timeout:g} s each")
    assert not forwarded, f"the device forwards between its networks: {'; '.join(forwarded)}"
