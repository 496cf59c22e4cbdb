"""The command line's progress display, shared by every command."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def progress_bar(desc: str, unit: str = "chunk") -> Iterator[Any]:
    """A ``progress(done, total, message)`` callback: a tqdm bar on a terminal, else a line
    every few seconds (done/total, rate, ETA; ``inference.progress.ProgressLog``)."""
    if not sys.stdout.isatty():
        from napari_glandseg.inference.progress import ProgressLog

        yield ProgressLog(desc)
        return
    from tqdm import tqdm

    bar = tqdm(desc=desc, unit=unit, dynamic_ncols=True)

    chunks = []

    def update(done: int, total: int, message: str) -> None:
        if message == "tiles" and chunks:  # a whole-slide run: the model's tiles inside the chunk bar
            bar.set_postfix_str(f"tiles {done}/{total}")
            return
        if message == "chunks":
            chunks.append(done)
        if bar.total != total:
            bar.reset(total=total)
        bar.set_postfix_str(message, refresh=False)
        bar.n = done
        bar.refresh()

    try:
        yield update
    finally:
        bar.close()
