"""From class probabilities to gland instances: seeds, the flood between touching glands, holes,
small objects, and a cluster split the same whatever lies around it."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from napari_glandseg.inference.postprocess import (
    fill_label_holes,
    probabilities_to_instances,
    probabilities_to_instances_keep_edges,
)


def _probs(gland: np.ndarray, border: np.ndarray) -> np.ndarray:
    gland, border = gland.astype(np.float32), border.astype(np.float32)
    return np.stack([1 - np.maximum(gland, border), gland * (1 - border), border])


def _disc(shape, cy, cx, r):
    y, x = np.ogrid[: shape[0], : shape[1]]
    return (y - cy) ** 2 + (x - cx) ** 2 <= r * r


def _same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal up to the numbering of the objects."""
    pairs = np.unique(np.stack([a.ravel(), b.ravel()]), axis=1)
    return len(pairs[0]) == len(np.unique(pairs[0])) == len(np.unique(pairs[1]))


def test_touching_glands_are_split_at_their_border_and_the_border_is_given_back():
    shape = (120, 200)
    left, right = _disc(shape, 60, 60, 35), _disc(shape, 60, 135, 35)
    gland = left | right | (np.abs(np.arange(200) - 97)[None] < 8) & (np.abs(np.arange(120) - 60)[:, None] < 15)
    border = np.zeros(shape, bool)
    border[:, 96:99] = gland[:, 96:99]  # the model's border class between the two
    labels = probabilities_to_instances(_probs(gland & ~border, border), mpp=1.0, params={"min_area_um2": 50})
    assert len(np.unique(labels)) == 3
    assert len(np.unique(labels[left & ~border])) == 1 and len(np.unique(labels[right & ~border])) == 1
    assert labels[60, 60] != labels[60, 135]
    assert ((labels > 0) == gland).all()  # every border pixel went back to a gland


def test_one_seed_owns_its_region_none_drops_it_and_small_glands_go():
    shape = (100, 100)
    gland = _disc(shape, 30, 30, 20)
    border = _disc(shape, 75, 75, 15) & ~_disc(shape, 75, 75, 3)  # a ring of border, seed too small
    speck = _disc(shape, 80, 20, 3)
    labels = probabilities_to_instances(_probs(gland | speck, border), mpp=1.0, params={"min_area_um2": 100})
    assert np.unique(labels).tolist() == [0, 1]
    assert (labels == 1).sum() == gland.sum() and not labels[border].any() and not labels[speck].any()
    kept = probabilities_to_instances_keep_edges(_probs(gland | _disc(shape, 0, 99, 4), border), mpp=1.0,
                                                 params={"min_area_um2": 100})
    assert kept[0, 99] > 0 and len(np.unique(kept)) == 3  # a small gland on the edge is kept


def test_holes_of_one_gland_are_filled_a_gap_between_two_is_not():
    labels = np.zeros((60, 100), np.int32)
    labels[10:50, 5:45] = 1
    labels[20:30, 20:30] = 0  # a lumen of gland 1
    labels[10:50, 50:70], labels[10:50, 72:92] = 2, 3
    labels[10:12, 70:72] = labels[48:50, 70:72] = 2  # 2 and 3 close a gap between them
    filled = fill_label_holes(labels)
    assert (filled[20:30, 20:30] == 1).all()
    assert (filled[12:48, 70:72] == 0).all()  # enclosed by two glands: not one gland's hole
    assert np.array_equal(filled[labels > 0], labels[labels > 0])
    assert np.array_equal(fill_label_holes(np.zeros((5, 5), np.int32)), np.zeros((5, 5), np.int32))


def test_a_cluster_is_split_the_same_whatever_lies_around_it():
    rng = np.random.default_rng(0)
    shape = (160, 160)
    gland = ndi.gaussian_filter(rng.random(shape), 6)
    gland = (gland - gland.min()) / np.ptp(gland)
    border = np.clip(1 - np.abs(gland - 0.55) * 12, 0, 1) * (gland > 0.4)
    probs = _probs(gland, border)
    alone = probabilities_to_instances(probs, mpp=1.0, params={"min_area_um2": 20})
    assert len(np.unique(alone)) > 3
    wide = np.zeros((3, 300, 400), np.float32)
    wide[0] = 1
    wide[:, 70:230, 120:280] = probs
    wide[:, 5:60, 5:390] = _probs(np.ones((55, 385)), np.zeros((55, 385)))[:, :, :]  # another gland elsewhere
    around = probabilities_to_instances(wide, mpp=1.0, params={"min_area_um2": 20})
    inner = around[70:230, 120:280]
    touching = np.unique(np.concatenate([alone[0], alone[-1], alone[:, 0], alone[:, -1]]))
    inside = ~np.isin(alone, touching)  # glands not cut by the small image's edge
    assert _same_partition(alone[inside], inner[inside])


