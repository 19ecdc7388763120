"""Security profiles of the emulated PLC: the device's own configuration, as data.

`profiles/NAME.yaml` holds two parts: `settings` (how the device behaves; loaded into `Profile`) and
`oracle` (catalogue id -> the verdict the harness should give that profile; read only by the harness's
own tests, never by a conformance verdict).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml
from iec62443_harness.labs import LabError

PROFILES_DIR = Path(__file__).resolve().parent / "profiles"


@dataclass(frozen=True)
class AccountSpec:
    username: str
    role: str  # viewer, operator, engineer, admin
    env: str  # environment-variable name the target file uses for its password
    password: str | None = None  # a factory default; None: a random password each start


@dataclass(frozen=True)
class Profile:
    name: str
    accounts: tuple[AccountSpec, ...]
    # FR1
    lockout_threshold: int | None = None  # failed logins that lock an account; None: never locks
    lockout_unlock_s: float | None = None  # None: only an admin unlocks
    password_min_length: int = 1
    password_classes: int = 1  # of lower, upper, digit, symbol
    password_history: int = 0
    banner: str | None = None  # shown before authentication on SSH and the console
    ssh_weak_algorithms: bool = False  # offer/accept e.g. 3des-cbc, hmac-sha1, diffie-hellman-group1-sha1
    console_echo_password: bool = False
    reveal_unknown_user: bool = False  # "no such user" vs "login incorrect"
    # FR2
    role_enforcement: bool = True
    idle_timeout_s: float | None = None
    max_sessions: int | None = None  # concurrent shell sessions over SSH + console
    audit_failed_logins: bool = True
    modbus_writes: str = "open"  # open: anyone writes anything; ranges: only `writable` ranges; none
    modbus_writable: tuple[tuple[int, int], ...] = ()
    can_writes: str = "open"  # same meaning for the SDO-like service
    # FR3 / FR7
    input_bugs: bool = False  # seeded input-validation defects on Modbus and CAN
    verbose_errors: bool = False  # error replies leak internals (version, stack trace)
    safe_state_on_comm_loss: bool = False  # output coils go to 0 when the master falls silent
    rate_limit_per_s: float | None = None  # Modbus requests per second per connection
    # FR7.7
    extra_service: bool = False  # an undeclared debug TCP service
    # Device-side maintenance functions; fixed behaviour of the firmware, not settings `config set` changes
    firmware_version: str = "2.3.1"  # the running firmware at start (CR 3.4, 3.10)
    firmware_check: str = "signature"  # none: install anything; digest: SHA-256 only; signature: + vendor ed25519
    firmware_downgrade: bool = False  # accept an image older than the running firmware
    script_signature: bool = True  # `script run` only runs vendor-signed scripts (CR 3.2)
    backup_integrity: str = "hmac-sha256"  # none, sha256 (accidental damage), hmac-sha256 (device key) (CR 7.3)
    purge_complete: bool = True  # `system purge` removes added accounts, changed passwords, backups (CR 4.2)
    config_json: bool = True  # `config show --json` (CR 7.6)
    selftest: bool = True  # the `selftest` command exists (CR 3.3)
    audit_protected: bool = True  # clear/rotate leave a record; /log/audit.log read-only (CR 3.9)
    tamper_switch: dict[str, Any] | None = None  # {table: di, address: N}: the enclosure switch (CR 3.11)
    telnet_login: bool = False  # a plaintext login port (CR 4.1, 7.7)
    # The web management UI (web.py); fixed at start
    web_tls: str = "modern"  # modern: TLS 1.2+, ECDHE AEAD suites, EC P-256; legacy: TLS 1.0+, all suites, RSA-1024
    web_sessions: str = "strong"  # strong: random, rotated, ended, flagged, CSRF-checked; weak: none of it
    web_plain_http: bool = False  # the same UI, login included, over plain http too
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def oracle(self) -> dict[str, str]:
        return load_oracle(self.name)


def available() -> list[str]:
    return sorted(p.stem for p in PROFILES_DIR.glob("*.yaml"))


def _read(name: str) -> dict[str, Any]:
    path = PROFILES_DIR / f"{name}.yaml"
    if not path.is_file():
        raise LabError(f"unknown simplc profile {name!r}: use one of {', '.join(available())}")
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def load_profile(name: str) -> Profile:
    raw = dict(_read(name)["settings"])
    known = {f.name for f in fields(Profile)} - {"name"}
    unknown = set(raw) - known
    if unknown:
        raise LabError(f"profile {name}: unknown setting(s) {', '.join(sorted(unknown))}")
    raw["accounts"] = tuple(AccountSpec(**a) for a in raw.get("accounts", ()))
    raw["modbus_writable"] = tuple(tuple(r) for r in raw.get("modbus_writable", ()))
    return Profile(name=name, **raw)


def load_oracle(name: str) -> dict[str, str]:
    return dict(_read(name).get("oracle") or {})
