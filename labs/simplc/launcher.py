"""Start the emulated PLC as a child process and hand back a `Running` (the contract in `labs/__init__.py`).

`start()` runs `iec62443 simplc` in its own process group with a private run directory (control socket,
log, the device's files), reads the ready JSON (endpoints, passwords, files) from a pipe, so that the
passwords are never written to disk, then proves that every interface answers: a Modbus TCP read, a Modbus
RTU read, an SSH password login as admin, a CAN heartbeat, a console login prompt (and the telnet login
prompt where the profile opens one). Only then does it select the requested fault and return. `stop()` ends
the whole process group (SIGTERM, then SIGKILL after a grace period) and removes the run directory; every
device still running when the interpreter exits is stopped too. A device whose parent dies (even by
SIGKILL) gets SIGUSR1 from the kernel (its parent-death signal), removes its run directory and stops.

`options`: `{"ports": {"modbus_tcp": 15020, "ssh": 15022, "debug": 15023, "telnet": 15024, "https": 15443,
"http": 15080}}` to require fixed ports;
otherwise free ports are picked in 20000-31999.

`{"own_address": true}`: the device's TCP services listen at an address of its own, 10.62.N.2, in a network
namespace made for it with a veth pair to the harness's side, 10.62.N.1 (`labs/netns.py` OwnAddress), on their
well-known ports (modbus 502, ssh 22, telnet 23, http 80, https 443; the insecure profile's debug monitor 9999)
unless `ports` says otherwise. The namespace lives as long as the `SimplcRunning`: a restart keeps the address
and the ports; stop() removes it, and a namespace left by a killed harness is swept by the next start. Where no
namespace can be made (not root, no iproute2) the device stays on 127.0.0.1, said once in the log;
`"own_address": "required"` fails instead. The ptys, the control socket and syslog are unchanged either way.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import json
import logging
import os
import select
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from iec62443_harness.labs import LabError
from iec62443_harness.labs.netns import OwnAddress, unavailable
from iec62443_harness.labs.simplc.faults import NAMES as FAULT_NAMES
from iec62443_harness.labs.simplc.profile import available, load_profile

READY_TIMEOUT_S = 10.0  # ready in well under 1 s here; leave room for a loaded 2-core machine
CHECK_TIMEOUT_S = 3.0
STOP_GRACE_S = 3.0
OPTIONS = ("ports", "own_address")
PORT_NAMES = ("modbus_tcp", "ssh", "debug", "telnet", "https", "http")
WELL_KNOWN_PORTS = {"modbus_tcp": 502, "ssh": 22, "telnet": 23, "http": 80, "https": 443, "debug": 9999}
HEARTBEAT_ID = 0x705
CONSOLE_PROMPT = b"login: "
MAX_READY_BYTES = 1 << 20
PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None  # loaded before any fork

_running: set[SimplcRunning] = set()
_log = logging.getLogger(__name__)
_fallback_said = False


def _signal_parent_death() -> None:
    """`preexec_fn`: the kernel sends SIGUSR1 (the device's "parent gone") when the forking thread ends (the
    harness killed, even by SIGKILL); the device then removes its run directory and stops, exiting hard if
    stopping hangs. SIGUSR1's default action kills a device that has not set up its handler yet."""
    if _libc is not None:
        _libc.prctl(PR_SET_PDEATHSIG, signal.SIGUSR1, 0, 0, 0)


def start(profile: str, faults: tuple[str, ...] = (), options: dict[str, Any] | None = None,
          syslog: tuple[str, int] | None = None) -> SimplcRunning:
    if profile not in available():
        raise LabError(f"unknown simplc profile {profile!r}: use one of {', '.join(available())}")
    for name in faults:
        if name not in FAULT_NAMES:
            raise LabError(f"unknown simplc fault {name!r}: use one of {', '.join(FAULT_NAMES)}")
    if len(faults) > 1:
        raise LabError(f"simplc takes one fault at a time, not {', '.join(faults)}: pick one")
    options = dict(options or {})
    if unknown := set(options) - set(OPTIONS):
        raise LabError(f"unknown simplc option(s) {', '.join(sorted(unknown))}: use {', '.join(OPTIONS)}")
    ports = dict(options.get("ports") or {})
    if bad := [n for n, p in ports.items() if n not in PORT_NAMES or not isinstance(p, int) or not 0 < p < 65536]:
        raise LabError(f"bad simplc port option(s) {', '.join(map(str, bad))}: give {{NAME: PORT}} with NAME one of "
                       f"{', '.join(PORT_NAMES)}")
    own = _own_address(options.get("own_address", False))
    running = SimplcRunning(profile, tuple(faults), ports, syslog, own)
    try:
        running.launch()
    except BaseException:
        running.stop()
        raise
    return running