def test_cut_objects_counts_core_glands_that_reach_the_padded_edge():
    from napari_glandseg.inference.chunks import core_ids, cut_objects
    from napari_glandseg.inference.stitch import ChunkGeom

    geom = ChunkGeom(cy=0, cx=0, y0=10, x0=10, h=20, w=20, margin=10, index=0)
    local = np.zeros((40, 40), np.int32)
    local[0:15, 12:16] = 1  # in the core and on the top edge: cut
    local[20:25, 20:25] = 2  # whole in the core
    local[0:5, 30:40] = 3  # on the edge, margin only
    local[25:40, 25:28] = 4  # core to the bottom edge: cut
    assert cut_objects(local, core_ids(local, geom)) == 2
    empty = np.zeros((40, 40), np.int32)
    assert cut_objects(empty, core_ids(empty, geom)) == 0


def test_enclosed_is_what_fill_holes_adds():
    from napari_glandseg.inference.postprocess import enclosed

    rng = np.random.default_rng(1)
    for _ in range(50):
        shape = tuple(rng.integers(1, 50, 2))
        mask = ndi.gaussian_filter(rng.random(shape), rng.uniform(0.5, 3)) > rng.uniform(0.3, 0.7)
        assert np.array_equal(enclosed(mask), ndi.binary_fill_holes(mask) & ~mask)
    assert not enclosed(np.zeros((4, 4), bool)).any() and not enclosed(np.ones((4, 4), bool)).any()


def _necked_pair(shape=(120, 200), neck_half_width=4):
    """Two discs joined by a neck of 2 × ``neck_half_width`` + 1 px, no border class anywhere."""
    left, right = _disc(shape, 60, 60, 35), _disc(shape, 60, 135, 35)
    neck = (np.abs(np.arange(shape[0]) - 60)[:, None] <= neck_half_width) & (np.arange(shape[1]) > 60)[None] \
        & (np.arange(shape[1]) < 135)[None]
    return left, right, left | right | neck


def test_neck_um_splits_glands_joined_by_a_neck_and_only_there():
    left, right, gland = _necked_pair()
    no_border = np.zeros(gland.shape, bool)
    params = {"min_area_um2": 50}
    assert len(np.unique(probabilities_to_instances(_probs(gland, no_border), mpp=1.0, params=params))) == 2
    labels = probabilities_to_instances(_probs(gland, no_border), mpp=0.5, params={**params, "neck_um": 3.0})
    assert len(np.unique(labels)) == 3  # a 9-px neck, eroded by 6 px (3 µm at 0.5 µm/px)
    assert len(np.unique(labels[left])) == 1 and len(np.unique(labels[right])) == 1
    assert (labels[gland] > 0).all()  # flooded back over the whole gland
    # a neck wider than the erosion stays one gland, and so does a gland too thin to keep a core
    assert len(np.unique(probabilities_to_instances(_probs(gland, no_border), mpp=0.5,
                                                    params={**params, "neck_um": 1.5}))) == 2
    thin = np.zeros(gland.shape, bool)
    thin[20:26, 10:190] = True
    thin_labels = probabilities_to_instances(_probs(thin, no_border), mpp=0.5, params={**params, "neck_um": 3.0})
    assert len(np.unique(thin_labels)) == 2 and (thin_labels[thin] > 0).all()


def test_neck_erosion_does_not_start_at_the_image_edge():
    """A gland cut by the image's (a chunk's) edge is seeded as in the whole image."""
    _, _, gland = _necked_pair()
    params = {"min_area_um2": 50, "neck_um": 3.0}
    whole = probabilities_to_instances_keep_edges(_probs(gland, np.zeros(gland.shape, bool)), mpp=0.5, params=params)
    cut = gland[:, :110]  # the left disc and the neck, cut by the edge before the right disc
    part = probabilities_to_instances_keep_edges(_probs(cut, np.zeros(cut.shape, bool)), mpp=0.5, params=params)
    assert _same_partition(part, whole[:, :110])


def test_seeds_at_necks_keep_a_lone_piece_whole_and_drop_tiny_cores():
    from skimage.morphology import disk

    from napari_glandseg.inference.postprocess import seeds_at_necks

    left, right, gland = _necked_pair()
    speck = np.zeros(gland.shape, bool)
    speck[5:8, 5:8] = True
    seeds = seeds_at_necks(gland | speck, disk(6), min_core_px=20)
    assert set(np.unique(seeds[left])) == {0, seeds[60, 60]} and set(np.unique(seeds[right])) == {0, seeds[60, 135]}
    assert 0 < seeds[60, 60] != seeds[60, 135] > 0  # a core each side of the neck
    assert (seeds[speck] == seeds[6, 6]).all() and seeds[6, 6] > 0  # no core survives: the piece is one seed
    assert not (seeds[gland] == seeds[6, 6]).any()
