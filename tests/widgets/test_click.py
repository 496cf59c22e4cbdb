"""Click gland in a real napari viewer on the CMU slide, with a tiny guided model.

Clicks are real vispy mouse events on the viewer's canvas (napari dispatches them to the layer).
The model is the tiny guided network with its head set to call everything gland
(``_guided_models.gland_everywhere``): its gland is the largest window around the click minus
the exclusion marks, so each test knows where a result must land.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from _layers import gland_layer
from vispy.app.canvas import MouseEvent

from _guided_models import gland_everywhere
from napari_glandseg._widgets import CorrectWidget
from napari_glandseg._widgets._click import MARKS_LAYER, MODE
from napari_glandseg._widgets._correct import KEYS
from napari_glandseg.labels import layer_meta as lm

pytestmark = pytest.mark.gui
STEP = 2.0  # level-0 px per label px


@pytest.fixture(scope="module")
def model():
    return gland_everywhere()


@pytest.fixture
def slide_copy(tmp_path, cmu_svs):
    """The CMU slide in a fresh folder (the commit's store goes next to it)."""
    path = tmp_path / "slides" / cmu_svs.name
    path.parent.mkdir()
    shutil.copy(cmu_svs, path)
    return path


@pytest.fixture
def setup(make_napari_viewer, slide_copy, model, qtbot):
    viewer = make_napari_viewer()
    [image] = viewer.open(slide_copy, plugin="napari-glandseg")
    h, w = (int(v // STEP) for v in image.data.shape[:2])
    labels = np.zeros((h, w), np.int32)
    labels[100:160, 100:180] = 1  # two glands far from the clicks below
    labels[1000:1100, 400:500] = 2  # (all clicks are on tissue: glass is never gland)
    layer = gland_layer(viewer, image, labels, step=STEP)
    viewer.reset_view()
    widget = CorrectWidget(viewer, guided_model=model)
    yield viewer, image, layer, widget
    qtbot.waitUntil(lambda: not widget.click.busy, timeout=120_000)  # no worker outlives the viewer


def canvas_xy(viewer, world_yx) -> tuple[float, float]:
    """Canvas pixel (x, y) of a world (y, x) point."""
    canvas = viewer.window._qt_viewer.canvas
    transform = canvas.view.transform * canvas.view.scene.transform
    x, y = transform.map([world_yx[-1], world_yx[-2]])[:2]
    return float(x), float(y)


def mouse(viewer, qtbot, world_points, modifiers=()) -> None:
    """Press at the first world point, drag through the others, release at the last."""
    events = viewer.window._qt_viewer.canvas._scene_canvas.events
    pos = [canvas_xy(viewer, p) for p in world_points]
    events.mouse_press(pos=pos[0], modifiers=modifiers, button=1)
    press = MouseEvent(pos=pos[0], modifiers=modifiers, button=1, type="mouse_press")
    for p in pos[1:]:
        events.mouse_move(pos=p, modifiers=modifiers, button=1, press_event=press)
        qtbot.wait(10)  # napari throttles mouse moves (5 ms)
    events.mouse_release(pos=pos[-1], modifiers=modifiers, button=1)


def world(image, level0_yx):
    return image.data_to_world(level0_yx)


def grid_px(yx0) -> tuple[int, int]:
    """Label pixel of a level-0 point (label pixel i covers level-0 [i*STEP, (i+1)*STEP))."""
    return int(yx0[0] // STEP), int(yx0[1] // STEP)


def wait(qtbot, widget) -> None:
    qtbot.waitUntil(lambda: not widget.click.busy, timeout=120_000)
    assert widget.click.last_error is None


def test_mode_switch_shortcut_and_tooltip(setup, qtbot):
    from app_model.types import KeyBinding

    viewer, image, layer, widget = setup
    assert KeyBinding.from_str(KEYS["click gland"].replace("-", "+")) in layer.keymap
    assert KEYS["click gland"] in widget.click.checkbox.toolTip() and "Shift" in widget.click.checkbox.toolTip()
    assert widget.click.toggle(layer) and layer.mode == MODE and widget.click.checkbox.isChecked()
    assert widget.click.toggle(layer) is False and layer.mode == "pan_zoom" and not widget.click.checkbox.isChecked()
    widget.click.checkbox.setChecked(True)
    assert widget.click.layer is layer
    layer.mode = "pan_zoom"  # napari's hold-Space-to-pan: a pause, clicks pan instead
    mouse(viewer, qtbot, [world(image, (1500.0, 1100.0))])
    assert widget.click.layer is layer and not widget.click.busy
    layer.mode = MODE
    layer.mode = "paint"  # picking another napari tool leaves click mode
    assert widget.click.layer is None and not widget.click.checkbox.isChecked()


def test_click_adds_a_gland_undo_and_commit(setup, qtbot, slide_copy):
    from napari_glandseg.labels.store import LabelStore

    viewer, image, layer, widget = setup
    before = layer.data.copy()
    widget.click.checkbox.setChecked(True)
    click0 = (1500.0, 1100.0)
    mouse(viewer, qtbot, [world(image, click0)])
    assert widget.click.busy and layer.data[grid_px(click0)] == 0, "the model runs in the background"
    wait(qtbot, widget)
    assert layer.data[grid_px(click0)] == 3, "a click on background adds the next label"
    np.testing.assert_array_equal(layer.data[before > 0], before[before > 0])
    # only the window around the click is read, and the gland lands where it was found
    found = widget.click.last_found
    size0 = found.mask.shape[0] * found.px_per_model
    assert size0 < min(image.data.shape[:2])
    rows = np.flatnonzero((layer.data == 3).any(1))
    assert abs(rows[0] * STEP - max(0.0, found.origin[0])) <= STEP
    assert abs((rows[-1] + 1) * STEP - min(found.origin[0] + size0, layer.data.shape[0] * STEP)) <= STEP
    assert widget.click.last_latency_s > 0 and "added" in widget.click.status.text()

    layer.undo()
    np.testing.assert_array_equal(layer.data, before)
    layer.redo()
    assert layer.data[grid_px(click0)] == 3

    widget.commit_button.click()
    qtbot.waitUntil(lambda: not widget.jobs.busy, timeout=60_000)
    assert widget.jobs.last_error is None
    store = LabelStore.open(slide_copy.parent / "cmu-1-small-region.glandseg.zarr")
    assert len(store.reviewed_regions()) == 1
    assert len(lm.read(layer.metadata).reviewed) == 1
    saved = np.asarray(store.read_region(0, 0, *layer.data.shape))
    np.testing.assert_array_equal(saved, layer.data)  # the store is on the layer's grid: an exact copy


def test_click_inside_a_gland_keeps_its_label(setup, qtbot):
    viewer, image, layer, widget = setup
    other = layer.data == 1
    widget.click.toggle(layer)
    click0 = (1050 * STEP, 450 * STEP)  # inside gland 2
    mouse(viewer, qtbot, [world(image, click0)])
    wait(qtbot, widget)
    assert layer.data[grid_px(click0)] == 2 and "redrawn" in widget.click.status.text()
    assert set(np.unique(layer.data)) == {0, 1, 2}, "no new label"
    assert (layer.data == 2).sum() > 100 * 100, "redrawn from the guidance"
    np.testing.assert_array_equal(layer.data == 1, other)


def test_exclusion_points_stay_outside_and_are_used_once(setup, qtbot):
    viewer, image, layer, widget = setup
    widget.click.toggle(layer)
    click0, not1, not2 = (1500.0, 1100.0), (1560.0, 1180.0), (1440.0, 1020.0)
    mouse(viewer, qtbot, [world(image, not1)], modifiers=("Shift",))
    mouse(viewer, qtbot, [world(image, not2)], modifiers=("Alt",))
    assert len(widget.click.exclude) == 2 and not widget.click.busy, "Shift/Alt-clicks only mark"
    assert len(viewer.layers[MARKS_LAYER].data) == 2
    assert viewer.layers.selection.active is layer, "the marks layer does not take the clicks"
    mouse(viewer, qtbot, [world(image, click0)])
    wait(qtbot, widget)
    assert layer.data[grid_px(click0)] == 3
    assert layer.data[grid_px(not1)] == 0 and layer.data[grid_px(not2)] == 0
    assert widget.click.exclude == [] and len(viewer.layers[MARKS_LAYER].data) == 0, "dropped after the result"


def test_squiggle_and_a_queued_second_click(setup, qtbot):
    viewer, image, layer, widget = setup
    widget.click.toggle(layer)
    squiggle = [(1000.0, 1000.0), (1040.0, 1060.0), (1080.0, 1100.0), (1120.0, 1160.0)]
    viewer.scene.camera.zoom *= 4  # any zoom: the squiggle's points are canvas pixels apart
    viewer.scene.camera.center = world(image, squiggle[1])
    mouse(viewer, qtbot, [world(image, p) for p in squiggle])
    viewer.reset_view()
    mouse(viewer, qtbot, [world(image, (2600.0, 900.0))])  # while the first one runs
    assert "queued" in widget.click.status.text()
    assert len(widget.click._queue) == 1 and len(widget.click._running.include) == len(squiggle)
    wait(qtbot, widget)
    assert layer.data[grid_px(squiggle[0])] == 3 and layer.data[grid_px(squiggle[-1])] == 3
    assert layer.data[grid_px((2600.0, 900.0))] == 4
    layer.undo()
    assert 4 not in layer.data and 3 in layer.data, "each click is its own undo step"


def test_refused_on_a_layer_without_slide(make_napari_viewer, model):
    viewer = make_napari_viewer()
    layer = viewer.add_labels(np.zeros((64, 64), np.int32))
    widget = CorrectWidget(viewer, guided_model=model)
    assert widget.click.toggle(layer) is False and layer.mode == "pan_zoom"
    assert not widget.click.checkbox.isChecked()


def test_a_shift_click_on_the_gland_just_outlined_refines_it_in_one_undo_step(setup, qtbot):
    viewer, image, layer, widget = setup
    widget.click.toggle(layer)
    first = (1050 * STEP, 450 * STEP)
    mouse(viewer, qtbot, [world(image, first)])  # redraw gland 2: the gland a fix applies to
    wait(qtbot, widget)
    other = (130 * STEP, 140 * STEP)  # on gland 1, not the one just outlined: a mark for later
    mouse(viewer, qtbot, [world(image, other)], modifiers=("Shift",))
    assert len(widget.click.exclude) == 1 and not widget.click.busy
    widget.click.exclude.clear()
    before = layer.data.copy()
    cut = (1050 * STEP, 420 * STEP)  # on gland 2: "not this", refined now
    assert layer.data[grid_px(cut)] == 2
    mouse(viewer, qtbot, [world(image, cut)], modifiers=("Shift",))
    assert widget.click.exclude == []
    wait(qtbot, widget)
    assert "refined" in widget.click.status.text() and layer.data[grid_px(cut)] == 0
    assert set(np.unique(layer.data)) == {0, 1, 2}, "the same gland, no new label"
    np.testing.assert_array_equal(layer.data == 1, before == 1)
    layer.undo()
    np.testing.assert_array_equal(layer.data, before)


def test_a_ctrl_click_adds_a_missed_part_to_the_gland_just_outlined(setup, qtbot):
    viewer, image, layer, widget = setup
    widget.click.toggle(layer)
    missed = (1120 * STEP, 450 * STEP)
    mouse(viewer, qtbot, [world(image, missed)], modifiers=("Control",))  # nothing outlined yet
    assert not widget.click.busy and "click a gland first" in widget.click.status.text()
    mouse(viewer, qtbot, [world(image, (1500.0, 1100.0))])  # a new gland (3)
    wait(qtbot, widget)
    three = layer.data == 3
    rows = np.flatnonzero(three.any(1))
    beyond = ((rows[-1] + 15) * STEP, 1100.0)  # just below gland 3 (its window's edge), on background
    assert layer.data[grid_px(beyond)] == 0
    mouse(viewer, qtbot, [world(image, beyond)], modifiers=("Control",))
    wait(qtbot, widget)
    assert layer.data[grid_px(beyond)] == 3 and "refined" in widget.click.status.text()
    assert (layer.data[three] == 3).all(), "what the gland had stays"
    assert layer.data.max() == 3
    layer.undo()
    assert layer.data[grid_px(beyond)] == 0
