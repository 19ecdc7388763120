"""The console driver against a fake device on a pty pair: a thread on the master side plays a getty,
a login program and a shell; the driver opens the slave like any serial port."""

from __future__ import annotations

import contextlib
import os
import random
import select
import threading
import time

import pytest
from iec62443_harness.evidence import Evidence
from iec62443_harness.fixtures.drivers.console import MAX_LINE, MAX_READ, ConsoleDriver
from iec62443_harness.fixtures.drivers.errors import (
    ConnectionLost,
    DeviceTimeout,
    InterfaceUnavailable,
    ProtocolViolation,
)
from iec62443_harness.fixtures.safety import Guard
from iec62443_harness.target import Console, Safety, Timeouts

from tests.support import raw_pty

PASSWORD = "s3cret-Horse"
BANNER = "Authorized use only. Activity is logged."
REPLY_S = 0.3


class FakeDevice:
    """Modes: normal, silent (reads, never answers), babble (random bytes without end once poked),
    long_line (one endless line once poked), garbage (invalid UTF-8 before its prompt).
    `echo`: the password is echoed "off", "on", "partial" (its first 4 characters only) or as "stars"."""

    def __init__(self, mode: str = "normal", echo: str = "off", logged_in: bool = False,
                 fail_delay: float = 0.0) -> None:
        self.mode, self.echo, self.fail_delay = mode, echo, fail_delay
        self.master, self.slave, self.path = raw_pty()
        os.set_blocking(self.master, False)  # a full pty must never block the device thread
        self.state = "shell" if logged_in else "idle"
        self.line = b""
        self.user = ""
        self.received = b""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _write(self, data: bytes) -> None:
        with contextlib.suppress(BlockingIOError, OSError):  # a reader not keeping up: drop, like a UART overrun
            os.write(self.master, data)

    def _run(self) -> None:
        poked = False
        while not self._stop.is_set():
            if poked and self.mode in ("babble", "long_line"):
                chunk = random.randbytes(512) if self.mode == "babble" else b"A" * 512
                self._write(chunk)
            ready, _, _ = select.select([self.master], [], [], 0.001 if poked else 0.02)
            if not ready:
                continue
            try:
                data = os.read(self.master, 1024)
            except (BlockingIOError, OSError):
                continue
            self.received += data
            poked = True
            if self.mode == "normal" or self.mode == "garbage":
                for byte in data:
                    self._feed(bytes([byte]))

    def _prompt(self) -> None:
        self._write(b"plc login: ")
        self.state = "user"

    def _feed(self, ch: bytes) -> None:
        if self.state == "idle":
            if ch == b"\r":
                junk = b"\xff\xfe\x00\x80garbage\x81" if self.mode == "garbage" else b""
                self._write(b"\r\n" + junk + BANNER.encode() + b"\r\n\r\n")
                self._prompt()
            return
        if ch != b"\r":
            self.line += ch
            if self.state in ("user", "shell") or self.echo == "on" or (
                    self.echo == "partial" and len(self.line) <= 4):
                self._write(ch)
            elif self.echo == "stars":
                self._write(b"*")
            return
        line, self.line = self.line.decode(errors="replace"), b""
        time.sleep(0.02)  # a slow device: what it echoed stands alone for a while, and must not pass for a prompt
        self._write(b"\r\n")
        if self.state == "user":
            if not line:
                self._prompt()
                return
            self.user = line
            self._write(b"Password: ")
            self.state = "password"
        elif self.state == "password":
            if line == PASSWORD and self.user == "admin":
                self._write(b"Last login: Tue Nov 26 16:00 on ttyS0\r\n"
                            b"There were 2 failed login attempts since the last successful login.\r\nplc# ")
                self.state = "shell"
                return
            time.sleep(self.fail_delay)
            self._write(b"Login incorrect\r\n\r\n")
            self._prompt()
        elif self.state == "shell":
            if line == "exit":
                self._write(b"logout\r\n\r\n" + BANNER.encode() + b"\r\n\r\n")
                self._prompt()
                return
            out = {"whoami": "admin", "": None, "uname": "Linux plc 6.1.0 x86_64"}.get(line, f"sh: {line}: not found")
            self._write((f"{out}\r\n" if out else "").encode() + b"plc# ")

    def hang_up(self) -> None:
        """The device side goes away (cable pulled, emulator killed)."""
        self._stop.set()
        self._thread.join(2)
        os.close(self.master)
        self.master = -1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)
        for fd in (self.master, self.slave):
            if fd >= 0:
                os.close(fd)


@pytest.fixture
def device():
    made: list[tuple[FakeDevice, list[ConsoleDriver]]] = []

    def make(mode: str = "normal", **kw: object) -> tuple[FakeDevice, ConsoleDriver, Evidence]:
        dev = FakeDevice(mode, **kw)  # type: ignore[arg-type]
        ev = Evidence()
        iface = Console(url=dev.path, timeouts=Timeouts(connect_s=1, reply_s=REPLY_S))
        drv = ConsoleDriver(iface, ev, Guard(Safety(max_rate_per_s=1000), "console"))
        made.append((dev, [drv]))
        return dev, drv, ev

    yield make
    for dev, drivers in made:
        for drv in drivers:
            drv.close()
        dev.stop()


def test_wake_shows_banner_and_login_prompt(device):
    _, drv, ev = device()
    text = drv.wake()
    assert BANNER in text and text.endswith("plc login: ")
    assert any("wake -> login prompt" in line for line in ev.lines())


