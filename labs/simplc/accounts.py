"""Local accounts of the emulated PLC: roles, salted password hashes, lockout and password rules.

Passwords are stored only as scrypt hashes (a per-password salt, cost kept to a few ms so a lockout sweep
stays fast). `authenticate` counts consecutive failures; at `lockout_threshold` the account is locked, even
for the right password, until `lockout_unlock_s` passes or an admin unlocks it. Password rules (length,
character classes, no reuse of the last `password_history` passwords, the current one included) apply on
a change and on user creation, never to the factory passwords the device is provisioned with.

Policy values are read live from `Accounts.settings` (seeded from the profile, or the device's own settings
dict when one is passed), so a `config set` of e.g. `lockout_threshold` takes effect at once.
Every method is thread-safe; each account change is audited with its actor and source.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import os
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from iec62443_harness.labs import LabError
from iec62443_harness.labs.simplc.audit import AuditLog
from iec62443_harness.labs.simplc.profile import Profile

ROLES = ("viewer", "operator", "engineer", "admin")  # least to most privileged
POLICY_KEYS = ("lockout_threshold", "lockout_unlock_s", "password_min_length", "password_classes",
               "password_history", "audit_failed_logins", "reveal_unknown_user")
_SCRYPT = {"n": 2**11, "r": 8, "p": 1, "dklen": 32}  # about 5 ms here: real work, yet sweeps stay quick
_KEEP_HISTORY = 24  # bound on remembered old hashes, whatever password_history says
_USERNAME = re.compile(r"^[a-z_][a-z0-9_.-]{0,31}$")
_CLASSES = (str.islower, str.isupper, str.isdigit, lambda c: not c.isalnum())


class AuthResult(Enum):
    OK = "ok"
    BAD_PASSWORD = "bad_password"
    UNKNOWN_USER = "unknown_user"
    LOCKED = "locked"
    DISABLED = "disabled"


class AccountError(Exception):
    """A refused account operation; the message is one line fit to show the user."""


def _hash(password: str, salt: bytes) -> bytes:
    return hashlib.scrypt(password.encode("utf-8", "surrogateescape"), salt=salt, **_SCRYPT)


def _new_hash(password: str) -> tuple[bytes, bytes]:
    salt = os.urandom(16)
    return salt, _hash(password, salt)


@dataclass
class _Account:
    role: str
    salt: bytes
    digest: bytes
    enabled: bool = True
    failures: int = 0  # consecutive failed logins
    locked_until: float | None = None  # time.monotonic(); math.inf: until an admin unlocks
    history: list[tuple[bytes, bytes]] = field(default_factory=list)  # previous (salt, digest), newest last


class Accounts:
    def __init__(self, profile: Profile, passwords: dict[str, str], audit: AuditLog,
                 settings: dict[str, Any] | None = None) -> None:
        self._profile = profile
        self._audit = audit
        self.settings: dict[str, Any] = settings if settings is not None else {
            key: getattr(profile, key) for key in POLICY_KEYS}
        self._lock = threading.Lock()
        self._users: dict[str, _Account] = {}
        self._dummy_salt = os.urandom(16)
        for spec in profile.accounts:
            if spec.role not in ROLES:
                raise LabError(f"profile {profile.name}: account {spec.username} has unknown role {spec.role!r}; "
                               f"use one of {', '.join(ROLES)}")
            if spec.username not in passwords:
                raise LabError(f"no initial password for account {spec.username}: give one in passwords")
            self._users[spec.username] = _Account(spec.role, *_new_hash(passwords[spec.username]))

    def policy(self, key: str) -> Any:
        return self.settings.get(key, getattr(self._profile, key))

    # --- authentication

    def authenticate(self, user: str, password: str | bytes, source: str) -> AuthResult:
        if isinstance(password, bytes):  # SSH may hand over a password that is not UTF-8
            password = password.decode("utf-8", "surrogateescape")
        now = time.monotonic()
        with self._lock:
            account = self._users.get(user)
            if account is not None and account.locked_until is not None and now >= account.locked_until:
                account.locked_until, account.failures = None, 0
            locked = account is not None and account.locked_until is not None
            salt, digest = (account.salt, account.digest) if account is not None else (self._dummy_salt, b"")
        if account is None or locked:
            if not self.policy("reveal_unknown_user"):
                _hash(password, salt)  # same work as a real check: the answer time tells nothing
            result = AuthResult.UNKNOWN_USER if account is None else AuthResult.LOCKED
        else:
            good = hmac.compare_digest(_hash(password, salt), digest)  # hashed outside the lock
            result = self._settle(user, account, good, source)
        if result is AuthResult.OK:
            self._audit.record("login_ok", user, source, "success")
        elif self.policy("audit_failed_logins"):
            self._audit.record("login_failed", user, source, "failure", result.value)
        return result

    def _settle(self, user: str, account: _Account, good: bool, source: str) -> AuthResult:
        with self._lock:
            if self._users.get(user) is not account:
                return AuthResult.UNKNOWN_USER  # removed while its hash was being checked
            if good:
                account.failures = 0
                return AuthResult.OK if account.enabled else AuthResult.DISABLED
            account.failures += 1
            threshold = self.policy("lockout_threshold")
            if not threshold or account.failures < threshold:
                return AuthResult.BAD_PASSWORD
            unlock_s = self.policy("lockout_unlock_s")
            account.locked_until = time.monotonic() + unlock_s if unlock_s else math.inf
            failures = account.failures
        after = f"unlocks after {unlock_s:g} s" if unlock_s else "until an admin unlocks"
        self._audit.record("account_locked", user, source, "failure", f"{failures} failed logins; {after}")
        return AuthResult.BAD_PASSWORD

    # --- passwords

    def check_rules(self, password: str, user: str | None = None) -> None:
        """Raise AccountError naming the first rule `password` breaks (for `user`, when changing it)."""
        min_length = self.policy("password_min_length") or 1
        if len(password) < min_length:
            raise AccountError(f"password too short: use at least {min_length} characters")
        need = self.policy("password_classes") or 1
        if sum(any(test(c) for c in password) for test in _CLASSES) < need:
            raise AccountError(f"password too simple: mix at least {need} of lower case, upper case, digits, "
                               "symbols")
        history = self.policy("password_history") or 0
        with self._lock:
            account = self._users.get(user) if user else None
            recent = [(account.salt, account.digest), *account.history[::-1]][:history] if account else []
        if any(hmac.compare_digest(_hash(password, salt), digest) for salt, digest in recent):
            raise AccountError(f"password reused: choose one that differs from the last {history}")

    def change_password(self, user: str, old: str, new: str, source: str) -> None:
        try:
            with self._lock:
                account = self._users.get(user)
            if account is None or not hmac.compare_digest(_hash(old, account.salt), account.digest):
                raise AccountError("password unchanged: the current password is wrong")
            self.check_rules(new, user)
        except AccountError as exc:
            self._audit.record("password_change", user, source, "failure", str(exc))
            raise
        salt, digest = _new_hash(new)
        with self._lock:
            account.history = [*account.history, (account.salt, account.digest)][-_KEEP_HISTORY:]
            account.salt, account.digest = salt, digest
        self._audit.record("password_change", user, source, "success")

    # --- administration

    def add(self, name: str, role: str, password: str, *, actor: str, source: str) -> None:
        with self._audited("user_add", name, actor, source, f"role={role}"):
            if not _USERNAME.match(name):
                raise AccountError(f"bad user name {name!r}: use 1-32 of a-z, 0-9, _ . - starting with a letter")
            if role not in ROLES:
                raise AccountError(f"unknown role {role!r}: use one of {', '.join(ROLES)}")
            self.check_rules(password)
            salt, digest = _new_hash(password)
            with self._lock:
                if name in self._users:
                    raise AccountError(f"user {name} exists: choose another name")
                self._users[name] = _Account(role, salt, digest)

    def disable(self, name: str, *, actor: str, source: str) -> None:
        with self._target("user_disable", name, actor, source, guard=True) as account:
            account.enabled = False

    def enable(self, name: str, *, actor: str, source: str) -> None:
        with self._target("user_enable", name, actor, source) as account:
            account.enabled = True

    def remove(self, name: str, *, actor: str, source: str) -> None:
        with self._target("user_remove", name, actor, source, guard=True):
            del self._users[name]

    def unlock(self, name: str, *, actor: str, source: str) -> None:
        with self._target("user_unlock", name, actor, source) as account:
            account.locked_until, account.failures = None, 0

    @contextmanager
    def _audited(self, event: str, name: str, actor: str, source: str, detail: str = "") -> Iterator[None]:
        try:
            yield
        except AccountError as exc:
            self._audit.record(event, actor, source, "failure", f"{name}: {exc}")
            raise
        self._audit.record(event, actor, source, "success", f"{name} {detail}".strip())

    @contextmanager
    def _target(self, event: str, name: str, actor: str, source: str, guard: bool = False) -> Iterator[_Account]:
        """The account to change, under the lock; `guard`: refuse to cut off oneself or the last admin."""
        with self._audited(event, name, actor, source), self._lock:
            account = self._users.get(name)
            if account is None:
                raise AccountError(f"no such user {name}: see user list")
            if guard and name == actor:
                raise AccountError("refused: you cannot disable or remove your own account")
            admins = [u for u, a in self._users.items() if a.role == "admin" and a.enabled and u != name]
            if guard and account.role == "admin" and not admins:
                raise AccountError(f"refused: {name} is the last enabled admin")
            yield account

    # --- queries

    def role_hint(self, user: str | None) -> str | None:
        """The role without taking the lock (the audit log asks while an account change may hold it)."""
        account = self._users.get(user) if user else None
        return account.role if account is not None else None

    def role_of(self, user: str) -> str | None:
        with self._lock:
            account = self._users.get(user)
            return account.role if account is not None else None

    def list(self) -> list[dict[str, Any]]:
        now = time.monotonic()
        with self._lock:
            return [{"username": name, "role": a.role, "enabled": a.enabled, "failures": a.failures,
                     "locked": a.locked_until is not None and now < a.locked_until}
                    for name, a in sorted(self._users.items())]

    # --- backup, restore and purge

    def snapshot(self) -> list[dict[str, Any]]:
        """Every account as JSON-ready data: role, state, salted hashes (never a password)."""
        now = time.monotonic()
        with self._lock:
            return [{"username": name, "role": a.role, "enabled": a.enabled,
                     "locked": a.locked_until is not None and now < a.locked_until,
                     "salt": a.salt.hex(), "hash": a.digest.hex(),
                     "history": [[salt.hex(), digest.hex()] for salt, digest in a.history]}
                    for name, a in sorted(self._users.items())]

    def restore(self, rows: Any) -> None:
        """Replace every account with `rows` (a `snapshot()`); AccountError, changing nothing, if one is bad."""
        users: dict[str, _Account] = {}
        unlock_s = self.policy("lockout_unlock_s")
        try:
            for row in rows:
                name, role = row["username"], row["role"]
                if not isinstance(name, str) or not _USERNAME.match(name) or role not in ROLES or name in users:
                    raise ValueError(name)
                locked = bool(row.get("locked"))
                users[name] = _Account(
                    role, bytes.fromhex(row["salt"]), bytes.fromhex(row["hash"]), enabled=bool(row["enabled"]),
                    locked_until=(time.monotonic() + unlock_s if unlock_s else math.inf) if locked else None,
                    history=[(bytes.fromhex(s), bytes.fromhex(d)) for s, d in row.get("history", [])][-_KEEP_HISTORY:])
        except (KeyError, TypeError, ValueError):
            raise AccountError("bad account data") from None
        if not any(a.role == "admin" and a.enabled for a in users.values()):
            raise AccountError("bad account data: no enabled admin")
        with self._lock:
            self._users = users
