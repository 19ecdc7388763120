"""What the device runs (`inventory`), what its vendor declares (the CycloneDX SBOM), and its settings report.

`components(device)`: the installed components, each `{"name", "version", "type"}`:
    simplc-firmware   the running firmware version        firmware
    pymodbus          the Modbus stack                    library
    paramiko          the SSH server                      library
    cryptography      the crypto library (ed25519, HMAC)  library
    python            the runtime (CPython)               platform
    simplc-debug-monitor 0.9.4-dev                        application   only where the debug service runs
`sbom(device)`: a CycloneDX 1.5 JSON document of the declared components: all of the above except the debug
monitor, which no vendor document declares (an SBOM that matches the inventory on sl1/sl2, not on insecure).

`settings_report(device)`: what `config show --json` prints: {"network": {"interfaces": {...}},
"security": {...}, "firmware": {...}}; `settings_lines` is the text form.
"""

from __future__ import annotations

import platform
import uuid
from datetime import UTC, datetime
from typing import Any

import cryptography
import paramiko
import pymodbus

DEBUG_MONITOR = ("simplc-debug-monitor", "0.9.4-dev")
UNDECLARED = {DEBUG_MONITOR[0]}
# read-only security facts of the firmware, shown with the live settings
FIXED = ("firmware_check", "firmware_downgrade", "script_signature", "backup_integrity", "purge_complete",
         "audit_protected", "tamper_switch", "web_tls", "web_sessions", "web_plain_http")


def components(device: Any) -> list[dict[str, str]]:
    rows = [
        {"name": "simplc-firmware", "version": device.firmware.running, "type": "firmware"},
        {"name": "pymodbus", "version": pymodbus.__version__, "type": "library"},
        {"name": "paramiko", "version": paramiko.__version__, "type": "library"},
        {"name": "cryptography", "version": cryptography.__version__, "type": "library"},
        {"name": "python", "version": platform.python_version(), "type": "platform"},
    ]
    if device.interfaces.get("debug", {}).get("enabled"):
        rows.append({"name": DEBUG_MONITOR[0], "version": DEBUG_MONITOR[1], "type": "application"})
    return rows


def _purl(row: dict[str, str]) -> str:
    if row["type"] == "library":
        return f"pkg:pypi/{row['name']}@{row['version']}"
    if row["name"] == "python":
        return f"pkg:generic/cpython@{row['version']}"
    return f"pkg:generic/simplc/{row['name']}@{row['version']}"


def sbom(device: Any) -> dict[str, Any]:
    declared = [row for row in components(device) if row["name"] not in UNDECLARED]
    return {
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "serialNumber": f"urn:uuid:{uuid.uuid4()}",
        "version": 1,
        "metadata": {
            "timestamp": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
            "supplier": {"name": "SimPLC Labs"},
            "component": {"type": "device", "name": "SimPLC-1", "version": device.firmware.running,
                          "bom-ref": "simplc-device"},
        },
        "components": [{"type": row["type"], "name": row["name"], "version": row["version"],
                        "bom-ref": f"{row['name']}@{row['version']}", "purl": _purl(row)} for row in declared],
    }


def ssh_algorithms(device: Any) -> dict[str, list[str]]:
    from iec62443_harness.labs.simplc.ssh import offered  # the SSH server imports the shell: import late

    return offered(device)


def settings_report(device: Any) -> dict[str, Any]:
    security = {key: (list(map(list, value)) if isinstance(value, tuple) else value)
                for key, value in sorted(device.settings.items())}
    security.update({key: getattr(device.profile, key, None) for key in FIXED})
    security["ssh_algorithms"] = ssh_algorithms(device)
    fw = getattr(device, "firmware", None)
    return {
        "network": {"interfaces": {name: {k: v for k, v in info.items() if k != "undeclared"}
                                   for name, info in getattr(device, "interfaces", {}).items()
                                   if not info.get("undeclared")}},
        "security": security,
        "firmware": {"running": fw.running if fw else None, "pending": fw.pending if fw else None},
    }


def _show(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return ",".join(_show(v) for v in value) if value else "none"
    if isinstance(value, dict):
        return " ".join(f"{k}={_show(v)}" for k, v in value.items())
    return str(value)


def settings_lines(device: Any) -> list[str]:
    report = settings_report(device)
    lines = ["[network]"]
    for name, info in report["network"]["interfaces"].items():
        lines.append(f"interface {name}: " + " ".join(f"{k}={_show(v)}" for k, v in info.items()))
    lines.append("[security]")
    for key, value in sorted(device.settings.items()):  # as `config show` always printed them
        lines.append(f"{key} = {_show(value) if value is None or isinstance(value, bool) else value}")
    for key in FIXED:
        lines.append(f"{key} = {_show(report['security'][key])} (fixed)")
    for key, names in report["security"]["ssh_algorithms"].items():
        lines.append(f"ssh_{key} = {_show(names)} (offered)")
    lines.append("[firmware]")
    lines += [f"{key} = {value}" for key, value in report["firmware"].items() if value is not None]
    return lines
