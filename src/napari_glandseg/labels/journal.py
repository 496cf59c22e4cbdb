"""The correction journal of a label store: numbered patches and the reviewed-regions log.

``glandseg_reviews/`` holds one ``NNNNNN.npz`` patch per commit (NNNNNN is the commit's sequence
number: later commits have larger ones) and ``reviewed.jsonl``, one JSON line per applied
commit. A line cut short (power loss, a full disk) or damaged is moved to
``reviewed.jsonl.damaged`` when the store is repaired, and the log keeps only whole records;
temporary files left by a killed write are removed. What is in the log is applied; a patch
without a log line is pending and is replayed in sequence order.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from napari_glandseg._atomic import write_text_atomic

log = logging.getLogger(__name__)

REVIEW_LOG = "reviewed.jsonl"
DAMAGED = REVIEW_LOG + ".damaged"


def patch_seq(name: str | None) -> int:
    """The sequence number of a patch file name (``000012.npz`` → 12; -1 if it has none)."""
    stem = Path(str(name or "")).stem
    return int(stem) if stem.isdigit() else -1


def patch_files(folder: Path) -> list[Path]:
    """The numbered patches in ``folder``, oldest commit first."""
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.glob("*.npz") if patch_seq(p.name) >= 0), key=lambda p: patch_seq(p.name))


def next_patch_name(folder: Path) -> str:
    """The file name of the next commit's patch: one past the largest sequence number."""
    last = max((patch_seq(p.name) for p in patch_files(folder)), default=-1)
    return f"{last + 1:06d}.npz"


def read_log(folder: Path) -> list[dict[str, Any]]:
    """The whole records of the log, one per patch, in commit order (damaged lines skipped)."""
    records, _ = _parse(_raw(folder / REVIEW_LOG))
    seen: set[Any] = set()
    out = []
    for rec in records:
        key = rec.get("patch")
        if key is not None and key in seen:
            continue  # a patch logged twice (a replay of an older version): the first counts
        seen.add(key)
        out.append(rec)
    return sorted(out, key=lambda r: r.get("seq", patch_seq(r.get("patch"))))


def pending(folder: Path) -> list[Path]:
    """Patches saved but not (yet) logged: commits cut off before they finished."""
    logged = {r.get("patch") for r in read_log(folder)}
    return [p for p in patch_files(folder) if p.name not in logged]


def needs_repair(folder: Path) -> bool:
    """True when temporary files, a damaged log or pending patches are there to deal with."""
    if not folder.is_dir():
        return False
    if any(folder.glob("*.tmp")):
        return True
    raw = _raw(folder / REVIEW_LOG)
    if raw and (not raw.endswith(b"\n") or _parse(raw)[1]):
        return True
    return bool(pending(folder))


def clean_tmp(folder: Path) -> int:
    """Remove the temporary files and folders a killed write left; returns how many."""
    n = 0
    for p in list(folder.glob("*.tmp")) if folder.is_dir() else []:
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        n += 1
    return n


def heal_log(folder: Path) -> int:
    """Keep only whole records in the log; damaged bytes go to ``reviewed.jsonl.damaged``.

    Returns the number of damaged lines moved aside. The log is rewritten atomically, after the
    damaged bytes are safely on disk.
    """
    path = folder / REVIEW_LOG
    raw = _raw(path)
    if not raw:
        return 0
    records, damaged = _parse(raw)
    if not damaged and raw.endswith(b"\n"):
        return 0
    if damaged:
        with open(folder / DAMAGED, "ab") as f:
            for piece in damaged:
                f.write(piece + b"\n")
            f.flush()
            os.fsync(f.fileno())
        log.warning("%s: %d damaged line(s) moved to %s", path, len(damaged), DAMAGED)
    write_text_atomic(path, "".join(json.dumps(r) + "\n" for r in records))
    return len(damaged)


def _raw(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return b""


def _parse(raw: bytes) -> tuple[list[dict[str, Any]], list[bytes]]:
    """(whole records, damaged pieces) of log bytes.

    A record glued behind a torn fragment (a line appended after a cut-off write, by older
    versions) is recovered; the fragment counts as damaged.
    """
    records, damaged = [], []
    for line in raw.split(b"\n"):
        if not line.strip():
            continue
        rec, junk = _record_in(line)
        if rec is not None:
            records.append(rec)
        if junk:
            damaged.append(junk)
    return records, damaged


def _record_in(line: bytes) -> tuple[dict[str, Any] | None, bytes]:
    """The review record (a JSON object with ``bounds``) that ``line`` is, or ends with, and the
    bytes before it."""
    start = 0
    while start >= 0:
        try:
            rec = json.loads(line[start:].decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            rec = None
        if isinstance(rec, dict) and "bounds" in rec:
            return rec, line[:start]
        start = line.find(b"{", start + 1)
    return None, line
