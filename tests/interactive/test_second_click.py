"""Refining a click's result, and placing the window from what the first one found.

A stand-in "model" that calls dark pixels gland (a real ``nn.Module`` through the real window
code) makes the expected gland known exactly; the real tiny network checks the channels.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.draw import disk

from napari_glandseg.interactive import guidance_maps, segment_gland
from napari_glandseg.interactive.segment import GlandWindow, image_reader, segment_window, window_from
from napari_glandseg.model import create_model
from napari_glandseg.model.card import ModelCard
from napari_glandseg.train.common import fit_tensor
from napari_glandseg.train.guided_data import corrective_click, simulate_previous


class DarkIsGland(torch.nn.Module):
    """P(gland) from the image alone: dark pixels are gland, except under "not this" marks."""

    def __init__(self, tile_px: int = 128):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))
        self.in_chans = 6
        self.card = ModelCard(name="dark", mpp=1.0, tile_px=tile_px, overlap_px=0)
        self.seen: list[torch.Tensor] = []

    def normalize(self, rgb):
        return rgb.permute(0, 3, 1, 2).float() / 255.0

    def forward(self, x):
        self.seen.append(x)
        gland = (x[:, :1] < 0.5).float() * (1 - x[:, 4:5])
        return torch.cat([1 - gland, gland], 1) * 8 - 4


def dark_disk(shape, centre, radius) -> tuple[np.ndarray, np.ndarray]:
    rgb = np.full((*shape, 3), 230, np.uint8)
    truth = np.zeros(shape, bool)
    truth[disk(centre, radius, shape=shape)] = True
    rgb[truth] = 60
    return rgb, truth


def test_maps_carry_corrective_clicks_apart_and_the_previous_mask():
    previous = np.zeros((64, 64), bool)
    previous[5:20, 5:20] = True
    maps = guidance_maps((64, 64), [(10, 10)], [], radius_px=2, clicks=[(50, 50)], previous=previous, channels=3)
    assert maps.shape == (3, 64, 64)
    assert maps[0, 50, 50] == 1 and maps[0, 30, 30] == 0, "a corrective click is a disk of its own, not joined"
    assert np.array_equal(maps[2] > 0, previous)
    assert guidance_maps((64, 64), [(10, 10)], previous=previous).shape == (2, 64, 64), "2 channels: no mask"
    with pytest.raises(ValueError, match="previous mask: expected shape"):
        guidance_maps((64, 64), [(10, 10)], previous=previous[:10], channels=3)


def test_the_corrective_click_goes_to_the_centre_of_the_largest_error():
    truth = np.zeros((80, 80), bool)
    truth[10:50, 10:50] = True
    missed = truth.copy()
    missed[10:50, 30:50] = False  # the right half missed
    (y, x), inside = corrective_click(missed, truth)
    assert inside and 39 <= x <= 40 and 19 <= y <= 40, "10 px from every edge of the missed 20×40 half"
    spilled = truth.copy()
    spilled[60:75, 60:75] = True
    (y, x), inside = corrective_click(spilled, truth)
    assert not inside and (y, x) == (67, 67)
    assert corrective_click(truth, truth) is None


def test_simulated_first_results_are_wrong_in_ways_a_click_can_fix():
    labels = np.zeros((120, 120), np.int32)
    labels[disk((40, 40), 20)] = 1
    labels[disk((40, 85), 18)] = 2
    rng = np.random.default_rng(0)
    for _ in range(30):
        previous = simulate_previous(labels == 1, labels, rng)
        assert previous.shape == labels.shape and (previous ^ (labels == 1)).any()


def test_a_second_click_fixes_what_the_first_missed_and_spilled():
    rgb, truth = dark_disk((200, 200), (100, 100), 40)
    model = DarkIsGland()
    first = truth & (np.arange(200)[None, :] < 100)  # half the gland
    fixed = segment_gland(rgb, [], mpp=1.0, model=model, clicks=[(100, 120)], previous=first)
    assert fixed.sum() == truth.sum() and (fixed == truth).all()
    assert model.seen[-1].shape[1] == 6 and model.seen[-1][0, 5].sum() > 0, "the previous mask reached the model"
    with pytest.raises(ValueError, match="previous: expected"):
        segment_gland(rgb, [(100, 100)], mpp=1.0, model=model, previous=first[:50])


@pytest.mark.parametrize("in_chans", [6, 5])
def test_not_this_on_a_merged_neighbour_takes_it_out(in_chans):
    """The first result took in a neighbour; "not this" on the neighbour leaves the gland alone —
    also with a model that cannot see its previous result (5 channels: a redraw away from the click)."""
    rgb, a = dark_disk((200, 260), (100, 80), 35)
    rgb2, b = dark_disk((200, 260), (100, 185), 30)
    rgb = np.minimum(rgb, rgb2)
    model = DarkIsGland()
    model.in_chans = in_chans
    out = segment_gland(rgb, [], [(100, 185)], mpp=1.0, model=model, previous=a | b)
    assert (out == a).all(), "the neighbour is gone, the gland kept whole"


def test_a_gland_cut_by_the_first_window_is_outlined_whole_by_a_window_placed_from_it():
    rgb, truth = dark_disk((400, 400), (200, 200), 70)  # 140 px across, the window 128
    sizes = []
    reader = image_reader(rgb, 1.0)

    def read(origin, size):
        sizes.append(size)
        return reader(origin, size)

    found = segment_window(DarkIsGland(), read, [(200, 160)], [], 1.0)  # off-centre click
    from napari_glandseg.interactive import paste

    assert (paste(found, truth.shape) == truth).all()
    assert sizes[0] == 128 and len(sizes) <= 3 and max(sizes) <= 256


def test_window_from_samples_a_result_on_another_grid():
    mask = np.zeros((10, 10), bool)
    mask[2:4, 2:4] = True
    found = GlandWindow(mask, mask.astype(np.float32), (100.0, 100.0), 2.0)  # caller px 104..108
    out = window_from(found, (100.0, 100.0), 20, 1.0)
    assert out[4:8, 4:8].all() and out.sum() == 16


def test_init_adapts_a_3_class_rgb_model_to_a_6_channel_guided_one():
    """Guidance channels start at zero weight: with no guidance the guided network is the
    segmentation network (its background and gland logits)."""
    torch.manual_seed(0)
    seg = create_model("glandseg_tiny", tile_px=64, overlap_px=0).eval()
    guided = create_model("glandseg_tiny", in_chans=6, num_classes=2, tile_px=64, overlap_px=0).eval()
    own = guided.state_dict()
    fitted = {k: fit_tensor(own[k], v) if own[k].shape != v.shape else v for k, v in seg.state_dict().items() if k in own}
    guided.load_state_dict(fitted, strict=False)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = seg(x)[:, :2]
        got = guided(torch.cat([x, torch.zeros(1, 3, 64, 64)], 1))
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    assert fit_tensor(torch.zeros(3, 3), torch.zeros(3, 3, 1)) is None


def test_refining_a_result_larger_than_any_window_is_not_an_error():
    """A first result that spilled over a huge area (a merged blob) can still be cut: the window
    is the largest one around the click, not refused like an over-long squiggle."""
    rgb, truth = dark_disk((900, 900), (450, 450), 60)
    spilled = np.ones((900, 900), bool)  # 900 px: more than the largest window (256)
    model = DarkIsGland()
    out = segment_gland(rgb, [], [(100, 100)], mpp=1.0, model=model, previous=spilled)
    assert not out[100, 100] and model.seen[-1][0, 4].sum() > 0, "the window holds the 'not this' click"
