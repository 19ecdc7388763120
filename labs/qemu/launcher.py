"""Boot the QEMU guest as an emulated device, per the contract in `labs/__init__.py`.

`start("weak" | "hardened")` builds (or reuses) the cached image, appends the boot configuration (profile,
password hashes) to its initramfs, boots it under TCG with every interface forwarded to a free loopback
port below 32768, and returns once a Modbus read and an SSH login with a command really succeed.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import hashlib
import io
import os
import random
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

import paramiko
from iec62443_harness.labs import LabError
from iec62443_harness.labs.process import die_with_parent
from iec62443_harness.labs.qemu.build import (
    ACCOUNTS,
    LOGIN_ACCOUNTS,
    Image,
    build,
    cpio_entry,
    cpio_trailer,
    new_key,
    sign,
)
from iec62443_harness.labs.qemu.netns import (
    GUEST_IP,
    GUEST_MAC,
    SEGMENTS,
    Segments,
    Zones,
    prefix,
    sweep,
    unavailable,
)

QEMU = "qemu-system-x86_64"
PROFILES = ("weak", "hardened")
# stall: the VM paused. tamper_bundle: bytes of plcd changed on the bundle disk (its signature kept), then a
# reboot; foreign_signature: the same change signed with a key of the lab's own instead of the build key.
BUNDLE_FAULTS = ("tamper_bundle", "foreign_signature")
FAULTS = ("stall", *BUNDLE_FAULTS)
BUNDLE_MARK, BUNDLE_MARK_CHANGED = b"bundle-mark:original", b"bundle-mark:tampered"  # guest/plcd.c bundle_mark
HOST = "127.0.0.1"
# What the guest is configured with; targets/qemu-plc*.yaml declare the same values.
BANNER = "WARNING: authorized use only. Activity on this device is monitored and recorded."
LOCKOUT_THRESHOLD = 3
LOCKOUT_UNLOCK_S = 10
WEAK_PASSWORDS = {name: name for name in LOGIN_ACCOUNTS}  # factory defaults: root/root, admin/admin, ...
SECRET_ENV = {"admin": "QEMU_ADMIN_PASSWORD", "operator": "QEMU_OPERATOR_PASSWORD",
              "locktest": "QEMU_LOCKTEST_PASSWORD"}
READY_USER = "admin"
PORTS = ("ssh", "modbus_tcp", "console", "modbus_rtu", "can", "https")
OPTIONS = ("ports", "ready_timeout_s", "memory_mb", "cache_dir", "zones", "networks")
# mitigations and crypto self-tests cost about 0.5 s of emulated boot and protect nothing in a lab VM.
KERNEL_ARGS = "console=ttyS0 quiet loglevel=3 panic=-1 mitigations=off cryptomgr.notests tsc=reliable no_timer_check"
PORT_RANGE = (20000, 32767)  # below the ephemeral range (32768-60999), where a collision was seen

_live: set[QemuDevice] = set()  # strong references: a device nobody holds any more is still stopped at exit


def _stop_all() -> None:
    for device in list(_live):
        device.stop()


atexit.register(_stop_all)


def _port_free(port: int) -> bool:
    """Whether QEMU could listen there: it sets SO_REUSEADDR, so TIME_WAIT leftovers do not count."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def _pick_ports(given: dict[str, int]) -> dict[str, int]:
    unknown = set(given) - set(PORTS)
    if unknown:
        raise LabError(f"options['ports'] names unknown interface(s) {', '.join(sorted(unknown))}: "
                       f"use {', '.join(PORTS)}")
    for name, port in given.items():
        if not _port_free(port):
            raise LabError(f"port {port} ({name}) is already in use on {HOST}: free it, or choose another "
                           "port in options['ports'] (or leave it out to pick a free one)")
    ports = dict(given)
    while len(ports) < len(PORTS):
        port = random.randint(*PORT_RANGE)
        if port not in ports.values() and _port_free(port):
            ports[next(n for n in PORTS if n not in ports)] = port
    return ports


