"""The device's maintenance functions behind the shell commands: firmware, scripts, restart, backup and
restore, purge, audit clear and rotate, and the self-test. Each audits what it did; a refusal raises
`Refused` whose message is the one line the shell answers (see shell.py for the exact texts).
"""

from __future__ import annotations

import copy
import hmac
import os
import posixpath
from typing import Any

from iec62443_harness.labs.simplc import backup, firmware
from iec62443_harness.labs.simplc.accounts import AccountError, _hash
from iec62443_harness.labs.simplc.files import FileError, normalize


class Refused(Exception):
    """One line to answer; the status is 1."""


def _upload(device: Any, path: str, what: str) -> tuple[str, bytes]:
    path = normalize(path)
    if posixpath.dirname(path) != "/update":
        raise Refused(f"{what} rejected: {path} is not under /update/")
    try:
        return path, device.files.read(path)
    except FileError:
        raise Refused(f"{what} rejected: no such file {path}") from None


# --- firmware and scripts


def firmware_apply(device: Any, path: str, user: str, source: str) -> str:
    profile, fw = device.profile, device.firmware
    try:
        path, data = _upload(device, path, "firmware")
        version, _ = firmware.check(data, "firmware", profile.firmware_check, fw.public, fw.running,
                                    profile.firmware_downgrade)
    except (Refused, firmware.Rejected) as exc:
        reason = str(exc) if isinstance(exc, firmware.Rejected) else str(exc).split(": ", 1)[1]
        device.audit.record("firmware_apply", user, source, "failure", f"{path}: {reason}")
        raise Refused(f"firmware rejected: {reason}") from None
    fw.stage(version)
    device.audit.record("firmware_apply", user, source, "success", f"{path}: staged {version}")
    return f"firmware staged: {version}; active after restart"


def script_lines(device: Any, path: str, user: str, source: str) -> list[str]:
    """The commands of an acceptable script (the payload of a signed one, or the whole file)."""
    try:
        path, data = _upload(device, path, "script")
    except Refused as exc:
        device.audit.record("script_run", user, source, "failure", f"{path}: {str(exc).split(': ', 1)[1]}")
        raise
    if device.profile.script_signature:
        try:
            _, payload = firmware.check(data, "script", "signature", device.firmware.public)
        except firmware.Rejected as exc:
            device.audit.record("script_run", user, source, "failure", f"{path}: {exc}")
            raise Refused("script rejected: not signed by the vendor") from None
    else:
        _, payload = firmware.check(data, "script", "none", device.firmware.public) if data else ("", b"")
    device.audit.record("script_run", user, source, "success", f"{path}: {len(payload)} bytes")
    return payload.decode("utf-8", "replace").splitlines()


def restart(device: Any, user: str, source: str) -> str:
    """The soft restart: the staged firmware becomes the running one; shell sessions end. The control task
    and Modbus run on (the essential function holds)."""
    before = device.firmware.running
    running = device.firmware.activate()
    device.audit.record("system_restart", user, source, "success",
                        f"firmware {before} -> {running}" if running != before else f"firmware {running}")
    device.end_sessions()
    return f"restarting: firmware {running} running; sessions end now"


# --- backup, restore, purge


def backup_create(device: Any, user: str, source: str) -> str:
    device.backup_count += 1
    path = f"/backup/backup-{device.backup_count}.bin"
    try:
        device.files.write(path, backup.create(device, device.profile.backup_integrity))
    except FileError as exc:
        device.audit.record("backup_create", user, source, "failure", str(exc))
        raise Refused(f"backup failed: {exc}") from None
    device.audit.record("backup_create", user, source, "success", path)
    return f"backup written: {path}"


def backup_restore(device: Any, path: str, user: str, source: str) -> str:
    path = normalize(path)
    try:
        if posixpath.dirname(path) != "/backup":
            raise backup.Rejected(f"{path} is not under /backup/")
        try:
            data = device.files.read(path)
        except FileError:
            raise backup.Rejected(f"no such file {path}") from None
        doc = backup.load(data, device.profile.backup_integrity, device.backup_key)
        settings = backup.settings_from(doc, device.settings)
        try:
            device.accounts.restore(doc["accounts"])
        except AccountError as exc:
            raise backup.Rejected(f"not a backup: {exc}") from None
    except backup.Rejected as exc:
        device.audit.record("backup_restore", user, source, "failure", f"{path}: {exc}")
        raise Refused(f"backup rejected: {exc}") from None
    _set_settings(device, settings)
    device.audit.record("backup_restore", user, source, "success", path)
    return f"backup restored: {path}"


