"""Another process that holds a folder's writer lock, for tests: ``with other_writer(folder): ...``.

Run as a script (``python _lock_holder.py FOLDER``) it takes the lock, prints "held" and waits.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def other_writer(folder: str | Path) -> Iterator[subprocess.Popen]:
    """A live process holding ``FolderLock(folder)`` for the duration of the block."""
    proc = subprocess.Popen([sys.executable, __file__, str(folder)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        yield proc
    finally:
        proc.kill()
        proc.wait()


def dead_pid() -> int:
    """The pid of a process that has exited."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


if __name__ == "__main__":
    from napari_glandseg._lock import FolderLock

    FolderLock(sys.argv[1], "a test holder").acquire()
    print("held", flush=True)
    time.sleep(120)
