"""Signed images (firmware and scripts), their verification per profile, and the vendor kit.

Image format (version 1), all integers big-endian:

    offset 0        8 bytes   magic b"SIMPLCFW"
    offset 8        4 bytes   n, the length of the header
    offset 12       n bytes   header: UTF-8 JSON object
                                {"format": 1, "kind": "firmware" | "script", "product": "SimPLC-1",
                                 "version": "2.4.0", "payload_size": <int>, "payload_sha256": <hex>,
                                 "signature": <hex>}
    offset 12+n     payload_size bytes   the payload (a firmware blob; a script's text, one command a line)
    last 32 bytes   SHA-256 of every byte before it (the image digest: accidental damage, truncation)

`signature` is an ed25519 signature, by the vendor key, over b"SIMPLCFW" followed by the header without
its "signature" member, serialized as `json.dumps(header, sort_keys=True, separators=(",", ":"))`.
The header names the payload's SHA-256, so the signature covers the payload too.

Checks (`check(data, kind, policy, ...)`), in this order; the first failure is the answer:
- no magic, or too short  -> "not a firmware image" / "not a script"
- image digest wrong (one flipped byte anywhere after the magic, a truncated file)  -> "integrity check failed"
- header not of that kind, or the payload not the size and SHA-256 it names  -> "not a firmware image" /
  "not a script" / "integrity check failed"
- (policy "signature") signature not made by the vendor key  -> "signature not from the vendor"
- (no downgrade) version lower than the running one  -> "downgrade from 2.3.1 to 2.2.0 refused"
Policies: "none" accepts any non-empty data (version from the header when it parses, else "unknown");
"digest" the first two checks; "signature" all three.

The vendor kit: the emulator is its own vendor too. At start it makes a vendor key pair (the device keeps
only the public key) and writes into its run dir: fw-authentic.bin (the next minor version, vendor-signed),
fw-older.bin (the previous minor version, vendor-signed: a downgrade), fw-foreign.bin (the next version,
signed by another key), script-signed.bin (a vendor-signed script), script-unsigned.txt (the same commands
as plain text), vendor-key.pub (the vendor's public key, PEM) and sbom.json (CycloneDX 1.5).
"""

from __future__ import annotations

import hashlib
import json
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

MAGIC = b"SIMPLCFW"
PRODUCT = "SimPLC-1"
DIGEST = 32
KINDS = ("firmware", "script")
POLICIES = ("none", "digest", "signature")
SCRIPT = "write 150 4242\nread hr 150\n"  # what the kit's scripts do: one observable write
_WHAT = {"firmware": "a firmware image", "script": "a script"}


class Rejected(Exception):
    """The image is refused; the message is the reason (one line)."""


def _signed_bytes(header: dict[str, Any]) -> bytes:
    body = {k: v for k, v in header.items() if k != "signature"}
    return MAGIC + json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def build(kind: str, version: str, payload: bytes, key: Ed25519PrivateKey) -> bytes:
    header: dict[str, Any] = {"format": 1, "kind": kind, "product": PRODUCT, "version": version,
                              "payload_size": len(payload), "payload_sha256": hashlib.sha256(payload).hexdigest()}
    header["signature"] = key.sign(_signed_bytes(header)).hex()
    head = json.dumps(header).encode()
    body = MAGIC + struct.pack(">I", len(head)) + head + payload
    return body + hashlib.sha256(body).digest()


@dataclass(frozen=True)
class Image:
    header: dict[str, Any]
    payload: bytes

    @property
    def version(self) -> str:
        return str(self.header.get("version", "unknown"))


def parse(data: bytes, kind: str) -> Image:
    """The image's parts, checked for form and integrity (not the signer); Rejected otherwise."""
    what = "not " + _WHAT[kind]
    if len(data) < len(MAGIC) + 4 + DIGEST or not data.startswith(MAGIC):
        raise Rejected(what)
    if hashlib.sha256(data[:-DIGEST]).digest() != data[-DIGEST:]:
        raise Rejected("integrity check failed")
    (size,) = struct.unpack_from(">I", data, len(MAGIC))
    start = len(MAGIC) + 4
    try:
        header = json.loads(data[start:start + size]) if start + size <= len(data) - DIGEST else None
    except ValueError:
        header = None
    if (not isinstance(header, dict) or header.get("kind") != kind or header.get("format") != 1
            or not isinstance(header.get("payload_size"), int) or not isinstance(header.get("version"), str)
            or not isinstance(header.get("payload_sha256"), str) or not isinstance(header.get("signature"), str)):
        raise Rejected(what)
    payload = data[start + size:-DIGEST]
    if len(payload) != header["payload_size"] or hashlib.sha256(payload).hexdigest() != header["payload_sha256"]:
        raise Rejected("integrity check failed")
    return Image(header, payload)


