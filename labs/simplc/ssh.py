"""SSH server of the emulated PLC (paramiko in server mode): password login, shell and exec channels.

One thread per connection (plus one per channel). It identifies as `SSH-2.0-SimPLC_1.0`, sends the profile's
banner as the SSH-2 userauth banner before authentication, accepts only "password" (public keys are
refused) through `Accounts`, and offers strong algorithms only (ECDH/curve25519/ML-KEM and SHA-2 DH key
exchanges, AES-CTR/GCM, SHA-2 MACs, ssh-ed25519 and ecdsa host keys), plus weak ones (SHA-1 Diffie-Hellman,
CBC ciphers, hmac-sha1/md5, an RSA host key signing with ssh-rsa, i.e. SHA-1, besides rsa-sha2) when
`ssh_weak_algorithms` is set. paramiko 5.1 dropped the SHA-1 key exchanges and ssh-rsa signatures, so they
are put back here: its group-14 exchange with SHA-1, the RFC 2409 1024-bit group, an RSA key with SHA-1.
`offered(device)` lists what a new connection is offered now (`config show` reports it).

The "sftp" subsystem serves the device's files (sftp.py) to a logged-in user. `system restart` and
`system purge` close every connection open at the time (a hook in `device.restart_hooks`).

A shell channel (with or without a pty) is a registered session: session limit, idle timeout, admin kill.
An exec channel runs one command and returns its output and exit status. Every connection is bounded: a
client that has not logged in and opened a channel within `login_grace_s` (or that keeps a connection with
no channel that long) is dropped. Faults: "silent" (accept and read, never answer, keep the connection),
"reset" (new and existing connections closed at once), "slow" (every answer SLOW_S late).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import logging
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import paramiko
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from iec62443_harness.labs.simplc.accounts import AuthResult
from iec62443_harness.labs.simplc.sftp import DeviceSFTP
from iec62443_harness.labs.simplc.shell import SLOW_S, Shell, Terminal, interactive, setting
from paramiko.kex_group14 import KexGroup14SHA256

SERVER_VERSION = "SSH-2.0-SimPLC_1.0"
LOGIN_GRACE_S = 20.0
MAX_CONNECTIONS = 32  # like sshd's MaxStartups: a connection flood cannot exhaust threads
FAULTS = frozenset({"silent", "reset", "slow"})
POLL_S = 0.1
SEND_TIMEOUT_S = 2.0
_LOG = "labs.simplc.ssh.transport"
logging.getLogger(_LOG).addHandler(logging.NullHandler())  # a client hanging up is no error to print
logging.getLogger(_LOG).propagate = False


class _KexGroup14SHA1(KexGroup14SHA256):
    name = "diffie-hellman-group14-sha1"
    hash_algo = hashlib.sha1


class _KexGroup1SHA1(_KexGroup14SHA1):
    name = "diffie-hellman-group1-sha1"
    # RFC 2409 section 6.2, the 1024-bit Oakley group 2
    P = int("FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A08798E3404DD"
            "EF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"
            "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE65381FFFFFFFFFFFFFFFF", 16)


class _RSAKeySHA1(paramiko.RSAKey):
    """An RSA key that also signs and verifies "ssh-rsa" (SHA-1), which paramiko 5 dropped."""

    HASHES = {**paramiko.RSAKey.HASHES, "ssh-rsa": hashes.SHA1}


class _Transport(paramiko.Transport):
    _kex_info = {**paramiko.Transport._kex_info, _KexGroup14SHA1.name: _KexGroup14SHA1,
                 _KexGroup1SHA1.name: _KexGroup1SHA1}
    _key_info = {**paramiko.Transport._key_info, "ssh-rsa": _RSAKeySHA1}


# group exchange is left out: paramiko serves it only with a moduli file
STRONG = {
    "kex": tuple(k for k in paramiko.Transport._preferred_kex if "group-exchange" not in k),
    "ciphers": ("aes128-ctr", "aes192-ctr", "aes256-ctr", "aes128-gcm@openssh.com", "aes256-gcm@openssh.com"),
    "digests": ("hmac-sha2-256", "hmac-sha2-512", "hmac-sha2-256-etm@openssh.com", "hmac-sha2-512-etm@openssh.com"),
    "key_types": ("ssh-ed25519", "ecdsa-sha2-nistp256"),
}
WEAK = {
    "kex": ("diffie-hellman-group14-sha1", "diffie-hellman-group1-sha1"),
    "ciphers": ("aes128-cbc", "aes256-cbc", "3des-cbc"),
    "digests": ("hmac-sha1", "hmac-md5"),
    "key_types": ("rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"),
}
_REPORT = {"kex": "kex", "ciphers": "ciphers", "digests": "macs", "key_types": "hostkeys"}


def offered(device: Any) -> dict[str, list[str]]:
    """What a new connection is offered now: {"kex", "ciphers", "macs", "hostkeys"} -> algorithm names."""
    weak = bool(setting(device, "ssh_weak_algorithms"))
    return {_REPORT[key]: list(STRONG[key] + (WEAK[key] if weak else ())) for key in STRONG}


def _ed25519_host_key() -> paramiko.PKey:
    pem = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption())
    return paramiko.Ed25519Key(file_obj=io.StringIO(pem.decode()))


@dataclass
class _Request:
    """What the client asked of one channel; set from paramiko's transport thread."""

    ready: threading.Event = field(default_factory=threading.Event)
    pty: bool = False
    command: str | None = None  # None: a shell
    subsystem: str | None = None  # "sftp": served by its own thread


