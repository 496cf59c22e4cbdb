"""One writer per output folder: a lock file beside the folder naming the process that writes.

``FolderLock(folder, purpose)`` creates ``.<folder name>.glandseg-lock`` next to ``folder`` (beside,
not inside, so that replacing or removing the folder keeps the lock). The file holds the pid,
host, process start time and purpose of its owner. A second writer, in another process or in
another thread of this one, gets a ``FolderLocked`` error that says who holds it. A lock left
by a process that is gone (same host, pid dead or reused) is stale and is taken over, with a
warning. The same thread may take a lock it holds again (nested calls of one task).
"""

from __future__ import annotations

import functools
import inspect
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from napari_glandseg.errors import GlandsegError

log = logging.getLogger(__name__)
SUFFIX = ".glandseg-lock"
F = TypeVar("F", bound=Callable[..., Any])

_registry_lock = threading.Lock()
_held: dict[str, dict[str, Any]] = {}  # lock file -> {"thread", "count", "purpose", "token"}


class FolderLocked(GlandsegError):
    """Another writer holds the folder's lock."""


def lock_file(folder: str | os.PathLike) -> Path:
    """Where the lock of ``folder`` lives: a hidden file beside it."""
    folder = Path(os.path.realpath(folder))  # one store reached by two paths (a symlink) has one lock
    return folder.with_name(f".{folder.name}{SUFFIX}")


def holder(folder: str | os.PathLike) -> dict[str, Any] | None:
    """The record of whoever holds ``folder``'s lock now (None: nobody, or a stale lock)."""
    info = _read(lock_file(folder))
    return None if info is None or _is_stale(info) else info


class FolderLock:
    """An exclusive writer lock on ``folder`` (a context manager)."""

    def __init__(self, folder: str | os.PathLike, purpose: str = "write") -> None:
        self.folder = Path(folder)
        self.path = lock_file(folder)
        self.purpose = purpose
        self._key = str(self.path)

    def acquire(self, wait_s: float = 0.0) -> FolderLock:
        """Take the lock or raise ``FolderLocked`` (``GlandsegError`` if it cannot be written).

        ``wait_s``: how long to keep trying while another writer holds it (short commits queue).
        """
        deadline = time.monotonic() + max(0.0, wait_s)
        while True:
            try:
                return self._acquire_once()
            except FolderLocked:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.05)

    def _acquire_once(self) -> FolderLock:
        with _registry_lock:
            mine = _held.get(self._key)
            if mine is not None:
                if mine["thread"] != threading.get_ident():
                    raise FolderLocked(
                        f"{self.folder}: in use by another task of this program ({mine['purpose']}); "
                        "wait for it to finish"
                    )
                mine["count"] += 1
                return self
            token = self._create()
            _held[self._key] = {"thread": threading.get_ident(), "count": 1, "purpose": self.purpose,
                                "token": token}
        return self

    def release(self) -> None:
        with _registry_lock:
            mine = _held.get(self._key)
            if mine is None or mine["thread"] != threading.get_ident():
                return
            mine["count"] -= 1
            if mine["count"] > 0:
                return
            del _held[self._key]
            info = _read(self.path)
            if info is not None and info.get("token") == mine["token"]:
                try:
                    self.path.unlink()
                except FileNotFoundError:
                    pass

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    # -- the file --------------------------------------------------------------------------------

    def _create(self) -> str:
        record = {"pid": os.getpid(), "host": socket.gethostname(), "start": _start_time(os.getpid()),
                  "purpose": self.purpose, "since": time.strftime("%Y-%m-%dT%H:%M:%S"),
                  "token": uuid.uuid4().hex}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise GlandsegError(f"{self.folder}: cannot create the folder ({exc.strerror or exc})") from exc
        for _ in range(3):
            if self._link(record):
                return record["token"]
            info = _read(self.path)
            if info is None and self._young():
                break  # another process is writing its lock file this instant
            if info is not None and not _is_stale(info):
                raise FolderLocked(_message(self.folder, self.path, info))
            self._break_stale(info)
        raise FolderLocked(f"{self.folder}: another writer is taking the lock {self.path}; try again")

    def _link(self, record: dict[str, Any]) -> bool:
        """Write the record under a temporary name and hard-link it into place (atomic, exclusive)."""
        tmp = self.path.with_name(f"{self.path.name}.{record['token']}.tmp")
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(record, f)
                f.flush()
                os.fsync(f.fileno())
            try:
                os.link(tmp, self.path)
            except FileExistsError:
                return False
            except OSError:  # file systems without hard links: exclusive create instead
                try:
                    fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
                except FileExistsError:
                    return False
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    json.dump(record, f)
            return True
        except OSError as exc:
            raise GlandsegError(
                f"{self.folder}: cannot write the lock file {self.path} ({exc.strerror or exc})"
            ) from exc
        finally:
            try:
                tmp.unlink(missing_ok=True)
            except OSError:  # a read-only file system refuses even to unlink what is not there
                pass

    def _young(self) -> bool:
        try:
            return time.time() - self.path.stat().st_mtime < 5.0
        except OSError:
            return False

    def _break_stale(self, info: dict[str, Any] | None) -> None:
        """Move a stale lock aside and remove it, unless it changed hands meanwhile."""
        aside = self.path.with_name(f"{self.path.name}.stale-{uuid.uuid4().hex}")
        try:
            os.replace(self.path, aside)
        except FileNotFoundError:
            return
        now = _read(aside)
        if info is not None and now is not None and now.get("token") != info.get("token"):
            try:  # a live lock was taken between the check and the move: put it back
                os.link(aside, self.path)
            except OSError:
                pass
        else:
            who = "unreadable" if info is None else f"pid {info.get('pid')} on {info.get('host')}"
            log.warning("%s: removed a stale lock (%s, no longer running)", self.folder, who)
        aside.unlink(missing_ok=True)


def locked(arg: str, purpose: str) -> Callable[[F], F]:
    """Decorator: hold ``FolderLock(<argument named arg>, purpose)`` while the function runs."""

    def wrap(fn: F) -> F:
        sig = inspect.signature(fn)

        @functools.wraps(fn)
        def inner(*args: Any, **kwargs: Any) -> Any:
            folder = sig.bind_partial(*args, **kwargs).arguments[arg]
            with FolderLock(folder, purpose):
                return fn(*args, **kwargs)

        return inner  # type: ignore[return-value]

    return wrap


def _message(folder: Path, path: Path, info: dict[str, Any]) -> str:
    return (
        f"{folder}: in use by another writer ({info.get('purpose', '?')}, pid {info.get('pid')} on host "
        f"{info.get('host')}, since {info.get('since')}). Wait for it to finish; if it is no longer "
        f"running, remove {path}"
    )


def _read(path: Path) -> dict[str, Any] | None:
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def _is_stale(info: dict[str, Any]) -> bool:
    """True when the lock's owner ran on this host and is gone (pid dead, or reused)."""
    if info.get("host") != socket.gethostname():
        return False  # cannot tell: the owner's machine is not this one
    pid = info.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return True
    if pid == os.getpid():
        with_token = {h["token"] for h in _held.values()}
        return info.get("token") not in with_token
    if not pid_alive(pid):
        return True
    start = info.get("start")
    return start is not None and _start_time(pid) not in (None, start)


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid runs on this host (another user's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, another user's
    return True


def _start_time(pid: int) -> int | None:
    """The process's start time (clock ticks after boot, Linux); tells a reused pid apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None
