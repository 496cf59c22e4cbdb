"""The "Correct glands" dock widget: edit a region, gland tools with shortcuts, commit (autosave)."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.layers import Labels, Shapes
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import (
    QDoubleSpinBox,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from napari_glandseg._widgets import _tools as tools
from napari_glandseg._widgets._click import ClickGland
from napari_glandseg._widgets._jobs import JobPanel
from napari_glandseg._widgets._layout import scrolling
from napari_glandseg._widgets._palette import gland_style
from napari_glandseg.labels import layer_meta as lm
from napari_glandseg.labels.edit import gland_bbox, union_window
from napari_glandseg.labels.measure import measure_glands
from napari_glandseg.labels.uncertain import Candidate, confidence_by_label, next_uncertain, with_confidence
from napari_glandseg.slide.view_geometry import visible_bbox0

if TYPE_CHECKING:
    import napari

#: Shortcuts on gland layers. napari's Labels keys are 1-7, E P F L Z M X B - = [ ] and
#: Ctrl+Z; the viewer uses Shift+V. Shift+letter combinations below are free.
KEYS = {
    "delete": "Shift-D",
    "merge": "Shift-M",
    "split": "Shift-S",
    "fill": "Shift-H",
    "small": "Shift-R",
    "relabel": "Shift-C",
    "click gland": "Shift-G",
    "next uncertain": "Shift-N",
}
SPLIT_LAYER = "split line"
#: "Edit this view" reads at most this many store pixels per side (a 64 MB int32 array).
MAX_EDIT_PX = 4096


class CorrectWidget(QWidget):
    """Correct the active gland labels layer; every Commit is written to disk at once.

    ``guided_model``: the click-gland model (default: the bundled ``glandseg_guided``).
    """

    def __init__(self, napari_viewer: napari.viewer.Viewer, guided_model: Any = None) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self._merge_first: int | None = None
        self._bound: set[int] = set()

        self.layer_info = QLabel("")
        self.layer_info.setWordWrap(True)
        self.edit_button = QPushButton("Edit this view")
        self.edit_button.setToolTip("Open the visible part of a whole-slide result as an editable layer")
        self.commit_button = QPushButton("Commit")
        self.commit_button.setToolTip("Write the corrections to the label store and mark the region reviewed (autosave)")
        self.min_area = QDoubleSpinBox()
        self.min_area.setRange(0.0, 1e7)
        self.min_area.setDecimals(0)
        self.min_area.setValue(200.0)
        self.min_area.setSuffix(" µm²")
        self.min_area.setToolTip("Glands smaller than this are removed by 'Remove small'")
        self.reviewed_info = QLabel("")
        self.jobs = JobPanel(self)
        self.uncertain_button = QPushButton("Next uncertain")
        self.uncertain_button.setToolTip(
            "Show and select the gland the model was least sure of that you have not reviewed yet "
            f"(each one shown counts as reviewed) [{KEYS['next uncertain']}]")
        self.uncertain_button.clicked.connect(lambda *_: self.next_uncertain())
        self.click = ClickGland(napari_viewer, editable=self._editable, key=KEYS["click gland"],
                                model=guided_model, on_edit=self.refresh_measurements)

        grid = QGridLayout()
        specs = [
            ("Delete gland", "delete", "Delete the gland under the cursor", self.delete_under_cursor),
            ("Merge (click two)", "merge", "Click two glands (or press the key over each) to merge them", self.start_merge_pick),
            ("Split along line", "split", f"Draw a path in the '{SPLIT_LAYER}' layer across a gland, then apply", self.split_along_line),
            ("Draw split line", None, f"Add/select the '{SPLIT_LAYER}' shapes layer in path mode", self.draw_split_line),
            ("Fill holes", "fill", "Fill background holes inside glands", self.fill_holes),
            ("Remove small", "small", "Remove glands smaller than the size below", self.remove_small),
            ("Relabel 1..n", "relabel", "Renumber the glands consecutively", self.relabel),
        ]
        self.tool_buttons: dict[str, QPushButton] = {}
        for i, (text, key, tip, slot) in enumerate(specs):
            b = QPushButton(text)
            b.setToolTip(f"{tip} [{KEYS[key]}]" if key else tip)
            b.clicked.connect(lambda *_, s=slot: s())
            grid.addWidget(b, i // 2, i % 2)
            self.tool_buttons[key or "draw"] = b
        row = QHBoxLayout()
        row.addWidget(self.edit_button)
        row.addWidget(self.commit_button)
        size_row = QHBoxLayout()
        size_row.addWidget(QLabel("Min gland size"))
        size_row.addWidget(self.min_area)
        # The tools sit in a scroll area: in a short dock (docks stacked, a small screen) they
        # scroll instead of being squashed into unreadable half-height buttons.
        content = QWidget()
        lay = QVBoxLayout(content)
        lay.addWidget(self.layer_info)
        lay.addLayout(row)
        lay.addLayout(grid)
        lay.addWidget(self.click)
        lay.addWidget(self.uncertain_button)
        lay.addLayout(size_row)
        keys = ", ".join(f"{v}: {k}" for k, v in KEYS.items())
        help_label = QLabel(f"Keys on gland layers — {keys}; Ctrl+Z undo")
        help_label.setWordWrap(True)
        lay.addWidget(help_label)
        lay.addWidget(self.reviewed_info)
        lay.addWidget(self.jobs)
        lay.addStretch(1)
        scrolling(self, content)
        self.setToolTip("Gland tools: " + keys + "; brush with napari's paint (P) / erase (E); Ctrl+Z undoes any edit")

        self._measure_timer = QTimer(self)
        self._measure_timer.setSingleShot(True)
        self._measure_timer.setInterval(500)
        self._measure_timer.timeout.connect(lambda: self.refresh_measurements())
        self.edit_button.clicked.connect(self.edit_view)
        self.commit_button.clicked.connect(self.commit)
        napari_viewer.layers.selection.events.active.connect(self._on_active)
        self._on_active()

    # ------------------------------------------------------------------ layers
    def layer(self) -> Labels | None:
        """The active Labels layer (the one the tools act on)."""
        active = self.viewer.layers.selection.active
        return active if isinstance(active, Labels) else None

    def _editable(self) -> Labels | None:
        layer = self.layer()
        if layer is None:
            show_error("select a gland labels layer first")
            return None
        if layer.multiscale or not isinstance(layer.data, np.ndarray):
            show_error(f"{layer.name} is a whole-slide result: press 'Edit this view' to edit part of it")
            return None
        return layer

    def _on_active(self, *_: Any) -> None:
        layer = self.layer()
        if layer is None:
            self.layer_info.setText("no labels layer selected")
            return
        meta = lm.read(layer.metadata)
        kind = "plain labels" if meta is None else meta.kind
        self.layer_info.setText(f"{layer.name} ({kind})")
        self.edit_button.setEnabled(kind == "store")
        self._show_reviewed(layer)
        if id(layer) not in self._bound:
            self._bind_keys(layer)

    def _bind_keys(self, layer: Labels) -> None:
        actions = {
            "delete": lambda ly: self.delete_under_cursor(),
            "merge": lambda ly: self._merge_pick(tools.label_at(ly, self.viewer.cursor.position)),
            "split": lambda ly: self.split_along_line(),
            "fill": lambda ly: self.fill_holes(),
            "small": lambda ly: self.remove_small(),
            "relabel": lambda ly: self.relabel(),
            "click gland": lambda ly: self.click.toggle(ly),
            "next uncertain": lambda ly: self.next_uncertain(),
        }
        for name, fn in actions.items():
            layer.bind_key(KEYS[name], fn, overwrite=True)
        layer.events.paint.connect(lambda *_: self._measure_timer.start())
        self._bound.add(id(layer))

    def _show_reviewed(self, layer: Labels) -> None:
        meta = lm.read(layer.metadata)
        n = 0 if meta is None else len(meta.reviewed)
        self.reviewed_info.setText(f"{n} commit(s) of this layer reviewed and saved" if n else "not committed yet")

    # ------------------------------------------------------------- gland tools
    def _apply(self, fn, window=None, *, what: str) -> int:
        layer = self._editable()
        if layer is None:
            return 0
        try:
            win = window or (slice(0, layer.data.shape[0]), slice(0, layer.data.shape[1]))
            n = tools.apply_new_labels(layer, tools.on_window(fn, layer.data, win), win)
        except Exception as exc:
            show_error(f"{what}: {exc}")
            return 0
        self.refresh_measurements(layer)
        return n

    def delete_gland(self, label: int) -> int:
        """Delete gland ``label`` (one undo step); returns pixels changed."""
        from napari_glandseg.labels.edit import delete_gland

        layer = self._editable()
        win = None if layer is None else gland_bbox(layer.data, label, 2)
        if label <= 0 or win is None:
            return 0
        return self._apply(lambda a: delete_gland(a, label), win, what="delete gland")

    def delete_under_cursor(self) -> int:
        layer = self.layer()
        return 0 if layer is None else self.delete_gland(tools.label_at(layer, self.viewer.cursor.position))

    def merge(self, a: int, b: int) -> int:
        """Merge glands ``a`` and ``b`` into one."""
        from napari_glandseg.labels.edit import merge_glands

        layer = self._editable()
        if layer is None or a <= 0 or b <= 0 or a == b:
            return 0
        wa, wb = gland_bbox(layer.data, a, 3), gland_bbox(layer.data, b, 3)
        if wa is None or wb is None:
            return 0
        return self._apply(lambda arr: merge_glands(arr, [a, b]), union_window(wa, wb), what="merge glands")

    def start_merge_pick(self) -> None:
        """Next two clicks on the layer pick the glands to merge."""
        layer = self._editable()
        if layer is None:
            return
        self._merge_first = None
        layer.mode = "pan_zoom"  # a click must pick, not paint

        def pick(ly, event):
            if event.type == "mouse_press":
                if self._merge_pick(tools.label_at(ly, event.position)):
                    ly.mouse_drag_callbacks.remove(pick)

        layer.mouse_drag_callbacks.append(pick)
        show_info("merge: click the first gland, then the second")

    def _merge_pick(self, label: int) -> bool:
        """Record one picked gland; on the second, merge. Returns True when the pick is done."""
        if label <= 0:
            show_info("merge: no gland there")
            return False
        if self._merge_first is None:
            self._merge_first = label
            show_info(f"merge: gland {label} picked; now the second")
            return False
        first, self._merge_first = self._merge_first, None
        self.merge(first, label)
        return True

    def draw_split_line(self) -> Shapes:
        """The shapes layer for split lines, in path-drawing mode."""
        if SPLIT_LAYER in self.viewer.layers:
            shapes = self.viewer.layers[SPLIT_LAYER]
        else:
            shapes = self.viewer.add_shapes(name=SPLIT_LAYER, edge_color="yellow", edge_width=2)
        keep = self.layer()
        self.viewer.layers.selection.active = shapes
        shapes.mode = "add_path"
        self._split_target = keep
        return shapes

    def split_along_line(self, world_vertices: np.ndarray | None = None, layer: Labels | None = None) -> int:
        """Split the gland the (last drawn) line crosses into the parts on either side."""
        from napari_glandseg.labels.edit import split_gland

        if world_vertices is None:
            shapes = self.viewer.layers[SPLIT_LAYER] if SPLIT_LAYER in self.viewer.layers else None
            if shapes is None or not len(shapes.data):
                show_error(f"split: draw a line in the '{SPLIT_LAYER}' layer first")
                return 0
            world_vertices = shapes.data_to_world(shapes.data[-1]) if hasattr(shapes, "data_to_world") else shapes.data[-1]
            shapes.data = shapes.data[:-1]
        layer = layer or getattr(self, "_split_target", None) or self.layer()
        if layer is not None:
            self.viewer.layers.selection.active = layer
        layer = self._editable()
        if layer is None:
            return 0
        line = tools.line_in_data(layer, np.asarray(world_vertices))
        label = tools.label_under_line(layer.data, line)
        win = gland_bbox(layer.data, label, 3)
        if win is None:
            show_error("split: the line crosses no gland")
            return 0
        local = line - np.array([win[0].start, win[1].start])
        next_label = int(np.max(layer.data)) + 1  # layer-wide: the window's max could clash
        return self._apply(lambda arr: split_gland(arr, label, local, next_label=next_label), win, what="split gland")

    def fill_holes(self) -> int:
        from napari_glandseg.labels.edit import fill_holes

        return self._apply(fill_holes, what="fill holes")

    def remove_small(self) -> int:
        """Remove glands below the µm² in the spin box (needs the layer's µm/px)."""
        from napari_glandseg.labels.edit import remove_small

        layer = self._editable()
        if layer is None:
            return 0
        mpp = _labels_mpp(layer)
        if not mpp:
            show_error("remove small: this layer's µm/px is unknown")
            return 0
        min_px = float(self.min_area.value()) / (mpp * mpp)
        return self._apply(lambda a: remove_small(a, min_px), what="remove small glands")

    def relabel(self) -> int:
        """Renumber the glands 1..n; their confidences and reviewed marks follow them."""
        from napari_glandseg.labels.edit import relabel_consecutive

        layer = self._editable()
        if layer is None:
            return 0
        ids = np.unique(np.asarray(layer.data))
        new_id = {int(old): new for new, old in enumerate(ids[ids > 0].tolist(), start=1)}
        confidence = confidence_by_label(layer.features)
        n = self._apply(relabel_consecutive, what="relabel")
        if n:
            follow_relabel(layer, new_id, confidence)
            self.refresh_measurements(layer)
        return n

    def refresh_measurements(self, layer: Labels | None = None) -> None:
        """Per-gland measurements of ``layer`` into ``layer.features``."""
        layer = layer or self.layer()
        if layer is None or layer.multiscale or not isinstance(layer.data, np.ndarray):
            return
        mpp = _labels_mpp(layer)
        if not mpp:
            return
        try:
            rows = with_confidence(measure_glands(layer.data, mpp), confidence_by_label(layer.features))
            feats = tools.features_table(rows)
            if feats is not None:
                layer.features = feats
        except Exception as exc:
            show_error(f"measurements: {exc}")

    # --------------------------------------------------------- least certain
    def next_uncertain(self) -> Candidate | None:
        """Move the view to the least confident gland of the active layer not reviewed yet and
        select it; it counts as reviewed from now on. None when there is none left."""
        layer = self.layer()
        if layer is None:
            show_error("select a gland labels layer first")
            return None
        try:
            candidates = layer_uncertain_candidates(layer, lm.read(layer.metadata))
        except Exception as exc:
            show_error(f"Next uncertain: {exc}")
            return None
        if not candidates:
            show_info(f"{layer.name}: no gland confidences (segment it with napari-glandseg)")
            return None
        reviewed = lm.uncertain_reviewed(layer.metadata)
        pick = next_uncertain(candidates, reviewed)
        if pick is None:
            self.reviewed_info.setText(f"all {len(candidates)} glands reviewed, least certain first")
            return None
        reviewed = (*reviewed, pick.label)
        lm.set_uncertain_reviewed(layer.metadata, reviewed)
        self._show_gland(layer, pick)
        self.reviewed_info.setText(f"gland {pick.label}: confidence {pick.confidence:.2f} "
                                   f"({len(set(reviewed))} of {len(candidates)} reviewed)")
        return pick

    def _show_gland(self, layer: Labels, pick: Candidate) -> None:
        """Centre the camera on the gland, zoomed so that it fills about a third of the canvas."""
        centre = np.asarray(layer.data_to_world(pick.centre), float)[-2:]
        y0, x0, y1, x1 = pick.box
        extent = np.abs(np.asarray(layer.scale[-2:], float)) * (y1 - y0, x1 - x0)
        canvas = np.asarray(self.viewer.canvas.size, float)  # (height, width) in screen px
        self.viewer.scene.camera.center = tuple(centre)
        self.viewer.scene.camera.zoom = float(np.min(canvas / np.maximum(3 * extent, 1e-9)))
        layer.selected_label = pick.label

    # ------------------------------------------------------- edit view, commit
    def edit_view(self) -> Labels | None:
        """Open the visible part of a whole-slide (store) layer as an editable layer."""
        layer = self.layer()
        meta = lm.read(layer.metadata) if layer is not None else None
        if meta is None or meta.kind != "store" or not meta.store:
            show_error("Edit this view: select a whole-slide gland layer (from Segment slide)")
            return None
        try:
            from napari_glandseg.labels.store import LabelStore

            store = LabelStore.open(meta.store)
            shape0 = store.levels[0].shape
            camera = getattr(self.viewer, "scene", self.viewer).camera
            view = visible_bbox0(
                camera.center, camera.zoom, self.viewer.canvas.size, layer.world_to_data, shape0,
                max_model_px=MAX_EDIT_PX * MAX_EDIT_PX,
            )
            y, x, h, w = view.bbox
            data = np.asarray(store.read_region(y, x, h, w)).astype(np.int32, copy=False)
        except Exception as exc:
            show_error(f"Edit this view: {exc}")
            return None
        region = meta.placement.window(y, x)
        s = np.asarray(layer.scale)[-2:]
        # the region's "Next uncertain" marks carry over: they are the store's gland ids
        edit_meta = replace(meta, kind="edit", store_region=(y, x, h, w), placement=region, reviewed=())
        new = self.viewer.add_labels(
            np.array(data), name=f"{meta.slide_name} glands (editing {y},{x})", scale=tuple(s),
            translate=tuple(np.asarray(layer.translate)[-2:] + np.array([y, x]) * s),
            metadata=edit_meta.layer_metadata(),
            **gland_style(),
        )
        if view.capped:
            show_info(f"editing the centre {h}×{w} px of the view; zoom in to edit elsewhere")
        self.refresh_measurements(new)
        return new

    def commit(self) -> Any:
        """Write the active layer's labels to its store and log the region reviewed (in a worker)."""
        from napari_glandseg.labels.review import commit

        layer = self._editable()
        meta = lm.read(layer.metadata) if layer is not None else None
        if layer is None:
            return None
        if meta is None or not meta.store:
            show_error(f"{layer.name}: not a gland layer from this plugin; nothing to commit to")
            return None
        data = np.array(layer.data, copy=True)  # edits after the click go in the next commit

        def run(progress, cancel):
            return commit(data, meta)

        def done(record: dict) -> None:
            now = lm.read(layer.metadata) or meta  # what changed on the layer while it ran stays
            lm.write(layer.metadata, now.reviewed_by_commit(record))
            for other in self.viewer.layers:  # whole-slide views of this store show the edit
                om = lm.read(other.metadata)
                if om is not None and om.kind == "store" and om.store == meta.store:
                    other.refresh()
            self._show_reviewed(layer)
            self.refresh_measurements(layer)
            self.jobs.status.setText(f"saved to {record['store']} (region {record['region']})")

        return self.jobs.start(run, description=f"Commit {layer.name}", on_done=done)


def layer_uncertain_candidates(layer: Labels, meta: lm.GlandLayerMeta | None) -> list[Candidate]:
    """The glands of a layer that have a confidence: from its features table (Segment view),
    else from the store it shows or was opened from (whole slide, "Edit this view")."""
    from napari_glandseg.labels.uncertain import layer_candidates, store_candidates

    confidence = confidence_by_label(layer.features)
    if confidence and isinstance(layer.data, np.ndarray):
        return layer_candidates(layer.data, confidence)
    if meta is not None and meta.kind in ("store", "edit") and meta.store:
        from napari_glandseg.labels.store import LabelStore

        kept = LabelStore.open(meta.store, read_only=True).read_confidence()
        return store_candidates(kept, meta.store_region if meta.kind == "edit" else None)
    return []


def follow_relabel(layer: Labels, new_id: dict[int, int], confidence: dict[int, float]) -> None:
    """After a renumbering (old id → new id), the layer's confidences and reviewed marks follow
    their glands."""
    import pandas as pd

    layer.features = pd.DataFrame({"index": [new_id[i] for i in confidence if i in new_id],
                                   "confidence": [c for i, c in confidence.items() if i in new_id]})
    shown = lm.uncertain_reviewed(layer.metadata)
    if shown:
        lm.set_uncertain_reviewed(layer.metadata, [new_id[i] for i in shown if i in new_id])


def _labels_mpp(layer: Labels) -> float | None:
    meta = lm.read(layer.metadata)
    return None if meta is None else meta.labels_mpp
