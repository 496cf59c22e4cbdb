"""Helpers of the widget tests that run jobs: a tiny user model's name and training settings, and
waiting for a widget's job."""

from __future__ import annotations

#: A tiny user model for fine-tuning tests (``models_dir`` fixture), and engine settings for it:
#: 64-px crops, fp32, one thread.
TINY_BASE = "tiny-base"
TINY_TRAINING = {"crop_px": 64, "batch_size": 2, "amp": False, "threads": 1, "device": "cpu"}


def wait_job(qtbot, widget, worker, timeout=300_000):
    """Wait for a widget's job to finish and check it did not fail."""
    assert worker is not None, "the job did not start (see notifications)"
    qtbot.waitUntil(lambda: not widget.jobs.busy, timeout=timeout)
    assert widget.jobs.last_error is None, repr(widget.jobs.last_error)
