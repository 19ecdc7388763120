"""What the emulated PLC exposes (CR 4.1, 4.3, 7.7), seen from the network: the SSH algorithms each profile
offers (read from the server's KEXINIT on a raw socket, then proven with real clients), and the insecure
profile's plaintext telnet-style login port running the management shell in clear text."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import paramiko
import pytest
from iec62443_harness import labs
from iec62443_harness.labs.simplc.ssh import _Transport

pytestmark = pytest.mark.timeout(60)
SHA1_KEX = {"diffie-hellman-group14-sha1", "diffie-hellman-group1-sha1", "diffie-hellman-group-exchange-sha1"}


@pytest.fixture(scope="module")
def insecure() -> Iterator[labs.Running]:
    running = labs.start("simplc", "insecure")
    yield running
    running.stop()


@pytest.fixture(scope="module")
def sl2() -> Iterator[labs.Running]:
    running = labs.start("simplc", "sl2")
    yield running
    running.stop()


def kexinit(running: labs.Running) -> dict[str, list[str]]:
    """The name lists of the server's KEXINIT, read from a raw socket."""
    ep = running.endpoints["ssh"]
    with socket.create_connection((ep["host"], ep["port"]), timeout=2) as sock:
        sock.sendall(b"SSH-2.0-probe\r\n")
        stream = sock.makefile("rb")
        assert stream.readline().startswith(b"SSH-2.0-SimPLC")
        length = int.from_bytes(stream.read(4), "big")
        packet = stream.read(length)
    payload = packet[1:length - packet[0]]
    assert payload[0] == 20  # SSH_MSG_KEXINIT
    lists, pos = [], 17
    for _ in range(6):
        size = int.from_bytes(payload[pos:pos + 4], "big")
        lists.append(payload[pos + 4:pos + 4 + size].decode().split(","))
        pos += 4 + size
    return dict(zip(("kex", "hostkey", "cipher", "cipher_sc", "mac", "mac_sc"), lists, strict=True))


def weak_client(running: labs.Running, **algorithms: list[str]) -> paramiko.Transport:
    ep = running.endpoints["ssh"]
    sock = socket.create_connection((ep["host"], ep["port"]), timeout=3)
    t = _Transport(sock)  # the device's own transport class: it still speaks the SHA-1 algorithms
    t.banner_timeout = t.handshake_timeout = t.auth_timeout = 5
    options = t.get_security_options()
    for name, value in algorithms.items():
        setattr(options, name, value)
    return t


def test_sl2_offers_only_strong_algorithms(sl2: labs.Running) -> None:
    offer = kexinit(sl2)
    assert not [k for k in offer["kex"] if k in SHA1_KEX or k.endswith("-sha1")]
    assert not [c for c in offer["cipher"] if c.endswith("-cbc")]
    assert not [m for m in offer["mac"] if m in ("hmac-sha1", "hmac-md5", "hmac-sha1-96", "hmac-md5-96")]
    assert "ssh-rsa" not in offer["hostkey"] and "ssh-dss" not in offer["hostkey"]
    assert "curve25519-sha256@libssh.org" in offer["kex"]
    assert {"aes256-gcm@openssh.com", "aes128-ctr"} <= set(offer["cipher"])
    assert "hmac-sha2-256-etm@openssh.com" in offer["mac"] and "ssh-ed25519" in offer["hostkey"]
    for algorithms in ({"key_types": ["ssh-rsa"]}, {"ciphers": ["aes128-cbc"]}, {"digests": ["hmac-sha1"]},
                       {"kex": ["diffie-hellman-group14-sha1"]}):
        t = weak_client(sl2, **algorithms)
        with pytest.raises(paramiko.SSHException):
            t.connect(username="admin", password=sl2.secrets["SIMPLC_ADMIN_PASSWORD"])
        t.close()


def test_insecure_offers_and_really_uses_weak_algorithms(insecure: labs.Running) -> None:
    offer = kexinit(insecure)
    assert {"diffie-hellman-group14-sha1", "diffie-hellman-group1-sha1"} <= set(offer["kex"])
    assert {"aes128-cbc", "3des-cbc"} <= set(offer["cipher"]) and "hmac-sha1" in offer["mac"]
    assert "ssh-rsa" in offer["hostkey"]
    t = weak_client(insecure, key_types=["ssh-rsa"], kex=["diffie-hellman-group1-sha1"], ciphers=["3des-cbc"],
                    digests=["hmac-sha1"])
    try:
        t.connect(username="admin", password=insecure.secrets["SIMPLC_ADMIN_PASSWORD"])
        assert t.host_key_type == "ssh-rsa" and t.get_remote_server_key().get_name() == "ssh-rsa"
        chan = t.open_session(timeout=3)
        chan.exec_command("whoami")
        assert chan.makefile().read().strip() == b"admin (admin)"
    finally:
        t.close()


class Telnet:
    """A raw TCP client of the telnet-style port."""

    def __init__(self, running: labs.Running) -> None:
        ep = running.endpoints["telnet"]
        self.sock = socket.create_connection((ep["host"], ep["port"]), timeout=3)
        self.seen = b""

    def expect(self, marker: bytes, timeout: float = 3.0) -> bytes:
        deadline = time.monotonic() + timeout
        while marker not in self.seen:
            assert time.monotonic() < deadline, f"{marker!r} not seen; got {self.seen[-200:]!r}"
            self.sock.settimeout(max(deadline - time.monotonic(), 0.01))
            chunk = self.sock.recv(4096)
            assert chunk, f"closed before {marker!r}; got {self.seen[-200:]!r}"
            self.seen += chunk
        text, self.seen = self.seen[:self.seen.index(marker) + len(marker)], self.seen[
            self.seen.index(marker) + len(marker):]
        return text

    def line(self, text: str) -> None:
        self.sock.sendall(text.encode() + b"\r\n")


def test_insecure_plaintext_login_port(insecure: labs.Running) -> None:
    client = Telnet(insecure)
    try:
        client.sock.sendall(bytes([255, 253, 1, 255, 251, 31]))  # IAC DO ECHO, IAC WILL NAWS: ignored
        client.expect(b"login: ")
        client.line("viewer")
        client.expect(b"Password: ")
        client.line("wrong")
        assert b"Login incorrect" in client.expect(b"login: ")
        client.line("admin")
        client.expect(b"Password: ")
        client.line(insecure.secrets["SIMPLC_ADMIN_PASSWORD"])
        client.expect(b"admin@simplc# ")
        client.line("whoami")
        assert b"admin (admin)" in client.expect(b"admin@simplc# ")
        client.line("exit")
        client.expect(b"logout")
    finally:
        client.sock.close()
    t = paramiko.Transport(socket.create_connection((insecure.endpoints["ssh"]["host"],
                                                    insecure.endpoints["ssh"]["port"]), timeout=3))
    try:
        t.connect(username="admin", password=insecure.secrets["SIMPLC_ADMIN_PASSWORD"])
        chan = t.open_session(timeout=3)
        chan.exec_command("audit show 50")
        audit = chan.makefile().read().decode()
    finally:
        t.close()
    assert "login_ok user=admin source=telnet:127.0.0.1:" in audit


def test_no_plaintext_port_on_sl2(sl2: labs.Running) -> None:
    assert "telnet" not in sl2.endpoints
    assert set(sl2.endpoints) == {"modbus_tcp", "modbus_rtu", "can", "ssh", "console", "https"}  # no http
