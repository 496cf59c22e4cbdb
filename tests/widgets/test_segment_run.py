"""Segment view / Segment slide with a deterministic model: the glands land on their pixels."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from _layers import BLOBS, SYNTH_MPP
from napari.utils.notifications import notification_manager

from napari_glandseg._widgets import SegmentWidget
from napari_glandseg.labels import layer_meta as lm

pytestmark = pytest.mark.gui


def _run(qtbot, widget, start, timeout=120_000):
    worker = start()
    assert worker is not None, "the run did not start (see notifications)"
    qtbot.waitUntil(lambda: not widget.jobs.busy, timeout=timeout)
    assert widget.jobs.last_error is None, repr(widget.jobs.last_error)
    return widget.result_layer


def _world_edges(layer, mask):
    """World (top, left, bottom, right) edges of the pixels in ``mask`` of a 2-D layer."""
    ys, xs = np.nonzero(mask)
    s, t = np.asarray(layer.scale), np.asarray(layer.translate)
    return (t[0] + (ys.min() - 0.5) * s[0], t[1] + (xs.min() - 0.5) * s[1],
            t[0] + (ys.max() + 0.5) * s[0], t[1] + (xs.max() + 0.5) * s[1])


def _check_blobs(image, labels_layer, slack_px):
    """Each dark blob is one gland whose world edges match the blob's within ``slack_px`` level-0 px."""
    mpp = float(image.scale[-1])
    data = np.asarray(labels_layer.data)
    for y, x, h, w in BLOBS:
        centre = image.data_to_world((y + h / 2, x + w / 2))
        label = labels_layer.get_value(centre, world=True)
        assert label and label > 0, f"no gland on the blob at {(y, x)}"
        edges = _world_edges(labels_layer, data == label)
        want = ((y - 0.5) * mpp, (x - 0.5) * mpp, (y + h - 0.5) * mpp, (x + w - 0.5) * mpp)
        np.testing.assert_allclose(edges, np.asarray(want) + np.asarray(image.translate)[[0, 1, 0, 1]],
                                   atol=slack_px * mpp)


@pytest.fixture
def synth_viewer(make_napari_viewer, synth_slide, make_dark_model):
    viewer = make_napari_viewer()
    [image] = viewer.open(synth_slide, plugin="napari-glandseg")
    widget = SegmentWidget(viewer)
    return viewer, image, widget, make_dark_model


def test_segment_view_puts_dark_blobs_on_their_pixels(synth_viewer, qtbot):
    viewer, image, widget, make = synth_viewer
    widget.add_model(make())
    viewer.reset_view()
    layer = _run(qtbot, widget, widget.segment_view)
    assert layer.name == "synth glands"
    # model px are 2 level-0 px: edges may differ by one model px at most
    _check_blobs(image, layer, slack_px=2.0)
    assert int(layer.data.max()) == len(BLOBS)
    meta = lm.read(layer.metadata)
    assert meta.kind == "view" and meta.model == "dark-test" and meta.slide_mpp == SYNTH_MPP
    assert meta.bbox0 == tuple(widget.last_view.bbox)
    assert set(layer.metadata) == {lm.KEY}, "no flat copies beside the gland state"
    assert set(layer.features["index"]) == {1, 2, 3}


def test_results_land_where_asked_after_pan_and_layer_switch(synth_viewer, qtbot):
    viewer, image, widget, make = synth_viewer
    gate = threading.Event()  # the model waits for it: the run cannot end before the test has acted
    widget.add_model(make(gate=gate))
    viewer.reset_view()
    asked = widget.visible_bbox(image).bbox
    worker = widget.segment_view()
    assert worker is not None
    # meanwhile: pan and zoom away, add and select another image layer
    viewer.scene.camera.center = (5000.0, -3000.0)
    viewer.scene.camera.zoom *= 7
    other = viewer.add_image(np.zeros((50, 50), np.uint8), name="distraction", scale=(3, 3), translate=(99, 99))
    viewer.layers.selection.active = other
    widget.image.value = other
    assert widget.jobs.busy
    gate.set()
    qtbot.waitUntil(lambda: not widget.jobs.busy, timeout=120_000)
    assert widget.jobs.last_error is None
    layer = widget.result_layer
    assert lm.read(layer.metadata).bbox0 == tuple(asked)
    _check_blobs(image, layer, slack_px=2.0)


