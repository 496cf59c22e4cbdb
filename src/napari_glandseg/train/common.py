"""What the training scripts share: YAML configs with command-line overrides, distributed
set-up, checkpoint/resume state, and whole-image validation."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
import types
import typing
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import yaml

from napari_glandseg._atomic import append_jsonl, atomic_path, write_text_atomic

# ---------------------------------------------------------------- configs


@dataclasses.dataclass(frozen=True, kw_only=True)
class RunSettings:
    """Settings every training script has (its own config class adds the rest)."""

    save_every: int = 50
    log_every: int = 10
    seed: int = 0
    amp: bool = True  # mixed precision where it pays: bf16 on a CPU that runs it natively, fp16/bf16 on CUDA
    device: str = "auto"
    threads: int | None = None
    workers: int = 0  # background processes preparing batches (0: in the training process)
    max_minutes: float | None = None  # stop cleanly (after a checkpoint) when this much time is used
    time_schedule: bool = False  # with max_minutes: the schedule follows whichever of steps and time runs out first
    stop_at: int | None = None  # stop cleanly (after a checkpoint) at this step, as if interrupted


def parse_config(cls, argv: list[str] | None, description: str):
    """``--config FILE.yaml`` plus ``--key value`` overrides for every dataclass field."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config", type=Path, help="YAML file with the settings")
    for f in dataclasses.fields(cls):
        parser.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, type=str, default=None,
                            help=f"(default: {f.default if f.default is not dataclasses.MISSING else 'required'})")
    args = parser.parse_args(argv)
    values: dict[str, Any] = {}
    if args.config:
        try:
            values.update(yaml.safe_load(args.config.read_text(encoding="utf-8")) or {})
        except (OSError, yaml.YAMLError) as exc:
            parser.error(f"{args.config}: cannot read config: {exc}")
    lists = _list_fields(cls)
    for f in dataclasses.fields(cls):
        raw = getattr(args, f.name)
        if raw is not None:
            value = yaml.safe_load(raw)  # "3.0e-4" → float, "[a, b]" → list, "true" → bool
            if f.name in lists and value is not None and not isinstance(value, list):
                value = [value]  # --data FOLDER: a list of one folder, not of its characters
            values[f.name] = value
    unknown = set(values) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
        parser.error(f"unknown settings {sorted(unknown)}")
    try:
        return cls(**_numbers(cls, values))
    except (TypeError, ValueError) as exc:
        parser.error(str(exc))


def _numbers(cls, values: dict[str, Any]) -> dict[str, Any]:
    """``values`` with each number field's value a number: YAML 1.1 reads "5e-5" (no dot) as a
    string, which would reach the optimizer as one. A value that is no number is an error naming
    the setting."""
    out = dict(values)
    for name, kinds in _field_kinds(cls).items():
        value = out.get(name)
        if value is None or isinstance(value, bool) or not ({int, float} & set(kinds)):
            continue
        number = float if float in kinds else int
        try:
            converted = number(value) if isinstance(value, str | int | float) else None
        except ValueError:
            converted = None
        if converted is None or (number is int and isinstance(value, float) and value != converted):
            raise ValueError(f"setting {name!r}: expected {'a number' if number is float else 'a whole number'}, "
                             f"got {value!r}")
        out[name] = converted
    return out


def _field_kinds(cls) -> dict[str, tuple]:
    """{field name: the types its hint admits} (``int | None`` → (int, NoneType))."""
    out = {}
    for name, hint in typing.get_type_hints(cls).items():
        union = typing.get_origin(hint) in (typing.Union, types.UnionType)
        out[name] = typing.get_args(hint) if union else (hint,)
    return out


def _list_fields(cls) -> set[str]:
    """Names of the dataclass fields typed as a list (``list[...]``, alone or ``| None``)."""
    return {name for name, kinds in _field_kinds(cls).items()
            if any(typing.get_origin(k) is list or k is list for k in kinds)}


def save_resolved_config(cfg, out: Path) -> None:
    write_text_atomic(out / "config.yaml", yaml.safe_dump(dataclasses.asdict(cfg), sort_keys=False))


# ---------------------------------------------------------------- distributed


@dataclasses.dataclass
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device) -> DistInfo:
    """Join the torchrun process group when launched by torchrun (gloo on CPU, nccl on GPU);
    a group this process already joined is kept (rejoining after destroy can hang)."""
    if "RANK" not in os.environ or int(os.environ.get("WORLD_SIZE", "1")) == 1:
        return DistInfo()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    info = DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    if device.type == "cuda":
        torch.cuda.set_device(info.local_rank)
    return info


