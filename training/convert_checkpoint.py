"""Convert a trusted PyTorch state dict (.pt/.pth) into a safe checkpoint (NAME.safetensors +
NAME.json) for a preset.

The file is read with ``torch.load(weights_only=True)``: tensors and plain containers only, no
code runs. Common wrappers are unwrapped ({"state_dict": …}, {"model": …}, DDP's "module."
prefix). The weights must fit the preset exactly.

    python training/convert_checkpoint.py old.pth glandseg_small out/my_model --mpp 1.24
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch


def extract_state(obj) -> dict[str, torch.Tensor]:
    """The tensor dict inside a loaded checkpoint, without training wrappers or DDP prefixes."""
    for key in ("state_dict", "model", "model_state_dict", "weights"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not obj:
        raise ValueError("no state dict found (expected a dict of tensors)")
    state = {}
    for k, v in obj.items():
        if not isinstance(v, torch.Tensor):
            raise ValueError(f"entry {k!r} is not a tensor ({type(v).__name__}); not a state dict")
        state[k.removeprefix("module.")] = v
    return state


def convert(src: Path, preset: str, out_stem: Path, *, mpp: float | None = None, name: str | None = None,
            strict: bool = True) -> tuple[Path, Path]:
    from napari_glandseg.model import create_model, save_checkpoint
    from napari_glandseg.model.checkpoint import load_state

    src = Path(src)
    try:
        obj = torch.load(src, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 — any unpickling refusal is reported with the file
        raise ValueError(f"{src}: cannot be read as a weights-only state dict: {exc}") from exc
    state = extract_state(obj)
    model = create_model(preset)
    load_state(model, state, source=src, strict=strict)
    changes = {"name": name or Path(out_stem).name,
               "provenance": {**model.card.provenance, "converted_from": src.name, "preset": preset}}
    if mpp:
        changes["mpp"] = mpp
    return save_checkpoint(model, out_stem, card=model.card.replace(**changes))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path, help="trusted .pt/.pth state dict")
    parser.add_argument("preset", help="model preset the weights belong to (e.g. glandseg_small)")
    parser.add_argument("out", type=Path, help="output stem: writes OUT.safetensors + OUT.json")
    parser.add_argument("--mpp", type=float, default=None, help="µm/px the weights were trained at")
    parser.add_argument("--name", default=None, help="model name in the card (default: the output stem)")
    parser.add_argument("--non-strict", action="store_true", help="allow missing/unexpected keys")
    args = parser.parse_args(argv)
    try:
        weights, card = convert(args.source, args.preset, args.out, mpp=args.mpp, name=args.name,
                                strict=not args.non_strict)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {weights} and {card}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
