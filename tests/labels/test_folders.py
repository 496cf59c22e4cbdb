"""labels/folders.py: which images and masks pair up, and the errors of folders that do not."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from napari_glandseg.errors import GlandsegError
from napari_glandseg.labels.folders import checked_pairs, glas_pairs, image_files, pair_folders


def _image(path: Path, size=(40, 30)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size[1], size[0], 3), 200, np.uint8)).save(path)


def _mask(path: Path, size=(40, 30), value=255) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    mask = np.zeros((size[1], size[0]), np.uint8)
    mask[5:15, 5:20] = value
    Image.fromarray(mask).save(path)


def _names(pairs) -> list[tuple[str, str]]:
    return [(p.image.name, p.mask.name) for p in pairs]


def test_masks_pair_by_name_or_name_anno_in_natural_order(tmp_path):
    for name in ("x_10.png", "x_2.tif", "x_1.bmp", ".x_3.png"):  # a hidden file is no image
        _image(tmp_path / "images" / name)
    for name in ("x_10.png", "x_2_anno.png", "x_1.png"):
        _mask(tmp_path / "masks" / name)
    pairs = pair_folders(tmp_path / "images", tmp_path / "masks")
    assert _names(pairs) == [("x_1.bmp", "x_1.png"), ("x_2.tif", "x_2_anno.png"), ("x_10.png", "x_10.png")]
    assert [p.name for p in pairs] == ["x_1", "x_2", "x_10"]


def test_glas_as_distributed_images_and_anno_masks_in_one_folder(tmp_path):
    for i in (1, 2):
        _image(tmp_path / f"train_{i}.bmp")
        _mask(tmp_path / f"train_{i}_anno.bmp")
    pairs = checked_pairs(tmp_path, tmp_path)
    assert _names(pairs) == [("train_1.bmp", "train_1_anno.bmp"), ("train_2.bmp", "train_2_anno.bmp")]


def test_glas_style_folders_prefer_the_official_instances(tmp_path):
    _image(tmp_path / "images" / "a.png")
    _mask(tmp_path / "masks" / "a.png")
    assert glas_pairs(tmp_path)[0].mask == tmp_path / "masks" / "a.png"
    _mask(tmp_path / "instances" / "a.png", value=1)
    assert glas_pairs(tmp_path)[0].mask == tmp_path / "instances" / "a.png"
    with pytest.raises(GlandsegError, match=r"no images/ folder \(a GlaS-style folder has images/ and masks/\)"):
        glas_pairs(tmp_path / "images")


@pytest.mark.parametrize("change, message", [
    (lambda d: (d / "masks" / "b.png").unlink(), r"names do not match.*no mask for 1 image\(s\) in .*masks: \['b.png'\]"),
    (lambda d: _mask(d / "masks" / "c.png"), r"names do not match.*no image for 1 mask\(s\) in .*images: \['c.png'\]"),
    (lambda d: _mask(d / "masks" / "b_anno.tif"), r"masks: 2 masks for b.png \(b.png, b_anno.tif\); keep one"),
    (lambda d: _image(d / "images" / "b.tif"), r"images: two images named b \(b.png, b.tif\); keep one"),
    (lambda d: _mask(d / "masks" / "b.png", size=(20, 10)),
     r"b.png: the mask is 20×10 px but b.png is 40×30 \(W×H\); masks must match their images"),
    (lambda d: (d / "masks" / "b.png").write_bytes(b"not a png"), r"masks/b.png: cannot read the mask"),
    (lambda d: (d / "images" / "b.png").write_bytes(b"not a png"), r"images/b.png: cannot read the image"),
    (lambda d: [(d / "masks" / "b.png").unlink(), _mask(d / "masks" / "b.jpg")],
     r"b.jpg: a JPEG mask .*save the masks as PNG or TIFF"),
])
def test_each_bad_folder_gets_an_error_naming_the_file_and_the_problem(tmp_path, change, message):
    for name in ("a.png", "b.png"):
        _image(tmp_path / "images" / name)
        _mask(tmp_path / "masks" / name)
    checked_pairs(tmp_path / "images", tmp_path / "masks")
    change(tmp_path)
    with pytest.raises(GlandsegError, match=message):
        checked_pairs(tmp_path / "images", tmp_path / "masks")


def test_missing_folders_and_empty_masks(tmp_path):
    with pytest.raises(GlandsegError, match="nowhere: the images folder does not exist"):
        image_files(tmp_path / "nowhere")
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "notes.txt").write_text("")
    with pytest.raises(GlandsegError, match=r"images: no images \(.png, .tif"):
        image_files(tmp_path / "images")
    _image(tmp_path / "images" / "a.png")
    _mask(tmp_path / "masks" / "a.png", value=0)
    assert len(checked_pairs(tmp_path / "images", tmp_path / "masks")) == 1  # a gland-free image scores
    with pytest.raises(GlandsegError, match=r"a.png: the mask is empty \(no gland pixels\)"):
        checked_pairs(tmp_path / "images", tmp_path / "masks", allow_empty=False)