def start_run(cfg) -> tuple[torch.device, DistInfo, Path, Logger]:
    """What every training script does first: threads, device, process group, seed, out folder, log."""
    from napari_glandseg.model.device import pick_device

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = pick_device(cfg.device)
    if device.type == "cuda":
        # cuDNN's attention backward returns NaN query gradients for sequences of 64 (+ k·128)
        # tokens with a mask on H100/H200 since torch 2.11 (pytorch/pytorch#196678): a Swin
        # window of 8×8 with its position bias is exactly that. The first H200 run of
        # training/gpu_default.py turned both arms' weights to NaN within 600 steps.
        torch.backends.cuda.enable_cudnn_sdp(False)
    dist_info = init_distributed(device)
    torch.manual_seed(cfg.seed)  # same heads and mask tokens on every rank
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    return device, dist_info, out, Logger(out, dist_info.is_main)


def autocast(device: torch.device, amp: bool):
    """Autocast for training and validation: with ``amp``, the precision ``resolve_precision``
    picks for the device (bf16 on a CPU only where it is native: emulated it is ~9× slower)."""
    from napari_glandseg.model.precision import resolve_precision

    dtype = resolve_precision(device, "auto" if amp else "fp32")
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)


def cleanup_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if hasattr(model, "module") else model


# ---------------------------------------------------------------- resume state


def save_state(out: Path, model, optimizer, step: int, extra: dict | None = None,
               tensors: dict[str, torch.Tensor] | None = None) -> None:
    """``last.safetensors/.json`` (the model) + ``last_state.pt`` (optimizer; tensors only).

    ``tensors``: further training state that is not part of the model (an EMA teacher,
    projection heads, centers); kept in ``last_state.pt`` so that it is written in one rename
    with the step it belongs to.
    """
    from napari_glandseg.model import save_checkpoint

    save_checkpoint(unwrap(model), out / "last")
    state = {"optimizer": optimizer.state_dict(), "step": step, "extra": json.dumps(extra or {})}
    if tensors:
        state["tensors"] = {k: v.detach().cpu().clone() for k, v in tensors.items()}
    with atomic_path(out / "last_state.pt") as tmp:
        torch.save(state, tmp)


def load_state(out: Path, model, optimizer) -> tuple[int, dict]:
    """Resume from ``out``; returns (step, extra) — (0, {}) when there is nothing to resume."""
    from napari_glandseg.model.checkpoint import load_state as load_weights

    state_path = out / "last_state.pt"
    if not state_path.exists() or not (out / "last.safetensors").exists():
        return 0, {}
    from safetensors.torch import load_file

    load_weights(unwrap(model), load_file(str(out / "last.safetensors")), source=out / "last.safetensors")
    state = _read_state(state_path)
    optimizer.load_state_dict(state["optimizer"])
    return int(state["step"]), json.loads(state["extra"])


def _read_state(state_path: Path) -> dict:
    # weights_only: tensors and plain data only, never code. Older states hold numpy scalars
    # (learning rates); those two numpy types are data and are allowed explicitly.
    numpy_data = [np._core.multiarray.scalar, np.dtype, type(np.dtype(np.float64))]
    with torch.serialization.safe_globals(numpy_data):
        return torch.load(state_path, map_location="cpu", weights_only=True)


def resumed_seconds(out: Path) -> float:
    """Seconds the run in ``out`` had trained when its resume state was saved (0 when there is none,
    or the state is older than this record)."""
    state_path = out / "last_state.pt"
    if not state_path.exists():
        return 0.0
    return float(json.loads(_read_state(state_path)["extra"]).get("train_s", 0.0))


def read_state_tensors(out: Path) -> dict[str, torch.Tensor]:
    """The ``tensors`` saved with the resume state ({} when there is none)."""
    state_path = out / "last_state.pt"
    if not state_path.exists():
        return {}
    return dict(_read_state(state_path).get("tensors", {}))


def freeze_unused(net) -> None:
    """Freeze parameters the forward pass never uses, so that DDP reduces every bucket.

    The Swin encoders' final ``norm`` is skipped by ``forward_intermediates(intermediates_only=
    True)``. Left trainable, it never receives a gradient: DDP then never reduces the bucket
    holding it (gradients silently stay per-rank) and the next iteration fails.
    """
    for swin in (net.swin_a, net.swin_b):
        for p in swin.norm.parameters():
            p.requires_grad_(False)


