"""Build the QEMU guest: a Debian kernel plus a busybox initramfs holding the emulated PLC.

`iec62443 qemu-build [--variant weak|hardened] [--force]` prints where the image is.

Everything comes from Debian packages: the kernel package is fetched with `apt-get download` and unpacked
with `dpkg -x` (never installed); busybox-static, OpenSSH (sshd), shadow's PAM-enabled `login`, PAM,
iproute2, can-utils and libmodbus are copied from this machine with the libraries `ldd` names; the PLC
runtime (guest/plcd.c) is compiled against libmodbus here. One image serves both security profiles: the
launcher adds the profile and the password hashes at boot. Images are cached outside the repository,
under a key of their inputs (these sources and the package versions), so a rebuild happens only when one
of them changes.
"""

from __future__ import annotations

import argparse
import fcntl
import functools
import hashlib
import io
import json
import lzma
import os
import re
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from iec62443_harness.labs import LabError

HERE = Path(__file__).resolve().parent
GUEST = HERE / "guest"
VARIANTS = ("weak", "hardened")
KERNEL_META = "linux-image-amd64"
INSTALL_HINT = "install the lab's packages: apt-get install -y $(cat labs/qemu/apt-packages.txt)"

# Host packages whose files end up in the image: their versions are part of the cache key.
IMAGE_PACKAGES = ("busybox-static", "dash", "openssh-server", "login", "libpam-modules", "libpam-modules-bin",
                  "libpam0g", "libmodbus5",
                  "libmodbus-dev", "can-utils", "iproute2", "libc6", "libssl3", "openssl",
                  "lighttpd", "lighttpd-mod-openssl")
# dash as the login shell: busybox ash's line editing sends a cursor query (ESC[6n) after each prompt.
BINARIES = {"/bin/dash": "/bin/dash", "/usr/sbin/sshd": "/usr/sbin/sshd", "/bin/login": "/bin/login",
            "/bin/ip": "/sbin/ip", "/usr/bin/slcand": "/usr/bin/slcand", "/usr/bin/cangw": "/usr/bin/cangw",
            "/usr/sbin/faillock": "/usr/sbin/faillock", "/usr/bin/openssl": "/usr/bin/openssl",
            "/usr/sbin/lighttpd": "/usr/sbin/lighttpd",
            "/usr/lib/lighttpd/mod_openssl.so": "/usr/lib/lighttpd/mod_openssl.so"}
PAM_DIR = "/lib/x86_64-linux-gnu/security"
PAM_MODULES = ("pam_unix.so", "pam_faillock.so", "pam_deny.so", "pam_permit.so")
KERNEL_MODULES = ("virtio_pci", "virtio_rng", "virtio_net", "virtio_blk", "kvaser_pci", "can_raw", "slcan", "can_gw")
# name, uid, gid, home, shell; the launcher writes /etc/shadow for exactly these accounts at each boot.
ACCOUNTS = (("root", 0, 0, "/root", "/bin/dash"), ("sshd", 100, 65534, "/run/sshd", "/bin/false"),
            ("admin", 1000, 1000, "/home/admin", "/bin/dash"), ("operator", 1001, 1001, "/home/operator", "/bin/dash"),
            ("locktest", 1002, 1002, "/home/locktest", "/bin/dash"),
            ("nobody", 65534, 65534, "/nonexistent", "/bin/false"))
LOGIN_ACCOUNTS = ("root", "admin", "operator", "locktest")
# The application bundle (plcd) lives on a second disk the host can change between boots: a tar of app.tar and
# app.sig, the Ed25519 signature of app.tar by the build key, whose public half the initramfs carries (rc.sh).
BUNDLE_PUBKEY = "etc/boot/bundle.pub"
# The web endpoint's certificates (lighttpd, rc.sh picks one by profile): profile -> openssl req key options.
WEB_KEYS = {"hardened": ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-sha256"],
            "weak": ["-newkey", "rsa:1024", "-sha1"]}
WEB_STATUS = """<!doctype html>
<html><head><title>QEMU PLC</title></head>
<body><h1>QEMU PLC status</h1><p>Control task: coil 0 on 1 s, off 2 s. Modbus TCP on 502, RTU on ttyS1.</p></body>
</html>
"""

