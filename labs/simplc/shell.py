"""The management shell of the emulated PLC, shared by SSH (shell and exec channels) and the serial console.

Commands (the operation each needs, in brackets; `help`, `exit` need none):

    help                               list the commands
    whoami | id                        your user name and role                     [whoami]
    read <table> <address> [count]     read co, di, hr or ir (count 1-125)         [read]
    write <address> <value>            write one holding register (0-65535)        [write]
    passwd <old> <new>                 change your password (rules and history)    [passwd]
    user list                          accounts, roles, enabled, locked            [user_list]
    user add <name> <role> <password>  create an account                           [user_add]
    user disable|enable <name>         disable or enable an account                [user_disable|user_enable]
    user del <name>                    remove an account                           [user_del]
    user unlock <name>                 clear a lockout                             [user_unlock]
    audit show [n]                     the last n audit records (default 20)       [audit_show]
    audit export --json                every record, one JSON object a line        [audit_export]
    audit clear                        empty the audit log                         [audit_clear]
    audit rotate                       start a new log; the old is /log/audit.log.1 [audit_rotate]
    config show [--json]               network and security settings               [config_show]
    config set <key> <value>           change one setting                          [config_set]
    session list                       live shell sessions                         [session_list]
    session kill <id>                  end a session at once                       [session_kill]
    firmware show                      running (and staged) firmware version       [firmware_show]
    firmware apply <path>              verify and stage an image from /update/     [firmware_apply]
    script run <path>                  run an uploaded script's lines as commands  [script_run]
    system restart                     staged firmware becomes active; sessions end [system_restart]
    system purge                       back to the provisioned state               [system_purge]
    backup create                      write /backup/backup-<n>.bin                [backup_create]
    backup restore <path>              restore settings and accounts from a backup [backup_restore]
    inventory [--json]                 installed components and versions           [inventory]
    selftest                           check each security function                [selftest]
    exit | logout                      end the session

Who may do what is the data in ROLE_OPERATIONS: viewer {whoami, read, config_show, firmware_show,
inventory, selftest}; operator adds {write, passwd}; engineer adds {audit_show, audit_export, file_upload,
backup_transfer, firmware_apply, script_run, backup_create, backup_restore, system_restart}; admin may do
everything (also audit_clear, audit_rotate, system_purge and the account, setting and session commands).
`file_upload` and `backup_transfer` are SFTP rights (/update, /backup); `audit_export` also reads
/log/audit.log over SFTP. With `role_enforcement` off (the insecure profile) every user may do everything.
A refused command answers exactly `permission denied: <op> needs role <role>` and is audited.

Answers a suite can rely on (status 1 for each refusal, which is audited):
    firmware show     "running <version>" and, when one is staged, "pending <version>"
    firmware apply    "firmware staged: <version>; active after restart" or "firmware rejected: <reason>",
                      reason one of "not a firmware image", "integrity check failed", "signature not from
                      the vendor", "downgrade from <running> to <version> refused", "empty file",
                      "no such file <path>", "<path> is not under /update/"
    script run        the output of each line ("> <line>" then its answer), then "script done: <n> commands";
                      or "script rejected: not signed by the vendor" (profiles with `script_signature`)
    system restart    "restarting: firmware <version> running; sessions end now"
    system purge      "purge done: provisioned state restored; sessions end now"; the audit log then holds
                      one record, event purge, detail "purge done"
    backup create     "backup written: /backup/backup-<n>.bin"
    backup restore    "backup restored: <path>" or "backup rejected: <reason>", reason "integrity check
                      failed", "not a backup", "no such file <path>"
    audit clear       "audit log cleared: <n> records"  (protected audit: then one record audit_clear)
    audit rotate      "audit log rotated: <n> records in /log/audit.log.1"  (protected: one record audit_rotate)
    selftest          "<function>: ok" or "<function>: FAILED (<why>)" for authentication, audit,
                      firmware-verification, role-enforcement, backup-integrity, control-task, random;
                      then "selftest: passed" or "selftest: failed". Absent (unknown command) without
                      the profile's `selftest`.
    config show --json, inventory --json: one JSON document; without the profile's `config_json`,
                      `config show --json` answers "unknown option '--json'" (status 2).

Below the interpreter: `Terminal` turns a byte port (SSH channel, pty) into lines with echo, line editing
and the device's fault modes, and `interactive` runs one registered session with its idle timeout.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any, Protocol

from iec62443_harness.labs.simplc import maintenance
from iec62443_harness.labs.simplc.accounts import ROLES, AccountError
from iec62443_harness.labs.simplc.profile import Profile
from iec62443_harness.labs.simplc.sessions import Session, SessionLimitError

_VIEWER = frozenset({"whoami", "read", "config_show", "firmware_show", "inventory", "selftest"})
_OPERATOR = _VIEWER | {"write", "passwd"}
_ENGINEER = _OPERATOR | {"audit_show", "audit_export", "file_upload", "backup_transfer", "firmware_apply",
                         "script_run", "backup_create", "backup_restore", "system_restart"}
OPERATIONS = (*sorted(_ENGINEER), "user_list", "user_add", "user_disable", "user_enable", "user_del",
              "user_unlock", "config_set", "session_list", "session_kill", "audit_clear", "audit_rotate",
              "system_purge")
ROLE_OPERATIONS: dict[str, frozenset[str]] = {
    "viewer": _VIEWER,
    "operator": _OPERATOR,
    "engineer": _ENGINEER,
    "admin": frozenset(OPERATIONS),
}

# command words -> (operation or None for always allowed, argument usage, summary)
COMMANDS: dict[str, tuple[str | None, str, str]] = {
    "help": (None, "", "list the commands"),
    "whoami": ("whoami", "", "your user name and role"),
    "id": ("whoami", "", "your user, role and session"),
    "read": ("read", "<table> <address> [count]", "read co, di, hr or ir"),
    "write": ("write", "<address> <value>", "write one holding register"),
    "passwd": ("passwd", "<old> <new>", "change your password"),
    "user list": ("user_list", "", "accounts and their state"),
    "user add": ("user_add", "<name> <role> <password>", "create an account"),
    "user disable": ("user_disable", "<name>", "disable an account"),
    "user enable": ("user_enable", "<name>", "enable an account"),
    "user del": ("user_del", "<name>", "remove an account"),
    "user unlock": ("user_unlock", "<name>", "clear a lockout"),
    "audit show": ("audit_show", "[n]", "the last n audit records"),
    "audit export": ("audit_export", "--json", "every audit record as JSON lines"),
    "audit clear": ("audit_clear", "", "empty the audit log"),
    "audit rotate": ("audit_rotate", "", "start a new audit log"),
    "config show": ("config_show", "[--json]", "network and security settings"),
    "config set": ("config_set", "<key> <value>", "change one setting"),
    "session list": ("session_list", "", "live shell sessions"),
    "session kill": ("session_kill", "<id>", "end a session at once"),
    "firmware show": ("firmware_show", "", "running and staged firmware"),
    "firmware apply": ("firmware_apply", "<path>", "verify and stage an image from /update/"),
    "script run": ("script_run", "<path>", "run an uploaded script"),
    "system restart": ("system_restart", "", "activate staged firmware; sessions end"),
    "system purge": ("system_purge", "", "back to the provisioned state"),
    "backup create": ("backup_create", "", "write a configuration backup"),
    "backup restore": ("backup_restore", "<path>", "restore a configuration backup"),
    "inventory": ("inventory", "[--json]", "installed components and versions"),
    "selftest": ("selftest", "", "check each security function"),
    "exit": (None, "", "end the session"),
    "logout": (None, "", "end the session"),
}
_TABLES = {"co": "co", "coil": "co", "coils": "co", "di": "di", "hr": "hr", "holding": "hr", "ir": "ir",
           "input": "ir"}
SLOW_S = 1.5  # the "slow" fault's delay before each answer
POLL_S = 0.1  # how often a waiting session notices a kill or a new fault
MAX_LINE = 1024
MAX_SCRIPT_LINES = 200
_TEXT_SETTINGS = frozenset(f.name for f in fields(Profile) if str(f.type).startswith("str"))  # banner: text or none


def setting(device: Any, key: str) -> Any:
    """A live security setting: the device's settings dict first, the profile's value otherwise."""
    return device.settings.get(key, getattr(device.profile, key, None))


def min_role(op: str) -> str:
    return next(role for role in ROLES if op in ROLE_OPERATIONS[role])


@dataclass(frozen=True)
class Result:
    output: str
    status: int = 0  # the exec channel's exit status: 0 ok, 1 refused or failed, 2 usage, 127 unknown
    exit: bool = False


class _Usage(Exception):
    pass


class Shell:
    """One logged-in user's command interpreter. `execute` never raises: every problem is an answer."""

    def __init__(self, device: Any, user: str, source: str, session: Session | None = None) -> None:
        self.device, self.user, self.source, self.session = device, user, source, session
        self._in_script = False

    @property
    def role(self) -> str | None:
        return self.device.accounts.role_of(self.user)

    @property
    def prompt(self) -> str:
        return f"{self.user}@simplc{'#' if self.role == 'admin' else '$'} "

    def allowed(self, op: str) -> bool:
        if not setting(self.device, "role_enforcement"):
            return True
        role = self.role
        return role is not None and op in ROLE_OPERATIONS[role]

    def present(self, key: str) -> bool:
        """Whether this device has the command at all (the profile may leave one out)."""
        return key != "selftest" or bool(getattr(self.device.profile, "selftest", True))

    def execute(self, line: str) -> Result:
        words = line.split()
        if not words:
            return Result("")
        key = " ".join(words[:2]) if " ".join(words[:2]) in COMMANDS else words[0]
        if key not in COMMANDS or not self.present(key):
            return Result(f"unknown command {words[0]!r}: type help for the list", 127)
        op, usage, _ = COMMANDS[key]
        if op is not None and not self.allowed(op):
            self.device.audit.record("permission_denied", self.user, self.source, "denied", f"{op}: {key}")
            return Result(f"permission denied: {op} needs role {min_role(op)}", 1)
        args = words[len(key.split()):]
        try:
            return getattr(self, "_" + key.replace(" ", "_"))(args, line)
        except _Usage:
            return Result(f"usage: {key} {usage}".rstrip(), 2)
        except AccountError as exc:
            return Result(str(exc), 1)
        except maintenance.Refused as exc:
            return Result(str(exc), 1)

    # --- commands: each takes the arguments after its words and the raw line

    def _help(self, args: list[str], line: str) -> Result:
        rows = []
        for key, (op, usage, summary) in COMMANDS.items():
            if not self.present(key):
                continue
            need = f" [{op}: {min_role(op)}]" if op else ""
            rows.append(f"  {(key + ' ' + usage).strip():<36} {summary}{need}")
        return Result("commands:\n" + "\n".join(rows))

    def _whoami(self, args: list[str], line: str) -> Result:
        return Result(f"{self.user} ({self.role})")

    def _id(self, args: list[str], line: str) -> Result:
        session = f" session={self.session.id}" if self.session else ""
        return Result(f"user={self.user} role={self.role}{session} source={self.source}")

    def _read(self, args: list[str], line: str) -> Result:
        if len(args) not in (2, 3) or args[0].lower() not in _TABLES:
            raise _Usage
        table, address, count = _TABLES[args[0].lower()], _number(args[1]), _number(args[2]) if args[2:] else 1
        if not 1 <= count <= 125:
            return Result("count out of range: use 1-125", 2)
        try:
            values = self.device.image.read(table, address, count)
        except Exception as exc:  # the image names the bad address in its own words
            return Result(f"read failed: {table} {address} x{count}: {exc}", 1)
        return Result(f"{table} {address}: " + " ".join(str(v) for v in values))

    def _write(self, args: list[str], line: str) -> Result:
        if len(args) != 2:
            raise _Usage
        address, value = _number(args[0]), _number(args[1])
        if not 0 <= value <= 0xFFFF:
            return Result("value out of range: use 0-65535", 2)
        try:
            self.device.image.write("hr", address, [value])
        except Exception as exc:
            self.device.audit.record("write", self.user, self.source, "failure", f"hr {address} = {value}: {exc}")
            return Result(f"write failed: hr {address}: {exc}", 1)
        self.device.audit.record("write", self.user, self.source, "success", f"hr {address} = {value}")
        return Result(f"ok: hr {address} = {value}")

    def _passwd(self, args: list[str], line: str) -> Result:
        if len(args) != 2:
            raise _Usage
        self.device.accounts.change_password(self.user, args[0], args[1], self.source)
        return Result("password changed")

    def _user_list(self, args: list[str], line: str) -> Result:
        rows = [f"{a['username']:<16} {a['role']:<9} {'enabled' if a['enabled'] else 'disabled':<8}"
                f"{' locked' if a['locked'] else ''}" for a in self.device.accounts.list()]
        return Result("\n".join(rows))

    def _user_add(self, args: list[str], line: str) -> Result:
        if len(args) != 3:
            raise _Usage
        self.device.accounts.add(args[0], args[1], args[2], actor=self.user, source=self.source)
        return Result(f"user {args[0]} added with role {args[1]}")

    def _account_change(self, args: list[str], verb: str, past: str) -> Result:
        if len(args) != 1:
            raise _Usage
        getattr(self.device.accounts, verb)(args[0], actor=self.user, source=self.source)
        return Result(f"user {args[0]} {past}")

    def _user_disable(self, args: list[str], line: str) -> Result:
        return self._account_change(args, "disable", "disabled")

    def _user_enable(self, args: list[str], line: str) -> Result:
        return self._account_change(args, "enable", "enabled")

    def _user_del(self, args: list[str], line: str) -> Result:
        return self._account_change(args, "remove", "removed")

    def _user_unlock(self, args: list[str], line: str) -> Result:
        return self._account_change(args, "unlock", "unlocked")

    def _audit_show(self, args: list[str], line: str) -> Result:
        if len(args) > 1:
            raise _Usage
        count = _number(args[0]) if args else 20
        entries = self.device.audit.entries()[-count:] if count > 0 else []
        return Result("\n".join(f"{e['ts']} {e['event']} user={e['user'] or '-'} source={e['source']} "
                                f"outcome={e['outcome']}{' ' + e['detail'] if e['detail'] else ''}"
                                for e in entries))

    def _config_show(self, args: list[str], line: str) -> Result:
        from iec62443_harness.labs.simplc.inventory import settings_lines, settings_report

        if args and (args != ["--json"] or not getattr(self.device.profile, "config_json", True)):
            return Result(f"unknown option {args[0]!r}", 2)
        if args:
            return Result(json.dumps(settings_report(self.device), sort_keys=True))
        return Result("\n".join(settings_lines(self.device)))

    def _config_set(self, args: list[str], line: str) -> Result:
        if len(args) < 2:
            raise _Usage
        key, text = args[0], line.split(None, 3)[3]  # the value may hold spaces (a banner)
        settings = self.device.settings
        if key not in settings:
            return Result(f"unknown setting {key!r}: see config show", 2)
        old = settings[key]
        if not (old is None or isinstance(old, bool | int | float | str)):
            return Result(f"setting {key} is a list: the shell changes only single values", 2)
        try:
            value = _parse(text, "" if old is None and key in _TEXT_SETTINGS else old)
        except ValueError as exc:
            return Result(f"bad value for {key}: {exc}", 2)
        settings[key] = value
        if key in self.device.accounts.settings:  # the accounts' own policy copy, when not shared
            self.device.accounts.settings[key] = value
        if key == "max_sessions":
            self.device.sessions.limit = value
        self.device.audit.record("config_change", self.user, self.source, "success",
                                 f"{key}: {_show(old)} -> {_show(value)}")
        return Result(f"ok: {key} = {_show(value)}")

    def _session_list(self, args: list[str], line: str) -> Result:
        now = time.time()
        rows = [f"{'*' if self.session and s.id == self.session.id else ' '}{s.id:<4} {s.user:<16} {s.source:<24} "
                f"since {datetime.fromtimestamp(s.started, UTC):%H:%M:%S} idle {now - s.last_activity:.0f}s"
                for s in self.device.sessions.list()]
        return Result("\n".join(rows))

    def _session_kill(self, args: list[str], line: str) -> Result:
        if len(args) != 1:
            raise _Usage
        session = self.device.sessions.kill(_number(args[0]))
        if session is None:
            return Result(f"no session {args[0]}: see session list", 1)
        self.device.audit.record("session_killed", self.user, self.source, "success",
                                 f"session {session.id} of {session.user} from {session.source}")
        return Result(f"session {session.id} killed")

    # --- audit maintenance

    def _audit_export(self, args: list[str], line: str) -> Result:
        if args != ["--json"]:
            raise _Usage
        entries = self.device.audit.entries()
        self.device.audit.record("audit_export", self.user, self.source, "success", f"{len(entries)} records")
        return Result(self.device.audit.export(entries).rstrip("\n"))

    def _audit_clear(self, args: list[str], line: str) -> Result:
        if args:
            raise _Usage
        return Result(maintenance.audit_clear(self.device, self.user, self.source))

    def _audit_rotate(self, args: list[str], line: str) -> Result:
        if args:
            raise _Usage
        return Result(maintenance.audit_clear(self.device, self.user, self.source, rotate=True))

    # --- firmware, scripts, restart, backup, purge, inventory, self-test

    def _firmware_show(self, args: list[str], line: str) -> Result:
        fw = self.device.firmware
        return Result(f"running {fw.running}" + (f"\npending {fw.pending}" if fw.pending else ""))

    def _firmware_apply(self, args: list[str], line: str) -> Result:
        if len(args) != 1:
            raise _Usage
        return Result(maintenance.firmware_apply(self.device, args[0], self.user, self.source))

    def _script_run(self, args: list[str], line: str) -> Result:
        if len(args) != 1:
            raise _Usage
        if self._in_script:
            return Result("script rejected: a script cannot run another script", 1)
        lines = [ln.strip() for ln in maintenance.script_lines(self.device, args[0], self.user, self.source)]
        lines = [ln for ln in lines if ln and not ln.startswith("#")][:MAX_SCRIPT_LINES]
        out, self._in_script = [], True
        try:
            for command in lines:
                result = Result("") if command.split()[0] in ("exit", "logout") else self.execute(command)
                out.append(f"> {command}" + (f"\n{result.output}" if result.output else ""))
        finally:
            self._in_script = False
        return Result("\n".join([*out, f"script done: {len(lines)} commands"]))

    def _system_restart(self, args: list[str], line: str) -> Result:
        if args:
            raise _Usage
        return Result(maintenance.restart(self.device, self.user, self.source))

    def _system_purge(self, args: list[str], line: str) -> Result:
        if args:
            raise _Usage
        return Result(maintenance.purge(self.device, self.user, self.source))

    def _backup_create(self, args: list[str], line: str) -> Result:
        if args:
            raise _Usage
        return Result(maintenance.backup_create(self.device, self.user, self.source))

    def _backup_restore(self, args: list[str], line: str) -> Result:
        if len(args) != 1:
            raise _Usage
        return Result(maintenance.backup_restore(self.device, args[0], self.user, self.source))

    def _inventory(self, args: list[str], line: str) -> Result:
        from iec62443_harness.labs.simplc.inventory import components

        if args not in ([], ["--json"]):
            raise _Usage
        rows = components(self.device)
        if args:
            return Result(json.dumps(rows))
        return Result("\n".join(f"{r['name']:<22} {r['version']:<12} {r['type']}" for r in rows))

    def _selftest(self, args: list[str], line: str) -> Result:
        if args:
            raise _Usage
        lines, passed = maintenance.selftest(self.device, self.user, self.source)
        return Result("\n".join(lines), 0 if passed else 1)

    def _exit(self, args: list[str], line: str) -> Result:
        return Result("logout", exit=True)

    _logout = _exit