def _own_address(wanted: object) -> OwnAddress | None:
    """A namespace of the device's own when asked for and possible; None: loopback, as without the option."""
    global _fallback_said
    if wanted not in (True, False, "required"):
        raise LabError(f"simplc option own_address is {wanted!r}: give true, false or required")
    if not wanted:
        return None
    reason = unavailable()
    if reason is None:
        return OwnAddress.create()
    if wanted == "required":
        raise LabError(f"simplc cannot have an address of its own here ({reason}): run as root with iproute2, or "
                       "set own_address to true to fall back to 127.0.0.1")
    if not _fallback_said:
        _fallback_said = True
        _log.warning("simplc: no address of its own (%s): its TCP services listen on 127.0.0.1, shared with every "
                     "other program, so a port scan there (CR 7.7) proves nothing", reason)
    return None


class SimplcRunning:
    def __init__(self, profile: str, faults: tuple[str, ...], ports: dict[str, int],
                 syslog: tuple[str, int] | None, own: OwnAddress | None = None) -> None:
        self.profile = profile
        self.own = own  # the device's own address and namespace, kept across restarts
        self.faults = faults
        self.ports = ports
        self.syslog = syslog
        self.endpoints: dict[str, dict[str, Any]] = {}
        self.secrets: dict[str, str] = {}
        self.extra_services: dict[str, dict[str, Any]] = {}
        self.files: dict[str, str] = {}
        self.control = ""
        self.pid = 0
        self.ready_s = 0.0
        self.fault: str | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._dir: Path | None = None

    # --- lifecycle

    def launch(self, preferred: dict[str, int] | None = None) -> None:
        t0 = time.monotonic()
        self._dir = Path(tempfile.mkdtemp(prefix="simplc-"))
        log = self._dir / "device.log"
        ready_r, ready_w = os.pipe()
        cmd = [sys.executable, "-m", "iec62443_harness.labs.simplc", "--profile", self.profile,
               "--ready-fd", str(ready_w), "--run-dir", str(self._dir), "--control", str(self._dir / "control.sock"),
               "--parent-pid", str(os.getpid())]
        cmd += [a for name, port in self.ports.items() for a in ("--port", f"{name}={port}")]
        cmd += [a for name, port in (preferred or {}).items() if name not in self.ports
                for a in ("--prefer", f"{name}={port}")]
        if self.syslog:
            cmd += ["--syslog", f"{self.syslog[0]}:{self.syslog[1]}"]
        if self.own is not None:
            cmd += ["--netns", self.own.name, "--host", self.own.address]
            cmd += [a for name, port in WELL_KNOWN_PORTS.items() if name not in self.ports and name not in
                    (preferred or {}) for a in ("--prefer", f"{name}={port}")]
        # Passwords: the device provisions its own, except those kept from before a restart; never ones
        # that happen to be exported in the harness's environment.
        account_vars = {a.env for a in load_profile(self.profile).accounts}
        env = {k: v for k, v in os.environ.items() if k not in account_vars}
        env.update(self.secrets)
        try:
            with open(log, "wb") as out:
                self._proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                              env=env, start_new_session=True, preexec_fn=_signal_parent_death,
                                              pass_fds=(ready_w,))
        finally:
            os.close(ready_w)
        _running.add(self)
        self.pid = self._proc.pid
        try:
            info = self._wait_ready(ready_r, log)
            self.endpoints, self.secrets = info["endpoints"], info["secrets"]
            self.control, self.extra_services = info["control"], info["extra_services"]
            self.files = dict(info.get("files") or {})
            self._check_interfaces()
            for name in self.faults:
                self.set_fault(name)
        except BaseException:
            self._halt()
            raise
        finally:
            os.close(ready_r)
        self.ready_s = time.monotonic() - t0

    def _wait_ready(self, ready: int, log: Path) -> dict[str, Any]:
        """The ready JSON from the pipe: complete once the device closes its end."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        data = b""
        while (left := deadline - time.monotonic()) > 0:
            readable, _, _ = select.select([ready], [], [], min(left, 0.1))
            chunk = os.read(ready, 65536) if readable else None
            if chunk:
                data += chunk
                if len(data) > MAX_READY_BYTES:
                    raise LabError(f"simplc ({self.profile}) sent an oversized ready message: see its log")
                continue
            if chunk == b"":  # end of file: the device closed the pipe, or died before writing
                if data:
                    return json.loads(data)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self._proc.wait(1.0)  # type: ignore[union-attr]
                raise LabError(f"simplc ({self.profile}) exited before it was ready: {_last_line(log)}")
            if self._proc.poll() is not None:  # type: ignore[union-attr]
                raise LabError(f"simplc ({self.profile}) exited before it was ready: {_last_line(log)}")
        raise LabError(f"simplc ({self.profile}) was not ready within {READY_TIMEOUT_S:.0f} s: see the device log "
                       f"line {_last_line(log)!r}; the machine may be overloaded")

    def _check_interfaces(self) -> None:
        checks = {"modbus_tcp": self._check_modbus_tcp, "modbus_rtu": self._check_modbus_rtu,
                  "ssh": self._check_ssh, "can": self._check_can, "console": self._check_console}
        if "telnet" in self.endpoints:
            checks["telnet"] = self._check_telnet
        for name in ("https", "http"):
            if name in self.endpoints:
                checks[name] = lambda name=name: self._check_web(name)
        with ThreadPoolExecutor(len(checks)) as pool:
            futures = {name: pool.submit(check) for name, check in checks.items()}
        for name, future in futures.items():
            if (error := future.exception()) is not None:
                raise LabError(f"simplc ({self.profile}) started but its {name} does not answer: "
                               f"{type(error).__name__}: {error}")

    def stop(self) -> None:
        _running.discard(self)
        self._halt()
        if self.own is not None:
            self.own.destroy()
            self.own = None

    def _halt(self) -> None:
        """End the device process (its whole group) and remove its run directory; its namespace stays."""
        proc, self._proc = self._proc, None
        if proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(STOP_GRACE_S)
            with contextlib.suppress(ProcessLookupError):  # whatever is left of the group
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(STOP_GRACE_S)
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def restart(self) -> None:
        """Power cycle: the same profile, fault, passwords and, where still free, the same TCP ports.
        The ptys (modbus_rtu, can, console) get new paths: read `endpoints` again. Nothing else survives: the
        firmware is the profile's version again, /update and /backup are empty, the audit log is new, and
        the vendor kit is made afresh with a new vendor key: read `files` again."""
        preferred = {"modbus_tcp": self.endpoints.get("modbus_tcp", {}).get("port"),
                     "ssh": self.endpoints.get("ssh", {}).get("port"),
                     "debug": self.extra_services.get("debug", {}).get("port"),
                     "telnet": self.endpoints.get("telnet", {}).get("port"),
                     **{name: urlsplit(self.endpoints[name]["base_url"]).port for name in ("https", "http")
                        if name in self.endpoints}}
        self._halt()
        self.fault = None
        self.launch({name: port for name, port in preferred.items() if port})

    def set_fault(self, name: str | None) -> None:
        if name is not None and name not in FAULT_NAMES:
            raise LabError(f"unknown simplc fault {name!r}: use one of {', '.join(FAULT_NAMES)} (or None to clear)")
        if self._proc is None:
            raise LabError("simplc is not running: start it (or restart it) before selecting a fault")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(CHECK_TIMEOUT_S)
                sock.connect(self.control)
                sock.sendall(json.dumps({"fault": name}).encode() + b"\n")
                answer = sock.makefile("rb").readline().decode(errors="replace").strip()
        except OSError as exc:
            raise LabError(f"simplc control socket {self.control} does not answer ({exc}): restart the device") \
                from None
        if answer != "ok":
            raise LabError(f"simplc refused fault {name!r}: {answer}")
        self.fault = name

    # --- readiness: each interface must really answer

    def _check_web(self, name: str) -> None:
        """The login page over the web UI (any TLS it offers: the legacy profile's too)."""
        parts = urlsplit(self.endpoints[name]["base_url"])
        with socket.create_connection((parts.hostname, parts.port), timeout=CHECK_TIMEOUT_S) as raw:
            sock: socket.socket = raw
            if parts.scheme == "https":
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE  # a fresh self-signed one every start
                ctx.set_ciphers("ALL:@SECLEVEL=0")
                sock = ctx.wrap_socket(raw, server_hostname=parts.hostname)
            sock.sendall(f"GET /login HTTP/1.1\r\nHost: {parts.netloc}\r\nConnection: close\r\n\r\n".encode())
            seen = _read_until(sock, b"</html>")
        if not seen.startswith(b"HTTP/1.1 200") or b"type=password" not in seen:
            raise OSError(f"no login page, got {seen[:60]!r}")

    def _check_telnet(self) -> None:
        ep = self.endpoints["telnet"]
        with socket.create_connection((ep["host"], ep["port"]), timeout=CHECK_TIMEOUT_S) as sock:
            seen = _read_until(sock, CONSOLE_PROMPT)
        if CONSOLE_PROMPT not in seen:
            raise OSError(f"no login prompt, got {seen[-60:]!r}")

    def _check_modbus_tcp(self) -> None:
        ep = self.endpoints["modbus_tcp"]
        with socket.create_connection((ep["host"], ep["port"]), timeout=CHECK_TIMEOUT_S) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.sendall(struct.pack(">HHHBBHH", 1, 0, 6, 1, 3, 0, 1))
            reply = b""
            while len(reply) < 11:
                if not (chunk := sock.recv(64)):
                    break
                reply += chunk
        if reply[:2] != b"\x00\x01" or reply[7:9] != b"\x03\x02":
            raise OSError(f"read of holding register 0 answered {reply.hex() or 'nothing'}")

    def _check_modbus_rtu(self) -> None:
        import serial
        from pymodbus.framer import FramerRTU

        request = bytes([1, 3, 0, 0, 0, 1])
        request += FramerRTU.compute_CRC(request).to_bytes(2, "big")
        with serial.Serial(self.endpoints["modbus_rtu"]["url"], 19200, timeout=CHECK_TIMEOUT_S) as port:
            port.reset_input_buffer()
            port.write(request)
            reply = port.read(7)
        if reply[:3] != b"\x01\x03\x02" or not FramerRTU.check_CRC(reply[:5], int.from_bytes(reply[5:7], "big")):
            raise OSError(f"read of holding register 0 answered {reply.hex() or 'nothing'}")

    def _check_ssh(self) -> None:
        import paramiko

        admin = next(a for a in load_profile(self.profile).accounts if a.username == "admin")
        ep = self.endpoints["ssh"]
        sock = socket.create_connection((ep["host"], ep["port"]), timeout=CHECK_TIMEOUT_S)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # paramiko pays ~80 ms without it
        client = paramiko.SSHClient()
        client.set_missing_host_key_policy(paramiko.AutoAddPolicy())  # a fresh host key every start
        try:
            client.connect(ep["host"], ep["port"], username="admin", password=self.secrets[admin.env], sock=sock,
                           timeout=CHECK_TIMEOUT_S, banner_timeout=CHECK_TIMEOUT_S, auth_timeout=CHECK_TIMEOUT_S,
                           look_for_keys=False, allow_agent=False)
        finally:
            client.close()
            sock.close()

    def _check_can(self) -> None:
        import can

        bus = can.Bus(interface="slcan", channel=self.endpoints["can"]["channel"], bitrate=500_000,
                      sleep_after_open=0)
        try:
            deadline = time.monotonic() + CHECK_TIMEOUT_S
            while time.monotonic() < deadline:
                msg = bus.recv(timeout=0.1)
                if msg is not None and msg.arbitration_id == HEARTBEAT_ID:
                    return
            raise OSError(f"no heartbeat (id 0x{HEARTBEAT_ID:03X}) within {CHECK_TIMEOUT_S:.0f} s")
        finally:
            bus.shutdown()

    def _check_console(self) -> None:
        import serial

        with serial.Serial(self.endpoints["console"]["url"], 115200, timeout=0.1) as port:
            port.reset_input_buffer()
            port.write(b"\r")
            seen, deadline = b"", time.monotonic() + CHECK_TIMEOUT_S
            while CONSOLE_PROMPT not in seen and time.monotonic() < deadline:
                seen += port.read(256)
        if CONSOLE_PROMPT not in seen:
            raise OSError(f"no login prompt after CR, got {seen[-60:]!r}")


def _read_until(sock: socket.socket, marker: bytes) -> bytes:
    seen, deadline = b"", time.monotonic() + CHECK_TIMEOUT_S
    while marker not in seen and time.monotonic() < deadline:
        chunk = sock.recv(256)
        if not chunk:
            break
        seen += chunk
    return seen


def _last_line(log: Path) -> str:
    try:
        lines = [line for line in log.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
    except OSError:
        return "no log"
    return lines[-1] if lines else "no output"


@atexit.register
def _stop_all() -> None:
    for running in list(_running):
        running.stop()
