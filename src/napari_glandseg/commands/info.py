"""``glandseg info SLIDE``: what a slide file holds (levels, µm/px, associated images)."""

from __future__ import annotations

import argparse
import json
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "info", help="print a slide's levels, resolution and associated images",
        description="Print what a slide file holds. Reads no level-0 pixels.",
    )
    parser.add_argument("slide", help="slide file or OME-Zarr folder")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--mpp", type=float, default=None, help="µm/px to assume (overrides the file's value)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from napari_glandseg.slide import open_slide

    with open_slide(args.slide, mpp=args.mpp) as slide:
        info = slide.info()
    if args.mpp is not None:
        info["mpp_source"] = "--mpp"
    if args.json:
        print(json.dumps(info))
    else:
        print(format_info(info))
    return 0


def format_info(info: dict[str, Any]) -> str:
    """A human-readable summary table."""
    mpp = info["mpp"]
    mag = info["magnification"]
    rows = [
        ("file", info["path"]),
        ("format", info["format"]),
        ("size", f"{info['shape'][1]} × {info['shape'][0]} px (W × H)"),
        ("µm/px", "unknown (pass --mpp)" if mpp is None else f"{mpp:g}"),
        ("magnification", "unknown" if mag is None else f"{mag:g}×"),
        ("tile size", info["tile_size"] or "-"),
        ("associated", ", ".join(info["associated"]) or "-"),
    ]
    lines = [f"{k:<14} {v}" for k, v in rows]
    lines.append("")
    lines.append(f"{'level':>5} {'width':>8} {'height':>8} {'downsample':>11} {'µm/px':>9}  stored")
    for lv in info["levels"]:
        lmpp = "-" if lv["mpp"] is None else f"{lv['mpp']:.4g}"
        lines.append(
            f"{lv['level']:>5} {lv['shape'][1]:>8} {lv['shape'][0]:>8} {lv['downsample']:>11.4g} "
            f"{lmpp:>9}  {'file' if lv['native'] else 'computed'}"
        )
    return "\n".join(lines)
