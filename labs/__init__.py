"""Emulated devices for the harness to test: devices, not part of the harness.

Nothing under `labs/` imports `harness`, `fixtures` or `conformance`: an emulator is judged only by
what its interfaces do. The harness starts one through `start()` when a target file names it.

Contract shared by every emulator kind (`simplc`, `qemu`):
- `start(kind, profile, faults=(), options=None, syslog=None) -> Running`, returning only once every
  interface really answers (a Modbus read, an SSH login), or raising `LabError` with one line naming the
  cause and the fix, having left no process behind.
- `Running.endpoints`: interface name -> address fields, in the target file's words
  (`{"modbus_tcp": {"host": "127.0.0.1", "port": 15020}, "console": {"url": "/dev/pts/7"}, ...}`).
- `Running.secrets`: environment-variable name -> value for the accounts the device provisioned
  (the target file refers to them as `${SIMPLC_ADMIN_PASSWORD}` and so on).
- `Running.files` (simplc; an emulator without such files has none or `{}`): variable name -> absolute
  path of a file the emulator made for the test, never a secret: `SIMPLC_FW_AUTHENTIC` (newer firmware,
  vendor-signed), `SIMPLC_FW_OLDER` (older firmware, vendor-signed: a downgrade), `SIMPLC_FW_FOREIGN`
  (newer firmware signed by another key), `SIMPLC_SCRIPT_SIGNED`, `SIMPLC_SCRIPT_UNSIGNED`,
  `SIMPLC_VENDOR_PUBKEY` (PEM), `SIMPLC_SBOM` (CycloneDX 1.5 JSON). They live in the run directory and
  are made afresh, with a fresh vendor key, by every start and `restart()`: read `files` again after one.
- Endpoint names beyond the target file's interfaces may appear (simplc's insecure profile adds
  `telnet: {host, port}`, a plaintext login port); a target file ignores names it does not declare.
- simplc's web management UI: `https: {base_url, certificate_sha256}` (the certificate is made afresh at
  every start; its fingerprint is handed over so that the harness pins the device it started) and, on the
  insecure profile, `http: {base_url}` (the same UI over plain http).
- `Running.set_fault(name | None)`, `Running.restart()`, `Running.stop()`; `Running.pid`, `Running.ready_s`.
"""

from __future__ import annotations

from typing import Any, Protocol


class LabError(Exception):
    """One line: what went wrong starting or driving an emulated device, and how to fix it."""


class Running(Protocol):
    endpoints: dict[str, dict[str, Any]]
    secrets: dict[str, str]
    pid: int
    ready_s: float

    def set_fault(self, name: str | None) -> None: ...
    def restart(self) -> None: ...
    def stop(self) -> None: ...


KINDS = ("simplc", "qemu")


def start(kind: str, profile: str, faults: tuple[str, ...] | list[str] = (),
          options: dict[str, Any] | None = None, syslog: tuple[str, int] | None = None) -> Running:
    if kind == "simplc":
        from iec62443_harness.labs.simplc.launcher import start as start_simplc

        return start_simplc(profile, faults=tuple(faults), options=options or {}, syslog=syslog)
    if kind == "qemu":
        from iec62443_harness.labs.qemu.launcher import start as start_qemu

        return start_qemu(profile, faults=tuple(faults), options=options or {}, syslog=syslog)
    raise LabError(f"unknown emulator kind {kind!r}: use one of {', '.join(KINDS)}")


def provides(kind: str, profile: str) -> set[str]:
    """The environment-variable names a device of this kind and profile hands over in `Running.secrets`, known
    before it starts (so a target file's `${VAR}` can be checked up front). Raises `LabError` (one line) for an
    unknown kind or simplc profile. Reads files only: no emulator module is imported."""
    if kind == "simplc":
        from pathlib import Path

        import yaml

        profiles = Path(__file__).resolve().parent / "simplc" / "profiles"
        path = profiles / f"{profile}.yaml"
        if not path.is_file():
            known = ", ".join(sorted(p.stem for p in profiles.glob("*.yaml")))
            raise LabError(f"unknown simplc profile {profile!r}: use one of {known}")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            accounts = data["settings"]["accounts"]
            return {a["env"] for a in accounts if isinstance(a, dict) and a.get("env")}
        except (OSError, yaml.YAMLError, KeyError, TypeError) as exc:
            raise LabError(f"simplc profile {path} cannot be read ({exc}): restore it from the repository") from None
    if kind == "qemu":
        # labs/qemu/launcher.py SECRET_ENV: the same three accounts in every profile (weak: factory defaults,
        # hardened: random passwords chosen at start)
        return {"QEMU_ADMIN_PASSWORD", "QEMU_OPERATOR_PASSWORD", "QEMU_LOCKTEST_PASSWORD"}
    raise LabError(f"unknown emulator kind {kind!r}: use one of {', '.join(KINDS)}")