def _number(text: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        raise _Usage from None


def _show(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _parse(text: str, old: Any) -> Any:
    """The typed value of `text`, shaped like the setting's current value."""
    word = text.strip().lower()
    if isinstance(old, bool) or (old is None and word in ("true", "false", "on", "off")):
        if word not in ("true", "false", "on", "off"):
            raise ValueError("use true or false")
        return word in ("true", "on")
    if word == "none" and not isinstance(old, str):
        return None
    if isinstance(old, int | float) or old is None:
        try:
            number = int(word, 0) if isinstance(old, int) or (old is None and word.isdigit()) else float(word)
        except ValueError:
            raise ValueError("use a number or none") from None
        if number < 0:
            raise ValueError("use a number of 0 or more")
        return number
    return text


# --- terminals: bytes in, lines out


class Port(Protocol):
    def recv(self, timeout: float) -> bytes | None:
        """Bytes received within `timeout`; None when nothing came; b"" once the peer is gone."""

    def send(self, data: bytes) -> None:
        """Send without blocking long; a failure drops the data."""

    def close(self) -> None: ...


class Terminal:
    """Line input with echo and editing over a Port, applying the device's live fault modes.

    `faults` names the modes this interface honours: "silent" (ignore input, emit nothing), "reset" (drop the
    connection), "slow" (answer each line SLOW_S late), "garbage" (emit random bytes instead of output).
    """

    def __init__(self, port: Port, device: Any, faults: frozenset[str], echo: bool = True) -> None:
        self.port, self.device, self.faults, self.echo = port, device, faults, echo
        self._pending = bytearray()
        self._line = bytearray()
        self._after_cr = False
        self._escape = 0  # 1: after ESC; 2: inside a CSI sequence (arrow keys are dropped, not typed)

    def _fault(self) -> str | None:
        fault = self.device.fault
        return fault if fault in self.faults else None

    def write(self, text: str) -> None:
        data = text.replace("\r\n", "\n").replace("\n", "\r\n").encode("utf-8", "replace")
        fault = self._fault()
        if fault == "silent":
            return
        self.port.send(os.urandom(len(data)) if fault == "garbage" else data)

    def readline(self, *, secret: bool = False, timeout: float | None = None,
                 stop: threading.Event | None = None) -> str | None:
        """One line, or None after `timeout` s without input or once `stop` is set; EOFError when gone.

        `secret`: never echo (a password). Ctrl-C abandons the line (returns ""), Ctrl-D on an empty line
        ends the input like a hang-up.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            line = self._take(echo=self.echo and not secret)
            if line is not None:
                if self._fault() == "slow":
                    time.sleep(SLOW_S)
                return line
            if stop is not None and stop.is_set():
                return None
            wait = POLL_S
            if deadline is not None:
                wait = min(wait, deadline - time.monotonic())
                if wait <= 0:
                    return None
            if self._fault() == "reset":
                self.port.close()
                raise EOFError
            data = self.port.recv(wait)
            if data == b"":
                raise EOFError
            if data and self._fault() != "silent":  # the fault as it is now, not before the wait
                self._pending += data
                deadline = None if timeout is None else time.monotonic() + timeout

    def _take(self, echo: bool) -> str | None:
        """Consume pending bytes up to the end of one line; echo what was typed."""
        out, line, used = bytearray(), None, 0
        for used, byte in enumerate(self._pending, 1):  # `used`: how many bytes this line consumed
            after_cr, self._after_cr = self._after_cr, False
            if self._escape == 1:
                self._escape = 2 if byte in b"[O" else 0
                continue
            if self._escape == 2:
                self._escape = 0 if 0x40 <= byte <= 0x7E else 2  # a final byte ends the sequence
                continue
            if byte == 0x0A and after_cr:
                continue  # the LF of a CR LF pair
            if byte in b"\r\n":
                self._after_cr = byte == 0x0D
                line = self._line.decode("utf-8", "replace")
                self._line.clear()
                out += b"\r\n"
                break
            if byte in b"\x7f\x08":
                if self._line:
                    while self._line and self._line.pop() & 0xC0 == 0x80:
                        pass  # drop a whole UTF-8 character
                    out += b"\b \b"
            elif byte == 0x03:
                self._line.clear()
                out += b"^C\r\n"
                line = ""
                break
            elif byte == 0x04 and not self._line:
                del self._pending[:used]
                raise EOFError
            elif byte == 0x1B:
                self._escape = 1
            elif byte >= 0x20 and len(self._line) < MAX_LINE:
                self._line.append(byte)
                out.append(byte)
        del self._pending[:used]
        if echo and out:
            self.write(out.decode("utf-8", "replace"))
        elif out.endswith(b"\r\n") and self.echo:
            self.write("\n")  # a hidden line still ends on screen
        return line


def run_shell(shell: Shell, term: Terminal, stop: threading.Event) -> str:
    """Prompt, read, execute until the session ends; returns why: exit, closed, idle or killed."""
    while True:
        term.write(shell.prompt)
        idle = setting(shell.device, "idle_timeout_s") or None  # 0: no timeout
        try:
            line = term.readline(timeout=idle, stop=stop)
        except EOFError:
            return "killed" if stop.is_set() else "closed"  # a kill closes the channel under the reader
        if line is None:
            if stop.is_set():
                term.write("\nsession killed by an administrator\n")
                return "killed"
            term.write(f"\nidle timeout: no input for {idle:g} s, session closed\n")
            return "idle"
        if shell.session is not None:
            shell.session.touch()
        result = shell.execute(line)
        if result.output:
            term.write(result.output + "\n")
        if result.exit:
            return "exit"


def interactive(device: Any, user: str, source: str, term: Terminal, close: Callable[[], None]) -> str:
    """One registered shell session: refused past the session limit, audited when it ends."""
    try:
        session = device.sessions.open(user, source, close)
    except SessionLimitError as exc:
        device.audit.record("session_refused", user, source, "failure", str(exc))
        term.write(f"{exc}\n")
        return "refused"
    try:
        reason = run_shell(Shell(device, user, source, session), term, session.killed)
    finally:
        device.sessions.end(session.id)
    device.audit.record("logout", user, source, "success", reason)
    return reason
