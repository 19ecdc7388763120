"""The device's own small filesystem, held in memory, as SFTP and the shell see it.

    /update/            uploads: firmware images and scripts (write, read, delete)
    /backup/            configuration backups (`backup create` writes here; read, write, delete)
    /log/audit.log      the audit log, one JSON object a line (the `audit export --json` records); read-only
                        unless the profile leaves the audit unprotected (`audit_protected: false`)
    /log/audit.log.1    the previous log after an `audit rotate` (read-only the same way)

Who may do what (the operation each access needs; the shell's role table decides who has it):
/update `file_upload`, /backup `backup_transfer`, reading /log `audit_export`, writing /log/audit.log
`audit_clear` and only where the audit is unprotected. Listing `/` and the three folders needs no right.

Bounds: MAX_FILE bytes a file, MAX_FILES files a folder, MAX_TOTAL bytes in all: a full device refuses the
write (an SFTP failure), it never grows without limit. Nothing here touches the disk, so a killed device
leaves no backup (with its password hashes) behind.
"""

from __future__ import annotations

import posixpath
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

MAX_FILE = 16 << 20
MAX_FILES = 32
MAX_TOTAL = 64 << 20
FOLDERS = ("/update", "/backup", "/log")
AUDIT_LOG, AUDIT_ROTATED = "/log/audit.log", "/log/audit.log.1"


class FileError(Exception):
    """A refused file operation; `code` is "missing", "denied", "full" or "bad", the message one line."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class Entry:
    data: bytes
    mtime: float = field(default_factory=time.time)


def normalize(path: str) -> str:
    """An absolute, normalized path ("update/x" and "/update/../update/x" both give "/update/x")."""
    return posixpath.normpath("/" + path.lstrip("/")) if path not in ("", ".") else "/"


def needs(path: str, write: bool) -> str | None:
    """The operation an access to `path` needs (None: none); FileError("missing") for a path not here."""
    path = normalize(path)
    if path == "/" or (path in FOLDERS and not write):
        return None
    folder = posixpath.dirname(path)
    if folder == "/update":
        return "file_upload"
    if folder == "/backup":
        return "backup_transfer"
    if path in (AUDIT_LOG, AUDIT_ROTATED):
        return "audit_clear" if write else "audit_export"
    raise FileError("missing", f"no such file or folder {path}")


class DeviceFiles:
    """/update and /backup in memory; /log is a view the device supplies (`log_reader`, `log_writer`)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._files: dict[str, Entry] = {}
        self.log_reader: Callable[[str], bytes | None] = lambda path: None  # AUDIT_LOG, AUDIT_ROTATED
        self.log_writer: Callable[[bytes], None] | None = None  # None: the log is read-only

    def list(self, folder: str) -> dict[str, tuple[int, float]]:
        """name -> (size, mtime) of the files in `folder` ("/" lists the folders, size 0)."""
        folder = normalize(folder)
        if folder == "/":
            return {name.lstrip("/"): (0, time.time()) for name in FOLDERS}
        if folder == "/log":
            out = {}
            for path in (AUDIT_LOG, AUDIT_ROTATED):
                data = self.log_reader(path)
                if data is not None:
                    out[posixpath.basename(path)] = (len(data), time.time())
            return out
        if folder not in FOLDERS:
            raise FileError("missing", f"no such folder {folder}")
        with self._lock:
            return {posixpath.basename(p): (len(e.data), e.mtime) for p, e in sorted(self._files.items())
                    if posixpath.dirname(p) == folder}

    def is_folder(self, path: str) -> bool:
        return normalize(path) in ("/", *FOLDERS)

    def read(self, path: str) -> bytes:
        path = normalize(path)
        if posixpath.dirname(path) == "/log":
            data = self.log_reader(path)
            if data is None:
                raise FileError("missing", f"no such file {path}")
            return data
        with self._lock:
            entry = self._files.get(path)
        if entry is None:
            raise FileError("missing", f"no such file {path}")
        return entry.data

    def exists(self, path: str) -> bool:
        try:
            self.read(path)
        except FileError:
            return False
        return True

    def check_write(self, path: str, size: int) -> None:
        """Raise FileError unless `size` bytes may be stored at `path` now."""
        path = normalize(path)
        folder = posixpath.dirname(path)
        if path == AUDIT_LOG:
            if self.log_writer is None:
                raise FileError("denied", f"{path} is read-only")
        elif folder not in ("/update", "/backup") or path in FOLDERS:
            raise FileError("denied" if folder == "/log" else "missing", f"cannot write {path}")
        if size > MAX_FILE:
            raise FileError("full", f"{path}: a file holds at most {MAX_FILE >> 20} MiB")
        with self._lock:
            in_folder = [p for p in self._files if posixpath.dirname(p) == folder]
            if path not in self._files and len(in_folder) >= MAX_FILES:
                raise FileError("full", f"{folder} holds at most {MAX_FILES} files: delete some")
            total = sum(len(e.data) for p, e in self._files.items() if p != path)
        if total + size > MAX_TOTAL:
            raise FileError("full", f"device storage full ({MAX_TOTAL >> 20} MiB): delete some files")

    def write(self, path: str, data: bytes) -> None:
        path = normalize(path)
        self.check_write(path, len(data))
        if path == AUDIT_LOG:
            assert self.log_writer is not None
            self.log_writer(data)
            return
        with self._lock:
            self._files[path] = Entry(bytes(data))

    def remove(self, path: str) -> None:
        path = normalize(path)
        with self._lock:
            if path not in self._files:
                raise FileError("missing", f"no such file {path}")
            del self._files[path]

    def clear(self, folder: str) -> int:
        """Delete every file in `folder`; how many there were."""
        with self._lock:
            gone = [p for p in self._files if posixpath.dirname(p) == folder]
            for path in gone:
                del self._files[path]
        return len(gone)
