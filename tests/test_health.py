"""Target health: liveness over each kind of interface, and the one-recovery-then-fast-error life cycle."""

from __future__ import annotations

import shlex
import socket
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from iec62443_harness.fixtures.health import TargetHealth, liveness
from iec62443_harness.fixtures.outcomes import TargetUnavailable
from iec62443_harness.fixtures.registry import Registry
from iec62443_harness.target import TargetSpec

from tests.certs import make_cert
from tests.support import ModbusLab, Ticker, free_port
from tests.webapp import WebApp, server_context


def spec(interfaces: dict[str, Any], wait_s: float = 0.5, command: str | None = None,
         coil: int | None = None) -> TargetSpec:
    raw: dict[str, Any] = {
        "identity": {"vendor": "test", "model": "lab", "firmware": "1"},
        "component_type": "embedded_device", "security_level": 1,
        "interfaces": interfaces, "recovery": {"wait_s": wait_s, "command": command},
    }
    if coil is not None:
        raw["essential_function"] = {"description": "coil", "via": ["modbus_tcp"], "max_gap_s": 1.0,
                                     "signal": {"kind": "coil", "address": coil, "high_s": 0.2, "low_s": 0.4}}
    return TargetSpec.model_validate(raw)


def modbus_spec(port: int, **kw: Any) -> TargetSpec:
    return spec({"modbus_tcp": {"host": "127.0.0.1", "port": port}}, **kw)


@pytest.fixture
def lab() -> Iterator[ModbusLab]:
    with ModbusLab() as server:
        yield server


class LineServer:
    """A loopback TCP server thread that greets each connection with `greeting` and answers "\\r" with
    `answer`: an SSH server's identification line, or a serial console reached over pyserial socket://."""

    def __init__(self, greeting: bytes = b"", answer: bytes = b"") -> None:
        self.greeting, self.answer = greeting, answer
        self.sock = socket.create_server(("127.0.0.1", free_port()))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(0.1)
                conn.sendall(self.greeting)
                while not self._stop.is_set():
                    try:
                        data = conn.recv(100)
                    except TimeoutError:
                        continue
                    if not data:
                        break
                    if b"\r" in data and self.answer:
                        conn.sendall(self.answer)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


@pytest.fixture
def line_server(request: pytest.FixtureRequest) -> Iterator[LineServer]:
    server = LineServer(*request.param)
    try:
        yield server
    finally:
        server.close()


def timed(target: TargetSpec, timeout: float = 0.5) -> tuple[bool, str, float]:
    start = time.monotonic()
    alive, why = liveness(Registry(target), timeout)
    return alive, why, time.monotonic() - start


# --- liveness


def test_a_live_modbus_device_is_alive_fast(lab: ModbusLab) -> None:
    alive, why, took = timed(modbus_spec(lab.port))
    assert alive, why
    assert took < 0.3


def test_a_modbus_exception_reply_is_alive(lab: ModbusLab) -> None:
    alive, why, _ = timed(modbus_spec(lab.port, coil=500))  # the lab has no coil 500: exception 02
    assert alive and "exception 02" in why


def test_a_dead_port_is_dead_fast() -> None:
    alive, why, took = timed(modbus_spec(free_port()))
    assert not alive and "connect" in why
    assert took < 0.3


@pytest.mark.parametrize("line_server", [(b"SSH-2.0-OpenSSH_9.2\r\n",)], indirect=True)
def test_ssh_identification_line_is_alive(line_server: LineServer) -> None:
    alive, why, took = timed(spec({"ssh": {"host": "127.0.0.1", "port": line_server.port}}))
    assert alive and why == "ssh answers: SSH-2.0-OpenSSH_9.2"
    assert took < 0.3


@pytest.mark.parametrize(("line_server", "expected"), [
    ((b"HTTP/1.1 400 Bad Request\r\n",), "sent no SSH identification"),
    ((b"",), "timed out"),
], indirect=["line_server"], ids=["not ssh", "silent"])
def test_ssh_that_does_not_identify_is_dead(line_server: LineServer, expected: str) -> None:
    alive, why, took = timed(spec({"ssh": {"host": "127.0.0.1", "port": line_server.port}}), timeout=0.3)
    assert not alive and expected in why
    assert took < 0.6


@pytest.mark.parametrize(("line_server", "alive"), [((b"", b"\r\nlogin: "), True), ((b"", b""), False)],
                         indirect=["line_server"], ids=["answers", "silent"])
def test_console_answering_enter_is_alive(line_server: LineServer, alive: bool) -> None:
    target = spec({"console": {"url": f"socket://127.0.0.1:{line_server.port}"}})
    assert timed(target, timeout=0.3)[0] is alive


def test_can_frame_seen_is_alive() -> None:
    ticker = Ticker(period=0.05)
    try:
        alive, why, took = timed(spec({"can": {"interface": "virtual", "channel": ticker.channel}}))
        assert alive and why == "can: frame 0x705 seen"
        assert took < 0.3
    finally:
        ticker.close()


def test_a_silent_can_bus_is_dead() -> None:
    alive, why, _ = timed(spec({"can": {"interface": "virtual", "channel": f"silent-{id(spec)}"}}), timeout=0.2)
    assert not alive and why == "can: no frame from the device within 0.2 s"


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[WebApp, WebApp]]:
    """A web UI with only https, and one with only plain http (no other interface to check instead)."""
    cert = make_cert(tmp_path_factory.mktemp("health-web"))
    with WebApp(strong=True, tls=server_context(str(cert.cert), str(cert.key))) as tls, WebApp(strong=False) as plain:
        yield tls, plain