def build_model(model: str, *, crop_px: int, mpp: float | None = None, init: str | None = None):
    """The network a training run starts from. ``model`` is resolved by ``model.resolve``; a preset
    names an architecture and starts untrained (sized for ``crop_px``: training from scratch), a
    checkpoint or user model starts from its weights. ``init`` (resolved the same way) copies in
    the tensors of another model whose names fit: same shapes as they are, fewer input channels or
    more classes adapted by ``fit_tensor`` (e.g. pretrained encoders, a segmentation model
    starting a guided one)."""
    from napari_glandseg.model import resolve

    source = resolve(model)
    if source.kind == "preset":
        net = source.fresh(img_px=crop_px if crop_px % 256 == 0 else 256)
    else:
        net = source.load("cpu").train()
    if mpp:
        net.card = net.card.replace(mpp=mpp)
    if init:
        from safetensors.torch import load_file

        from napari_glandseg.model.checkpoint import load_state as load_weights
        from napari_glandseg.model.resolve import weights_file

        weights = load_file(str(weights_file(init)))
        own = net.state_dict()
        fitting = {k: v for k, v in weights.items() if k in own and own[k].shape == v.shape}
        adapted = {k: fit_tensor(own[k], v) for k, v in weights.items() if k in own and k not in fitting}
        adapted = {k: v for k, v in adapted.items() if v is not None}
        load_weights(net, {**fitting, **adapted}, source=init, strict=False)
        print(f"init: {len(fitting)}/{len(own)} tensors from {init}, {len(adapted)} adapted "
              f"({', '.join(sorted(adapted)) or 'none'})", file=sys.stderr)
    # channels_last: a training step 1.19-1.26x faster on this CPU, the same arithmetic
    # (benchmarks/train_throughput.py, measured alone); checkpoints are saved contiguous
    return net.to(memory_format=torch.channels_last)


def add_distance_head(net, seed_distance: float = 0.45, seed_valley: float = 0.2):
    """``net`` rebuilt with a distance head (``model.outputs``): every tensor kept, the new head
    starting at zero (a distance of 0.5 everywhere: one core per seed, so the model seeds glands
    as before until its map learns). The card's seed settings are what tuning chose for the first
    default with a map (0.45, 0.2), so that a run's in-training validation scores the map as it
    will be used, not at a level without a valley depth (which splits glands along noisy middles)."""
    from napari_glandseg.model.network import build_network

    if net.distance_head:
        return net
    arch = {**net.card.arch_args, "distance_head": True}
    grown = build_network(arch)
    missing, unexpected = grown.load_state_dict(net.state_dict(), strict=False)
    if unexpected or any(not k.startswith("distance.") for k in missing):
        raise ValueError(f"cannot grow a distance head onto {net.card.name!r}: {missing + unexpected}")
    torch.nn.init.zeros_(grown.distance.weight)
    torch.nn.init.zeros_(grown.distance.bias)
    grown.card = net.card.replace(arch_args=arch, postprocess={**net.card.postprocess, "seed_distance": seed_distance,
                                                              "seed_valley": seed_valley})
    return grown.train(net.training)


def parameter_groups(net, head_lr_scale: float = 1.0) -> list[dict]:
    """The optimizer's parameter groups: a distance head's own weights at ``head_lr_scale`` times
    the run's learning rate (``lr_scale``, which the loop's schedule keeps), everything else at it:
    a head grown from zero onto a trained model would take thousands of steps at the rate that
    fine-tunes the rest."""
    head = list(net.distance.parameters()) if getattr(net, "distance", None) is not None else []
    ids = {id(p) for p in head}
    groups = [{"params": [p for p in net.parameters() if id(p) not in ids]}]
    if head:
        groups.append({"params": head, "lr_scale": head_lr_scale})
    return groups


def fit_tensor(own: torch.Tensor, theirs: torch.Tensor) -> torch.Tensor | None:
    """``theirs`` fitted to ``own``'s shape where only the first two dims differ (more or fewer
    input channels or classes): the shared part copied, the rest zero — so added guidance
    channels start ignored and a 3-class head keeps its first classes. None when it cannot fit."""
    if own.ndim != theirs.ndim or own.shape[2:] != theirs.shape[2:]:
        return None
    out = torch.zeros_like(own)
    common = tuple(slice(0, min(a, b)) for a, b in zip(own.shape, theirs.shape, strict=True))
    out[common] = theirs[common].to(own.dtype)
    return out


def batch_stream(dataset, start_step: int, batch: int, rank: int = 0, world: int = 1, workers: int = 0):
    """Batches from ``start_step`` on: step s of ``rank`` holds crops (s·world + rank)·batch …
    + batch, a pure function of the step (resume is exact), prepared by ``workers`` processes."""

    def indices():
        step = start_step
        while True:
            first = (step * world + rank) * batch
            yield from range(first, first + batch)
            step += 1

    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch, sampler=indices(), num_workers=workers,
        prefetch_factor=4 if workers else None, persistent_workers=bool(workers),
    )
    return iter(loader)


