"""Errors that tell the user which file or input is wrong and how."""

from __future__ import annotations

import os
from collections.abc import Callable


class GlandsegError(ValueError):
    """A bad input: the message says what was expected."""


class SlideError(GlandsegError):
    """A slide file that cannot be opened or read; the message starts with its path."""

    def __init__(self, path: str | os.PathLike, problem: str):
        self.path = os.fspath(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


#: µm/px an image or model may have: 0.01 is beyond any microscope, 100 a thumbnail with no glands to see
MPP_RANGE = (0.01, 100.0)


def check_mpp(value: object, what: str) -> float:
    """``value`` as a µm/px in ``MPP_RANGE``, else a ``GlandsegError`` naming ``what`` (an option, a file)."""
    lo, hi = MPP_RANGE
    try:
        ok = isinstance(value, int | float) and not isinstance(value, bool) and lo <= float(value) <= hi
    except OverflowError:  # an integer of hundreds of digits
        ok = False
    if not ok:
        raise GlandsegError(f"{what} must be a µm/px in [{lo:g}, {hi:g}], got {value!r}")
    return float(value)


#: ``progress(done, total, message)``: how every long computation reports (the GUI shows a napari
#: progress bar, the CLI a line); with a cancel signal (``threading.Event``) that raises ``Cancelled``.
Progress = Callable[[int, int, str], None]


class Cancelled(RuntimeError):
    """A long computation stopped because its cancel signal was set."""
