"""Fuzzing speed against the emulated PLC's Modbus TCP server (profile sl1), side by side in one run.

    .venv/bin/python benchmarks/fuzz_rate.py [--rounds 3] [--seconds 2] [--boofuzz-venv DIR]

Prints, interleaved A B A B (pinned to one CPU with `taskset -c 0` when it is there; perf-notes: +-3 %
that way, up to 3.7x apart otherwise):
- A: the campaign's fuzzing with valid framing (hypothesis batches, the read and function groups, a probe
  behind every batch of cases) against B: a plain `random` loop sending one valid-framed case at a time over
  one socket and waiting for its reply. Target: A at least 80 % of B.
- cases that get no reply (protocol id 1, which the device ignores) sent through the campaign's `execute` per
  second, with a probe behind each batch and, for comparison, behind each case: the probe bounds the wait.
  Target: at least 1000/s.
- boofuzz 0.4.2 with its default settings (except its web UI, left off) against the same server, when it is
  installed in a throwaway venv (`--boofuzz-venv`; never a dependency of the project).
The emulated target's rate cap is lifted for the benchmark (a campaign never sends faster than the target file
allows; here the harness's own cost per case is measured). A figure-printing script, never a test: the machine
is shared and noisy; compare ratios, not runs.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import textwrap
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from iec62443_harness.evidence import Evidence  # noqa: E402
from iec62443_harness.fixtures.fuzz.campaign import Campaign  # noqa: E402
from iec62443_harness.fixtures.fuzz.channels import execute  # noqa: E402
from iec62443_harness.fixtures.links.modbus import mbap  # noqa: E402
from iec62443_harness.fixtures.target import TargetRun  # noqa: E402
from iec62443_harness.target import Budget, find_target_file, load_target  # noqa: E402

BOOFUZZ_SCRIPT = textwrap.dedent("""
    import sys, time
    from boofuzz import Session, Target, TCPSocketConnection, s_initialize, s_word, s_byte, s_static, s_get
    host, port, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    s_initialize("read")
    s_word(1, endian=">", name="tid")
    s_static(b"\\x00\\x00\\x00\\x06\\x01")
    s_byte(3, name="fc")
    s_word(0, endian=">", name="address")
    s_word(1, endian=">", name="quantity")
    start = time.monotonic()
    def stop_when_due(target, fuzz_data_logger, session, *args, **kwargs):
        if time.monotonic() - start > seconds:
            raise KeyboardInterrupt  # boofuzz's own way out of session.fuzz()
    session = Session(target=Target(connection=TCPSocketConnection(host, port)), web_port=None,
                      post_test_case_callbacks=[stop_when_due])
    session.connect(s_get("read"))
    try:
        session.fuzz()
    except KeyboardInterrupt:
        pass
    print(session.total_mutant_index, time.monotonic() - start)
""")

def fuzz_with_valid_framing(run: TargetRun, seconds: float, seed: int) -> float:
    """Cases a second, wall time, through the campaign (generation, grammar, probes), framing kept right."""
    result = Campaign(run, "modbus_tcp", Evidence(), budget=Budget(examples=10**6, seconds=seconds), seed=seed,
                      groups=["read", "function"], watch=False).run()
    return result.cases / result.elapsed_s


def random_loop(host: str, port: int, seconds: float, seed: int) -> float:
    """A plain random loop: one valid-framed read at a time on one socket, waiting for each reply."""
    rnd = random.Random(seed)
    sock = socket.create_connection((host, port), timeout=1.0)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sent, start = 0, time.monotonic()
    try:
        while time.monotonic() - start < seconds:
            pdu = struct.pack(">BHH", rnd.choice((1, 2, 3, 4)), rnd.randrange(1 << 16), rnd.randrange(1, 126))
            sock.sendall(mbap(sent & 0xFFFF, 1, pdu))
            reply = b""
            while len(reply) < 6 or len(reply) < 6 + int.from_bytes(reply[4:6], "big"):
                chunk = sock.recv(4096)
                if not chunk:
                    raise ConnectionError("the device closed the connection")
                reply += chunk
            sent += 1
    finally:
        sock.close()
    return sent / (time.monotonic() - start)


def no_reply_rate(run: TargetRun, seconds: float, seed: int, batches: bool) -> tuple[float, float]:
    """(cases a second, share without a reply) for frames the device ignores (protocol id 1), through the
    campaign's `execute`: 32 at a time, a probe behind each batch (`batches`) or behind each case."""
    rnd = random.Random(seed)
    channel = run.channel("modbus_tcp", Evidence())
    sent, replies = 0, Counter()
    start = time.monotonic()
    try:
        while time.monotonic() - start < seconds:
            cases = [mbap(rnd.randrange(1 << 16), 1, struct.pack(">BHH", 3, rnd.randrange(1 << 16),
                                                                   rnd.randrange(1, 126)), protocol=1)
                     for _ in range(32)]
            if execute(channel, cases, replies, batches=batches) is not None:
                raise RuntimeError("the device stopped answering")
            sent += len(cases)
    finally:
        channel.close()
    return sent / (time.monotonic() - start), replies["silence"] / max(sent, 1)


