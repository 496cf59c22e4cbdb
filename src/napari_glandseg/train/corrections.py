"""Fine-tune a model on the user's corrections: the one engine behind ``glandseg finetune`` and
the viewer's "Fine-tune on my corrections" button.

It checks every input before anything heavy runs, holds part of the corrections back, mixes in
replay of the base model's own training data (so it keeps the organs it knew), trains within a
time budget (the learning rate anneals within it), scores the held-back part before and after,
and writes ``OUT/model.safetensors`` + ``OUT/model.json`` (card with provenance) by renaming a
finished folder into place: a cancel, an error or a kill never leaves a half-written model.

    result = finetune_on_corrections("glandseg_small", folders=[ImageFolders(imgs, masks, 0.5)],
                                     out_dir="my_model", minutes=5)
    result.before["object_f1"], result.after["object_f1"]
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import os
import re
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from glob import escape as glob_escape
from pathlib import Path
from typing import Any

import torch

from napari_glandseg._lock import pid_alive
from napari_glandseg.errors import Cancelled, GlandsegError, Progress
from napari_glandseg.model.card import ModelCard
from napari_glandseg.model.user_models import CARD_NAME, WEIGHTS_NAME
from napari_glandseg.train.corrections_data import (
    ImageFolders,
    check_folders,
    hold_back,
    load_folders,
    load_package,
    load_replay,
    mix,
    replay_sources,
)
from napari_glandseg.train.corrections_scoring import (
    MIN_GLANDS,
    calibrate_postprocess,
    candidates,
    held_back_glands,
    predict_boxes,
    score_boxes,
)
from napari_glandseg.train.corrections_settings import CorrectionSettings
from napari_glandseg.train.data import Sample

log = logging.getLogger(__name__)
#: Progress is reported in thousandths of the whole run.
TOTAL = 1000


@dataclass
class CorrectionResult:
    """What a fine-tune made and how it scored (metrics: object_f1, pixel_dice, object_dice…)."""

    model_path: Path  # OUT/model.safetensors
    card: ModelCard
    before: dict[str, float]  # base model on the held-back corrections
    after: dict[str, float]  # fine-tuned model on the same
    replay_before: dict[str, float] | None  # held-out replay images (forgetting), None without replay
    replay_after: dict[str, float] | None
    steps: int
    seconds: float
    warnings: list[str] = field(default_factory=list)
    worse: bool = False  # scores worse than the base on the held-back corrections: saved, marked, not to be selected


def finetune_on_corrections(
    base_model: Any,
    *,
    out_dir: str | os.PathLike,
    folders: Sequence[ImageFolders] = (),
    packages: Sequence[str | os.PathLike] = (),
    samples: Sequence[Sample] = (),
    replay: Sequence[Any] | None = None,
    minutes: float | None = None,
    settings: CorrectionSettings | None = None,
    name: str | None = None,
    sources: Sequence[dict[str, Any]] = (),
    progress: Progress | None = None,
    cancel: Any = None,
) -> CorrectionResult:
    """Fine-tune ``base_model`` (preset, checkpoint path, user model name or a module: copied)
    on ``folders``, ``packages`` and in-memory ``samples`` (at the model's µm/px), replaying
    ``replay`` (default: found from the base card, see ``corrections_data``).

    ``progress(done, total, message)``; ``cancel.is_set()`` stops the run (``Cancelled``, nothing
    written). ``sources`` describes ``samples`` for the card. Bad inputs raise ``GlandsegError``
    before training starts. The card's name is ``name`` or the output folder's.
    """
    s = settings or CorrectionSettings()
    if minutes is not None:
        s = dataclasses.replace(s, minutes=minutes)
    out_dir = Path(out_dir)
    if out_dir.is_symlink():  # a link to an (empty) folder: the model goes where it points
        out_dir = out_dir.resolve()
    clock = _Clock(s.minutes, progress)
    clock.say("checking the corrections")
    _check_out_dir(out_dir)
    pairs = [check_folders(f) for f in folders]
    if not (folders or packages or samples):
        raise GlandsegError("no corrections given: image/mask folders, training packages or reviewed regions")
    _stop_if(cancel)

    clock.say("loading the base model")
    model, base = _load_base(base_model, s.device)
    mpp = model.card.mpp
    user = list(samples)
    for f, p in zip(folders, pairs, strict=True):
        user += load_folders(f, mpp, p)
    for pkg in packages:
        user += load_package(Path(pkg), mpp)
    train, val = hold_back(user, s.val_fraction, s.seed)
    warnings: list[str] = []
    config = model.card.provenance.get("config") or {}
    replay_src = replay_sources(model.card.provenance, replay, checkpoint=base.get("path"), warn=warnings.append)
    for w in warnings:
        log.warning(w)
    clock.say("loading replay data" if replay_src else "no replay data")
    replay_train, replay_check = load_replay(
        replay_src, model_mpp=mpp, val_fraction=float(config.get("val_fraction", 0.15)),
        seed=int(config.get("seed", 0)), check_images=s.check_images)
    _stop_if(cancel)

    staging = _staging(out_dir)
    committed = False
    try:
        clock.say("scoring the base model on the held-back corrections")
        device = _start(s)
        t_score = time.monotonic()
        base_post = dict(model.card.postprocess)
        val_boxes, check_boxes = _predict(model, val, replay_check, device, s.amp, cancel)
        t_post = time.monotonic()
        before = score_boxes(val_boxes, mpp=mpp, params=base_post)
        replay_before = score_boxes(check_boxes, mpp=mpp, params=base_post) if replay_check else None
        post_s = time.monotonic() - t_post
        score_s = time.monotonic() - t_score
        _stop_if(cancel)

        data = mix(train, replay_train, s.replay_ratio)
        # the after-scores take as long as the before-scores, the calibration one post-processing per candidate
        calibrate = s.calibrate_postprocess and held_back_glands(val_boxes) >= MIN_GLANDS
        del val_boxes, check_boxes  # the after-scores predict again: one set of probabilities at a time
        calibrate_s = post_s * len(candidates(base_post)) if calibrate else 0.0
        budget_s = clock.left() - score_s - calibrate_s - 2.0
        if budget_s < MIN_TRAIN_S:
            need_min = (clock.elapsed() + score_s + calibrate_s + 2.0 + MIN_TRAIN_S) / 60
            raise GlandsegError(f"{s.minutes:g} minutes leave no time to train: scoring the held-back corrections "
                                f"alone takes {score_s:.0f} s twice; give at least {math.ceil(need_min * 10) / 10:g} "
                                "minutes")
        steps, stopped = _train(model, data, s, staging, device, budget_s, clock, cancel, describe=[
            *sources, *(_describe_folders(f) for f in folders), *({"package": str(p)} for p in packages)])
        if stopped == "cancelled":
            raise Cancelled("fine-tuning cancelled")

        _check_finite(model, s.lr)
        clock.say("scoring the fine-tuned model")
        val_boxes, check_boxes = _predict(model, val, replay_check, device, s.amp, cancel)
        calibration = None
        post = base_post
        if s.calibrate_postprocess:
            clock.say("choosing the post-processing on the held-back corrections")
            post, calibration = calibrate_postprocess(val_boxes, check_boxes, mpp=mpp, base=base_post,
                                                      cancelled=lambda: cancel is not None and cancel.is_set())
        after = score_boxes(val_boxes, mpp=mpp, params=post)
        replay_after = score_boxes(check_boxes, mpp=mpp, params=post) if replay_check else None
        worse = _worse(before, after, base["info"]["name"], warnings)
        _stop_if(cancel)
        clock.say("saving")
        card = model.card.replace(name=name or out_dir.name, postprocess=post, provenance={
            "fine_tuned_from": base["info"],
            # what a later fine-tune of this model replays: the base model's data
            "data": [{"path": str(src.path), "mpp": src.mpp, "weight": src.weight} for src in replay_src]
                    or list(model.card.provenance.get("data") or []),
            "corrections": [*sources, *(_describe_folders(f) for f in folders), *({"package": str(p)} for p in packages)],
            "held_back": {"images": len(val), "fraction": s.val_fraction, "before": before, "after": after},
            # chosen on the held-back corrections, so "after" there is a little optimistic
            "postprocess_calibration": calibration,
            "replay": {"sources": [str(src.path) for src in replay_src], "ratio": s.replay_ratio if replay_train else 0.0,
                       "images": len(replay_train), "check_before": replay_before, "check_after": replay_after},
            "steps": steps, "seconds": round(clock.elapsed(), 1), "stopped": stopped,
            "settings": dataclasses.asdict(s), "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "compute": _compute(device, s.amp),
            "warnings": warnings, "worse_than_base": worse,
        })
        _finish(model, card, staging, out_dir)
        committed = True
    except OSError as exc:  # a full disk, a read-only folder: one clear line, nothing left behind
        where = exc.filename or out_dir
        raise GlandsegError(f"{where}: cannot write the fine-tuned model ({exc.strerror or exc}); "
                            "free some space or choose another output folder") from exc
    finally:
        if not committed:
            shutil.rmtree(staging, ignore_errors=True)
    clock.report(TOTAL, f"done: object F1 {before['object_f1']:.3f} → {after['object_f1']:.3f}")
    return CorrectionResult(out_dir / WEIGHTS_NAME, card, before, after, replay_before, replay_after, steps,
                            clock.elapsed(), warnings, worse)


def _check_finite(model: torch.nn.Module, lr: float) -> None:
    """A diverged fine-tune (weights inf or NaN) is an error: nothing is saved."""
    tensors = [t for t in (*model.parameters(), *model.buffers()) if t.is_floating_point()]
    bad = sum(int((~torch.isfinite(t)).sum()) for t in tensors)
    if bad:
        total = sum(t.numel() for t in tensors)
        raise GlandsegError(f"fine-tuning diverged: {bad:,} of {total:,} weights are not finite; nothing was "
                            f"saved (try a lower learning rate than {lr:g})")


def _worse(before: dict[str, float], after: dict[str, float], base: str, warnings: list[str]) -> bool:
    """True (and a warning) when the fine-tune scores worse than the base on the held-back part."""
    if not after["object_f1"] < before["object_f1"]:
        return False
    warnings.append(f"the fine-tuned model scores worse than {base} on the held-back corrections (object F1 "
                    f"{before['object_f1']:.3f} → {after['object_f1']:.3f}): it is saved marked "
                    "worse_than_base and not selected; keep the base model, or review more regions and try again")
    log.warning(warnings[-1])
    return True


def _compute(device: torch.device, amp: bool) -> dict[str, Any]:
    """How the fine-tune ran: device, the precision ``amp`` resolved to here, threads, CPU kind."""
    from napari_glandseg.model.precision import cpu_description, precision_name, resolve_precision

    out: dict[str, Any] = {"device": str(device),
                           "precision": precision_name(resolve_precision(device, "auto" if amp else "fp32"))}
    if device.type == "cpu":
        out.update(threads=torch.get_num_threads(), cpu=cpu_description())
    return out


# ----------------------------------------------------------------- training


def _train(model, data: list[Sample], s: CorrectionSettings, staging: Path, device: torch.device,
           budget_s: float, clock: _Clock, cancel: Any, describe: list) -> tuple[int, str]:
    """Run the shared training loop on ``data`` for ``budget_s`` seconds (or ``max_steps``)."""
    from napari_glandseg.train.common import batch_stream
    from napari_glandseg.train.data import CropDataset
    from napari_glandseg.train.loop import LoopHooks, run_loop
    from napari_glandseg.train.supervised import FinetuneConfig, train_step

    steps = s.max_steps or 10**6  # time-bounded: the schedule follows the share of the budget used
    cfg = FinetuneConfig(
        data=[str(d) for d in describe] or ["corrections"], out=str(staging), crop_px=s.crop_px,
        batch_size=s.batch_size, steps=steps, lr=s.lr, weight_decay=s.weight_decay,
        warmup_steps=max(1, round(s.warmup_fraction * steps)), val_every=10**9, save_every=10**9,
        max_minutes=max(budget_s, 1.0) / 60, time_schedule=True, amp=s.amp, device=s.device,
        threads=s.threads, seed=s.seed,
    )
    model.to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=s.lr, weight_decay=s.weight_decay)
    dataset = CropDataset(data, s.crop_px, length=10**9, seed=s.seed, border_px=cfg.border_px,
                          distance=getattr(model, "distance_head", False))
    stream = batch_stream(dataset, 0, s.batch_size)
    t0, end = time.monotonic(), time.monotonic() + max(budget_s, 1.0)

    def on_step(step: int, total: int, record: dict[str, Any]) -> None:
        share = max(step / s.max_steps if s.max_steps else 0.0, (time.monotonic() - t0) / max(end - t0, 1e-9))
        clock.training(min(share, 1.0), f"step {step}, loss {record['loss']:.3f}")

    log = _FileLog(staging)
    log(event="start", samples=len(data), budget_s=round(budget_s, 1), max_steps=s.max_steps, device=str(device))
    result = run_loop(
        cfg, model, optimizer, stream,
        lambda images, targets, tumor: train_step(model, optimizer, images, targets, tumor, cfg, device),
        step=0, best={}, out=staging, log=log,
        hooks=LoopHooks(progress=on_step, cancelled=lambda: bool(cancel is not None and cancel.is_set())),
    )
    model.eval()
    return result.step, result.stopped


def _predict(model, val: list[Sample], check: list[Sample], device: torch.device, amp: bool,
             cancel: Any) -> tuple[list, list]:
    """Probabilities on the held-back corrections and the held-out replay images."""
    return predict_boxes(model, val, device, amp, cancel), predict_boxes(model, check, device, amp, cancel)


def _start(s: CorrectionSettings) -> torch.device:
    from napari_glandseg.model.device import pick_device

    if s.threads:
        torch.set_num_threads(s.threads)
    torch.manual_seed(s.seed)
    return pick_device(s.device)


def _load_base(spec: Any, device: str) -> tuple[torch.nn.Module, dict[str, Any]]:
    """A trainable copy of the base model and what to record about it (name, source, weights hash)."""
    from napari_glandseg.model import resolve

    if isinstance(spec, torch.nn.Module):
        model = copy.deepcopy(spec).cpu()
        return model, {"info": {"name": model.card.name, "source": "in memory"}, "path": None}
    try:
        source = resolve(str(spec))
        model = source.load("cpu")
    except ValueError as exc:
        raise GlandsegError(f"base model: {exc}") from exc
    info = {"name": model.card.name, "source": str(spec)}
    if (digest := source.sha256()) is not None:
        info["sha256"] = digest
    return model, {"info": info, "path": source.weights}


# ----------------------------------------------------------------- the output folder


def _check_out_dir(out_dir: Path) -> None:
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise GlandsegError(f"{out_dir}: already exists and is not an empty folder; choose a new output folder")


def _staging(out_dir: Path) -> Path:
    """A hidden work folder beside ``out_dir`` (same file system: the final rename is atomic),
    named with this host and process; work folders of this host's runs that died are removed."""
    host = _host_tag()
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        ours = re.compile(rf"\.{re.escape(out_dir.name)}\.{re.escape(host)}\.(\d+)\.[a-z0-9_]+\.partial")
        for old in out_dir.parent.glob(f".{glob_escape(out_dir.name)}.{host}.*.partial"):
            match = ours.fullmatch(old.name)  # exactly this --out's work folder, not another's
            if match and not pid_alive(int(match.group(1))):
                shutil.rmtree(old, ignore_errors=True)
        return Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.{host}.{os.getpid()}.", suffix=".partial",
                                     dir=out_dir.parent))
    except OSError as exc:
        raise GlandsegError(f"{out_dir.parent}: cannot write there ({exc.strerror or exc}); "
                            "choose another output folder") from exc


