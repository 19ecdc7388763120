"""The control task: the device's essential function, one scan every 100 ms, as on ISASecure benches.

Each scan:
- coil 0 (output) is on for 1 s, off for 2 s (a 3 s cycle); discrete input 0 mirrors it;
- holding register 0 and input register 0 count scans, wrapping at 65535;
- output coils 1-9 follow the master's command coils 101-109. With the setting `safe_state_on_comm_loss`,
  outputs 1-9 go to 0 while no Modbus master has talked to unit 1 for 2 s (CR 3.6), and follow the
  commands again once one talks;
- scan hooks run (the CAN heartbeat rides on them, so it stops when the task stalls).

Scans are scheduled on absolute times, so transitions land on the 100 ms grid without drift. The task
stops while the `stall` fault is set, and for good once a seeded input bug stalls it (`stall()`).
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from iec62443_harness.labs.simplc.device import Device

SCAN_S = 0.1
HIGH_SCANS, LOW_SCANS = 10, 20  # coil 0: 1 s on, 2 s off
COMM_LOSS_S = 2.0
OUTPUTS = range(1, 10)  # output coils driven from command coils 101-109
COMMAND_BASE = 100


class ControlTask:
    def __init__(self, device: Device) -> None:
        self.device = device
        self.scans = 0
        self.stalled_by: str | None = None  # why a seeded bug stalled the task, for good
        self._hooks: list[Callable[[int], None]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="control-task", daemon=True)

    @property
    def running(self) -> bool:
        return self._thread.is_alive() and self.stalled_by is None and self.device.fault != "stall"

    def add_scan_hook(self, hook: Callable[[int], None]) -> None:
        """`hook(scan_number)` runs at the end of every scan, in the control thread; keep it short."""
        self._hooks.append(hook)

    def stall(self, reason: str) -> None:
        if self.stalled_by is None:
            print(f"simplc: control task stalled: {reason}", file=sys.stderr, flush=True)
        self.stalled_by = reason

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)

    def _run(self) -> None:
        anchor, k = time.monotonic(), 0
        while not self._stop.is_set():
            if not self.running:
                # Frozen: outputs keep their last value. Resume on a fresh time grid.
                self._stop.wait(SCAN_S)
                anchor, k = time.monotonic(), 0
                continue
            self._scan()
            k += 1
            delay = anchor + k * SCAN_S - time.monotonic()
            if delay < -SCAN_S:  # more than a scan late (a starved CPU): re-anchor rather than burst
                anchor, k, delay = time.monotonic(), 0, 0.0
            self._stop.wait(max(delay, 0.0))

    def _scan(self) -> None:
        image, dev = self.device.image, self.device
        phase = self.scans % (HIGH_SCANS + LOW_SCANS)
        coil = 1 if phase < HIGH_SCANS else 0
        self.scans += 1
        counter = self.scans & 0xFFFF
        image.write("co", 0, [coil])
        image.write("di", 0, [coil])
        image.write("hr", 0, [counter])
        image.write("ir", 0, [counter])
        commands = image.read("co", COMMAND_BASE + OUTPUTS.start, len(OUTPUTS))
        if dev.settings.get("safe_state_on_comm_loss") and time.monotonic() - dev.master_seen > COMM_LOSS_S:
            commands = [0] * len(OUTPUTS)
        image.write("co", OUTPUTS.start, commands)
        for hook in self._hooks:
            hook(self.scans)