def optimizer_step(model, optimizer, loss: torch.Tensor, max_norm: float) -> bool:
    """Backward, clip, step. A non-finite loss or gradient (a bf16 overflow, a bad batch, a kernel
    that returns NaN) skips the update on every rank instead of poisoning the weights with NaNs
    (clipping an infinite norm multiplies every gradient by 0·inf); returns whether the step was
    taken. DDP's gradients are averaged before the norm, so every rank decides alike."""
    optimizer.zero_grad(set_to_none=True)
    finite = torch.isfinite(loss.detach()).float()
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(finite, op=dist.ReduceOp.MIN)
    if not finite.item():
        return False
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(unwrap(model).parameters(), max_norm)
    if not torch.isfinite(norm).item():
        optimizer.zero_grad(set_to_none=True)
        return False
    optimizer.step()
    return True


def scheduled_step(step: int, cfg, t_start: float) -> float:
    """Where the run is in its schedule: the step, or with ``time_schedule`` the share of the time
    budget used (× steps) when that is further along, so a run cut by time still anneals."""
    if cfg.time_schedule and cfg.max_minutes:
        return max(step, (time.time() - t_start) / (60 * cfg.max_minutes) * cfg.steps)
    return step


def cosine_lr(step: float, total: int, base: float, warmup: int, floor: float = 0.01) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    t = min(1.0, (step - warmup) / max(1, total - warmup))
    return float(base * (floor + (1 - floor) * 0.5 * (1 + np.cos(np.pi * t))))


class Logger:
    """JSON-lines log beside the checkpoints, echoed to stderr on the main rank."""

    def __init__(self, out: Path, enabled: bool):
        self.path, self.enabled, self.t0 = out / "log.jsonl", enabled, time.time()

    def __call__(self, **record: Any) -> None:
        if not self.enabled:
            return
        record = {"time_s": round(time.time() - self.t0, 1), **record}
        append_jsonl(self.path, record)
        print(json.dumps(record), file=sys.stderr, flush=True)


# ---------------------------------------------------------------- validation


@torch.no_grad()
def predict_probs(model, image: np.ndarray, device: torch.device, amp: bool) -> np.ndarray:
    """Whole-image probabilities (C×H×W: classes, then maps), padding to a multiple of 32 with reflection."""
    h, w = image.shape[:2]
    ph, pw = (-h) % 32, (-w) % 32
    padded = np.pad(image, ((0, ph), (0, pw), (0, 0)), mode="reflect")
    x = unwrap(model).normalize(torch.from_numpy(padded)[None].to(device))
    with autocast(device, amp):
        logits = model(x)
    from napari_glandseg.model.outputs import to_probabilities

    return to_probabilities(logits, len(unwrap(model).card.classes))[0, :, :h, :w].cpu().numpy()


def validate(model, samples, device: torch.device, amp: bool, postprocess: dict | None = None) -> dict[str, float]:
    """Object F1, object Dice, pixel Dice over whole validation images.

    Each image is post-processed with its organ's profile where the card has one (else the
    card's ``postprocess``; ``postprocess`` given: that, for every image), and the organs weigh
    equally (the images of sources that name no organ are one more), as
    ``training/tune_postprocess.py`` and the shipping rule weigh organs: a run's ``best`` then
    means the same whichever model it started from. Each group's own object F1 is in the result
    too (``object_f1_colon``…, ``object_f1_other``)."""
    from napari_glandseg.inference.postprocess import probabilities_to_instances
    from napari_glandseg.labels.metrics import evaluate_pair

    net = unwrap(model)
    card = net.card
    was_training = net.training
    net.eval()
    by_organ: dict[str | None, list[dict]] = {}
    for s in samples:
        organ = s.organ
        params = postprocess or (card.for_organ(organ) if organ in card.profiles else card).postprocess
        probs = predict_probs(net, s.image, device, amp)
        pred = probabilities_to_instances(probs, mpp=card.mpp, params=params)
        by_organ.setdefault(organ, []).append(evaluate_pair(pred, s.labels, gt_kind="instance"))
    net.train(was_training)
    first = next(iter(by_organ.values()))[0]
    keys = [k for k in first if isinstance(first[k], (int, float))]
    means = {organ: {k: float(np.mean([r[k] for r in rows])) for k in keys} for organ, rows in by_organ.items()}
    out = {k: float(np.mean([m[k] for m in means.values()])) for k in keys}
    if len(means) > 1:
        out.update({f"object_f1_{organ or 'other'}": m["object_f1"] for organ, m in means.items()})
    return out
