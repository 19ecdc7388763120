"""`iec62443 simplc --profile sl2`: run the emulated PLC in the foreground until Ctrl-C.

Options: `--fault NAME` (start with a fault), `--syslog HOST:PORT` (forward the audit log),
`--ready-file PATH` (write the endpoints and passwords as JSON, mode 0600, once every interface listens;
removed again when the device exits), `--ready-fd FD` (write the same JSON into this inherited file
descriptor, a pipe, and close it: how the launcher takes it, so the passwords never touch the disk),
`--run-dir PATH` (the device's private directory for the files it makes, e.g. the vendor kit; default a
fresh temporary one), `--control PATH` (the fault control socket), `--port NAME=PORT` (listen there or
fail; NAME is modbus_tcp, ssh, debug, telnet, https or http), `--prefer NAME=PORT` (listen there if free),
`--parent-pid PID` (exit when that process is no longer the parent). TCP services listen on 127.0.0.1, on
free ports picked in 20000-31999 (below the ephemeral range); with `--netns NAME --host ADDRESS` they listen at
ADDRESS inside that network namespace instead (the launcher's `own_address` option makes it), while the
process itself, its ptys, control socket and syslog stay in the caller's namespace.

Every exit path cleans up: on SIGINT, SIGTERM, SIGHUP or the parent's death (the launcher makes SIGUSR1 the
parent-death signal, so that it means exactly that; the device also polls its parent) the device first
removes the ready file, the control socket and the files it made in the run dir, then stops its services;
a device whose parent is gone removes the whole run dir (nobody else will). If stopping hangs, it exits
hard after `HARD_EXIT_S`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import json
import os
import random
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from iec62443_harness.labs import LabError
from iec62443_harness.labs.netns import run_in
from iec62443_harness.labs.simplc.canbus import CanNode
from iec62443_harness.labs.simplc.debug_service import serve_debug
from iec62443_harness.labs.simplc.device import Device, provision_passwords
from iec62443_harness.labs.simplc.faults import check_name, serve_control
from iec62443_harness.labs.simplc.firmware import VendorKit, payload_for
from iec62443_harness.labs.simplc.modbus import ModbusRtuLine, ModbusService, ModbusTcpServer
from iec62443_harness.labs.simplc.profile import load_profile

HOST = "127.0.0.1"
PORT_RANGE = (20000, 32000)
PORT_NAMES = ("modbus_tcp", "ssh", "debug", "telnet", "https", "http")
PORT_TRIES = 40
PARENT_POLL_S = 0.5
HARD_EXIT_S = 5.0
PARENT_DEATH_SIGNAL = signal.SIGUSR1  # what the launcher asks the kernel to send when the harness dies


def _name_port(text: str) -> tuple[str, int]:
    name, _, port = text.partition("=")
    if name not in PORT_NAMES or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r}: write NAME=PORT with NAME one of {', '.join(PORT_NAMES)}")
    return name, int(port)


def _host_port(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r}: write HOST:PORT, e.g. 127.0.0.1:5514")
    return host, int(port)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="iec62443 simplc", description="Run the emulated PLC.")
    parser.add_argument("--profile", required=True, help="insecure, sl1 or sl2")
    parser.add_argument("--fault", help="start with this fault selected")
    parser.add_argument("--syslog", type=_host_port, help="forward audit records to this loopback HOST:PORT")
    parser.add_argument("--ready-file", type=Path, help="write the endpoints here (JSON) once ready")
    parser.add_argument("--ready-fd", type=int, help="write the endpoints (JSON) into this inherited pipe once ready")
    parser.add_argument("--run-dir", type=Path, help="the device's private directory (default: a temporary one)")
    parser.add_argument("--control", type=Path, help="path of the fault control socket")
    parser.add_argument("--port", type=_name_port, action="append", default=[], help="NAME=PORT, required")
    parser.add_argument("--prefer", type=_name_port, action="append", default=[], help="NAME=PORT, if free")
    parser.add_argument("--parent-pid", type=int, help="exit when this process is no longer the parent")
    parser.add_argument("--host", default=HOST, help="the address TCP services listen at (default 127.0.0.1)")
    parser.add_argument("--netns", help="listen inside this network namespace (/run/netns/NAME; root only)")
    return parser.parse_args(argv)


def _candidates(required: int | None, preferred: int | None) -> Iterator[int]:
    if required:
        yield required
        return
    if preferred:
        yield preferred
    for _ in range(PORT_TRIES):
        yield random.randrange(*PORT_RANGE)


def open_port(name: str, required: int | None, preferred: int | None, bind: Callable[[int], Any]) -> Any:
    """`bind(port)` on the first free candidate port; a required port that is taken is a LabError."""
    for port in _candidates(required, preferred):
        try:
            return bind(port)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
    if required:
        raise LabError(f"port {required} for {name} is taken: free it or choose another port")
    raise LabError(f"no free port for {name} in {PORT_RANGE[0]}-{PORT_RANGE[1] - 1} after {PORT_TRIES} tries: "
                   "free some ports")


class Listener:
    """Listening TCP sockets at the device's address: made inside its namespace when it has one (a socket stays
    in the namespace it was made in, whichever thread uses it later)."""

    def __init__(self, host: str = HOST, netns: str | None = None) -> None:
        self.host, self.netns = host, netns

    def __call__(self, port: int) -> socket.socket:
        return run_in(self.netns, lambda: self._make(port)) if self.netns else self._make(port)

    def _make(self, port: int) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT from a previous run is fine
            sock.bind((self.host, port))
            sock.listen(64)
        except OSError:
            sock.close()
            raise
        return sock


def _write_ready(path: Path, info: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # it holds passwords
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(info, f)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _send_ready(fd: int, info: dict[str, Any]) -> None:
    """The ready JSON into the launcher's pipe, then end of file: nothing is written to disk."""
    with os.fdopen(fd, "wb") as pipe:
        pipe.write(json.dumps(info).encode())