def _host_tag() -> str:
    import socket

    return "".join(c for c in socket.gethostname() if c.isalnum() or c == "-")[:40] or "host"


def _finish(model, card: ModelCard, staging: Path, out_dir: Path) -> None:
    """Model + card + training log into ``staging``, the work files out, then one rename."""
    from napari_glandseg.model import save_checkpoint

    save_checkpoint(model, staging / Path(WEIGHTS_NAME).stem, card=card)
    assert (staging / CARD_NAME).exists()
    for p in staging.iterdir():
        if p.name == "log.jsonl":
            p.rename(staging / "training_log.jsonl")
        elif p.name not in (WEIGHTS_NAME, CARD_NAME):
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    os.chmod(staging, 0o755)  # mkdtemp's 0700 would hide the model from other users
    _check_out_dir(out_dir)
    if out_dir.exists():
        out_dir.rmdir()  # empty (checked): replaced by the finished folder
    os.replace(staging, out_dir)


MIN_TRAIN_S = 10.0  # fewer seconds of training than this would save a model that has barely moved


def _describe_folders(f: ImageFolders) -> dict[str, Any]:
    return {"images": str(Path(f.images).resolve()), "masks": str(Path(f.masks).resolve()), "mpp": f.mpp}


def _stop_if(cancel: Any) -> None:
    if cancel is not None and cancel.is_set():
        raise Cancelled("fine-tuning cancelled")


