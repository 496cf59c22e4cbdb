"""GUI-free gland editing tools: every edit returns a new array and keeps dtype and shape."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage as ndi

from napari_glandseg.labels.edit import (
    delete_gland,
    fill_holes,
    gland_bbox,
    label_at,
    merge_glands,
    relabel_consecutive,
    remove_small,
    split_gland,
)
from napari_glandseg.labels.metrics import to_instances

FOUR = ndi.generate_binary_structure(2, 1)


def _n_components(mask: np.ndarray) -> int:
    return ndi.label(mask, FOUR)[1]


def _toy(dtype=np.int32) -> np.ndarray:
    """Three glands: 1 and 2 touch, 3 stands apart; 4 is a single pixel."""
    a = np.zeros((20, 30), dtype=dtype)
    a[2:8, 2:10] = 1
    a[2:8, 10:16] = 2
    a[12:18, 20:28] = 3
    a[15, 5] = 4
    return a


@pytest.fixture(scope="module")
def real_gland(shared_data):
    """A window around gland 4 of GlaS train_1 (a real, non-convex-ish gland away from the border)."""
    mask = np.asarray(Image.open(shared_data / "glas" / "train" / "masks" / "train_1.png"))
    labels = to_instances(mask)
    assert labels.dtype == np.int32
    box = gland_bbox(labels, 4, margin=6)
    window = labels[box].copy()
    assert (window == 4).sum() > 20_000
    return window, 4


def _minor_axis_line(mask: np.ndarray, half_length: float = 1000.0):
    """Line through the centroid along the minor axis, far beyond the array; also the normal."""
    ys, xs = np.nonzero(mask)
    centre = np.array([ys.mean(), xs.mean()])
    _, vecs = np.linalg.eigh(np.cov(np.stack([ys, xs])))
    minor, major = vecs[:, 0], vecs[:, 1]
    return np.array([centre - half_length * minor, centre + half_length * minor]), centre, major


# ---------------------------------------------------------------------------------------------
# input never modified, dtype/shape preserved

EDITS = [
    ("delete", lambda a: delete_gland(a, 1)),
    ("merge", lambda a: merge_glands(a, [1, 3])),
    ("split", lambda a: split_gland(a, 3, np.array([[0.0, 24.0], [19.0, 24.0]]))),
    ("fill", fill_holes),
    ("small", lambda a: remove_small(a, 5)),
    ("relabel", relabel_consecutive),
]


@pytest.mark.parametrize("name, edit", EDITS, ids=[e[0] for e in EDITS])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32, np.int64])
def test_new_array_same_dtype_input_untouched(name, edit, dtype):
    a = _toy(dtype)
    a[4, 4] = 0  # a hole for fill_holes
    before = a.copy()
    out = edit(a)
    np.testing.assert_array_equal(a, before)
    assert out is not a and not np.shares_memory(out, a)
    assert out.dtype == a.dtype and out.shape == a.shape


def test_unchanged_results_are_copies():
    a = _toy()
    for out in (delete_gland(a, 99), merge_glands(a, [1]), split_gland(a, 99, np.zeros((2, 2)))):
        np.testing.assert_array_equal(out, a)
        assert not np.shares_memory(out, a)


def test_real_mask_untouched_by_split(real_gland):
    window, g = real_gland
    before = window.copy()
    line, _, _ = _minor_axis_line(window == g)
    split_gland(window, g, line)
    np.testing.assert_array_equal(window, before)


# ---------------------------------------------------------------------------------------------
# delete / merge


def test_delete():
    a = _toy()
    out = delete_gland(a, 2)
    assert not (out == 2).any()
    np.testing.assert_array_equal(out[a != 2], a[a != 2])
    np.testing.assert_array_equal(delete_gland(a, 0), a)


def test_merge_touching_takes_smallest_id():
    a = _toy()
    out = merge_glands(a, [2, 1])
    assert set(np.unique(out)) == {0, 1, 3, 4}
    np.testing.assert_array_equal(out == 1, (a == 1) | (a == 2))


def test_merge_non_touching_only_relabels():
    a = _toy()
    out = merge_glands(a, (3, 4, 2))
    np.testing.assert_array_equal(out == 2, np.isin(a, [2, 3, 4]))
    assert (out > 0).sum() == (a > 0).sum()  # the gap is not filled
    assert _n_components(out == 2) == 3


@pytest.mark.parametrize("ids", [[1], [1, 1], [1, 99], [0, 1], [], [-3, 2]])
def test_merge_fewer_than_two_present_is_noop(ids):
    a = _toy()
    np.testing.assert_array_equal(merge_glands(a, ids), a)


def test_merge_ignores_absent_smaller_id():
    out = merge_glands(_toy(), [0, 1, 3, 4])  # ids given out of caring order; 0 ignored
    assert set(np.unique(out)) == {0, 1, 2}
    out = merge_glands(_toy(), [2, 3, 50])
    assert set(np.unique(out)) == {0, 1, 2, 4}


# ---------------------------------------------------------------------------------------------
# split


def test_split_real_gland_through_middle(real_gland):
    window, g = real_gland
    mask = window == g
    line, centre, normal = _minor_axis_line(mask)
    out = split_gland(window, g, line)

    new_ids = set(np.unique(out)) - set(np.unique(window))
    assert new_ids == {int(window.max()) + 1}
    new = new_ids.pop()
    parts = [out == g, out == new]
    # total area preserved, nothing outside the gland changed
    np.testing.assert_array_equal(parts[0] | parts[1], mask)
    np.testing.assert_array_equal(out[~mask], window[~mask])
    assert parts[0].sum() >= parts[1].sum() > 0.3 * mask.sum()
    # each part one 4-connected piece, on its own side of the line
    sides = []
    for part in parts:
        assert _n_components(part) == 1
        ys, xs = np.nonzero(part)
        signed = (ys - centre[0]) * normal[0] + (xs - centre[1]) * normal[1]
        far = signed[np.abs(signed) > 2]
        assert np.all(far > 0) or np.all(far < 0)
        sides.append(np.sign(far[0]))
    assert sides[0] != sides[1]


def test_split_line_missing_gland_is_noop(real_gland):
    window, g = real_gland
    ys, xs = np.nonzero(window == g)
    line = np.array([[ys.min() - 3.0, -50.0], [ys.min() - 3.0, 5000.0]])  # a row above the gland
    np.testing.assert_array_equal(split_gland(window, g, line), window)
    far = np.array([[-100.0, -100.0], [-50.0, 10_000.0]])  # wholly outside the array
    np.testing.assert_array_equal(split_gland(window, g, far), window)


def test_split_line_nicking_border_keeps_count(real_gland):
    window, g = real_gland
    mask = window == g
    line, centre, _ = _minor_axis_line(mask, half_length=1.0)
    direction = (line[1] - line[0]) / np.linalg.norm(line[1] - line[0])
    # walk from the centre to the gland edge, then start outside and stop 4 px inside
    t = 0.0
    while mask[tuple(np.rint(centre + (t + 1) * direction).astype(int))]:
        t += 1
    nick = np.array([centre + (t + 15) * direction, centre + (t - 4) * direction])
    out = split_gland(window, g, nick)
    np.testing.assert_array_equal(out, window)
    # a line grazing the top-most row of the gland: at most slivers, never a new gland
    top = np.nonzero(mask)[0].min()
    graze = np.array([[top, -10.0], [top, window.shape[1] + 10.0]])
    out = split_gland(window, g, graze)
    assert set(np.unique(out)) == set(np.unique(window))
    np.testing.assert_array_equal(out, window)


def test_split_polyline_three_parts_new_ids_in_raster_order():
    a = np.zeros((20, 60), dtype=np.int32)
    a[5:15, 5:55] = 3
    a[0, 0] = 9
    # down through the gland at x=20, along below it, up through it at x=40
    line = np.array([[-5.0, 20.0], [30.0, 20.0], [30.0, 40.0], [-5.0, 40.0]])
    out = split_gland(a, 3, line)
    assert (out == 3).sum() + (out == 10).sum() + (out == 11).sum() == (a == 3).sum()
    assert set(np.unique(out[5:15, 21:40])) == {3}  # middle part (largest) keeps the label
    assert set(np.unique(out[5:15, 5:20])) == {10}
    assert set(np.unique(out[5:15, 41:55])) == {11}
    for lab in (3, 10, 11):
        assert _n_components(out == lab) == 1
    out = split_gland(a, 3, line, next_label=100)
    assert set(np.unique(out)) == {0, 3, 9, 100, 101}


@pytest.mark.parametrize("line", [[[0, 0], [30, 30]], [[2.6, 1.2], [21.3, 27.9]], [[0, 30], [30, 0]]])
def test_split_diagonal_has_no_leak(line):
    a = np.zeros((30, 30), dtype=np.uint16)
    a[3:27, 3:27] = 1
    out = split_gland(a, 1, np.array(line, dtype=float))
    assert set(np.unique(out)) == {0, 1, 2}
    assert _n_components(out == 1) == 1 and _n_components(out == 2) == 1
    assert ((out > 0) == (a > 0)).all()
    (y0, x0), (y1, x1) = np.rint(line)
    normal = np.array([x1 - x0, y0 - y1]) / np.hypot(y1 - y0, x1 - x0)
    for lab in (1, 2):  # each part on its own side of the line (pixels next to the cut aside)
        ys, xs = np.nonzero(out == lab)
        signed = (ys - y0) * normal[0] + (xs - x0) * normal[1]
        far = signed[np.abs(signed) > 1.5]
        assert np.all(far > 0) or np.all(far < 0)


def test_split_noop_cases():
    a = _toy()
    across = np.array([[0.0, 6.0], [19.0, 6.0]])
    np.testing.assert_array_equal(split_gland(a, 0, across), a)
    np.testing.assert_array_equal(split_gland(a, 42, across), a)
    np.testing.assert_array_equal(split_gland(a, 4, np.array([[15.0, 0.0], [15.0, 29.0]])), a)  # 1-px gland
    np.testing.assert_array_equal(split_gland(a, 1, np.array([[3.0, 3.0], [3.0, 3.0]])), a)  # a dot


def test_split_keeps_already_disconnected_gland_when_missed():
    a = np.zeros((20, 40), dtype=np.int32)
    a[2:10, 2:10] = 1
    a[2:10, 20:30] = 1  # one gland id, two pieces
    np.testing.assert_array_equal(split_gland(a, 1, np.array([[15.0, 0.0], [15.0, 39.0]])), a)
    out = split_gland(a, 1, np.array([[0.0, 25.0], [19.0, 25.0]]))
    assert len(np.unique(out)) == 4


def test_split_errors():
    a = _toy()
    for bad in (np.zeros((1, 2)), np.zeros((3,)), np.zeros((2, 3)), [[0, 0], [np.nan, 1]]):
        with pytest.raises(ValueError, match="line_yx"):
            split_gland(a, 1, bad)
    line = np.array([[0.0, 6.0], [19.0, 6.0]])
    with pytest.raises(ValueError, match="next_label"):
        split_gland(a, 1, line, next_label=4)
    full = np.zeros((10, 10), dtype=np.uint8)
    full[2:8, 2:8] = 1
    full[0, 0] = 255
    with pytest.raises(ValueError, match="room"):
        split_gland(full, 1, np.array([[0.0, 5.0], [9.0, 5.0]]))


# ---------------------------------------------------------------------------------------------
# fill holes


def test_fill_single_gland_hole():
    a = np.zeros((20, 20), dtype=np.int32)
    a[2:12, 2:12] = 5
    a[5:8, 5:9] = 0
    a[15:18, 15:18] = 6
    out = fill_holes(a)
    assert (out[5:8, 5:9] == 5).all()
    np.testing.assert_array_equal(out[a != 0], a[a != 0])
    assert (out == 0).sum() == (a == 0).sum() - 12


def test_hole_enclosed_by_two_glands_stays():
    a = np.zeros((20, 20), dtype=np.int32)
    a[2:12, 2:12] = 1
    a[2:12, 7:12] = 2  # 1 | 2 side by side
    a[5:8, 5:9] = 0  # hole straddling the shared border: enclosed by 1 and 2 together
    np.testing.assert_array_equal(fill_holes(a), a)


def test_hole_around_nested_gland_stays_and_nested_gland_untouched():
    a = np.zeros((20, 20), dtype=np.int32)
    a[1:19, 1:19] = 1
    a[5:15, 5:15] = 0
    a[8:12, 8:12] = 2  # gland 2 floats in gland 1's hole
    a[9, 9] = 0  # a hole of gland 2 itself
    out = fill_holes(a)
    assert out[9, 9] == 2
    np.testing.assert_array_equal(out[a != 0], a[a != 0])
    assert (out[5:15, 5:15] == 0).sum() == (a[5:15, 5:15] == 0).sum() - 1


def test_fill_holes_restores_punched_real_gland(real_gland):
    window, g = real_gland
    ys, xs = np.nonzero(window == g)
    cy, cx = int(np.median(ys)), int(np.median(xs))
    assert (window[cy - 3 : cy + 4, cx - 3 : cx + 4] == g).all()
    punched = window.copy()
    punched[cy - 3 : cy + 4, cx - 3 : cx + 4] = 0
    np.testing.assert_array_equal(fill_holes(punched), fill_holes(window))
    assert (fill_holes(punched) == g).sum() >= (window == g).sum()


def test_fill_holes_huge_sparse_ids():
    a = np.zeros((10, 10), dtype=np.int64)
    a[1:6, 1:6] = 10**12
    a[3, 3] = 0
    a[7:9, 7:9] = 3
    out = fill_holes(a)
    assert out[3, 3] == 10**12 and (out[7:9, 7:9] == 3).all()


# ---------------------------------------------------------------------------------------------
# remove_small / relabel


def test_remove_small_threshold_edges():
    a = np.zeros((10, 30), dtype=np.uint16)
    a[0, 0:4] = 1  # 4 px
    a[2, 0:5] = 2  # 5 px
    a[4, 0:6] = 3  # 6 px
    assert set(np.unique(remove_small(a, 5))) == {0, 2, 3}
    assert set(np.unique(remove_small(a, 4.5))) == {0, 2, 3}
    assert set(np.unique(remove_small(a, 6))) == {0, 3}
    assert set(np.unique(remove_small(a, 7))) == {0}
    np.testing.assert_array_equal(remove_small(a, 0), a)


def test_relabel_consecutive_sorted_order_and_partition():
    a = np.zeros((6, 6), dtype=np.int32)
    a[0, :] = 100
    a[2, :] = 7
    a[4, :] = 3
    a[5, :3] = 100
    out = relabel_consecutive(a)
    assert set(np.unique(out)) == {0, 1, 2, 3}
    np.testing.assert_array_equal(out == 1, a == 3)
    np.testing.assert_array_equal(out == 2, a == 7)
    np.testing.assert_array_equal(out == 3, a == 100)


def test_relabel_consecutive_real_mask_and_no_background(real_gland):
    window, _ = real_gland
    scrambled = np.where(window > 0, window * 37 + 1000, 0).astype(np.int32)
    out = relabel_consecutive(scrambled)
    n = len(np.unique(window)) - 1
    assert set(np.unique(out)) == set(range(n + 1))
    pairs = np.unique(np.stack([scrambled.ravel(), out.ravel()]), axis=1)
    assert pairs.shape[1] == n + 1  # a bijection: same pixels grouped together
    full = np.array([[5, 5], [9, 2]], dtype=np.uint16)
    np.testing.assert_array_equal(relabel_consecutive(full), [[2, 2], [3, 1]])


# ---------------------------------------------------------------------------------------------
# label_at / gland_bbox


def test_label_at():
    a = _toy()
    assert label_at(a, 3, 3) == 1
    assert label_at(a, 3.4, 10.4) == 2
    assert label_at(a, 7.4, 5) == 1 and label_at(a, 7.6, 5) == 0  # pixel 7 covers [6.5, 7.5)
    assert label_at(a, -0.4, 0) == 0 and label_at(a, 15, 5) == 4
    for y, x in [(-0.6, 5), (5, -1), (20, 5), (5, 29.6), (1e9, 0), (np.nan, 1)]:
        assert label_at(a, y, x) == 0
    assert isinstance(label_at(a, 3, 3), int)


def test_gland_bbox():
    a = _toy()
    assert gland_bbox(a, 3) == (slice(12, 18), slice(20, 28))
    assert gland_bbox(a, 3, margin=5) == (slice(7, 20), slice(15, 30))
    assert gland_bbox(a, 4, margin=1) == (slice(14, 17), slice(4, 7))
    assert gland_bbox(a, 99) is None and gland_bbox(a, 0) is None
    with pytest.raises(ValueError, match="margin"):
        gland_bbox(a, 1, margin=-1)


# ---------------------------------------------------------------------------------------------
# bad inputs

CALLS = [
    lambda a: delete_gland(a, 1),
    lambda a: merge_glands(a, [1, 2]),
    lambda a: split_gland(a, 1, np.array([[0.0, 0.0], [3.0, 3.0]])),
    fill_holes,
    lambda a: remove_small(a, 3),
    relabel_consecutive,
    lambda a: label_at(a, 0, 0),
    lambda a: gland_bbox(a, 1),
]


@pytest.mark.parametrize("call", CALLS)
@pytest.mark.parametrize(
    "bad, message",
    [
        (np.zeros((4, 4, 3), dtype=np.int32), "2-D"),
        (np.zeros(4, dtype=np.int32), "2-D"),
        (np.zeros((4, 4), dtype=np.float32), "integer"),
        (np.zeros((4, 4), dtype=bool), "integer"),
        (np.array([[0, 1], [-1, 2]], dtype=np.int32), "non-negative"),
    ],
    ids=["3d", "1d", "float", "bool", "negative"],
)
def test_bad_inputs_raise(call, bad, message):
    with pytest.raises(ValueError, match=message):
        call(bad)