def lenient_version(data: bytes) -> str:
    """The header's version if the header parses at all, else "unknown" (what the insecure profile shows)."""
    try:
        (size,) = struct.unpack_from(">I", data, len(MAGIC))
        header = json.loads(data[len(MAGIC) + 4:len(MAGIC) + 4 + size]) if data.startswith(MAGIC) else None
        version = header.get("version") if isinstance(header, dict) else None
    except (ValueError, struct.error):
        version = None
    return version if isinstance(version, str) and version.isprintable() and 0 < len(version) <= 32 else "unknown"


def version_key(version: str) -> tuple[int, ...] | None:
    parts = version.split(".")
    return tuple(int(p) for p in parts) if all(p.isdigit() for p in parts) else None


def signed_by(image: Image, public: Ed25519PublicKey) -> bool:
    try:
        public.verify(bytes.fromhex(image.header["signature"]), _signed_bytes(image.header))
    except (ValueError, InvalidSignature):
        return False
    return True


def check(data: bytes, kind: str, policy: str, public: Ed25519PublicKey, running: str | None = None,
          downgrade: bool = True) -> tuple[str, bytes]:
    """(version, payload) of an acceptable image; Rejected(reason) otherwise."""
    if not data:
        raise Rejected("empty file")
    if policy == "none":
        try:
            image = parse(data, kind)
            return image.version, image.payload
        except Rejected:
            return lenient_version(data), data
    image = parse(data, kind)
    if policy == "signature" and not signed_by(image, public):
        raise Rejected("signature not from the vendor")
    if not downgrade and running is not None:
        new, old = version_key(image.version), version_key(running)
        if new is None:
            raise Rejected(f"bad version {image.version!r}")
        if old is not None and new < old:
            raise Rejected(f"downgrade from {running} to {image.version} refused")
    return image.version, image.payload


def bump(version: str, step: int) -> str:
    """The version `step` minor releases away ("2.3.1", +1 -> "2.4.0"; -1 -> "2.2.0")."""
    parts = [int(p) for p in version.split(".")] + [0, 0]
    return f"{parts[0]}.{max(parts[1] + step, 0)}.0"


class Firmware:
    """The running version, the one staged for the next restart, and who wants to know of a change."""

    def __init__(self, running: str, public: Ed25519PublicKey) -> None:
        self.running = running
        self.pending: str | None = None
        self.public = public
        self.reference: bytes = b""  # a vendor-signed image the self-test verifies (known answer)
        self._lock = threading.Lock()
        self._listeners: list[Callable[[str], None]] = []

    def subscribe(self, listener: Callable[[str], None]) -> None:
        """`listener(running_version)` now and after each restart that changes it."""
        self._listeners.append(listener)
        listener(self.running)

    def stage(self, version: str) -> None:
        with self._lock:
            self.pending = version

    def activate(self) -> str:
        """The restart: the staged version becomes the running one. Returns the running version."""
        with self._lock:
            if self.pending is not None:
                self.running, self.pending = self.pending, None
            running = self.running
        for listener in list(self._listeners):
            listener(running)
        return running


def payload_for(version: str) -> bytes:
    """A firmware blob: recognisable text, then deterministic filler (64 KiB in all)."""
    head = f"SimPLC-1 firmware {version}\n".encode()
    filler = hashlib.sha256(head).digest() * (65536 // DIGEST)
    return head + filler[:65536 - len(head)]


class VendorKit:
    """The vendor key pair and the kit files; the device keeps only `public`."""

    def __init__(self) -> None:
        self._key = Ed25519PrivateKey.generate()
        self.public = self._key.public_key()

    def sign(self, kind: str, version: str, payload: bytes) -> bytes:
        return build(kind, version, payload, self._key)

    def write(self, folder: Path, running: str, sbom: dict[str, Any], make: Callable[[str], Path]) -> dict[str, str]:
        """Write the kit files with `make(name)` (a path the device removes on exit); variable -> path."""
        foreign = Ed25519PrivateKey.generate()
        newer, older = bump(running, +1), bump(running, -1)
        files = {
            "SIMPLC_FW_AUTHENTIC": ("fw-authentic.bin", self.sign("firmware", newer, payload_for(newer))),
            "SIMPLC_FW_OLDER": ("fw-older.bin", self.sign("firmware", older, payload_for(older))),
            "SIMPLC_FW_FOREIGN": ("fw-foreign.bin", build("firmware", newer, payload_for(newer), foreign)),
            "SIMPLC_SCRIPT_SIGNED": ("script-signed.bin", self.sign("script", "1", SCRIPT.encode())),
            "SIMPLC_SCRIPT_UNSIGNED": ("script-unsigned.txt", SCRIPT.encode()),
            "SIMPLC_VENDOR_PUBKEY": ("vendor-key.pub", self.public.public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)),
            "SIMPLC_SBOM": ("sbom.json", (json.dumps(sbom, indent=2) + "\n").encode()),
        }
        out = {}
        for var, (name, data) in files.items():
            path = make(name)
            path.write_bytes(data)
            out[var] = str(path.resolve())
        return out