ETC = {
    "passwd": "".join(f"{n}:x:{u}:{g}:{n}:{h}:{s}\n" for n, u, g, h, s in ACCOUNTS),
    "group": "root:x:0:\nadm:x:4:admin\nadmin:x:1000:\noperator:x:1001:\nlocktest:x:1002:\nnogroup:x:65534:\n",
    "nsswitch.conf": "passwd: files\ngroup: files\nshadow: files\nhosts: files\n",
    "hosts": "127.0.0.1 localhost\n10.0.2.15 qemu-plc\n",
    # One attempt per login process: after a failure getty comes back and owns the prompt again, so an
    # Enter redraws "login:" instead of being taken as an empty user name by login's own retry prompt.
    "login.defs": "LOGIN_RETRIES 1\nLOGIN_TIMEOUT 60\nENV_PATH PATH=/bin:/usr/bin\n"
                  "ENV_SUPATH PATH=/sbin:/usr/sbin:/bin:/usr/bin\n",
    "profile": 'export PATH=/sbin:/usr/sbin:/bin:/usr/bin\n'
               'if [ "$(id -u)" = 0 ]; then PS1="$(hostname)# "; else PS1="$(id -un)@$(hostname)$ "; fi\n',
    "shells": "/bin/sh\n/bin/dash\n",
    "pam.d/other": "".join(f"{t} required pam_deny.so\n" for t in ("auth", "account", "password", "session")),
    "inittab": "::sysinit:/etc/rc.sh\nttyS0::respawn:/sbin/getty -L 115200 ttyS0 vt100\n"
               "::ctrlaltdel:/sbin/reboot\n",
}


@dataclass(frozen=True)
class Image:
    directory: Path
    kernel: Path
    initrd: Path
    host_key_fingerprint: str  # SHA256:... of the guest's SSH host key
    manifest: dict

    @property
    def bundle(self) -> Path:
        """The signed application bundle as built (the launcher boots a copy it may change)."""
        return self.directory / "bundle.img"


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "iec62443-harness" / "qemu"


def _run(args: list[str], what: str, cwd: Path | None = None) -> str:
    try:
        done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=300)
    except FileNotFoundError:
        raise LabError(f"{args[0]} is missing ({what}): {INSTALL_HINT}") from None
    except subprocess.TimeoutExpired:
        raise LabError(f"{what} took over 300 s ({' '.join(args[:3])}): check the machine's load and retry") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise LabError(f"{what} failed ({last}): {INSTALL_HINT}")
    return done.stdout


@functools.cache
def kernel_package(meta: str = KERNEL_META) -> tuple[str, str]:
    """The Debian kernel package that the meta package pins, and its version (one apt-cache call: ~1 s)."""
    try:
        show = _run(["apt-cache", "show", "--no-all-versions", meta], "looking up the kernel package")
        name, version = re.search(r"^Depends: (linux-image-[\w.+-]+) \(= (\S+)\)", show, re.M).groups()  # type: ignore[union-attr]
    except (LabError, AttributeError):
        raise LabError(f"no Debian kernel package found (apt-cache show {meta}): "
                       "run apt-get update, then retry") from None
    return name, version


def _package_versions() -> list[str]:
    out = _run(["dpkg-query", "-W", "-f", "${Package}=${Version}\\n", *IMAGE_PACKAGES], "checking packages")
    return sorted(out.split())


def _sources_digest() -> str:
    digest = hashlib.sha256()
    for path in [Path(__file__).resolve(), *sorted(GUEST.iterdir())]:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def image_key() -> tuple[str, dict]:
    missing = [t for t in ("busybox", "gcc", "dpkg", "apt-get", "depmod", "modprobe", "ssh-keygen")
               if not shutil.which(t)]
    missing += [p for p in [*BINARIES, "/usr/include/modbus/modbus.h"] if not Path(p).exists()]
    if missing:
        raise LabError(f"missing {', '.join(missing)} for the QEMU guest build: {INSTALL_HINT}")
    kernel, kernel_version = kernel_package(KERNEL_META)
    inputs = {"sources": _sources_digest(), "kernel": f"{kernel}={kernel_version}", "packages": _package_versions()}
    key = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16]
    return key, inputs