def test_segment_view_on_the_real_slide_is_aligned(make_napari_viewer, cmu_svs, qtbot, dark_model):
    viewer = make_napari_viewer()
    [image] = viewer.open(cmu_svs, plugin="napari-glandseg")
    widget = SegmentWidget(viewer)
    widget.add_model(dark_model)
    viewer.scene.camera.center = tuple(image.data_to_world((1400, 1100)))
    viewer.scene.camera.zoom = 1.0 / 0.499  # 1 screen px per level-0 px
    layer = _run(qtbot, widget, widget.segment_view)
    y, x, h, w = widget.last_view.bbox
    rgb = np.asarray(image.data[0][y : y + h, x : x + w]).astype(np.float32)
    dark = rgb.mean(-1) < 127.5
    # labels sampled at every level-0 pixel centre of the bbox, via world coordinates
    yy, xx = np.mgrid[y : y + h, x : x + w]
    world = np.stack([yy.ravel(), xx.ravel()], 1) * image.scale + image.translate
    data_pts = np.round((world - layer.translate) / layer.scale).astype(int)
    lab = np.asarray(layer.data)
    inside = (data_pts >= 0).all(1) & (data_pts[:, 0] < lab.shape[0]) & (data_pts[:, 1] < lab.shape[1])
    got = np.zeros(len(world), bool)
    got[inside] = lab[data_pts[inside, 0], data_pts[inside, 1]] > 0
    got = got.reshape(h, w)
    assert got.mean() > 0.01, "the dark model found nothing"

    def agree(dy, dx):
        a = got[8:-8, 8:-8]
        b = dark[8 + dy : h - 8 + dy, 8 + dx : w - 8 + dx]
        return np.logical_and(a, b).sum() / np.logical_or(a, b).sum()

    scores = {(dy, dx): agree(dy, dx) for dy in (-4, -2, 0, 2, 4) for dx in (-4, -2, 0, 2, 4)}
    best = max(scores, key=scores.get)
    assert best == (0, 0), f"labels are shifted against the image: best overlap at {best}"


def test_bad_setups_notify_instead_of_raising(make_napari_viewer, shared_data, qtbot):
    seen = []
    notification_manager.notification_ready.connect(lambda n: seen.append(str(n.message)))
    viewer = make_napari_viewer()
    widget = SegmentWidget(viewer)
    assert widget.segment_view() is None  # no slide
    viewer.open(shared_data / "slides" / "tcga-cr-7395-01a-01-ts1.svs", plugin="napari-glandseg")
    assert widget.segment_view() is None  # µm/px unknown
    assert widget.segment_slide() is None
    assert any("no slide" in m for m in seen)
    assert any("µm/px is unknown" in m for m in seen)


@pytest.mark.slow  # a whole-slide run (then its resume) through the widget
def test_segment_slide_fills_a_store_layer_and_resumes(synth_viewer, qtbot, tmp_path):
    from napari_glandseg.labels.store import LabelStore

    viewer, image, widget, make = synth_viewer
    widget.add_model(make(mpp=2.0))
    widget.out_dir.value = tmp_path
    layer = _run(qtbot, widget, widget.segment_slide, timeout=300_000)
    assert layer.multiscale and layer.name == "synth glands (slide)"
    store_path = tmp_path / "synth.glandseg.zarr"
    store = LabelStore.open(store_path)
    assert lm.read(layer.metadata).store == str(store_path)
    _check_blobs(image, _level0_as_layer(viewer, layer), slack_px=4.0)
    n_layers = len(viewer.layers)
    _run(qtbot, widget, widget.segment_slide, timeout=300_000)  # resumes: nothing left to do
    assert len(viewer.layers) == n_layers + 1
    assert store.levels[0].shape == LabelStore.open(store_path).levels[0].shape


def _level0_as_layer(viewer, layer):
    """A plain layer of the store's level 0 with the store layer's placement (for _check_blobs)."""
    return viewer.add_labels(np.asarray(layer.data[0]), scale=layer.scale, translate=layer.translate,
                             name="level0 copy")


def test_organ_box_offers_the_cards_profiles_and_is_remembered_per_slide(synth_viewer, qtbot):
    """The organ's post-processing reaches the run: a prostate profile whose minimum area no blob
    reaches gives no glands, the colon one gives them all; the status line says what ran."""
    from napari_glandseg._widgets._segment import ANY_ORGAN

    viewer, image, widget, make = synth_viewer
    model = make()
    model.card = model.card.replace(profiles={"colon": {"min_area_um2": 10.0}, "prostate": {"min_area_um2": 1e9}})
    widget.add_model(model)
    assert list(widget.organ.choices) == [ANY_ORGAN, "colon", "prostate"]
    widget.precision.value = "fp32"
    viewer.reset_view()
    widget.organ.value = "prostate"
    layer = _run(qtbot, widget, widget.segment_view)
    assert int(np.asarray(layer.data).max()) == 0
    assert "prostate post-processing" in widget.jobs.status.text() and "fp32" in widget.jobs.status.text()
    widget.organ.value = "colon"
    layer = _run(qtbot, widget, widget.segment_view)
    assert int(np.asarray(layer.data).max()) == len(BLOBS)
    _check_colours_stand_out_on_he(layer)
    # another slide gets its own organ; coming back restores this one's
    other = viewer.add_image(np.zeros((64, 64, 3), np.uint8), name="other", rgb=True)
    widget.image.value = other
    widget.organ.value = "prostate"
    widget.image.value = image
    assert widget.organ.value == "colon"


def _check_colours_stand_out_on_he(layer):
    """Every gland colour is far from eosin pink, haematoxylin purple, lavender and pale grey."""
    he = np.array([[0.93, 0.60, 0.78], [0.45, 0.25, 0.55], [0.80, 0.70, 0.90], [0.85, 0.85, 0.85]])
    for label in range(1, 17):
        rgba = np.asarray(layer.get_color(label), float)
        assert rgba[3] > 0, label
        assert np.linalg.norm(he - rgba[:3], axis=1).min() > 0.3, (label, rgba)
