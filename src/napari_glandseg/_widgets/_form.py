"""Pieces shared by the magicgui forms (Segment, Export): the output folder field, the job panel."""

from __future__ import annotations

from magicgui.widgets import Container, FileEdit

from napari_glandseg._widgets._jobs import JobPanel


def folder_edit(tooltip: str) -> FileEdit:
    """The "Output folder" field: a folder, or None (left empty) for "next to the slide"."""
    edit = FileEdit(name="out_dir", label="Output folder", mode="d", nullable=True,
                    tooltip=f"{tooltip}; empty: next to the slide")
    edit.line_edit.native.setPlaceholderText("next to the slide")
    edit.choose_btn.text = "…"
    return edit


def attach_job_panel(form: Container) -> JobPanel:
    """A JobPanel (Qt: progress, status, Cancel) at the bottom of a form; fields added later stay above it."""
    panel = JobPanel(form.native)
    form.native.layout().addWidget(panel)
    return panel