def test_a_web_only_device_is_alive_over_https_then_http(web: tuple[WebApp, WebApp]) -> None:
    tls, plain = web
    before = tls.requests
    alive, why, took = timed(spec({"https": {"base_url": tls.base_url}}))
    assert alive and why.startswith("https answers (certificate SHA-256 ") and took < 0.5, why
    assert tls.requests == before  # a handshake and no request: nothing logged in, nothing changed
    alive, why, _ = timed(spec({"http": {"base_url": plain.base_url}}))
    assert alive and why == "http answers (status 404)", why  # any status is an answer


def test_a_dead_web_port_is_dead_fast() -> None:
    for scheme in ("https", "http"):
        alive, why, took = timed(spec({scheme: {"base_url": f"{scheme}://127.0.0.1:{free_port()}"}}))
        assert not alive and "connect" in why and took < 0.5, why


def test_a_tls_port_that_speaks_no_tls_is_dead(web: tuple[WebApp, WebApp]) -> None:
    _, plain = web
    alive, why, _ = timed(spec({"https": {"base_url": plain.base_url.replace("http:", "https:")}}))
    assert not alive and "TLS handshake failed" in why, why


def test_no_interface_at_all_is_not_alive() -> None:
    assert liveness(Registry(spec({}))) == (False, "the target declares no interface to check")


# --- the life cycle before each test


def test_a_live_target_passes_before_test(lab: ModbusLab) -> None:
    health = TargetHealth(Registry(modbus_spec(lab.port)))
    for _ in range(3):
        health.before_test()
    assert health.events == [] and health.dead is None


def test_a_recovered_target_continues(lab: ModbusLab) -> None:
    revived: list[ModbusLab] = []

    def restart() -> None:
        revived.append(ModbusLab(port=lab.port).start())

    health = TargetHealth(Registry(modbus_spec(lab.port, wait_s=3.0)), restart)
    try:
        health.before_test()
        lab.kill()
        health.before_test()  # gone: recovered, and the test goes ahead
        health.before_test()
        assert len(revived) == 1 and health.recovery_tried and health.dead is None
        whats = [e.what for e in health.events]
        assert whats[0].startswith("target not answering: modbus_tcp")
        assert whats[1] == "recovery started" and whats[2].startswith("target back")
        assert all(a.at <= b.at for a, b in itertools_pairs(health.events))
        revived[0].kill()  # gone again: recovery is tried only once per run
        with pytest.raises(TargetUnavailable, match="again .* recovery is tried once per run"):
            health.before_test()
    finally:
        for server in revived:
            server.stop()


def itertools_pairs(items: list[Any]) -> list[tuple[Any, Any]]:
    return list(zip(items, items[1:], strict=False))


def test_a_recovery_that_moves_the_target_is_followed(lab: ModbusLab) -> None:
    moved: list[ModbusLab] = []

    def restart() -> TargetSpec:  # as an emulator does when its old port is taken: new address, new spec
        moved.append(ModbusLab().start())
        return modbus_spec(moved[0].port)

    health = TargetHealth(Registry(modbus_spec(lab.port)), restart)
    try:
        lab.kill()
        health.before_test()
        assert health.registry.spec.interfaces.modbus_tcp.port == moved[0].port
    finally:
        for server in moved:
            server.stop()


@pytest.mark.parametrize(("recover", "reason"), [
    (lambda: None, "still gone 0.5 s after recovery"),
    (lambda: (_ for _ in ()).throw(RuntimeError("power switch unreachable")), "recovery failed: power switch"),
    (None, "declares no recovery"),
], ids=["stays gone", "recovery raises", "no recovery"])
def test_a_dead_target_fails_fast_after_one_recovery(recover: Any, reason: str) -> None:
    calls = []

    def counted() -> None:
        calls.append(1)
        recover()

    health = TargetHealth(Registry(modbus_spec(free_port(), wait_s=0.5)), counted if recover else None)
    with pytest.raises(TargetUnavailable, match=reason):
        health.before_test()
    start = time.monotonic()
    for _ in range(10):
        with pytest.raises(TargetUnavailable, match="remaining tests end as ERROR"):
            health.before_test()
    assert time.monotonic() - start < 0.1
    assert len(calls) == (1 if recover else 0)
    assert health.events[-1].what.startswith("target given up")


@pytest.mark.parametrize(("code", "timeout", "reason"), [
    ("import sys; sys.exit(3)", 60.0, "recovery.command exited with 3"),
    ("import time; time.sleep(5)", 0.3, "did not finish within 0.3 s"),
    ("pass", 60.0, "still gone 0.5 s after recovery"),
], ids=["fails", "hangs", "succeeds but the target stays gone"])
def test_recovery_command_of_the_target_file(code: str, timeout: float, reason: str) -> None:
    command = shlex.join([sys.executable, "-c", code])
    health = TargetHealth(Registry(modbus_spec(free_port(), command=command)), command_timeout_s=timeout)
    start = time.monotonic()
    with pytest.raises(TargetUnavailable, match=reason):
        health.before_test()
    assert time.monotonic() - start < 3.0
