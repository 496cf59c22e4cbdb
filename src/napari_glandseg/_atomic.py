"""Write files and folders so that a failure never leaves a half-written result.

Everything the user makes (exports, corrections, logs) goes through these helpers: the data
is written under a temporary name beside the target and renamed into place at the end.
``open_regular`` reads files others made without hanging on a FIFO.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from napari_glandseg.errors import GlandsegError


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, *, is_dir: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success rename it onto ``target``.

    On an exception the temporary file or folder is removed and ``target`` is untouched.
    A folder target that already exists is replaced only after the new one is complete.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    inner = tmp / target.name
    try:
        if is_dir:
            inner.mkdir()
        yield inner
        if is_dir and target.exists():
            old = tmp / "old"  # inside our own temporary folder: never a name someone else uses
            os.replace(target, old)
            os.replace(inner, target)
        else:
            os.chmod(inner, 0o644)  # tempfile-style 0600 would hide exports from other users
            os.replace(inner, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_text_atomic(target: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``target`` atomically (fsync'd before the rename)."""
    with atomic_path(target) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
    return Path(target)


def write_json_atomic(target: str | os.PathLike, obj: Any, *, indent: int = 2) -> Path:
    """Write ``obj`` as JSON to ``target`` atomically."""
    return write_text_atomic(target, json.dumps(obj, indent=indent, default=json_default) + "\n")


def append_jsonl(target: str | os.PathLike, record: dict) -> None:
    """Append one JSON record as a line and fsync: a log that survives a crash.

    A torn last line (power loss mid-write) is skipped by :func:`read_jsonl`; the record after
    it starts on a line of its own, so it is never glued onto the torn bytes.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(record, default=json_default) + "\n").encode("utf-8")
    with open(target, "ab+") as f:  # appends always go to the end; reading sees the last byte
        if f.seek(0, os.SEEK_END) > 0:
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                line = b"\n" + line
        f.write(line)
        f.flush()
        os.fsync(f.fileno())


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """Read a JSON-lines log written by :func:`append_jsonl`, skipping a torn last line."""
    path = Path(path)
    if not path.exists():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def open_regular(path: str | os.PathLike) -> BinaryIO:
    """Open a plain file for reading in binary; a FIFO, device or folder is refused at once
    (``GlandsegError``) instead of blocking forever. ``OSError`` for a missing file."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))  # a FIFO opens at once
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise GlandsegError(f"{path}: not a regular file")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_bounded(path: str | os.PathLike, max_bytes: int, what: str) -> bytes:
    """A small plain file's bytes (``what`` it should be, for the errors): missing, unreadable,
    not a plain file or larger than ``max_bytes`` are each a ``GlandsegError`` naming the file."""
    try:
        with open_regular(path) as f:  # a FIFO must not hang the caller
            raw = f.read(max_bytes + 1)
    except FileNotFoundError as exc:
        raise GlandsegError(f"{path}: missing; expected {what}") from exc
    except OSError as exc:
        raise GlandsegError(f"{path}: cannot read {what} ({exc.strerror or exc})") from exc
    except GlandsegError as exc:
        raise GlandsegError(f"{exc}; expected {what}") from exc
    if len(raw) > max_bytes:
        raise GlandsegError(f"{path}: larger than {max_bytes >> 20} MB; not {what}")
    return raw


def json_default(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
