"""The settings of fine-tuning on corrections (torch-free: the command line shows the defaults
without importing the engine)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from napari_glandseg.errors import GlandsegError

#: Where replay data is when the base model's card does not say (``PATH[@MPP[@WEIGHT]]``
#: entries separated by ``os.pathsep``, or ``none``).
REPLAY_ENV = "GLANDSEG_REPLAY_DATA"
#: The largest learning rate accepted (fine-tuning uses about 1e-4; far above 1 the optimizer overflows).
MAX_LR = 1.0
#: The largest crop edge (model px): a batch of 2048² crops already takes GiB.
MAX_CROP_PX = 2048

@dataclass(frozen=True)
class CorrectionSettings:
    """How a fine-tune on corrections trains (defaults measured on the RINGS tiles, README)."""

    minutes: float = 5.0  # the whole run, loading and scoring included
    max_steps: int | None = None  # an upper bound on optimizer steps (None: the time budget decides)
    lr: float = 2e-4
    batch_size: int = 4  # twice the steps of 8 in the same time: better within a few minutes on a CPU
    crop_px: int = 256
    replay_ratio: float = 0.5  # share of crops from the base model's training data
    val_fraction: float = 0.2  # share of the corrections held back for before/after
    warmup_fraction: float = 0.05
    weight_decay: float = 0.05
    check_images: int = 4  # held-out replay images per source that measure forgetting
    calibrate_postprocess: bool = True  # choose gland threshold and minimum area on the held-back corrections (from 30 glands)
    device: str = "auto"
    threads: int | None = None
    amp: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.minutes) and self.minutes > 0):
            raise GlandsegError(f"the time budget must be a positive number of minutes, got {self.minutes}")
        if self.max_steps is not None and self.max_steps < 1:
            raise GlandsegError(f"max_steps must be at least 1, got {self.max_steps}")
        if not 0 <= self.replay_ratio < 1 or not 0 < self.val_fraction <= 0.5:
            raise GlandsegError("replay_ratio must be in [0, 1) and val_fraction in (0, 0.5]")
        if self.crop_px % 32 or not 64 <= self.crop_px <= MAX_CROP_PX or self.batch_size < 1:
            raise GlandsegError(f"crop_px must be a multiple of 32 in [64, {MAX_CROP_PX}] and batch_size >= 1, "
                                f"got {self.crop_px} and {self.batch_size}")
        if not 0 <= self.seed < 2**32:
            raise GlandsegError(f"the seed must be in [0, 2**32), got {self.seed}")
        if not (math.isfinite(self.lr) and 0 < self.lr <= MAX_LR):
            raise GlandsegError(f"the learning rate must be a number in (0, {MAX_LR:g}], got {self.lr}")