def test_right_password_is_accepted_without_echo(device):
    dev, drv, ev = device()
    result = drv.login("admin", PASSWORD)
    assert result.outcome == "accepted" and not result.password_echoed
    assert BANNER in result.pre_login_text
    assert "failed login attempts" in result.reply_text and result.reply_text.endswith("plc# ")
    assert PASSWORD.encode() in dev.received  # it was really sent ...
    assert PASSWORD not in "\n".join(ev.lines())  # ... and never written down


def test_wrong_password_is_rejected(device):
    _, drv, _ = device()
    result = drv.login("admin", "wrong-password")
    assert result.outcome == "rejected" and "Login incorrect" in result.reply_text
    assert drv.login("admin", PASSWORD).outcome == "accepted"


def test_rejection_after_the_device_pauses(device):
    _, drv, _ = device(fail_delay=0.5)
    result = drv.login("admin", "wrong-password")
    assert result.outcome == "rejected" and result.elapsed_s >= 0.5


def test_echoed_password_is_detected_and_masked(device):
    _, drv, ev = device(echo="on")
    result = drv.login("admin", PASSWORD)
    assert result.outcome == "accepted" and result.password_echoed
    assert PASSWORD not in result.reply_text and "*" * len(PASSWORD) in result.reply_text
    assert PASSWORD not in "\n".join(ev.lines()) and any("password ECHOED" in line for line in ev.lines())


def test_echoed_password_ending_like_a_prompt_is_not_a_shell(device):
    _, drv, _ = device(echo="on")
    result = drv.login("admin", "wrong-pass#")
    assert result.outcome == "rejected" and result.password_echoed


def test_password_masked_with_stars_is_not_echoed(device):
    _, drv, _ = device(echo="stars")
    result = drv.login("admin", PASSWORD)
    assert result.outcome == "accepted" and not result.password_echoed
    assert result.reply_text.startswith("*" * len(PASSWORD) + "\r\n")


def test_partly_echoed_password_is_detected(device):
    _, drv, _ = device(echo="partial")
    result = drv.login("admin", "not-the-password")
    assert result.outcome == "rejected" and result.password_echoed
    assert "not-" not in result.reply_text


def test_shell_left_logged_in_is_logged_out_first(device):
    dev, drv, ev = device(logged_in=True)
    text = drv.wake()
    assert text.endswith("plc login: ") and b"exit\r" in dev.received
    assert any("left logged in" in line for line in ev.lines())
    assert drv.login("admin", PASSWORD).outcome == "accepted"


def test_run_returns_the_output_only(device):
    _, drv, ev = device()
    assert drv.login("admin", PASSWORD).outcome == "accepted"
    assert drv.run("whoami") == "admin"
    assert drv.run("uname") == "Linux plc 6.1.0 x86_64"
    assert drv.run("frobnicate") == "sh: frobnicate: not found"
    assert drv.run("echo #") == "sh: echo #: not found"
    assert any("run 'whoami' -> 'admin'" in line for line in ev.lines())
    assert drv.logout()


def test_silent_device_times_out_in_bounded_time(device):
    _, drv, _ = device("silent")
    start = time.monotonic()
    with pytest.raises(DeviceTimeout, match="no login prompt within 0.3 s") as info:
        drv.wake()
    assert time.monotonic() - start < REPLY_S + 0.3
    assert info.value.seen == ""


def test_login_on_a_silent_device_times_out(device):
    _, drv, _ = device("silent")
    start = time.monotonic()
    with pytest.raises(DeviceTimeout):
        drv.login("admin", PASSWORD)
    assert time.monotonic() - start < REPLY_S + 0.3


@pytest.mark.parametrize("mode", ["babble", "long_line"])
def test_babbling_device_is_a_protocol_violation_in_bounded_time(device, mode):
    _, drv, _ = device(mode)
    start = time.monotonic()
    with pytest.raises(ProtocolViolation, match="babbles"):
        drv.wake(timeout=20)
    assert time.monotonic() - start < 10
    assert MAX_LINE < MAX_READ


def test_babble_is_capped_in_read_for(device):
    _, drv, _ = device("babble")
    drv.send_raw(b"\r")
    with pytest.raises(ProtocolViolation, match="babbles"):
        drv.read_for(20)


def test_garbage_bytes_are_decoded_with_replacement(device):
    _, drv, _ = device("garbage")
    text = drv.wake()
    assert "\ufffd" in text and "garbage" in text and text.endswith("plc login: ")


def test_raw_access(device):
    _, drv, ev = device()
    drv.send_raw(b"\r")
    data = drv.read_for(0.2)
    assert data.endswith(b"plc login: ")
    drv.send_raw(b"admin\r")
    text, seen = drv.read_until("Password:", 1.0)
    assert seen and text.endswith("Password:")
    text, seen = drv.read_until("never", 0.1)
    assert not seen and text == " "  # what followed the last match
    assert any("send_raw 61 64 6d 69 6e 0d" in line for line in ev.lines())


def test_device_hanging_up_is_connection_lost(device):
    dev, drv, _ = device()
    drv.wake()
    dev.hang_up()
    with pytest.raises(ConnectionLost):
        drv.wake()


def test_unopenable_port_is_interface_unavailable():
    iface = Console(url="/dev/does-not-exist-ttyX")
    with pytest.raises(InterfaceUnavailable, match="does-not-exist"):
        ConsoleDriver(iface, Evidence(), Guard(Safety(), "console"))


def test_any_pyserial_url_works():
    """loop:// echoes what is sent: a console that answers with our own bytes."""
    iface = Console(url="loop://", timeouts=Timeouts(connect_s=1, reply_s=0.2))
    with ConsoleDriver(iface, Evidence(), Guard(Safety(), "console")) as drv:
        drv.send_raw(b"hello login: ")
        assert drv.read_until("login:", 0.5) == ("hello login:", True)
