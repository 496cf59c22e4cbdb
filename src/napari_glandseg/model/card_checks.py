"""Checks of a model card's values, before anything is built from them.

A card is a JSON file anyone can edit: ``mean: "abc"`` must not reach the normalisation, an
unknown ``arch`` must not be built as the default one, and an ``arch_args`` of absurd sizes must
be refused before torch tries to allocate terabytes. Each check raises ``ValueError`` naming the
field; ``read_card`` adds the file's path.
"""

from __future__ import annotations

import math
from numbers import Integral, Real
from typing import Any

#: Architectures the registry can build.
KNOWN_ARCHS = ("dual_swin_unet",)
#: Largest network a card may describe (about 8 GB of fp32 weights).
MAX_PARAMS = 2_000_000_000
#: (smallest, largest) value of each integer architecture argument.
_INT_RANGES = {
    "patch_size": (2, 16), "embed_dim": (1, 4096), "window_size": (2, 64), "img_px": (32, 4096),
    "fusion_heads": (1, 256), "num_classes": (2, 256), "in_chans": (3, 16), "num_tumor_classes": (1, 256),
}
_LIST_RANGES = {"depths": (1, 64), "num_heads": (1, 256), "stem_channels": (1, 1024)}


def check_numbers(name: str, field: str, values: Any, n: int, *, positive: bool = False) -> None:
    """``values`` must be ``n`` finite numbers (> 0 if ``positive``)."""
    ok = isinstance(values, (list, tuple)) and len(values) == n and all(_number(v) for v in values)
    if not ok or (positive and min(values) <= 0):
        raise ValueError(f"model card {name!r}: {field} must be {n} finite{' positive' if positive else ''} "
                         f"numbers, got {values!r}")


def check_postprocess(name: str, post: dict[str, Any]) -> None:
    """Thresholds in [0, 1], a finite non-negative minimum area, a neck radius in [0, 100] µm, a
    yes/no hole filling (the keys that are there: missing ones take the defaults)."""
    if not isinstance(post, dict):
        raise ValueError(f"model card {name!r}: postprocess must be an object, got {post!r}")
    for key in ("gland_threshold", "border_threshold"):
        if key in post and not (_number(post[key]) and 0 <= post[key] <= 1):
            raise ValueError(f"model card {name!r}: postprocess.{key} must be a number in [0, 1], got {post[key]!r}")
    if "min_area_um2" in post and not (_number(post["min_area_um2"]) and post["min_area_um2"] >= 0):
        raise ValueError(f"model card {name!r}: postprocess.min_area_um2 must be a number >= 0, "
                         f"got {post['min_area_um2']!r}")
    if "neck_um" in post and not (_number(post["neck_um"]) and 0 <= post["neck_um"] <= 100):
        raise ValueError(f"model card {name!r}: postprocess.neck_um must be a number in [0, 100] µm, "
                         f"got {post['neck_um']!r}")
    for key in ("seed_distance", "seed_valley"):
        if key in post and not (_number(post[key]) and 0 <= post[key] < 1):
            raise ValueError(f"model card {name!r}: postprocess.{key} must be a number in [0, 1), got {post[key]!r}")
    if "fill_holes" in post and not isinstance(post["fill_holes"], bool):
        raise ValueError(f"model card {name!r}: postprocess.fill_holes must be true or false")


def check_arch(name: str, arch: Any, arch_args: Any) -> None:
    """A known architecture whose arguments are of sane types and sizes (see ``MAX_PARAMS``)."""
    if arch not in KNOWN_ARCHS:
        raise ValueError(f"model card {name!r}: unknown arch {arch!r}; known: {', '.join(KNOWN_ARCHS)}")
    if not isinstance(arch_args, dict):
        raise ValueError(f"model card {name!r}: arch_args must be an object, got {type(arch_args).__name__}")
    if not arch_args:
        return  # a bare card (tests, cards of presets built in code)
    for key in ("enc_a", "enc_b"):
        if not isinstance(arch_args.get(key), dict):
            raise ValueError(f"model card {name!r}: arch_args.{key} must be an object")
    for where, args in (("", arch_args), ("enc_a.", arch_args["enc_a"]), ("enc_b.", arch_args["enc_b"])):
        for key, value in args.items():
            _check_size(name, where + key, key, value)
    if arch_args.get("distance_head") and arch_args.get("num_classes", 3) != 3:
        raise ValueError(f"model card {name!r}: a distance head follows the 3 classes background, gland, "
                         f"border (arch_args.num_classes {arch_args.get('num_classes')!r})")
    params = sum(_swin_params(arch_args[k]) for k in ("enc_a", "enc_b"))
    if params > MAX_PARAMS:
        raise ValueError(f"model card {name!r}: arch_args describe a network of about {params:.3g} parameters "
                         f"(more than {MAX_PARAMS:.0e}); the card is corrupt")


def _check_size(name: str, field: str, key: str, value: Any) -> None:
    if key in _INT_RANGES:
        lo, hi = _INT_RANGES[key]
        if not (is_integer(value) and lo <= value <= hi):
            raise ValueError(f"model card {name!r}: arch_args.{field} must be an integer in [{lo}, {hi}], got {value!r}")
    elif key in _LIST_RANGES:
        lo, hi = _LIST_RANGES[key]
        if not (isinstance(value, (list, tuple)) and 0 < len(value) <= 8
                and all(is_integer(v) and lo <= v <= hi for v in value)):
            raise ValueError(f"model card {name!r}: arch_args.{field} must be 1 to 8 integers in [{lo}, {hi}], "
                             f"got {value!r}")
    elif key == "distance_head" and not isinstance(value, bool):
        raise ValueError(f"model card {name!r}: arch_args.{field} must be true or false, got {value!r}")
    elif key == "drop_path_rate" and not (_number(value) and 0 <= value < 1):
        raise ValueError(f"model card {name!r}: arch_args.{field} must be a number in [0, 1), got {value!r}")


def _swin_params(enc: dict[str, Any]) -> int:
    """About how many weights a Swin path has: 12·C² per block, stage widths doubling."""
    dim, depths = int(enc.get("embed_dim", 0)), list(enc.get("depths", []))
    return sum(12 * (dim * 2**i) ** 2 * int(d) + 8 * (dim * 2**i) ** 2 for i, d in enumerate(depths))


def _number(v: Any) -> bool:
    return isinstance(v, Real) and not isinstance(v, bool) and math.isfinite(v)


def is_integer(v: Any) -> bool:
    """An integer (numpy ones too), not a bool."""
    return isinstance(v, Integral) and not isinstance(v, bool)
