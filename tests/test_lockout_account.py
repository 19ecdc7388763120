"""A device with one account: the lockout tests may lock its administrator only where the lock ends by itself."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from iec62443_harness.fixtures.outcomes import NotRun
from iec62443_harness.fixtures.sessions import lockout_account, unlocking_admin
from iec62443_harness.fixtures.target import TargetRun
from iec62443_harness.target import TargetSpec


def run(monkeypatch: pytest.MonkeyPatch, unlock_after_s: float | None, accounts: dict[str, Any]) -> TargetRun:
    monkeypatch.setenv("ONE_PASSWORD", "correct horse battery")
    spec = TargetSpec.model_validate({
        "identity": {"vendor": "t", "model": "m", "firmware": "1"}, "component_type": "embedded_device",
        "security_level": 1, "interfaces": {"ssh": {"host": "127.0.0.1", "port": 22}}, "accounts": accounts,
        "policies": {"lockout": {"threshold": 3, "unlock_after_s": unlock_after_s}}})
    return TargetRun("one", Path("one.yaml"), spec)


ONLY = {"admin": {"username": "root", "password": "${ONE_PASSWORD}", "role": "admin",
                  "purpose": ["normal", "lockout_test"]}}


def test_the_only_administrator_is_locked_only_where_the_lock_ends_by_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    timed = run(monkeypatch, 30.0, ONLY)
    creds = lockout_account(timed, unlocks_in_time=True)
    assert creds.username == "root" and creds.purposes == ("normal", "lockout_test")
    assert unlocking_admin(timed, creds) is None  # it never unlocks itself
    with pytest.raises(NotRun, match="only administrator .* does not lock it"):
        lockout_account(run(monkeypatch, None, ONLY), unlocks_in_time=False)


def test_a_second_administrator_may_unlock(monkeypatch: pytest.MonkeyPatch) -> None:
    accounts = {**ONLY, "admin2": {"username": "admin2", "password": "${ONE_PASSWORD}", "role": "admin"}}
    target = run(monkeypatch, None, accounts)
    creds = lockout_account(target, unlocks_in_time=False)  # another administrator can unlock it
    admin = unlocking_admin(target, creds)
    assert admin is not None and admin.username == "admin2"