class _Interface(paramiko.ServerInterface):
    def __init__(self, device: Any, source: str) -> None:
        self.device, self.source = device, source
        self.user: str | None = None
        self._requests: dict[int, _Request] = {}
        self._lock = threading.Lock()

    def request(self, chanid: int) -> _Request:
        with self._lock:
            return self._requests.setdefault(chanid, _Request())

    def get_banner(self) -> tuple[str | None, str | None]:
        banner = setting(self.device, "banner")
        if not banner:
            return None, None
        return banner.replace("\r\n", "\n").rstrip("\n").replace("\n", "\r\n") + "\r\n", "en-US"

    def get_allowed_auths(self, username: str) -> str:
        return "password"

    def check_auth_password(self, username: str, password: str) -> int:
        if self.device.accounts.authenticate(username, password, self.source) is AuthResult.OK:
            self.user = username
            return paramiko.AUTH_SUCCESSFUL
        return paramiko.AUTH_FAILED

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        return paramiko.AUTH_FAILED

    def check_channel_request(self, kind: str, chanid: int) -> int:
        if kind == "session":
            return paramiko.OPEN_SUCCEEDED
        return paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    def check_channel_pty_request(self, channel: paramiko.Channel, *args: Any) -> bool:
        self.request(channel.get_id()).pty = True
        return True

    def check_channel_shell_request(self, channel: paramiko.Channel) -> bool:
        self.request(channel.get_id()).ready.set()
        return True

    def check_channel_exec_request(self, channel: paramiko.Channel, command: bytes) -> bool:
        request = self.request(channel.get_id())
        request.command = command.decode("utf-8", "replace")
        request.ready.set()
        return True

    def check_channel_subsystem_request(self, channel: paramiko.Channel, name: str) -> bool:
        if self.user is None or not super().check_channel_subsystem_request(channel, name):
            return False
        request = self.request(channel.get_id())
        request.subsystem = name
        request.ready.set()
        return True


class _ChannelPort:
    def __init__(self, channel: paramiko.Channel) -> None:
        self.channel = channel

    def recv(self, timeout: float) -> bytes | None:
        self.channel.settimeout(max(timeout, 0.001))
        try:
            return self.channel.recv(4096)
        except TimeoutError:
            return None
        except (OSError, EOFError, paramiko.SSHException):
            return b""

    def send(self, data: bytes) -> None:
        self.channel.settimeout(SEND_TIMEOUT_S)
        with contextlib.suppress(OSError, EOFError, paramiko.SSHException):
            self.channel.sendall(data)

    def close(self) -> None:
        _close(self.channel)


