"""Faults a test injects into the running device, and the control socket that selects them.

At most one fault is active; `None` clears it.
- `stall`: the control task stops (coils and counter freeze, the CAN heartbeat stops).
- `silent`: Modbus (TCP and RTU), SSH and the console read requests but never answer; connections stay open.
- `reset`: Modbus TCP connections, existing and new, are reset (RST); a serial line cannot be reset, so
  RTU stays silent. SSH and the console do the same in their own way.
- `garbage`: Modbus answers random bytes instead of a reply.
- `slow`: every reply (Modbus, CAN SDO, SSH, console) leaves about 1.5 s late.
- `can_off`: the node drops off the CAN bus: no heartbeat, no SDO replies.
- `audit_broken`: the audit log stops recording (nothing kept, nothing forwarded to syslog); `selftest`
  then reports `audit: FAILED` where the profile has a self-test.
- `tamper`: the enclosure is opened. Where the profile has a `tamper_switch` (sl2: discrete input 10) the
  switch reads 1 and an audit record (event tamper, outcome alert, detail "enclosure opened") is made and
  forwarded; clearing the fault closes the enclosure (recorded "enclosure closed"). Without a switch
  nothing notices.

Control channel: a Unix socket; a client sends one JSON line, `{"fault": "stall"}` or `{"fault": null}`,
and reads one line back: `ok`, or `error: <what and how to fix>`.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable

NAMES = ("stall", "silent", "reset", "garbage", "slow", "can_off", "audit_broken", "tamper")
SLOW_S = 1.5


def check_name(name: str | None) -> str | None:
    if name is not None and name not in NAMES:
        raise ValueError(f"unknown fault {name!r}: use one of {', '.join(NAMES)} (or null to clear)")
    return name


class FaultState:
    """The current fault; read from any thread, set from the control socket."""

    def __init__(self) -> None:
        self._current: str | None = None
        self._lock = threading.Lock()
        self._listeners: list[Callable[[str | None], None]] = []

    @property
    def current(self) -> str | None:
        return self._current

    def subscribe(self, listener: Callable[[str | None], None]) -> None:
        """`listener(name)` runs in the setter's thread each time the fault changes."""
        self._listeners.append(listener)

    def set(self, name: str | None) -> None:
        with self._lock:
            self._current = check_name(name)
        for listener in list(self._listeners):
            listener(name)


async def serve_control(state: FaultState, path: str) -> asyncio.AbstractServer:
    """Listen on the Unix socket `path` for fault selections."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), timeout=5)
            answer = _apply(state, line)
        except (TimeoutError, ConnectionError):
            answer = "error: no request line within 5 s: send one JSON line such as {\"fault\": \"stall\"}"
        try:
            writer.write(answer.encode() + b"\n")
            await asyncio.wait_for(writer.drain(), timeout=2)
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()

    return await asyncio.start_unix_server(handle, path=path)


def _apply(state: FaultState, line: bytes) -> str:
    try:
        request = json.loads(line)
    except ValueError:
        return "error: the request is not JSON: send {\"fault\": NAME} or {\"fault\": null}"
    if not isinstance(request, dict) or set(request) != {"fault"}:
        return "error: the request must be exactly {\"fault\": NAME} or {\"fault\": null}"
    name = request["fault"]
    if name is not None and not isinstance(name, str):
        return f"error: fault must be a name or null, not {name!r}"
    try:
        state.set(name)
    except ValueError as exc:
        return f"error: {exc}"
    return "ok"
