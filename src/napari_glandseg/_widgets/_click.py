"""Click gland: click (or drag a squiggle) on a gland layer and the guided model outlines it.

A click on background adds the gland found there as a new label; a click on a gland redraws it
(label kept). A second click fixes the first: Shift- or Alt-click on the wrong part of the gland
just outlined cuts it off ("not this"), Ctrl-click on a part it missed adds it ("this too"); both
refine that same gland from its current outline (label kept). Shift- or Alt-click anywhere else
marks "not this" points, used by the next click and dropped when its result arrives. Each click reads only a window of the slide around it at the model's
µm/px (``segment_gland_on_slide``) in a background thread, so it works at any zoom on a whole
slide; clicks made while one runs wait in a queue. Each result is one ``data_setitem`` (one
napari undo step) and goes into the label store with the next Commit, like every other edit.
The mode puts the layer in napari's "pick" mode: a drag draws instead of panning and the
viewer's Alt-drag zoom box stays off; the wheel still zooms and holding Space pans (pan_zoom
pauses the mode; any other napari tool ends it).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.layers import Labels, Points
from napari.qt.threading import create_worker
from napari.utils.notifications import show_error
from qtpy.QtWidgets import QCheckBox, QLabel, QVBoxLayout, QWidget

from napari_glandseg._widgets._slides import SlideRef
from napari_glandseg._widgets._tools import apply_new_labels
from napari_glandseg.interactive import GlandWindow, segment_gland_on_slide
from napari_glandseg.interactive.edit import gland_under, gland_window, place_gland
from napari_glandseg.labels import layer_meta as lm
from napari_glandseg.slide.placement import GridPlacement

if TYPE_CHECKING:
    import napari

MODE = "pick"  # napari Labels mode while clicking: no pan on drag, no Alt zoom box
MARKS_LAYER = "click guidance"
EXCLUDE_MODIFIERS = ("Shift", "Alt")
INCLUDE_MODIFIERS = ("Control", "Meta")  # Ctrl (Cmd on a Mac): "this too" for the gland just outlined
SQUIGGLE_STEP_PX = 6  # canvas pixels between recorded squiggle points
MAX_QUEUED = 8
HELP = "click gland: click or drag on a gland; Shift/Alt-click: not this; Ctrl-click: this too; Ctrl+Z: undo"


@dataclass
class ClickRequest:
    """One click or squiggle, captured on the GUI thread (points in the layer's grid px)."""

    layer: Labels
    include: np.ndarray
    exclude: np.ndarray
    slide: SlideRef
    grid: GridPlacement
    started: float = field(default_factory=time.perf_counter)
    clicks: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))  # "this too" (grid px)
    label: int | None = None  # refining: the gland redrawn
    previous: GlandWindow | None = None  # refining: its outline when the request starts (level-0 px)


def layer_grid(layer: Labels) -> tuple[GridPlacement, SlideRef] | None:
    """The layer's placement on its slide and the slide (None: not a gland layer on a slide)."""
    meta = lm.read(layer.metadata)
    if meta is None or not meta.slide_path:
        return None
    ref = SlideRef(path=meta.slide_path, name=meta.slide_name, mpp=meta.slide_mpp, shape=meta.slide_shape)
    return meta.placement.with_shape(layer.data.shape[-2:]), ref


def run_request(req: ClickRequest, model: Any) -> GlandWindow:
    """The guided model on the window around the request (worker thread; no Qt)."""
    return segment_gland_on_slide(req.slide.open(), req.grid.to_level0(req.include),
                                  req.grid.to_level0(req.exclude), model=model,
                                  clicks=req.grid.to_level0(req.clicks), previous=req.previous)


