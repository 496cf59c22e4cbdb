"""The guided-segmentation API on real GlaS images with a tiny guided model."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from napari_glandseg.interactive import guidance_maps, segment_gland
from napari_glandseg.interactive.segment import select_gland
from napari_glandseg.model import create_model


@pytest.fixture(scope="module")
def tiny_guided():
    return create_model("glandseg_tiny", in_chans=5, num_classes=2, tile_px=128, overlap_px=0).eval()


@pytest.fixture(scope="module")
def glas(shared_data):
    rgb = np.asarray(Image.open(shared_data / "glas" / "testA" / "images" / "testA_1.png").convert("RGB"))
    return rgb


def test_maps_mark_the_click_and_join_a_squiggle():
    maps = guidance_maps((64, 64), [(10, 10), (10, 50)], [(40, 40)], radius_px=2)
    assert maps.shape == (2, 64, 64) and maps.dtype == np.float32
    assert maps[0, 10, 10] == 1 and maps[0, 10, 30] == 1, "the squiggle's points are joined by a line"
    assert maps[0, 20, 30] == 0 and maps[1, 40, 40] == 1 and maps[1].sum() == pytest.approx(13, abs=2)


def test_points_outside_the_window_are_dropped_not_wrapped():
    maps = guidance_maps((32, 32), [(-50, -50)], [(100, 5)])
    assert maps.sum() == 0


def test_selection_keeps_the_clicked_component_and_cuts_exclusions():
    prob = np.zeros((60, 60), np.float32)
    prob[5:25, 5:25] = 0.9  # the clicked gland (with a hole)
    prob[12:16, 12:16] = 0.1
    prob[35:55, 35:55] = 0.9  # another gland
    mask = select_gland(prob, [(8, 8)], [(20, 20)])
    assert mask[14, 14], "holes are filled"
    assert not mask[40, 40], "other components are dropped"
    assert not mask[20, 20], "the exclusion mark is cut out"
    assert mask[8, 8]


def test_api_on_a_real_image_shapes_click_and_exclusion(glas, tiny_guided):
    include, exclude = [(260, 380)], [(100, 100)]
    mask = segment_gland(glas, include, exclude, mpp=0.62, model=tiny_guided)
    assert mask.shape == glas.shape[:2] and mask.dtype == bool
    if mask.any():  # an untrained model may find nothing; what it finds must obey the guidance
        assert mask[include[0]], "the mask contains the click"
    assert not mask[exclude[0]], "exclusion points stay outside"


def test_api_rejects_bad_input(glas, tiny_guided):
    with pytest.raises(ValueError, match="H×W×3 uint8"):
        segment_gland(glas[..., 0], [(10, 10)], mpp=0.62, model=tiny_guided)
    with pytest.raises(ValueError, match="mpp"):
        segment_gland(glas, [(10, 10)], mpp=0.0, model=tiny_guided)
    with pytest.raises(ValueError, match="at least one"):
        segment_gland(glas, [], mpp=0.62, model=tiny_guided)
    with pytest.raises(ValueError, match="finite"):
        segment_gland(glas, [(np.nan, 3)], mpp=0.62, model=tiny_guided)


def test_the_window_is_bounded_for_any_squiggle_and_any_mpp(glas, tiny_guided):
    """A gland's window never grows past tile_px·2**MAX_GROWTHS model px; a squiggle longer than
    that, or an image so finely sampled that the window would be huge, is a clear error."""
    from napari_glandseg.interactive.segment import MAX_GROWTHS, image_reader, segment_window

    sizes = []
    reader = image_reader(glas, 2.0)

    def read(origin, size):
        sizes.append(size)
        return reader(origin, size)

    segment_window(tiny_guided, read, [(200, 300), (260, 420)], [], 2.0)  # 60 model px: one window or two
    assert max(sizes) <= tiny_guided.card.tile_px * 2**MAX_GROWTHS
    h, w = glas.shape[:2]
    with pytest.raises(ValueError, match="the squiggle spans .* µm; one gland's window holds at most"):
        segment_gland(glas, [(0, 0), (h // 2, w // 2), (h - 1, w - 1)], mpp=0.62, model=tiny_guided)
    with pytest.raises(ValueError, match="too fine for the model"):
        segment_gland(glas, [(10, 10)], mpp=0.02, model=tiny_guided)
    for absurd in (1e-6, 1e9, 200.0):  # 200 µm/px made a 1-pixel "gland" silently
        with pytest.raises(ValueError, match="must be a µm/px in"):
            segment_gland(glas, [(10, 10)], mpp=absurd, model=tiny_guided)