def build(cache_dir: Path | None = None, force: bool = False) -> Image:
    """The cached image for the current inputs, built first if needed (about 9 s; a lock serialises builders)."""
    root = cache_dir or cache_root()
    key, inputs = image_key()
    target = root / key
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if force and target.exists():
            shutil.rmtree(target)
        if not (target / "manifest.json").exists():
            _build_into(root, target, inputs)
            _prune(root, keep=(target,))
    manifest = json.loads((target / "manifest.json").read_text())
    return Image(target, target / "vmlinux", target / "initramfs.cpio", manifest["host_key_fingerprint"], manifest)


def _build_into(root: Path, target: Path, inputs: dict) -> None:
    started = time.monotonic()
    kernel_name = inputs["kernel"].split("=")[0]
    with tempfile.TemporaryDirectory(dir=root, prefix="build-") as tmp:
        work = Path(tmp)
        stage = work / "rootfs"
        kdir = work / "kernel"
        deb = _download(kernel_name, root / "debs")
        _run(["dpkg", "-x", str(deb), str(kdir)], "unpacking the kernel package")
        version = next((kdir / "lib/modules").iterdir()).name
        out = work / "image"
        out.mkdir()
        _uncompressed_kernel(next((kdir / "boot").glob("vmlinuz-*")), out / "vmlinux")
        _stage_rootfs(stage, work)
        _stage_modules(kdir, stage, version)
        bundle = _bundle(work / "plcd", stage, out)
        web = {profile: _web_certificate(stage, profile) for profile in WEB_KEYS}
        fingerprint = _host_key(stage)
        rsa_fingerprint = _host_key(stage, "rsa", "1024")  # the weak build's legacy key (rc.sh)
        # Uncompressed: under TCG the guest unpacks 19 MB of cpio faster than it inflates 8 MB of gzip.
        data = _cpio(stage, devices={"dev/console": (5, 1)})
        (out / "initramfs.cpio").write_bytes(data)
        manifest = {"key": target.name, "inputs": inputs, "kernel_release": version,
                    "host_key_fingerprint": fingerprint, "rsa_host_key_fingerprint": rsa_fingerprint,
                    "initramfs_bytes": len(data), "bundle": bundle,
                    "web_certificate_sha256": web,
                    "build_s": round(time.monotonic() - started, 2)}
        (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        os.rename(out, target)


def _uncompressed_kernel(vmlinuz: Path, dest: Path) -> None:
    """The ELF vmlinux inside Debian's xz bzImage. QEMU boots it straight through its PVH entry point
    (CONFIG_PVH), which skips the kernel's self-decompression: 0.8 s to the first kernel line instead
    of 4.8 s under TCG. A kernel that is not xz-compressed is kept as it is."""
    data = vmlinuz.read_bytes()
    start = data.find(b"\xfd7zXZ\x00")
    if start < 0:
        shutil.copy(vmlinuz, dest)
        return
    dest.write_bytes(lzma.LZMADecompressor().decompress(data[start:]))


def _prune(root: Path, keep: tuple[Path, ...], newest: int = 3) -> None:
    """Drop all but the newest few images (about 85 MB each); a running guest has its files open already."""
    images = sorted((p for p in root.iterdir() if (p / "manifest.json").exists() and p not in keep),
                    key=lambda p: p.stat().st_mtime, reverse=True)
    for old in images[newest - len(keep):]:
        shutil.rmtree(old, ignore_errors=True)


def _download(package: str, debs: Path) -> Path:
    debs.mkdir(parents=True, exist_ok=True)
    found = sorted(debs.glob(f"{package}_*.deb"))
    if not found:
        try:
            _run(["apt-get", "download", package], f"downloading {package}", cwd=debs)
        except LabError:
            raise LabError(f"kernel package {package} could not be downloaded: run apt-get update, "
                           "check that Debian's archive is reachable, then retry") from None
        found = sorted(debs.glob(f"{package}_*.deb"))
    return found[-1]


def _libraries(binary: str) -> set[str]:
    out = _run(["ldd", binary], f"listing the libraries of {binary}")
    return {m.group(1) for m in re.finditer(r"(/\S+) \(0x", out)}


def _copy(src: str, stage: Path, dest: str | None = None) -> None:
    path = stage / (dest or src).lstrip("/")
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(src, path)  # follows symlinks: the guest gets the real file under the linked name


def _stage_rootfs(stage: Path, work: Path) -> None:
    for d in ("bin", "sbin", "usr/bin", "usr/sbin", "proc", "sys", "dev", "run", "tmp", "var/log", "root", "etc/boot",
              "etc/ssh", "etc/pam.d", "etc/security", "home/admin", "home/operator", "home/locktest"):
        (stage / d).mkdir(parents=True, exist_ok=True)
    plcd = work / "plcd"
    _run(["gcc", "-O2", "-Wall", "-I/usr/include/modbus", "-o", str(plcd), str(GUEST / "plcd.c"), "-lmodbus",
          "-lpthread"], "compiling the PLC runtime (guest/plcd.c)")
    binaries = {**BINARIES, str(plcd): None}  # plcd itself goes into the bundle (_bundle); its libraries here
    binaries.update({f"{PAM_DIR}/{m}": f"{PAM_DIR}/{m}" for m in PAM_MODULES})
    libraries: set[str] = set()
    for src, dest in binaries.items():
        if dest:
            _copy(src, stage, dest)
        libraries |= _libraries(src)
    for lib in libraries:
        _copy(lib, stage)
    _copy(shutil.which("busybox") or "/bin/busybox", stage, "/bin/busybox")
    # busybox applets as symlinks, except where a real program (login, ip) or busybox itself lives.
    for name in _run(["busybox", "--list-full"], "listing busybox applets").split():
        link = stage / name
        if not link.exists() and not link.is_symlink() and link.name != "busybox":
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to("/bin/busybox")
    (stage / "init").symlink_to("/bin/busybox")  # busybox init, named /init as the kernel wants it
    (stage / "var/run").symlink_to("/run")  # where faillock(8) looks for the tallies by default
    for name, text in ETC.items():
        (stage / "etc" / name).write_text(text)
    shutil.copy(GUEST / "rc.sh", stage / "etc/rc.sh")
    (stage / "etc/rc.sh").chmod(0o755)
    shutil.copy(GUEST / "trust-anchor", stage / "usr/sbin/trust-anchor")  # the owner's SSH CA (EDR 3.13)
    (stage / "usr/sbin/trust-anchor").chmod(0o755)
    (stage / "etc/shadow").write_text("".join(f"{n}:*:19000:0:99999:7:::\n" for n, *_ in ACCOUNTS))
    (stage / "etc/shadow").chmod(0o600)
    (stage / "usr/lib/ssl").mkdir(parents=True, exist_ok=True)
    (stage / "usr/lib/ssl/openssl.cnf").write_text("")  # openssl(1) reads its default configuration file
    (stage / "srv/www").mkdir(parents=True, exist_ok=True)
    (stage / "srv/www/index.html").write_text(WEB_STATUS)


def _web_certificate(stage: Path, profile: str) -> str:
    """A self-signed certificate naming the guest and the loopback address its port is forwarded to (key and
    certificate in one PEM, as lighttpd takes them); its SHA-256 fingerprint, hex with colons."""
    pem = stage / f"etc/web/{profile}.pem"
    crt = pem.with_suffix(".crt")
    pem.parent.mkdir(parents=True, exist_ok=True)
    _run(["openssl", "req", "-x509", *WEB_KEYS[profile], "-nodes", "-keyout", str(pem), "-out", str(crt),
          "-days", "825", "-subj", "/CN=qemu-plc", "-addext", "subjectAltName=DNS:qemu-plc,IP:127.0.0.1"],
         "making the web certificate")
    with open(pem, "a") as out:
        out.write(crt.read_text())
    pem.chmod(0o600)
    fingerprint = _run(["openssl", "x509", "-in", str(crt), "-noout", "-fingerprint", "-sha256"],
                       "reading the web certificate")
    crt.unlink()
    return fingerprint.strip().split("=", 1)[1]


def _tar(members: dict[str, tuple[bytes, int]]) -> bytes:
    """A reproducible ustar archive: name -> (data, mode), owned by root, timestamp zero."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, (data, mode) in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def sign(key: Path, data: Path, signature: Path) -> None:
    """An Ed25519 signature of a file (openssl pkeyutl -rawin: what the guest verifies with -verify)."""
    _run(["openssl", "pkeyutl", "-sign", "-rawin", "-inkey", str(key), "-in", str(data), "-out", str(signature)],
         "signing the application bundle")


def new_key(path: Path) -> None:
    _run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", str(path)], "making a signing key")


def _bundle(plcd: Path, stage: Path, out: Path) -> dict:
    """bundle.img (the second disk) signed with a fresh build key; the public key goes into the initramfs and
    the private one stays in the image directory (signing.pem, the supplier's key: never in the guest)."""
    key = out / "signing.pem"
    new_key(key)
    key.chmod(0o600)
    _run(["openssl", "pkey", "-in", str(key), "-pubout", "-out", str(stage / BUNDLE_PUBKEY)],
         "exporting the bundle's public key")
    app = out / "app.tar"
    app.write_bytes(_tar({"plcd": (plcd.read_bytes(), 0o755)}))
    sign(key, app, out / "app.sig")
    image = _tar({"app.tar": (app.read_bytes(), 0o644), "app.sig": ((out / "app.sig").read_bytes(), 0o644)})
    (out / "bundle.img").write_bytes(image)
    for name in ("app.tar", "app.sig"):
        (out / name).unlink()
    return {"bytes": len(image), "sha256": hashlib.sha256(image).hexdigest(),
            "public_key_sha256": hashlib.sha256((stage / BUNDLE_PUBKEY).read_bytes()).hexdigest()}


def _stage_modules(kdir: Path, stage: Path, version: str) -> None:
    _run(["depmod", "-b", str(kdir), version], "indexing the kernel modules")
    plan = _run(["modprobe", "-d", str(kdir), "-S", version, "--show-depends", "-a", *KERNEL_MODULES],
                "resolving kernel modules")
    for ko in re.findall(r"^insmod (\S+)", plan, re.M):
        rel = Path(ko).relative_to(kdir)
        (stage / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ko, stage / rel)
    _run(["depmod", "-b", str(stage), version], "indexing the guest's kernel modules")


def _host_key(stage: Path, kind: str = "ed25519", bits: str | None = None) -> str:
    key = stage / f"etc/ssh/ssh_host_{kind}_key"
    size = ["-b", bits] if bits else []
    _run(["ssh-keygen", "-q", "-t", kind, *size, "-N", "", "-C", "qemu-plc", "-f", str(key)], "making the host key")
    return _run(["ssh-keygen", "-l", "-f", str(key)], "reading the host key").split()[1]


def cpio_entry(name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0), ino: int = 0) -> bytes:
    """One newc cpio member owned by root with a zero timestamp (reproducible, and needs no root to build)."""
    fields = (ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(name) + 1, 0)
    head = b"070701" + b"".join(b"%08X" % f for f in fields) + name.encode() + b"\0"
    return head + b"\0" * (-len(head) % 4) + data + b"\0" * (-len(data) % 4)


def cpio_trailer() -> bytes:
    return cpio_entry("TRAILER!!!", 0)


def _cpio(stage: Path, devices: dict[str, tuple[int, int]]) -> bytes:
    parts = []
    paths = sorted(stage.rglob("*"))
    for ino, path in enumerate(paths, start=1):
        st = path.lstat()
        name = str(path.relative_to(stage))
        if stat.S_ISLNK(st.st_mode):
            data = os.readlink(path).encode()
        elif stat.S_ISREG(st.st_mode):
            data = path.read_bytes()
        else:
            data = b""
        parts.append(cpio_entry(name, st.st_mode, data, ino=ino))
    for ino, (name, rdev) in enumerate(devices.items(), start=len(paths) + 1):
        parts.append(cpio_entry(name, stat.S_IFCHR | 0o600, rdev=rdev, ino=ino))
    return b"".join(parts) + cpio_trailer()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="iec62443 qemu-build", description=__doc__.splitlines()[0])
    parser.add_argument("--variant", choices=VARIANTS, default="hardened",
                        help="profile to describe; one image serves both (the profile is chosen at boot)")
    parser.add_argument("--force", action="store_true", help="rebuild even if a cached image exists")
    args = parser.parse_args(argv)
    try:
        image = build(force=args.force)
    except LabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    m = image.manifest
    print(f"{image.directory}  ({m['initramfs_bytes'] / 1e6:.1f} MB initramfs, kernel {m['kernel_release']}, "
          f"built in {m['build_s']} s; {args.variant} profile chosen at boot by labs.qemu.launcher)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
