"""SFTP on the device's SSH server (the "sftp" subsystem): the in-memory files of files.py, by role.

Reads and writes need the operation files.py names for the path (`file_upload` for /update,
`backup_transfer` for /backup, `audit_export` to read /log, `audit_clear` to overwrite /log/audit.log
where the audit is unprotected) and the shell's role table decides who has it (everyone, with
`role_enforcement` off). A refusal is SFTP "permission denied" and is audited like a shell refusal:
event permission_denied, outcome denied, detail "<op>: sftp <read|write|delete> <path>". A write to a
read-only file (the protected audit log) is refused the same way, detail "<path> is read-only".
Uploads (audited file_upload on close) and deletions (file_delete) are audited; reads are not.
Each file is at most files.MAX_FILE bytes; a write past it, or into a full device, fails (SFTP failure).
Renames, folders, links and attribute changes are not supported.
"""

from __future__ import annotations

import os
import posixpath
import stat
import threading
from typing import Any

import paramiko
from iec62443_harness.labs.simplc.files import MAX_FILE, FileError, needs, normalize
from paramiko.sftp import SFTP_FAILURE, SFTP_NO_SUCH_FILE, SFTP_OK, SFTP_OP_UNSUPPORTED, SFTP_PERMISSION_DENIED

_CODES = {"missing": SFTP_NO_SUCH_FILE, "denied": SFTP_PERMISSION_DENIED, "full": SFTP_FAILURE,
          "bad": SFTP_FAILURE}


def _attributes(name: str, size: int, mtime: float, folder: bool, writable: bool) -> paramiko.SFTPAttributes:
    attr = paramiko.SFTPAttributes()
    attr.filename = name
    attr.st_size = size
    attr.st_mtime = attr.st_atime = int(mtime)
    attr.st_uid = attr.st_gid = 0
    attr.st_mode = (stat.S_IFDIR | 0o755) if folder else (stat.S_IFREG | (0o644 if writable else 0o444))
    return attr


class _Handle(paramiko.SFTPHandle):
    def __init__(self, sftp: DeviceSFTP, path: str, flags: int, data: bytes | None) -> None:
        super().__init__(flags)
        self.sftp, self.path = sftp, path
        self.writing = data is None
        self.data = bytearray() if data is None else bytearray(data)
        self.failed = False
        self._lock = threading.Lock()

    def read(self, offset: int, length: int) -> bytes | int:
        with self._lock:
            return bytes(self.data[offset:offset + length])

    def write(self, offset: int, data: bytes) -> int:
        if not self.writing:
            return SFTP_PERMISSION_DENIED
        end = offset + len(data)
        if end > MAX_FILE:
            self.failed = True
            return SFTP_FAILURE
        with self._lock:
            if end > len(self.data):
                self.data.extend(bytes(end - len(self.data)))
            self.data[offset:end] = data
        return SFTP_OK

    def stat(self) -> paramiko.SFTPAttributes:
        return _attributes(posixpath.basename(self.path), len(self.data), 0, False, self.writing)

    def chattr(self, attr: paramiko.SFTPAttributes) -> int:
        return SFTP_OK  # paramiko's put() sets times/modes: accepted and ignored

    def close(self) -> None:
        if self.writing and not self.failed:
            self.sftp.commit(self.path, bytes(self.data))