def _hash_passwords(passwords: dict[str, str]) -> dict[str, str]:
    """SHA-512 crypt hashes (what the guest's PAM verifies), so that no clear password enters the guest."""
    try:
        out = subprocess.run(["openssl", "passwd", "-6", "-stdin"], input="".join(f"{p}\n" for p in
                             passwords.values()), capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        raise LabError("openssl could not hash the guest passwords: apt-get install -y openssl") from None
    return dict(zip(passwords, out.split(), strict=True))


def _boot_config(profile: str, passwords: dict[str, str], syslog: tuple[str, int] | None, zones: bool,
                 networks: bool = False) -> bytes:
    """cpio members the kernel unpacks over the image's: /etc/lab.conf and /etc/shadow."""
    hashes = _hash_passwords(passwords)
    shadow = "".join(f"{n}:{hashes.get(n, '*')}:19000:0:99999:7:::\n" for n, *_ in ACCOUNTS)
    conf = (f"PROFILE={profile}\nBANNER='{BANNER}'\nLOCK_DENY={LOCKOUT_THRESHOLD}\n"
            f"LOCK_UNLOCK_S={LOCKOUT_UNLOCK_S}\nSYSLOG={f'10.0.2.2:{syslog[1]}' if syslog else ''}\n")
    if zones:
        conf += f"ZONE_MAC={GUEST_MAC}\nZONE_ADDR={GUEST_IP}/24\n"
    if networks:  # "MAC=ADDRESS/24 ..." for each network NIC (netns.SEGMENTS)
        conf += f"NETS='{' '.join(f'{mac}={guest}/24' for mac, guest, _ in SEGMENTS.values())}'\n"
    members = cpio_entry("etc/lab.conf", 0o100600, conf.encode(), ino=1)
    members += cpio_entry("etc/shadow", 0o100600, shadow.encode(), ino=2)
    return members + cpio_trailer()


def _members(bundle: bytes) -> dict[str, tuple[int, int]]:
    """name -> (offset, size) of each member's data in the bundle disk (a tar)."""
    with tarfile.open(fileobj=io.BytesIO(bundle)) as tar:
        return {m.name: (m.offset_data, m.size) for m in tar.getmembers()}


def changed_bundle(original: bytes, workdir: Path, foreign: bool) -> tuple[bytes, str]:
    """The bundle disk with plcd's build mark rewritten (it still runs); `foreign`: app.sig replaced by a
    signature of the changed app.tar with a fresh key of the lab's own. Same size: written in place."""
    members = _members(original)
    start, size = members["app.tar"]
    at = original.find(BUNDLE_MARK, start, start + size)
    if at < 0:
        raise LabError("the application bundle holds no build mark to change: rebuild the image "
                       "(iec62443 qemu-build --force)")
    data = bytearray(original)
    data[at:at + len(BUNDLE_MARK)] = BUNDLE_MARK_CHANGED
    changed = sum(a != b for a, b in zip(BUNDLE_MARK, BUNDLE_MARK_CHANGED, strict=True))
    detail = (f"{changed} bytes of plcd changed at offset {at} of the bundle disk ({BUNDLE_MARK.decode()!r} -> "
              f"{BUNDLE_MARK_CHANGED.decode()!r})")
    if not foreign:
        return bytes(data), detail + ", its signature left as built"
    key, app, sig = workdir / "foreign.pem", workdir / "app.tar", workdir / "app.sig"
    new_key(key)
    app.write_bytes(data[start:start + size])
    sign(key, app, sig)
    offset, length = members["app.sig"]
    signature = sig.read_bytes()
    if len(signature) != length:
        raise LabError(f"a foreign signature of {len(signature)} bytes does not fit app.sig ({length} bytes)")
    data[offset:offset + length] = signature
    return bytes(data), detail + ", and app.sig replaced by a valid Ed25519 signature of the changed app.tar " \
                                 "by a key of the lab's own (not the build key)"


def _fingerprint(key: paramiko.PKey) -> str:
    return "SHA256:" + base64.b64encode(hashlib.sha256(key.asbytes()).digest()).decode().rstrip("=")


def modbus_read(port: int, timeout: float = 1.0) -> bool:
    """One Read Holding Registers exchange with unit 1 over a fresh connection."""
    request = struct.pack(">HHHBBHH", 1, 0, 6, 1, 3, 0, 1)
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as s:
            s.sendall(request)
            reply = s.recv(64)
    except OSError:
        return False
    return len(reply) >= 11 and reply[7] == 3


def ssh_banner(port: int, timeout: float = 1.0) -> bool:
    """True once sshd itself answers (user-mode networking accepts and resets before it listens)."""
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as s:
            return s.recv(64).startswith(b"SSH-")
    except OSError:
        return False


def ssh_exec(port: int, user: str, password: str, command: str, fingerprint: str | None = None,
             timeout: float = 5.0) -> tuple[int, str]:
    """Log in with a password and run one command: (exit status, output). Raises on any failure."""
    sock = socket.create_connection((HOST, port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # paramiko never sets it: 87 ms a connection
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    try:
        client.connect(HOST, port, user, password, sock=sock, timeout=timeout, banner_timeout=timeout,
                       auth_timeout=timeout, allow_agent=False, look_for_keys=False)
        key = client.get_transport().get_remote_server_key()  # type: ignore[union-attr]
        if fingerprint and _fingerprint(key) != fingerprint:
            raise paramiko.SSHException(f"host key {_fingerprint(key)} is not the image's {fingerprint}")
        _, stdout, _ = client.exec_command(command, timeout=timeout)
        output = stdout.read().decode(errors="replace")
        if not stdout.channel.status_event.wait(timeout):
            raise TimeoutError(f"ssh command {command!r} did not finish in {timeout} s")
        return stdout.channel.recv_exit_status(), output
    finally:
        client.close()
        sock.close()


class QemuDevice:
    """A running guest. Attributes per `labs.Running`; `profile` and `image` for those who want them."""

    def __init__(self, profile: str, image: Image, ports: dict[str, int], passwords: dict[str, str],
                 syslog: tuple[str, int] | None, memory_mb: int, ready_timeout_s: float,
                 zones: bool = False, networks: bool = False) -> None:
        self.profile, self.image, self.ports = profile, image, ports
        self.passwords = passwords
        self.ready_timeout_s = ready_timeout_s
        self.secrets = {env: passwords[user] for user, env in SECRET_ENV.items()}
        # the weak build also serves its legacy RSA key (rc.sh): both are pinned
        pin = image.host_key_fingerprint if profile == "hardened" else [image.host_key_fingerprint,
                                                                          image.manifest["rsa_host_key_fingerprint"]]
        self.endpoints: dict[str, dict[str, Any]] = {
            "ssh": {"host": HOST, "port": ports["ssh"], "host_key_fingerprint": pin},
            "modbus_tcp": {"host": HOST, "port": ports["modbus_tcp"]},
            "console": {"url": f"socket://{HOST}:{ports['console']}"},
            "modbus_rtu": {"url": f"socket://{HOST}:{ports['modbus_rtu']}"},
            "can": {"channel": f"socket://{HOST}:{ports['can']}"},
            # the profile's certificate, made at build time: its fingerprint pins the device the harness booted
            "https": {"base_url": f"https://{HOST}:{ports['https']}",
                      "certificate_sha256": image.manifest["web_certificate_sha256"][profile]},
        }
        self.pid = 0
        self.ready_s = 0.0
        self._stalled = False
        self._bundle_fault: str | None = None
        self.fault_detail = ""  # what the last fault changed, in words (a lab's note, never an observation)
        self._boot_id = ""
        config = _boot_config(profile, passwords, syslog, zones, networks)
        self._workdir = Path(tempfile.mkdtemp(prefix="qemu-plc-"))
        self._monitor_path = self._workdir / "monitor.sock"
        self._log = self._workdir / "qemu.log"
        initrd = self._workdir / "initrd.cpio"
        initrd.write_bytes(image.initrd.read_bytes() + config)
        # a copy the faults may change between boots (in place: QEMU keeps the file open)
        self._bundle = self._workdir / "bundle.img"
        shutil.copy(image.bundle, self._bundle)
        # Optional second NIC in a control zone behind a conduit (labs/qemu/netns.py); None: no zones.
        self.zones: Zones | None = None
        net = f"user,id=n0,restrict={'off' if syslog else 'on'}"  # off only to reach the host's syslog port
        net += f",hostfwd=tcp:{HOST}:{ports['ssh']}-:22,hostfwd=tcp:{HOST}:{ports['modbus_tcp']}-:502"
        net += f",hostfwd=tcp:{HOST}:{ports['https']}-:443"
        self._argv = [
            QEMU, "-nodefaults", "-no-user-config", "-display", "none", "-accel", "tcg", "-m", str(memory_mb),
            "-kernel", str(image.kernel), "-initrd", str(initrd),
            "-append", KERNEL_ARGS,
            "-netdev", net, "-device", "virtio-net-pci,netdev=n0",
            "-device", "virtio-rng-pci",
            "-drive", f"file={self._bundle},format=raw,if=virtio,readonly=on",
            *(a for name in ("console", "modbus_rtu", "can")
              for a in ("-serial", f"tcp:{HOST}:{ports[name]},server=on,wait=off,nodelay=on")),
            "-object", "can-bus,id=canbus0", "-device", "kvaser_pci,canbus=canbus0",
            "-monitor", f"unix:{self._monitor_path},server=on,wait=off",
            "-pidfile", str(self._workdir / "qemu.pid"),
        ]
        self._proc: subprocess.Popen[bytes] | None = None
        if zones or networks:
            sweep()  # what a killed harness left behind
        if zones:
            self.zones = Zones(prefix("qplc"))
            try:
                self.zones.create()
            except LabError:
                shutil.rmtree(self._workdir, ignore_errors=True)
                raise
            self._argv += self.zones.qemu_args()
        # Optional: two networks of its own (netns.Segments, CR 5.1); handed over as endpoints["networks"].
        self.segments: Segments | None = None
        if networks:
            self.segments = Segments(prefix("qnet"))
            try:
                self.segments.create()
            except LabError:
                if self.zones:
                    self.zones.destroy()
                shutil.rmtree(self._workdir, ignore_errors=True)
                raise
            self._argv += self.segments.qemu_args()
            self.endpoints["networks"] = self.segments.endpoints()

    # --- lifecycle

    def boot(self) -> None:
        started = time.monotonic()
        with open(self._log, "wb") as log:
            self._proc = subprocess.Popen(self._argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                          start_new_session=True,  # own process group: stop() kills it whole
                                          preexec_fn=die_with_parent,
                                          pass_fds=((self.zones.tap_fd,) if self.zones else ())
                                          + (self.segments.fds() if self.segments else ()))
        _live.add(self)
        if self.zones:
            self.zones.close_tap()
        if self.segments:
            self.segments.close_taps()
        self.pid = self._proc.pid
        self._wait_ready(started)

    def _wait_ready(self, started: float, modbus: bool = True) -> None:
        """Poll until a Modbus read and an SSH login with a command succeed on a boot other than the last
        (without `modbus`: the login alone, for a boot whose application bundle was changed)."""
        deadline = started + self.ready_timeout_s
        modbus_up = not modbus
        while time.monotonic() < deadline:
            if self._proc is None or self._proc.poll() is not None:
                raise LabError(self._exit_reason())
            if not modbus_up:
                modbus_up = modbus_read(self.ports["modbus_tcp"], timeout=0.5)
            # sshd answered its banner: a login may still take seconds under TCG on a loaded host, and one cut
            # short is started again from nothing, so it gets a generous timeout
            if modbus_up and ssh_banner(self.ports["ssh"], timeout=0.5):
                try:
                    status, boot_id = ssh_exec(self.ports["ssh"], READY_USER, self.passwords[READY_USER],
                                               "cat /proc/sys/kernel/random/boot_id",
                                               self.image.host_key_fingerprint, timeout=8.0)
                except (OSError, EOFError, paramiko.SSHException):
                    status, boot_id = -1, ""
                # After a reset the old boot may answer for a moment: only a new boot id counts, and
                # Modbus is asked again so that both answers come from that boot.
                if status == 0 and boot_id.strip() and boot_id != self._boot_id:
                    if not modbus or modbus_read(self.ports["modbus_tcp"], timeout=1.0):
                        self._boot_id = boot_id
                        self.ready_s = round(time.monotonic() - started, 2)
                        self._pidfile_pid()
                        return
                    modbus_up = False
            time.sleep(0.1)
        raise LabError(f"the QEMU guest was not ready within {self.ready_timeout_s:g} s (Modbus "
                       f"{'answered' if modbus_up else 'never answered'}, SSH login never succeeded): "
                       f"see {self._log} and raise options['ready_timeout_s'] on a loaded machine")

    def _pidfile_pid(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.pid = int((self._workdir / "qemu.pid").read_text().strip())

    def _exit_reason(self) -> str:
        try:
            lines = [ln for ln in self._log.read_text(errors="replace").splitlines() if ln.strip()]
        except OSError:
            lines = []
        bind = [ln for ln in lines if "already in use" in ln or "host forwarding rule" in ln]
        if bind:
            return f"QEMU could not bind a loopback port ({bind[0].strip()}): free it or choose others in " \
                   "options['ports']"
        last = lines[-1].strip() if lines else f"exit status {self._proc.returncode if self._proc else '?'}"
        return f"QEMU exited during boot ({last}): check the QEMU installation (apt-get install -y qemu-system-x86)"

    def _monitor(self, command: str, timeout: float = 5.0) -> str:
        """One HMP command over the monitor socket; returns what QEMU printed."""
        try:
            return self._monitor_exchange(command, timeout)
        except OSError as exc:
            raise LabError(f"the QEMU monitor did not take {command!r} ({exc}): the guest may have died; "
                           "stop() it and start() again") from None

    def _monitor_exchange(self, command: str, timeout: float) -> str:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(timeout)
            s.connect(str(self._monitor_path))
            buf = b""
            while not buf.endswith(b"(qemu) "):
                chunk = s.recv(4096)
                if not chunk:
                    break
                buf += chunk
            s.sendall(command.encode() + b"\n")
            out = b""
            with contextlib.suppress(OSError):  # 'quit' closes the socket instead of prompting again
                while not out.endswith(b"(qemu) "):
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    out += chunk
        return out.decode(errors="replace")

    def _require_running(self) -> None:
        if self._proc is None or self._proc.poll() is not None:
            raise LabError("the QEMU guest is not running: start() it again")

    @property
    def fault(self) -> str | None:
        return "stall" if self._stalled else self._bundle_fault

    def set_fault(self, name: str | None) -> None:
        """'stall' pauses the whole VM (every interface goes silent, connections stay open). 'tamper_bundle' and
        'foreign_signature' change the application bundle's disk and reboot, returning once SSH answers on the
        new boot (whatever became of plcd). None resumes a stalled VM, and puts the built bundle back and reboots
        (until Modbus answers too) after a bundle fault."""
        if name is not None and name not in FAULTS:
            raise LabError(f"unknown fault {name!r} for the QEMU lab: use one of {', '.join(FAULTS)} or None")
        self._require_running()
        self.fault_detail = ""
        if name == "stall":
            self._monitor("stop")
            self._stalled = True
            return
        self._monitor("cont")
        self._stalled = False
        if name is None and self._bundle_fault is None:
            return
        original = self.image.bundle.read_bytes()
        data, self.fault_detail = changed_bundle(original, self._workdir, name == "foreign_signature") if name \
            else (original, "the bundle disk restored as built")
        with open(self._bundle, "r+b") as disk:  # in place: QEMU reads the open file at the next boot
            disk.write(data)
        self._bundle_fault = name
        started = time.monotonic()
        self._monitor("system_reset")
        self._wait_ready(started, modbus=name is None)
        self.fault_detail += f"; rebooted, SSH answered {time.monotonic() - started:.1f} s later"

    def restart(self) -> None:
        """Power-cycle through the monitor (system_reset) and wait until the device answers again."""
        self._require_running()
        started = time.monotonic()
        self._monitor("system_reset")
        if self._stalled:
            self._monitor("cont")
            self._stalled = False
        self._wait_ready(started, modbus=self._bundle_fault is None)

    def stop(self) -> None:
        """Quit QEMU and kill its process group; idempotent, and safe at interpreter exit."""
        _live.discard(self)
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(LabError):
                self._monitor("quit", timeout=2.0)
            try:
                proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        if self.zones:
            self.zones.destroy()
        if self.segments:
            self.segments.destroy()
        shutil.rmtree(self._workdir, ignore_errors=True)


def _networks(options: dict[str, Any]) -> bool:
    """`networks: true` attaches two networks of the guest's own when namespaces can be made here (root);
    `networks: required` fails instead; otherwise the guest has none (and endpoints say so)."""
    wanted = options.get("networks")
    if wanted == "required":
        return True
    return bool(wanted) and unavailable() is None


def start(profile: str, faults: tuple[str, ...] = (), options: dict[str, Any] | None = None,
          syslog: tuple[str, int] | None = None) -> QemuDevice:
    options = options or {}
    if profile not in PROFILES:
        raise LabError(f"unknown qemu profile {profile!r}: use one of {', '.join(PROFILES)}")
    bad = [f for f in faults if f not in FAULTS]
    if bad:
        raise LabError(f"unknown fault {bad[0]!r} for the QEMU lab: use one of {', '.join(FAULTS)}")
    unknown = set(options) - set(OPTIONS)
    if unknown:
        raise LabError(f"unknown qemu option(s) {', '.join(sorted(unknown))}: use {', '.join(OPTIONS)}")
    if syslog and syslog[0] not in (HOST, "localhost"):
        raise LabError(f"syslog host {syslog[0]} is not loopback: the QEMU guest logs only to {HOST}")
    if not shutil.which(QEMU):
        raise LabError(f"{QEMU} not found: apt-get install -y qemu-system-x86 (or every package in "
                       "labs/qemu/apt-packages.txt)")
    cache_dir = options.get("cache_dir")
    image = build(Path(cache_dir) if cache_dir else None)
    if profile == "weak":
        passwords = dict(WEAK_PASSWORDS)
    else:
        passwords = {name: secrets.token_urlsafe(12) for name in LOGIN_ACCOUNTS}
    given = dict(options.get("ports") or {})
    attempt = 0
    while True:
        attempt += 1
        device = QemuDevice(profile, image, _pick_ports(given), passwords, syslog,
                            int(options.get("memory_mb", 256)), float(options.get("ready_timeout_s", 60)),
                            zones=bool(options.get("zones")), networks=_networks(options))
        try:
            device.boot()
            for fault in faults:
                device.set_fault(fault)
            return device
        except BaseException as exc:
            device.stop()
            # A port picked here can be taken by someone else before QEMU binds it: pick again.
            if given or attempt == 3 or not (isinstance(exc, LabError) and "could not bind" in str(exc)):
                raise