class _FileLog:
    """The training log, to ``log.jsonl`` only (the caller shows progress its own way)."""

    def __init__(self, out: Path):
        self.path, self.t0 = out / "log.jsonl", time.time()

    def __call__(self, **record: Any) -> None:
        from napari_glandseg._atomic import append_jsonl

        append_jsonl(self.path, {"time_s": round(time.time() - self.t0, 1), **record})


class _Clock:
    """Progress in thousandths of the time budget, with the time left in the message."""

    def __init__(self, minutes: float, progress: Progress | None):
        self.t0, self.budget, self.progress = time.monotonic(), minutes * 60.0, progress
        self.done = 0

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def left(self) -> float:
        return self.budget - self.elapsed()

    def report(self, done: int, message: str) -> None:
        self.done = max(self.done, min(done, TOTAL))
        if self.progress is not None:
            self.progress(self.done, TOTAL, message)

    def say(self, message: str) -> None:
        self.report(round(TOTAL * min(self.elapsed() / self.budget, 0.99)), message + "…")

    def training(self, share: float, message: str) -> None:
        done = max(round(TOTAL * min(self.elapsed() / self.budget, 0.99)), round(TOTAL * 0.95 * share))
        left = max(0.0, self.left())
        self.report(done, f"fine-tuning: {message}, about {int(left // 60)}:{int(left % 60):02d} left")
