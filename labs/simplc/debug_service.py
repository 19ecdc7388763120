"""An undeclared "debug monitor" left on a TCP port (profile `extra_service`; the insecure profile).

It greets every client with a version banner and answers, without any authentication, `version`,
`peek TABLE ADDRESS` (a value from the process image) and `help`: the kind of forgotten factory service
a CR 7.7 (least functionality) port scan should find. A client idle for 30 s is dropped.
"""

from __future__ import annotations

import asyncio
import platform
import socket
from typing import TYPE_CHECKING

from iec62443_harness.labs.simplc.image import ImageError

if TYPE_CHECKING:
    from iec62443_harness.labs.simplc.device import Device

BANNER = f"SimPLC debug monitor 0.9.4-dev (build 2019-07-12; Python {platform.python_version()})"
IDLE_S = 30.0


def _answer(device: Device, line: str) -> str:
    words = line.split()
    if not words:
        return ""
    if words[0] == "version":
        return BANNER
    if words[0] == "help":
        return "commands: version, peek TABLE ADDRESS (TABLE: co di hr ir), help, quit"
    if words[0] == "peek" and len(words) == 3 and words[2].isdigit():
        try:
            return str(device.image.read(words[1], int(words[2]))[0])
        except ImageError as exc:
            return f"error: {exc}"
    return f"unknown command {words[0]!r}: try help"


async def serve_debug(device: Device, sock: socket.socket) -> asyncio.AbstractServer:
    async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            writer.write(f"{BANNER}\r\n> ".encode())
            while True:
                line = (await asyncio.wait_for(reader.readline(), timeout=IDLE_S)).decode("ascii", "replace")
                if not line or line.strip() == "quit":
                    break
                writer.write(f"{_answer(device, line)}\r\n> ".encode())
                await asyncio.wait_for(writer.drain(), timeout=5)
        except (TimeoutError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(session, sock=sock, limit=1024)
