"""How fast the Modbus driver talks to a pymodbus 3.16 TCP server on loopback.

Prints requests/s for sequential send_raw and read_holding_registers (next to a bare socket loop, the
ceiling for any one-at-a-time client of that server), and cases/s for send_raw_then_probe with a case that
gets no reply (a false MBAP length, which pymodbus swallows) and with one that is answered. The server
runs in its own process; the measurements are interleaved in rounds (A B C A B C ...) and the median of
the rounds is printed, because placement on a 2-core machine swings single runs a lot (`--cpu 0` pins the
client and the server to one CPU).

    .venv/bin/python benchmarks/modbus_driver.py [--seconds 0.5] [--rounds 5] [--cpu N]
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.support is in the tree, not installed

from iec62443_harness.evidence import Evidence  # noqa: E402
from iec62443_harness.fixtures.links.modbus import mbap  # noqa: E402
from iec62443_harness.fixtures.registry import Registry  # noqa: E402
from iec62443_harness.target import Identity, Interfaces, ModbusTcp, Safety, TargetSpec, Timeouts  # noqa: E402

from tests.support import end_process, free_port  # noqa: E402

READ_10 = bytes.fromhex("03 0000 000a")


def serve(port: int) -> None:
    """The server process: pymodbus 3.16 with 100 holding registers on unit 1."""
    from pymodbus.server import StartTcpServer
    from pymodbus.simulator import DataType, SimData, SimDevice

    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    device = SimDevice(1, simdata=[SimData(0, values=list(range(100)), datatype=DataType.REGISTERS)])
    StartTcpServer(device, address=("127.0.0.1", port))


def wait_ready(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"pymodbus server on port {port} did not start within {timeout} s")


def rate(fn: Callable[[], object], seconds: float) -> float:
    count, start = 0, time.monotonic()
    while (elapsed := time.monotonic() - start) < seconds:
        fn()
        count += 1
    return count / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.5, help="length of one measurement")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--cpu", type=int, help="pin client and server to this CPU")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})  # the server process inherits it

    port = free_port()
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(port)])
    try:
        wait_ready(port)
        iface = ModbusTcp(host="127.0.0.1", port=port, timeouts=Timeouts(connect_s=1.0, reply_s=1.0))
        spec = TargetSpec(identity=Identity(vendor="bench", model="bench", firmware="1"),
                          component_type="embedded_device", security_level=1,
                          interfaces=Interfaces(modbus_tcp=iface), safety=Safety(max_rate_per_s=1e9))
        driver = Registry(spec).driver("modbus_tcp", Evidence())
        frame = mbap(1, 1, READ_10)
        silent = mbap(2, 1, READ_10, length=200)
        answered = mbap(3, 1, READ_10)
        kinds: dict[str, int] = {}
        bare = socket.create_connection(("127.0.0.1", port), timeout=1.0)
        bare.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def bare_request() -> None:
            bare.sendall(frame)
            bare.recv(4096)  # the whole 29-byte reply comes in one segment on loopback

        def probe(case: bytes) -> None:
            reply, alive = driver.send_raw_then_probe(case, record=False)
            assert alive, "the server stopped answering"
            kinds[reply.kind] = kinds.get(reply.kind, 0) + 1

        work = {
            "bare socket loop (baseline), requests/s": bare_request,
            "send_raw (read 10 registers), requests/s": lambda: driver.send_raw(frame, record=False),
            "read_holding_registers(0, 10), requests/s": lambda: driver.read_holding_registers(0, 10),
            "send_raw_then_probe, no-reply case (false MBAP length), cases/s": lambda: probe(silent),
            "send_raw_then_probe, answered case, cases/s": lambda: probe(answered),
        }
        results: dict[str, list[float]] = {name: [] for name in work}
        for _ in range(args.rounds):
            for name, fn in work.items():
                results[name].append(rate(fn, args.seconds))
        driver.close()
        bare.close()
        print(f"pymodbus 3.16 TCP server on 127.0.0.1:{port}, {args.rounds} rounds of {args.seconds} s, median:")
        for name, rates in results.items():
            print(f"  {name:66s} {statistics.median(rates):9.0f}")
        print(f"  case classifications seen by send_raw_then_probe: {kinds}")
    finally:
        end_process(server, 5)


if __name__ == "__main__":
    main()
