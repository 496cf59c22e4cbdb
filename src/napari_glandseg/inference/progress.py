"""Progress as plain lines, for logs and pipes (no terminal to draw a bar on).

``ProgressLog(desc)`` is a ``progress(done, total, message)`` callback. Each ``message`` is a
stage ("tiles", "chunks", "joining glands across chunk borders"); a line is printed when a
stage starts or ends and otherwise at most every ``every_s`` seconds, with done/total, the rate
since the stage started (in this session) and the time left at that rate:

    slide: tiles 130/410 (32 %), 4.1/s, ETA 1 min 08 s; chunks 3/12
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TextIO


@dataclass
class _Stage:
    t0: float
    done0: int
    done: int = 0
    total: int = 0


def format_seconds(s: float) -> str:
    """``42 s``, ``3 min 05 s``, ``2 h 04 min``."""
    s = max(0, int(round(s)))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


@dataclass
class ProgressLog:
    """A ``progress(done, total, message)`` callback writing a line every few seconds."""

    desc: str
    every_s: float = 5.0
    stream: TextIO = field(default_factory=lambda: sys.stderr)
    clock: Callable[[], float] = time.monotonic
    _stages: dict[str, _Stage] = field(default_factory=dict)
    _last: float = float("-inf")

    def __call__(self, done: int, total: int, message: str = "") -> None:
        now = self.clock()
        stage = self._stages.get(message)
        new = stage is None
        if new:
            stage = self._stages[message] = _Stage(now, done)
        stage.done, stage.total = done, total
        finished = total > 0 and done >= total
        if new or finished or now - self._last >= self.every_s:
            self._last = now
            print(self.line(message, now), file=self.stream, flush=True)

    def line(self, message: str, now: float) -> str:
        """The line for an update of ``message``: model tiles lead while chunks run (finer, and
        what the time goes to), with the chunk count after them."""
        segmenting = message in ("tiles", "chunks")
        name = "tiles" if segmenting and "tiles" in self._stages else message
        lead = self._stages[name]
        parts = [f"{name} {lead.done}/{lead.total}" + (f" ({100 * lead.done // lead.total} %)" if lead.total else "")]
        elapsed, gained = now - lead.t0, lead.done - lead.done0
        if elapsed > 0 and gained > 0:
            rate = gained / elapsed
            parts.append(f"{rate:.3g}/s")
            if lead.total > lead.done:
                parts.append(f"ETA {format_seconds((lead.total - lead.done) / rate)}")
        text = f"{self.desc}: " + ", ".join(parts)
        chunks = self._stages.get("chunks")
        if segmenting and name != "chunks" and chunks is not None:
            text += f"; chunks {chunks.done}/{chunks.total}"
        return text
