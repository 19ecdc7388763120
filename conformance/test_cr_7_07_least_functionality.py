"""CR 7.7 Least functionality (SL 1-4).

Judges CR 7.7 on every address the device has (its interfaces' hosts, its web interfaces' base URLs and its
`networks:`): a TCP connect scan of `scan.tcp_ports` (1-65535 by default) and a request of their own protocol to
common industrial and management UDP ports (SNMP 161, Modbus 502, IPMI 623, SSDP 1900, mDNS 5353, DNP3 20000,
EtherNet/IP 44818, BACnet 47808), paced by `safety.rates.scan`; and over can, the identifiers the device sends in
a listening window (`scan.can_listen_s`). Every open port or identifier the target file does not declare under
`services:` is a FAIL naming it with what answered (banner bytes, protocol guess). An address on loopback is
shared with every other program of the machine: a scan there proves nothing about the device, so with no address
of its own CR 7.7 is MANUAL, saying so. Whether each declared service is needed for the intended use is manual
too: the declaration is the vendor's word.
"""

from __future__ import annotations

import time

import pytest
from iec62443_harness.fixtures import exposure
from iec62443_harness.fixtures.drivers.can import show_frame
from iec62443_harness.fixtures.outcomes import manual


@pytest.mark.judges("CR 7.7")
def test_only_declared_services_answer(target, evidence):
    own, shared = exposure.places(target.spec)
    for place in shared:
        evidence.add("check", f"not scanned: {place} is a loopback address, shared with other programs")
    if not own:
        manual(f"the device's only addresses ({', '.join(p.address for p in shared) or 'none'}) are shared "
               "loopback addresses: a port scan there would find other programs' ports, not only the device's",
               ["Scan every address of the device (TCP 1-65535, UDP industrial and management ports) from a host "
                "on each of its networks, with the device alone at its address.",
                "Compare every open port with the target file's services: "
                f"{', '.join(s.name for s in target.spec.services) or 'none declared'}.",
                "Or declare `networks:` with an address of the device's own so the harness can scan it."])
    undeclared = []
    for found in exposure.survey(target, evidence):
        tcp = exposure.declared_tcp(target.spec, found.place)
        udp = exposure.declared_udp(target.spec)
        evidence.add("check", f"{found.place.address}: declared tcp {sorted(tcp) or 'none'}, "
                              f"udp {sorted(udp) or 'none'}")
        banners = {b.port: b for b in found.banners}
        undeclared += [f"{found.place.address} {banners[p].describe()}" for p in found.tcp.open if p not in tcp]
        undeclared += [f"{found.place.address} {a.describe()}" for a in found.open_udp() if a.port not in udp]
    assert not undeclared, f"{len(undeclared)} open port(s) not declared under services: {' | '.join(undeclared)}"


@pytest.mark.judges("CR 7.7", over=["can"])
def test_only_declared_can_identifiers(target, can_bus, evidence):
    window = target.spec.scan.can_listen_s
    declared = exposure.declared_can(target.spec)
    seen: dict[int, str] = {}
    deadline = time.monotonic() + window
    while (left := deadline - time.monotonic()) > 0:
        msg = can_bus.recv(left, record=False)
        if msg is not None and msg.arbitration_id not in seen:
            seen[msg.arbitration_id] = show_frame(msg)
    shown = ", ".join(f"0x{i:03X}" for i in sorted(seen)) or "none"
    evidence.add("check", f"identifiers sent in {window:g} s: {shown}; declared: "
                          f"{', '.join(f'0x{i:03X}' for i in sorted(declared)) or 'none'}")
    for frame in seen.values():
        evidence.add("can", f"first frame: {frame}")
    undeclared = [f"0x{i:03X} ({seen[i]})" for i in sorted(seen) if i not in declared]
    assert not undeclared, f"the device sends CAN identifiers not declared under services: {', '.join(undeclared)}"