class RunDir:
    """What the device leaves on disk, and its removal on every way out.

    `path` is the run dir (made here when none is given). `remove(orphaned)` deletes the ready file, the
    control socket and every file the device made; the whole directory too when the device made it or
    when its parent is gone (`orphaned`: nobody else is left to clean up). Idempotent; safe from any thread.
    """

    def __init__(self, path: Path | None, ready_file: Path | None) -> None:
        self.own = path is None
        self.path = Path(tempfile.mkdtemp(prefix="simplc-")) if path is None else path
        self.path.mkdir(parents=True, exist_ok=True)
        self.made: list[Path] = [ready_file] if ready_file else []
        self._lock = threading.Lock()
        self._done = False

    def file(self, name: str) -> Path:
        """A path in the run dir that the device will remove on exit."""
        path = self.path / name
        self.made.append(path)
        return path

    def remove(self, orphaned: bool = False) -> None:
        with self._lock:
            if self._done:
                return
            self._done = True
        for path in self.made:
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)
        if self.own or orphaned:
            shutil.rmtree(self.path, ignore_errors=True)


async def serve(args: argparse.Namespace) -> None:
    t0 = time.monotonic()
    loop = asyncio.get_running_loop()
    parent = args.parent_pid or os.getppid()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # from the start: a stop at any time cleans up
        loop.add_signal_handler(sig, stop.set)
    orphan = asyncio.Event()  # the parent-death signal: the kernel sends it before getppid() shows the change

    def parent_died() -> None:
        orphan.set()
        stop.set()

    loop.add_signal_handler(PARENT_DEATH_SIGNAL, parent_died)
    profile = load_profile(args.profile)
    try:
        check_name(args.fault)
    except ValueError as exc:
        raise LabError(str(exc)) from None
    required, preferred = dict(args.port), dict(args.prefer)
    run_dir = RunDir(args.run_dir, args.ready_file)
    try:
        await _serve(args, profile, required, preferred, run_dir, parent, stop, orphan, t0)
    finally:
        run_dir.remove(orphaned=orphan.is_set() or os.getppid() != parent)