class DeviceSFTP(paramiko.SFTPServerInterface):
    """One SFTP session of a logged-in user (`server` is the SSH connection's ServerInterface)."""

    def __init__(self, server: Any, device: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(server, *args, **kwargs)
        self.device = device
        self.user: str = server.user
        self.source = server.source.replace("ssh:", "sftp:", 1)

    # --- rights

    def _allowed(self, op: str | None) -> bool:
        from iec62443_harness.labs.simplc.shell import ROLE_OPERATIONS, setting

        if op is None or not setting(self.device, "role_enforcement"):
            return True
        role = self.device.accounts.role_of(self.user)
        return role is not None and op in ROLE_OPERATIONS[role]

    def _check(self, path: str, write: bool, verb: str) -> int | None:
        """None when the access may go ahead; else the SFTP error code (refusals audited)."""
        try:
            op = needs(path, write)
        except FileError as exc:
            return _CODES[exc.code]
        if not self._allowed(op):
            self.device.audit.record("permission_denied", self.user, self.source, "denied",
                                     f"{op}: sftp {verb} {path}")
            return SFTP_PERMISSION_DENIED
        return None

    # --- the interface paramiko calls

    def canonicalize(self, path: str) -> str:
        return normalize(path)

    def list_folder(self, path: str) -> list[paramiko.SFTPAttributes] | int:
        path = normalize(path)
        if not self.device.files.is_folder(path):
            return SFTP_NO_SUCH_FILE
        if path == "/log" and (refusal := self._check(path + "/audit.log", False, "list")):
            return refusal
        try:
            listing = self.device.files.list(path)
        except FileError as exc:
            return _CODES[exc.code]
        return [_attributes(name, size, mtime, path == "/", path in ("/update", "/backup"))
                for name, (size, mtime) in listing.items()]

    def stat(self, path: str) -> paramiko.SFTPAttributes | int:
        path = normalize(path)
        files = self.device.files
        if files.is_folder(path):
            return _attributes(posixpath.basename(path) or "/", 0, 0, True, False)
        try:
            if not self._allowed(needs(path, False)):
                return SFTP_PERMISSION_DENIED
            data = files.read(path)
        except FileError as exc:
            return _CODES[exc.code]
        return _attributes(posixpath.basename(path), len(data), 0, False, posixpath.dirname(path) != "/log")

    lstat = stat

    def open(self, path: str, flags: int, attr: paramiko.SFTPAttributes) -> paramiko.SFTPHandle | int:
        path = normalize(path)
        write = bool(flags & (os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC))
        if self.device.files.is_folder(path):
            return SFTP_FAILURE
        if refusal := self._check(path, write, "write" if write else "read"):
            return refusal
        files = self.device.files
        if write:
            try:
                files.check_write(path, 0)
            except FileError as exc:
                if exc.code == "denied":
                    self.device.audit.record("permission_denied", self.user, self.source, "denied", str(exc))
                return _CODES[exc.code]
            return _Handle(self, path, flags, None)
        try:
            return _Handle(self, path, flags, files.read(path))
        except FileError as exc:
            return _CODES[exc.code]

    def commit(self, path: str, data: bytes) -> None:
        try:
            self.device.files.write(path, data)
        except FileError as exc:
            self.device.audit.record("file_upload", self.user, self.source, "failure", str(exc))
            return
        self.device.audit.record("file_upload", self.user, self.source, "success", f"{path} ({len(data)} bytes)")

    def remove(self, path: str) -> int:
        path = normalize(path)
        if refusal := self._check(path, True, "delete"):
            return refusal
        try:
            self.device.files.remove(path)
        except FileError as exc:
            return SFTP_PERMISSION_DENIED if posixpath.dirname(path) == "/log" else _CODES[exc.code]
        self.device.audit.record("file_delete", self.user, self.source, "success", path)
        return SFTP_OK

    def rename(self, oldpath: str, newpath: str) -> int:
        return SFTP_OP_UNSUPPORTED

    posix_rename = rename

    def mkdir(self, path: str, attr: paramiko.SFTPAttributes) -> int:
        return SFTP_OP_UNSUPPORTED

    def rmdir(self, path: str) -> int:
        return SFTP_OP_UNSUPPORTED

    def chattr(self, path: str, attr: paramiko.SFTPAttributes) -> int:
        return SFTP_OK

    def symlink(self, target_path: str, path: str) -> int:
        return SFTP_OP_UNSUPPORTED

    def readlink(self, path: str) -> str | int:
        return SFTP_OP_UNSUPPORTED
