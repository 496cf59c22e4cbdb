"""Errors that tell the user which file or input is wrong and how."""

from __future__ import annotations

import os


class GlandsegError(ValueError):
    """A bad input: the message says what was expected."""


class SlideError(GlandsegError):
    """A slide file that cannot be opened or read; the message starts with its path."""

    def __init__(self, path: str | os.PathLike, problem: str):
        self.path = os.fspath(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class Cancelled(RuntimeError):
    """A long computation stopped because its cancel signal was set."""