def boofuzz_rate(venv: Path, host: str, port: int, seconds: float) -> str:
    python = venv / "bin" / "python"
    if not python.exists():
        return f"skipped: no venv at {venv} (python3 -m venv {venv} && {venv}/bin/pip install boofuzz==0.4.2)"
    check = subprocess.run([str(python), "-c", "import boofuzz"], capture_output=True, text=True, timeout=60)
    if check.returncode != 0:
        return f"skipped: boofuzz does not import in {venv}: {(check.stderr.strip().splitlines() or ['?'])[-1]}"
    with tempfile.TemporaryDirectory() as cwd:  # boofuzz writes its sqlite results where it runs
        done = subprocess.run([str(python), "-c", BOOFUZZ_SCRIPT, host, str(port), str(seconds)], cwd=cwd,
                              capture_output=True, text=True, timeout=seconds + 60)
    if done.returncode != 0:
        return f"failed: {(done.stderr.strip().splitlines() or ['?'])[-1]}"
    cases, elapsed = done.stdout.split()[-2:]
    return f"{int(cases) / float(elapsed):.0f} cases/s ({cases} cases in {float(elapsed):.1f} s)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--boofuzz-venv", type=Path, default=Path(tempfile.gettempdir()) / "boofuzz-venv")
    args = parser.parse_args()
    if shutil.which("taskset") and os.environ.get("FUZZ_RATE_PINNED") != "1":
        os.environ["FUZZ_RATE_PINNED"] = "1"
        os.execvp("taskset", ["taskset", "-c", "0", sys.executable, *sys.argv])
    path = find_target_file("sim-plc-sl1")
    spec = load_target(path)
    # The target file's rate cap lifted (18,000/s of tokens otherwise): the figures measure the harness's own
    # cost per case, as the plain loop (which knows no cap) does.
    spec = spec.model_copy(update={"safety": spec.safety.model_copy(update={"max_rate_per_s": 1e6, "rates": {}})})
    run = TargetRun(path.stem, path, spec)
    run.start()
    try:
        ep = run.spec.interfaces.modbus_tcp
        fuzz, plain = [], []
        for i in range(args.rounds):  # A B A B: both see the same machine state
            fuzz.append(fuzz_with_valid_framing(run, args.seconds, seed=i))
            plain.append(random_loop(ep.host, ep.port, args.seconds, seed=i))
            print(f"round {i + 1}: fuzzing with valid framing {fuzz[-1]:.0f} cases/s, plain random loop "
                  f"{plain[-1]:.0f} cases/s")
        a, b = statistics.median(fuzz), statistics.median(plain)
        print(f"median: fuzzing {a:.0f}/s vs plain loop {b:.0f}/s = {a / b:.0%} (target >= 80 %)")
        for batches in (True, False):
            rate, silent = no_reply_rate(run, args.seconds, seed=99, batches=batches)
            how = "a probe behind each batch of 32" if batches else "a probe behind each case"
            print(f"cases without a reply, {how}: {rate:.0f}/s ({silent:.0%} of them got none) (target >= 1000/s)")
        boofuzz = boofuzz_rate(args.boofuzz_venv, ep.host, ep.port, args.seconds)
        print(f"boofuzz 0.4.2, defaults (web UI off): {boofuzz}")
    finally:
        run.stop()


if __name__ == "__main__":
    main()