def _close(channel: paramiko.Channel) -> None:
    """Close a channel whose transport may be gone already (closing then fails to send the message)."""
    with contextlib.suppress(OSError, EOFError, paramiko.SSHException):
        channel.close()


def _reset(sock: socket.socket) -> None:
    """Close with a TCP RST, as a device that drops connections does."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


class Server:
    def __init__(self, device: Any, host: str, port: int, login_grace_s: float = LOGIN_GRACE_S,
                 listener: socket.socket | None = None) -> None:
        self.device = device
        self.login_grace_s = login_grace_s
        self.host_key = paramiko.ECDSAKey.generate()  # fresh host keys every start
        self.host_keys = [self.host_key, _ed25519_host_key()]
        if setting(device, "ssh_weak_algorithms"):  # RSA, able to sign with SHA-1 too
            self.host_keys.append(_RSAKeySHA1(key=paramiko.RSAKey.generate(2048).key))
        digest = hashlib.sha256(self.host_key.asbytes()).digest()
        self.fingerprint = "SHA256:" + base64.b64encode(digest).decode().rstrip("=")
        self._listener = listener or socket.create_server((host, port), backlog=64)
        self._listener.settimeout(POLL_S)
        self.host, self.port = self._listener.getsockname()[:2]
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._threads: set[threading.Thread] = set()
        self._transports: set[paramiko.Transport] = set()
        self._connections = 0
        if isinstance(getattr(device, "restart_hooks", None), list):
            device.restart_hooks.append(self._restart_hook)
        self._spawn(self._accept_loop, "simplc-ssh-accept")

    def _restart_hook(self) -> Any:
        """The connections open now, to close once a restart or purge has answered."""
        with self._lock:
            transports = list(self._transports)

        def close() -> None:
            for transport in transports:
                with contextlib.suppress(Exception):
                    transport.close()

        return close

    def close(self) -> None:
        self._closed.set()
        self._listener.close()
        with self._lock:
            transports, threads = list(self._transports), list(self._threads)
        for transport in transports:
            with contextlib.suppress(Exception):
                transport.close()
        deadline = time.monotonic() + 3.0
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def _spawn(self, target: Any, name: str, *args: Any) -> threading.Thread | None:
        """Run `target` in a tracked thread; None once the server is closed."""
        def run() -> None:
            try:
                target(*args)
            finally:
                with self._lock:
                    self._threads.discard(thread)

        thread = threading.Thread(target=run, name=name, daemon=True)
        with self._lock:
            if self._closed.is_set():
                return None
            self._threads.add(thread)
        thread.start()
        return thread

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                sock, peer = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                if self._closed.wait(POLL_S):  # closed, or out of descriptors for a moment
                    return
                continue
            with self._lock:
                busy = self._connections >= MAX_CONNECTIONS
                self._connections += not busy
            if busy or self._spawn(self._connection, "simplc-ssh", sock, peer) is None:
                _reset(sock)
                with self._lock:
                    self._connections -= not busy

    def _hold_while_silent(self, sock: socket.socket) -> bool:
        """Say nothing while the "silent" fault lasts; True when the connection may then be served.

        The client's bytes stay queued, unread, so the session can still start once the fault clears.
        """
        sock.setblocking(False)
        try:
            while self.device.fault == "silent":
                if self._closed.wait(POLL_S):
                    return False
                try:
                    if sock.recv(1, socket.MSG_PEEK) == b"":
                        return False  # the client gave up
                except BlockingIOError:
                    pass
        finally:
            sock.setblocking(True)
        return True

    def _transport(self, sock: socket.socket) -> paramiko.Transport:
        transport = _Transport(sock)
        transport.set_log_channel(_LOG)
        transport.local_version = SERVER_VERSION
        transport.banner_timeout = transport.handshake_timeout = transport.auth_timeout = self.login_grace_s
        for key in self.host_keys:
            transport.add_server_key(key)
        weak = bool(setting(self.device, "ssh_weak_algorithms"))
        options = transport.get_security_options()
        options.kex = STRONG["kex"] + (WEAK["kex"] if weak else ())
        options.ciphers = STRONG["ciphers"] + (WEAK["ciphers"] if weak else ())
        options.digests = STRONG["digests"] + (WEAK["digests"] if weak else ())
        have = set(transport.server_key_dict)
        options.key_types = tuple(k for k in STRONG["key_types"] + (WEAK["key_types"] if weak else ()) if k in have)
        if hasattr(self.device, "files"):
            transport.set_subsystem_handler("sftp", paramiko.SFTPServer, DeviceSFTP, self.device)
        return transport

    def _connection(self, sock: socket.socket, peer: tuple[str, int]) -> None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.device.fault == "reset" or not self._hold_while_silent(sock):
                _reset(sock)
                return
            if self.device.fault == "slow":
                self._closed.wait(SLOW_S)
            self._serve(sock, f"ssh:{peer[0]}:{peer[1]}")
        finally:
            sock.close()
            with self._lock:
                self._connections -= 1

    def _serve(self, sock: socket.socket, source: str) -> None:
        interface = _Interface(self.device, source)
        transport = self._transport(sock)
        with self._lock:
            if self._closed.is_set():
                return
            self._transports.add(transport)
        channels: set[threading.Thread] = set()
        try:
            transport.start_server(server=interface)  # returns after key exchange, bounded by the timeouts
            deadline = time.monotonic() + self.login_grace_s
            while transport.is_active() and not self._closed.is_set() and self.device.fault != "reset":
                channel = transport.accept(POLL_S)
                if channel is not None:
                    thread = self._spawn(self._channel, "simplc-ssh-channel", interface, channel)
                    if thread is None:
                        _close(channel)
                    else:
                        channels.add(thread)
                channels = {t for t in channels if t.is_alive()}
                if channels:
                    deadline = time.monotonic() + self.login_grace_s
                elif time.monotonic() > deadline:
                    break  # not logged in, or no channel, for too long
        except (paramiko.SSHException, EOFError, OSError):
            pass  # the client went away or spoke nonsense: nothing to keep
        finally:
            transport.close()
            with self._lock:
                self._transports.discard(transport)

    def _channel(self, interface: _Interface, channel: paramiko.Channel) -> None:
        try:
            request = interface.request(channel.get_id())
            deadline = time.monotonic() + self.login_grace_s
            while not request.ready.wait(POLL_S):  # the client has yet to ask for a shell or a command
                if self._closed.is_set() or channel.closed or time.monotonic() > deadline:
                    return
            if interface.user is None:
                return
            if request.subsystem is not None:  # its own thread serves it: hold the channel until it closes
                while not (channel.closed or self._closed.is_set() or self.device.fault == "reset"):
                    time.sleep(POLL_S)
                return
            user, port = interface.user, _ChannelPort(channel)
            if request.command is not None:
                self._exec(user, interface.source, request.command, port)
                return
            terminal = Terminal(port, self.device, FAULTS, echo=request.pty)
            reason = interactive(self.device, user, interface.source, terminal, close=port.close)
            with contextlib.suppress(OSError, EOFError, paramiko.SSHException):
                channel.send_exit_status(1 if reason == "refused" else 0)
        finally:
            _close(channel)

    def _exec(self, user: str, source: str, command: str, port: _ChannelPort) -> None:
        while self.device.fault == "silent":  # the command is read, not answered while the fault lasts
            if self._closed.wait(POLL_S) or port.channel.closed:
                return
        if self.device.fault == "slow":
            time.sleep(SLOW_S)
        result = Shell(self.device, user, source).execute(command)
        if result.output:
            port.send((result.output + "\n").encode("utf-8", "replace"))  # no pty: plain newlines
        with contextlib.suppress(OSError, EOFError, paramiko.SSHException):
            port.channel.send_exit_status(result.status)


def serve_ssh(device: Any, host: str, port: int, listener: socket.socket | None = None) -> Server:
    """Start the SSH server; it is listening when this returns. `port` 0 picks a free one (see .port); a
    `listener` already bound there (inside the device's namespace) is used as it is."""
    return Server(device, host, port, listener=listener)