async def _serve(args: argparse.Namespace, profile: Any, required: dict[str, int], preferred: dict[str, int],
                 run_dir: RunDir, parent: int, stop: asyncio.Event, orphan: asyncio.Event, t0: float) -> None:
    loop = asyncio.get_running_loop()
    passwords = provision_passwords(profile, dict(os.environ))
    kit = VendorKit()  # the emulator is its own vendor: the device keeps only the public key
    device = Device(profile, passwords, syslog=args.syslog, vendor_key=kit.public)
    running = profile.firmware_version
    device.firmware.reference = kit.sign("firmware", running, payload_for(running))  # the self-test's known answer
    device.faults.set(args.fault)
    listen, host = Listener(args.host, args.netns), args.host
    async with contextlib.AsyncExitStack() as stack:
        stack.callback(device.audit.close)
        device.control.start()
        stack.callback(device.control.stop)

        service = ModbusService(device)
        tcp = ModbusTcpServer(service)
        await tcp.start(open_port("modbus_tcp", required.get("modbus_tcp"), preferred.get("modbus_tcp"),
                                  listen))
        stack.callback(tcp.close)
        rtu = ModbusRtuLine(service)
        stack.callback(rtu.close)
        can = CanNode(device)
        stack.callback(can.close)
        extra: dict[str, Any] = {}
        if profile.extra_service:
            debug_sock = open_port("debug", required.get("debug"), preferred.get("debug"), listen)
            debug = await serve_debug(device, debug_sock)
            stack.callback(debug.close)
            extra["debug"] = {"host": host, "port": debug_sock.getsockname()[1], "protocol": "tcp"}

        control_path = str(args.control or run_dir.file("control.sock"))
        if args.control:
            run_dir.made.append(Path(args.control))
        control = await serve_control(device.faults, control_path)
        stack.callback(lambda: Path(control_path).unlink(missing_ok=True))
        stack.callback(control.close)

        # The management side (part B) runs its own threads: start and stop it off the event loop.
        from iec62443_harness.labs.simplc.console import serve_console
        from iec62443_harness.labs.simplc.ssh import serve_ssh

        ssh = await loop.run_in_executor(None, lambda: open_port(
            "ssh", required.get("ssh"), preferred.get("ssh"), lambda port: serve_ssh(device, host, port, listen(port))))
        stack.push_async_callback(loop.run_in_executor, None, ssh.close)
        console = await loop.run_in_executor(None, serve_console, device)
        stack.push_async_callback(loop.run_in_executor, None, console.close)
        endpoints: dict[str, dict[str, Any]] = {
            "modbus_tcp": {"host": host, "port": tcp.port},
            "modbus_rtu": {"url": rtu.path},
            "can": {"channel": can.path},
            "ssh": {"host": host, "port": ssh.port},
            "console": {"url": console.path},
        }
        if profile.telnet_login:
            from iec62443_harness.labs.simplc.telnet import serve_telnet

            telnet_sock = open_port("telnet", required.get("telnet"), preferred.get("telnet"), listen)
            telnet = serve_telnet(device, telnet_sock)
            stack.push_async_callback(loop.run_in_executor, None, telnet.close)
            endpoints["telnet"] = {"host": host, "port": telnet.port}
        from iec62443_harness.labs.simplc.web import serve_web

        https_sock = open_port("https", required.get("https"), preferred.get("https"), listen)
        http_sock = open_port("http", required.get("http"), preferred.get("http"), listen) \
            if profile.web_plain_http else None
        web = await loop.run_in_executor(None, serve_web, device, https_sock, http_sock)  # makes a key: off the loop
        stack.push_async_callback(loop.run_in_executor, None, web.close)
        endpoints.update(web.endpoints())
        device.interfaces.update(_interfaces(endpoints, extra))

        from iec62443_harness.labs.simplc.inventory import sbom

        files = kit.write(run_dir.path, running, sbom(device), run_dir.file)
        secrets = {spec.env: passwords[spec.username] for spec in profile.accounts}
        info = {
            "profile": profile.name,
            "pid": os.getpid(),
            "endpoints": endpoints,
            "secrets": secrets,
            "files": files,
            "control": control_path,
            "extra_services": extra,
            "started_s": round(time.monotonic() - t0, 3),
        }
        if not stop.is_set():
            if args.ready_file:
                _write_ready(args.ready_file, info)
            if args.ready_fd is not None:
                _send_ready(args.ready_fd, info)
            _announce(info, show_secrets=args.ready_file is None and args.ready_fd is None)

        watcher = asyncio.ensure_future(_watch_parent(parent, stop))
        await stop.wait()
        watcher.cancel()
        # Files first (quick, and what matters if the rest hangs), then the services; never hang for good.
        run_dir.remove(orphaned=orphan.is_set() or os.getppid() != parent)
        backstop = threading.Timer(HARD_EXIT_S, os._exit, (1,))
        backstop.daemon = True  # never keeps a device that stopped cleanly alive
        backstop.start()


