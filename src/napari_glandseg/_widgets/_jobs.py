"""One background computation per widget: thread_worker + progress bars + cancel.

The engines report ``progress(done, total, message)`` from the worker thread and poll a
``threading.Event`` to stop. Qt widgets may only be touched from the GUI thread, so the
callback emits a Qt signal (queued across threads) and the slot updates both the widget's
own bar and a napari activity-dock bar.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from napari.qt.threading import create_worker
from napari.utils import cancelable_progress
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import Signal
from qtpy.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QVBoxLayout, QWidget

from napari_glandseg.errors import Cancelled, Progress

log = logging.getLogger(__name__)


class _ActivityBar(cancelable_progress):
    """A napari activity bar whose own cancel button sets the engine's cancel event."""

    def __init__(self, event: threading.Event, **kwargs: Any) -> None:
        self._event = event
        super().__init__(**kwargs)

    def cancel(self) -> None:
        super().cancel()
        self._event.set()


class JobPanel(QWidget):
    """Progress bar, status line and Cancel button; runs one job at a time.

    ``start(fn, on_done=...)`` runs ``fn(progress, cancel)`` in a napari worker.
    ``on_done(result)`` runs on the GUI thread; errors (``worker.errored``) become napari
    notifications, a cancelled run an info message: the worker is created with
    ``_ignore_errors=True``, so nothing it raises is re-raised into the event loop.
    """

    progressed = Signal(int, int, str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.bar = QProgressBar()
        self.bar.setRange(0, 1)
        self.bar.setValue(0)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop the run after the current tile/chunk (finished chunks stay on disk)")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        row = QHBoxLayout()
        row.addWidget(self.bar, 1)
        row.addWidget(self.cancel_button)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addLayout(row)
        lay.addWidget(self.status)
        self.progressed.connect(self._on_progress)
        self.worker: Any = None
        self._event: threading.Event | None = None
        self._pbar: _ActivityBar | None = None
        self._extra_progress: Progress | None = None
        #: The last exception a job raised (tests and callers read it; the user sees a notification).
        self.last_error: BaseException | None = None

    @property
    def busy(self) -> bool:
        return self.worker is not None

    def start(
        self,
        fn: Callable[[Progress, threading.Event], Any],
        *,
        description: str,
        on_done: Callable[[Any], None],
        on_progress: Progress | None = None,
        on_finally: Callable[[], None] | None = None,
    ) -> Any:
        """Start ``fn`` in a worker thread; returns the worker (or None when one is running)."""
        if self.busy:
            show_info("a run is already in progress: wait for it or press Cancel")
            return None
        self.last_error = None
        self._event = event = threading.Event()
        self._extra_progress = on_progress
        self._pbar = _ActivityBar(event, total=0, desc=description)
        self.bar.setRange(0, 0)  # busy indicator until the engine reports a total
        self.status.setText(description + "…")
        self.cancel_button.setEnabled(True)

        def report(done: int, total: int, message: str = "") -> None:
            # Called from the worker thread: a queued signal hands it to the GUI thread.
            self.progressed.emit(int(done), int(total), str(message))

        # _ignore_errors: napari would otherwise re-raise a job's exception in the GUI thread
        # (a traceback dialog, and a cancel shown as an error); errored reports it instead.
        worker = create_worker(fn, report, event, _start_thread=False, _ignore_errors=True)

        def errored(exc: BaseException) -> None:
            if isinstance(exc, Cancelled):
                self.status.setText(f"{description}: cancelled")
                show_info(f"{description}: cancelled")
            else:
                self._report_error(exc, description)

        def returned(result: Any) -> None:
            try:
                on_done(result)
            except Exception as exc:  # a bug in result handling must not kill napari
                self._report_error(exc, description)

        def finished() -> None:
            if self._pbar is not None:
                self._pbar.close()
            self._pbar, self.worker, self._event = None, None, None
            self.cancel_button.setEnabled(False)
            self.bar.setRange(0, 1)
            self.bar.setValue(1 if self.last_error is None else 0)
            if on_finally is not None:
                on_finally()

        worker.returned.connect(returned)
        worker.errored.connect(errored)
        worker.finished.connect(finished)
        self.worker = worker
        worker.start()
        return worker

    def cancel(self) -> None:
        """Ask the running engine to stop (it finishes the current chunk first)."""
        if self._event is not None:
            self._event.set()
            self.status.setText("cancelling…")

    def _on_progress(self, done: int, total: int, message: str) -> None:
        if total > 0:
            self.bar.setRange(0, total)
            self.bar.setValue(min(done, total))
        if message:
            self.status.setText(message)
        pbar = self._pbar  # a local: update() can run the event loop, where the job may finish
        if pbar is not None:
            if total > 0 and pbar.total != total:
                pbar.total = total
            pbar.n = min(done, total) if total > 0 else done
            pbar.update(0)  # emits the value event the activity dock listens to
            if message:
                pbar.set_description(message)
        if self._extra_progress is not None:
            self._extra_progress(done, total, message)

    def _report_error(self, exc: BaseException, description: str) -> None:
        self.last_error = exc
        log.error("%s failed", description, exc_info=exc)  # the traceback, for bug reports
        self.status.setText(f"{description} failed: {exc}")
        show_error(f"{description} failed: {exc}")
