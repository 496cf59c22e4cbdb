"""Choosing the post-processing of a fine-tuned model on its held-back corrections."""

from __future__ import annotations

import numpy as np

from napari_glandseg.model.card import DEFAULT_POSTPROCESS
from napari_glandseg.train.corrections_scoring import ScoredBox, calibrate_postprocess, score_boxes

BASE = {**DEFAULT_POSTPROCESS, "gland_threshold": 0.5, "border_threshold": 0.5, "min_area_um2": 10.0, "fill_holes": True}


def _box(glands: list[tuple[slice, slice, float]], truth_glands: int) -> ScoredBox:
    """A 120² box: gland probability ``p`` in each (rows, cols, p); the first ``truth_glands``
    of them are real glands."""
    gland = np.zeros((120, 120), np.float32)
    truth = np.zeros((120, 120), np.int32)
    for i, (rows, cols, p) in enumerate(glands):
        gland[rows, cols] = p
        if i < truth_glands:
            truth[rows, cols] = i + 1
    probs = np.stack([1 - gland, gland, np.zeros_like(gland)])
    return ScoredBox(probs, (slice(0, 120), slice(0, 120)), truth, np.ones((120, 120), bool))


# corrections: two real glands, three faint patches the fine-tuned model still marks (144 µm²
# each: more than 8× the minimum area, so only the threshold can remove them)
USER = _box([(slice(10, 50), slice(10, 50), 0.95), (slice(60, 110), slice(60, 110), 0.9),
             (slice(0, 12), slice(60, 72), 0.55), (slice(70, 82), slice(5, 17), 0.55),
             (slice(95, 107), slice(20, 32), 0.55)], truth_glands=2)
# replay: a real gland the model is less sure of (0.65): a threshold of 0.7 would lose it
REPLAY = _box([(slice(20, 60), slice(20, 60), 0.95), (slice(70, 100), slice(70, 100), 0.65)], truth_glands=2)


def test_scores_follow_the_post_processing():
    assert score_boxes([USER], mpp=1.0, params=BASE)["object_f1"] == 2 * 2 / (5 + 2)
    assert score_boxes([USER], mpp=1.0, params={**BASE, "gland_threshold": 0.6})["object_f1"] == 1.0


def test_the_threshold_that_removes_false_glands_is_chosen_unless_it_costs_the_replay_images():
    chosen, report = calibrate_postprocess([USER], [REPLAY], mpp=1.0, base=BASE, min_glands=2)
    # 0.6 removes the patches and keeps the replay gland at 0.65; 0.7 and 0.8 would lose it
    assert chosen["gland_threshold"] == 0.6
    assert report["held_back"]["chosen"]["object_f1"] == 1.0
    assert report["replay"]["chosen"]["object_f1"] >= report["replay"]["base"]["object_f1"] - 0.01
    # without replay images nothing guards the other organs: any threshold that removes the patches
    chosen_alone, _ = calibrate_postprocess([USER], [], mpp=1.0, base=BASE, min_glands=2)
    assert chosen_alone["gland_threshold"] in (0.6, 0.7, 0.8)


def test_the_base_settings_stay_without_a_real_gain():
    clean = _box([(slice(10, 50), slice(10, 50), 0.95)], truth_glands=1)
    chosen, report = calibrate_postprocess([clean], [REPLAY], mpp=1.0, base=BASE, min_glands=1)
    assert chosen == BASE and report["chosen"] == BASE and report["candidates"] > 1


def test_too_few_held_back_glands_keep_the_base_settings():
    chosen, report = calibrate_postprocess([USER], [REPLAY], mpp=1.0, base=BASE, min_glands=3)
    assert chosen == BASE and "2 held-back glands" in report["skipped"]