def _interfaces(endpoints: dict[str, dict[str, Any]], extra: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """What `config show` reports of each interface: protocol, where (host and port, or line), enabled."""
    protocols = {"modbus_tcp": "modbus-tcp", "modbus_rtu": "modbus-rtu", "can": "can-slcan", "ssh": "ssh",
                 "console": "serial-console", "telnet": "telnet", "https": "https", "http": "http"}
    out: dict[str, dict[str, Any]] = {}
    for name, protocol in protocols.items():
        where = endpoints.get(name)
        if where is None:
            out[name] = {"protocol": protocol, "enabled": False}
            continue
        if "base_url" in where:  # the web UI: scheme://host:port
            parts = urlsplit(where["base_url"])
            where = {"host": parts.hostname, "port": parts.port}
        line = where.get("url") or where.get("channel")
        out[name] = {"protocol": protocol, **({"line": line} if line else {"host": where["host"],
                                                                            "port": where["port"]}), "enabled": True}
    out["sftp"] = {"protocol": "sftp (ssh subsystem)", "host": endpoints["ssh"]["host"],
                   "port": endpoints["ssh"]["port"], "enabled": True}
    if "debug" in extra:  # running, but the firmware's own report does not declare it
        out["debug"] = {"protocol": "debug-monitor", "host": extra["debug"]["host"], "port": extra["debug"]["port"],
                        "enabled": True, "undeclared": True}
    return out


async def _watch_parent(parent: int, stop: asyncio.Event) -> None:
    """Stop when the parent is gone (we get re-parented): a killed harness must not leave a device behind."""
    while os.getppid() == parent:
        await asyncio.sleep(PARENT_POLL_S)
    stop.set()


def _announce(info: dict[str, Any], show_secrets: bool) -> None:
    lines = [f"SimPLC profile {info['profile']} ready in {info['started_s']:.2f} s (pid {info['pid']})"]
    for name, where in {**info["endpoints"], **info["extra_services"]}.items():
        lines.append(f"  {name:<11} " + (f"{where['host']}:{where['port']}" if "port" in where
                                          else where.get("url") or where.get("channel") or where.get("base_url")))
        if "certificate_sha256" in where:
            lines.append(f"  {'':<11} certificate SHA-256 {where['certificate_sha256']}")
    lines.append(f"  {'control':<11} {info['control']}")
    lines += [f"  {var} = {path}" for var, path in info.get("files", {}).items()]
    if show_secrets:
        lines += [f"  {env} = {password}" for env, password in info["secrets"].items()]
    print("\n".join(lines), flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        asyncio.run(serve(args))
    except (LabError, OSError) as exc:
        print(f"simplc: {exc}", file=sys.stderr, flush=True)
        return 2
    except KeyboardInterrupt:
        pass
    # Part B's threads are daemons, but make sure a lingering one cannot keep a stopped device alive.
    for thread in threading.enumerate():
        if thread is not threading.main_thread() and not thread.daemon:
            thread.join(timeout=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
