"""The job panel: a real napari thread_worker, progress from the worker thread, cancel, errors."""

from __future__ import annotations

import time

import pytest
from napari.utils.notifications import notification_manager

from napari_glandseg._widgets._jobs import JobPanel
from napari_glandseg.errors import Cancelled

pytestmark = pytest.mark.gui


@pytest.fixture
def notes():
    """Messages of napari notifications shown during the test."""
    seen: list[str] = []
    notification_manager.notification_ready.connect(lambda n: seen.append(str(n.message)))
    yield seen


def test_progress_and_result(qtbot, notes):
    panel = JobPanel()
    qtbot.addWidget(panel)
    got = []

    def work(progress, cancel):
        for i in range(5):
            progress(i + 1, 5, f"tile {i + 1}/5")
        return 42

    panel.start(work, description="test run", on_done=got.append)
    qtbot.waitUntil(lambda: not panel.busy, timeout=10_000)
    assert got == [42]
    assert panel.bar.maximum() == 1 and panel.bar.value() == 1
    assert panel.last_error is None


def test_cancel_sets_the_engine_event(qtbot, notes):
    panel = JobPanel()
    qtbot.addWidget(panel)
    started = []

    def work(progress, cancel):
        started.append(True)
        while not cancel.is_set():
            time.sleep(0.01)
        raise Cancelled("stopped")

    panel.start(work, description="slow run", on_done=lambda r: None)
    qtbot.waitUntil(lambda: bool(started), timeout=5000)
    assert panel.cancel_button.isEnabled()
    panel.cancel_button.click()
    qtbot.waitUntil(lambda: not panel.busy, timeout=5000)
    assert "cancelled" in panel.status.text()
    assert not panel.cancel_button.isEnabled()


def test_engine_error_becomes_a_notification(qtbot, notes):
    panel = JobPanel()
    qtbot.addWidget(panel)

    def work(progress, cancel):
        raise ValueError("slide.svs: broken tile at (3, 4)")

    panel.start(work, description="failing run", on_done=lambda r: None)
    qtbot.waitUntil(lambda: not panel.busy, timeout=5000)
    assert isinstance(panel.last_error, ValueError)
    assert any("broken tile" in n for n in notes)


def test_one_run_at_a_time(qtbot, notes):
    panel = JobPanel()
    qtbot.addWidget(panel)

    def work(progress, cancel):
        cancel.wait(5)
        return 1

    assert panel.start(work, description="first", on_done=lambda r: None) is not None
    assert panel.start(work, description="second", on_done=lambda r: None) is None
    panel.cancel()
    qtbot.waitUntil(lambda: not panel.busy, timeout=5000)