def _set_settings(device: Any, settings: dict[str, Any]) -> None:
    device.settings.update(settings)  # the accounts' policy is this same dict
    device.sessions.limit = device.settings.get("max_sessions")


def purge(device: Any, user: str, source: str) -> str:
    """Back to the provisioned state. A complete purge (sl1, sl2) restores the provisioned accounts and
    their passwords and deletes the backups; an incomplete one (insecure) leaves both behind."""
    complete = device.profile.purge_complete
    if complete:
        device.accounts.restore(device.provisioned["accounts"])
        device.files.clear("/backup")
        device.backup_count = 0
    _set_settings(device, copy.deepcopy(device.provisioned["settings"]))
    device.firmware.pending = None
    device.files.clear("/update")
    device.audit.clear()
    device.audit.rotated = []
    device.audit.record("purge", user, source, "success", "purge done")
    device.end_sessions()
    return "purge done: provisioned state restored; sessions end now"


# --- audit


def audit_clear(device: Any, user: str, source: str, rotate: bool = False) -> str:
    count = device.audit.clear(rotate=rotate)
    if device.profile.audit_protected:  # the first record after: who cleared it, and how much
        device.audit.record("audit_rotate" if rotate else "audit_clear", user, source, "success",
                            f"{count} records" + (" moved to /log/audit.log.1" if rotate else " cleared"))
    return (f"audit log rotated: {count} records in /log/audit.log.1" if rotate
            else f"audit log cleared: {count} records")


# --- self-test


def selftest(device: Any, user: str, source: str) -> tuple[list[str], bool]:
    """One line per security function ("name: ok" or "name: FAILED (why)"), and whether all passed."""
    results: dict[str, str | None] = {}  # name -> None (ok) or why it failed

    def test(name: str, check: Any) -> None:
        try:
            results[name] = check()
        except Exception as exc:  # a self-test reports, it never crashes the shell
            results[name] = f"{type(exc).__name__}: {exc}"

    def authentication() -> str | None:
        salt = os.urandom(16)
        good = _hash("selftest-Passw0rd!", salt)
        if hmac.compare_digest(_hash("selftest-Passw0rd?", salt), good) or _hash("selftest-Passw0rd!", salt) != good:
            return "password hashing does not tell passwords apart"
        if not any(a["role"] == "admin" and a["enabled"] for a in device.accounts.list()):
            return "no enabled admin account"
        return None

    def audit() -> str | None:
        probe = f"audit probe {os.urandom(4).hex()}"
        device.audit.record("selftest", user, source, "success", probe)
        entries = device.audit.entries()
        return None if entries and entries[-1]["detail"] == probe else "records are not kept"

    def firmware_verification() -> str | None:
        reference, public = device.firmware.reference, device.firmware.public
        if not reference:
            return "no reference image"
        firmware.check(reference, "firmware", "signature", public)
        flipped = bytearray(reference)
        flipped[len(flipped) // 2] ^= 0x01
        try:
            firmware.check(bytes(flipped), "firmware", device.profile.firmware_check, public)
        except firmware.Rejected:
            return None
        return "a damaged image passes"

    def role_enforcement() -> str | None:
        from iec62443_harness.labs.simplc.shell import ROLE_OPERATIONS, setting

        if not setting(device, "role_enforcement"):
            return "role enforcement is off"
        return None if "config_set" not in ROLE_OPERATIONS["viewer"] else "viewers may change settings"

    def backup_integrity() -> str | None:
        alg = device.profile.backup_integrity
        body = b'{"selftest": 1}'
        if alg != "none" and backup.tag(body, alg, device.backup_key) == backup.tag(body + b" ", alg,
                                                                                  device.backup_key):
            return "the integrity tag does not change with the data"
        return None

    def control_task() -> str | None:
        return None if device.control.running else "the control task is not running"

    def random_source() -> str | None:
        return None if os.urandom(16) != os.urandom(16) else "random numbers repeat"

    test("authentication", authentication)
    test("audit", audit)
    test("firmware-verification", firmware_verification)
    test("role-enforcement", role_enforcement)
    test("backup-integrity", backup_integrity)
    test("control-task", control_task)
    test("random", random_source)
    passed = all(why is None for why in results.values())
    failed = [name for name, why in results.items() if why is not None]
    device.audit.record("selftest", user, source, "success" if passed else "failure",
                        "passed" if passed else "failed: " + ", ".join(failed))
    lines = [f"{name}: ok" if why is None else f"{name}: FAILED ({why})" for name, why in results.items()]
    return lines + [f"selftest: {'passed' if passed else 'failed'}"], passed