class ClickGland(QWidget):
    """The "Click gland" switch of the Correct widget, and the mode's clicks and model runs.

    ``model``: the guided model (default: the bundled ``glandseg_guided``); ``editable()``
    returns the active layer when the tools may edit it (else reports why, returns None);
    ``on_edit(layer)`` runs after each result is drawn.
    """

    def __init__(self, viewer: napari.viewer.Viewer, *, editable: Callable[[], Labels | None],
                 key: str, model: Any = None, on_edit: Callable[[Labels], None] | None = None) -> None:
        super().__init__()
        self.viewer, self.model, self._editable, self._on_edit = viewer, model, editable, on_edit
        self.layer: Labels | None = None  # the layer in click mode
        self.exclude: list[tuple[float, float]] = []  # grid px of self.layer
        self._queue: deque[ClickRequest] = deque()
        self._running: ClickRequest | None = None
        self._worker: Any = None
        self.last_latency_s: float | None = None
        self.last_found: GlandWindow | None = None
        self.last_label: int | None = None  # the gland the last result drew: what a refining click fixes
        self.last_error: BaseException | None = None

        self.checkbox = QCheckBox("Click gland")
        self.checkbox.setToolTip(
            f"Click inside a missed gland to add it, inside a gland to redraw it (its label kept); drag for a "
            f"squiggle. To fix the gland just outlined: Shift- or Alt-click its wrong part ('not this'), "
            f"Ctrl-click a part it missed ('this too'). Shift-click elsewhere marks 'not this' for the next "
            f"click. Ctrl+Z undoes. [{key}]")
        self.status = QLabel("")
        self.status.setWordWrap(True)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.checkbox)
        lay.addWidget(self.status)
        self.checkbox.toggled.connect(self._on_toggled)
        viewer.layers.events.removed.connect(self._on_removed)

    # ------------------------------------------------------------------- mode
    @property
    def busy(self) -> bool:
        """A click is running or waiting."""
        return self._running is not None or bool(self._queue)

    def toggle(self, layer: Labels | None = None) -> bool:
        """Switch the mode on the active layer (off if it is on there); True when now on."""
        if self.layer is not None and (layer is None or layer is self.layer):
            self.disable()
            return False
        return self.enable()

    def enable(self) -> bool:
        """Click mode on the active gland layer (which must be editable and placed on a slide)."""
        layer = self._editable()
        if layer is None:
            self._set_checked(False)
            return False
        if layer_grid(layer) is None:
            show_error(f"{layer.name}: not a gland layer on a slide opened with napari-glandseg; click gland needs one")
            self._set_checked(False)
            return False
        self.disable()
        self.layer = layer
        layer.mode = MODE
        layer.help = HELP
        layer.mouse_drag_callbacks.append(self._mouse)
        layer.events.mode.connect(self._on_mode)
        self._set_checked(True)
        self._say(f"click gland on {layer.name}")
        return True

    def disable(self) -> None:
        """Leave click mode (exclusion points are dropped; running clicks still finish)."""
        layer, self.layer = self.layer, None
        self.exclude = []
        self.last_label = None
        self._set_checked(False)
        if MARKS_LAYER in self.viewer.layers:
            self.viewer.layers.remove(MARKS_LAYER)
        if layer is None:
            return
        layer.events.mode.disconnect(self._on_mode)
        if self._mouse in layer.mouse_drag_callbacks:
            layer.mouse_drag_callbacks.remove(self._mouse)
        if layer.help == HELP:
            layer.help = ""
        if layer.mode == MODE:
            layer.mode = "pan_zoom"

    def _set_checked(self, on: bool) -> None:
        self.checkbox.blockSignals(True)
        self.checkbox.setChecked(on)
        self.checkbox.blockSignals(False)

    def _on_toggled(self, on: bool) -> None:
        if on:
            self.enable()
        else:
            self.disable()

    def _on_mode(self, event: Any) -> None:
        # pan_zoom pauses the mode (napari's hold-Space-to-pan comes back to it); another tool ends it
        if self.layer is not None and self.layer.mode not in (MODE, "pan_zoom"):
            self.disable()

    def _on_removed(self, event: Any) -> None:
        if event.value is self.layer:
            self.disable()

    # ----------------------------------------------------------------- clicks
    def _mouse(self, layer: Labels, event: Any):
        """Press: a click (or, with Shift/Alt, an exclusion); drag: a squiggle; release: run."""
        if event.type != "mouse_press" or event.button in (2, 3) or layer.mode != MODE:
            return
        if any(m in event.modifiers for m in EXCLUDE_MODIFIERS):
            if not self.refine(event.position, inside=False):
                self.add_exclusion(event.position)
            return
        if any(m in event.modifiers for m in INCLUDE_MODIFIERS):
            self.refine(event.position, inside=True)
            return
        points, last = [event.position], np.asarray(event.pos, float)
        yield
        while event.type == "mouse_move":
            if np.hypot(*(np.asarray(event.pos, float) - last)) >= SQUIGGLE_STEP_PX:
                points.append(event.position)
                last = np.asarray(event.pos, float)
            yield
        self.segment(points)

    def _to_grid(self, world_points: Any) -> np.ndarray:
        assert self.layer is not None
        return np.array([np.asarray(self.layer.world_to_data(p), float)[-2:] for p in world_points]).reshape(-1, 2)

    def add_exclusion(self, world_point: Any) -> None:
        """Mark a "not this" point (world coordinates) for the next click."""
        if self.layer is None:
            return
        y, x = self._to_grid([world_point])[0]
        self.exclude.append((float(y), float(x)))
        self._show_marks()
        self._say(f"{len(self.exclude)} 'not this' point(s) for the next click")

    def refine(self, world_point: Any, *, inside: bool) -> bool:
        """Fix the gland the last result drew with one click (world coordinates): ``inside``
        True, "this too" at the point; False, "not this" — only when the point is on that gland.
        False when the click is not a fix (a "not this" click is then kept for the next click)."""
        layer = self.layer
        placed = None if layer is None else layer_grid(layer)
        if layer is None or placed is None:
            return False
        grid, ref = placed
        point = self._to_grid([world_point])
        label = self.last_label
        if label is None or (not inside and gland_under(layer.data, point) != label):
            if inside:
                self._say("Ctrl-click adds a missed part to the gland just outlined: click a gland first")
            return False
        none = np.zeros((0, 2))
        return self._enqueue(ClickRequest(layer, none, none if inside else point, ref, grid,
                                          clicks=point if inside else none, label=label))

    def segment(self, world_points: Any) -> bool:
        """Outline the gland at these world points (one: a click, several: a squiggle).

        Returns False when the click is refused (no layer in click mode, too many waiting).
        """
        layer = self.layer
        placed = None if layer is None else layer_grid(layer)
        if layer is None or placed is None:
            self._say("click gland is off")
            return False
        grid, ref = placed
        return self._enqueue(ClickRequest(layer, self._to_grid(world_points), np.array(self.exclude, float).reshape(-1, 2),
                                          ref, grid))

    def _enqueue(self, req: ClickRequest) -> bool:
        if len(self._queue) >= MAX_QUEUED:
            self._say(f"busy: {len(self._queue)} clicks are waiting; this one is ignored")
            return False
        self._queue.append(req)
        self._show_marks()
        if self._running is not None:
            self._say(f"busy: click queued ({len(self._queue)} waiting)")
        self._start_next()
        return True

    # ------------------------------------------------------------ model runs
    def _start_next(self) -> None:
        if self._running is not None or not self._queue:
            return
        req = self._running = self._queue.popleft()
        if req.label is not None:  # the outline as it is now, after any earlier result was drawn
            req.previous = gland_window(req.layer.data, req.label, req.grid)
            if req.previous is None:
                self._running = None
                self._say(f"gland {req.label} is gone: nothing to fix")
                self._start_next()
                return
        self._say("outlining the gland…")
        worker = create_worker(run_request, req, self.model, _start_thread=False, _ignore_errors=True)
        worker.returned.connect(lambda found: self._done(req, found))
        worker.errored.connect(lambda exc: self._failed(exc))
        worker.finished.connect(self._finished)
        self._worker = worker
        worker.start()

    def _finished(self) -> None:
        self._running, self._worker = None, None
        self._show_marks()
        self._start_next()

    def _failed(self, exc: BaseException) -> None:
        self.last_error = exc
        self._say(f"click gland failed: {exc}")
        show_error(f"click gland failed: {exc}")

    def _done(self, req: ClickRequest, found: GlandWindow) -> None:
        """Draw the result on the layer (GUI thread): one undo step."""
        self.last_found = found
        layer = req.layer
        if layer not in self.viewer.layers or tuple(layer.data.shape[-2:]) != req.grid.shape:
            self._say("click gland: the layer changed or was closed; result dropped")
            return
        try:
            edit = place_gland(layer.data, found, req.grid, req.include, req.exclude, label=req.label,
                               grow_only=req.label is not None and len(req.clicks) > 0)
            if edit is None:
                self._say("no gland found there (try a squiggle, or fewer 'not this' points)")
                return
            apply_new_labels(layer, edit.new, edit.window)
        except Exception as exc:  # a bad result must not take napari down
            self._failed(exc)
            return
        layer.selected_label = edit.label  # the brush continues on this gland
        self.last_label = edit.label if layer is self.layer else self.last_label
        used = {tuple(p) for p in req.exclude.tolist()}
        if layer is self.layer:
            self.exclude = [p for p in self.exclude if p not in used]
        self.last_latency_s = time.perf_counter() - req.started
        verb = "added" if edit.added else "refined" if req.label is not None else "redrawn"
        self._say(f"gland {edit.label} {verb} in {self.last_latency_s:.2f} s (Ctrl+Z undoes)")
        if self._on_edit is not None:
            self._on_edit(layer)

    # ------------------------------------------------------------- feedback
    def _say(self, text: str) -> None:
        self.status.setText(text)
        self.viewer.status = text

    def _show_marks(self) -> None:
        """Show the exclusion points (red) and the waiting clicks (green) on a points layer."""
        layer = self.layer
        if layer is None:
            return
        pending = [p for r in ([self._running] if self._running else []) + list(self._queue) if r.layer is layer
                   for p in (r.include, r.clicks)]
        inc = np.concatenate(pending) if pending else np.zeros((0, 2))
        pts = np.concatenate([np.array(self.exclude, float).reshape(-1, 2), inc])
        colors = ["red"] * len(self.exclude) + ["lime"] * len(inc)
        if MARKS_LAYER not in self.viewer.layers:
            if not len(pts):
                return
            self.viewer.add_points(
                pts, name=MARKS_LAYER, scale=tuple(layer.scale[-2:]), translate=tuple(layer.translate[-2:]),
                size=6, canvas_size_limits=(6, 12), face_color=colors, border_width=0, opacity=0.8,
            )
            self.viewer.layers.selection.active = layer  # clicks go to the gland layer
            return
        marks: Points = self.viewer.layers[MARKS_LAYER]
        marks.data = pts
        if len(pts):
            marks.face_color = colors
