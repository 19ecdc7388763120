"""Configuration backups: what `backup create` writes to /backup and `backup restore` reads back.

File format (text, three lines, each ending in LF):

    SIMPLC-BACKUP 1
    <body: one line of JSON>
    integrity <alg> <hex>          alg: "sha256" or "hmac-sha256"; or the line "integrity none"

The body: {"created": ISO time, "device": "SimPLC-1", "firmware": running version,
"settings": {every setting `config set` can change: its value}, "accounts": [{"username", "role",
"enabled", "locked", "salt", "hash", "history"}]} (scrypt hashes in hex: never a password).
The integrity value is computed over the body line's bytes exactly (without its LF): SHA-256 for
"sha256", HMAC-SHA256 keyed with the device's secret for "hmac-sha256".

What restore checks, per profile (`backup_integrity`):
- none: any file whose body parses is restored (the integrity line is ignored);
- sha256: the integrity line must be "sha256" and match: accidental damage is caught, an edited backup with
  a recomputed SHA-256 is accepted;
- hmac-sha256: the integrity line must be "hmac-sha256" with the device key's HMAC: an edited backup is
  refused even with a recomputed plain hash.
Refusals: "not a backup" (form), "integrity check failed" (the integrity line).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime
from typing import Any

HEAD = b"SIMPLC-BACKUP 1"
ALGORITHMS = ("none", "sha256", "hmac-sha256")


class Rejected(Exception):
    """The backup is refused; the message is the reason (one line)."""


def tag(body: bytes, alg: str, key: bytes) -> str:
    if alg == "sha256":
        return hashlib.sha256(body).hexdigest()
    if alg == "hmac-sha256":
        return hmac.new(key, body, hashlib.sha256).hexdigest()
    return ""


def _jsonable(value: Any) -> Any:
    return [_jsonable(v) for v in value] if isinstance(value, tuple | list) else value


def create(device: Any, alg: str) -> bytes:
    body = json.dumps({
        "created": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "device": "SimPLC-1",
        "firmware": device.firmware.running,
        "settings": {key: _jsonable(value) for key, value in sorted(device.settings.items())},
        "accounts": device.accounts.snapshot(),
    }, sort_keys=True).encode()
    integrity = f"integrity {alg} {tag(body, alg, device.backup_key)}" if alg != "none" else "integrity none"
    return HEAD + b"\n" + body + b"\n" + integrity.encode() + b"\n"


def load(data: bytes, alg: str, key: bytes) -> dict[str, Any]:
    """The body of an acceptable backup; Rejected otherwise."""
    lines = data.split(b"\n")
    if len(lines) < 2 or lines[0].rstrip(b"\r") != HEAD:
        raise Rejected("not a backup")
    body = lines[1]
    if alg != "none":
        words = lines[2].decode("ascii", "replace").split() if len(lines) > 2 else []
        if (len(words) != 3 or words[0] != "integrity" or words[1] != alg
                or not hmac.compare_digest(words[2].lower(), tag(body, alg, key))):
            raise Rejected("integrity check failed")
    try:
        doc = json.loads(body)
    except ValueError:
        raise Rejected("not a backup") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("settings"), dict) or not isinstance(
            doc.get("accounts"), list):
        raise Rejected("not a backup")
    return doc


def settings_from(doc: dict[str, Any], current: dict[str, Any]) -> dict[str, Any]:
    """The backup's settings, typed like the current ones; Rejected for a value of the wrong kind.
    Settings the device does not know are ignored."""
    out = {}
    for key, value in doc["settings"].items():
        if key not in current:
            continue
        old = current[key]
        if isinstance(old, tuple):
            try:
                value = tuple(tuple(int(x) for x in pair) for pair in value)
            except (TypeError, ValueError):
                raise Rejected(f"not a backup: bad value for {key}") from None
        elif ((value is not None and not isinstance(value, bool | int | float | str))
              or (isinstance(old, bool) and not isinstance(value, bool))):
            raise Rejected(f"not a backup: bad value for {key}")
        out[key] = value
    return out
