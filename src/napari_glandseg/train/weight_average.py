"""A running average of a network's weights during training (an exponential moving average, as
timm's ``ModelEma`` and Polyak averaging keep one).

Each step's weights wander with its batch: on a small validation set the run's best checkpoint
then partly picks the luckiest wander. The average follows the same run without the wander; a
run that keeps one validates it and keeps it as ``best`` (``FinetuneConfig.ema_decay``).

The decay ramps up over the first updates, ``min(decay, (1 + n) / (10 + n))``, so that an
average started from random weights forgets them quickly. The average and its update count are
part of the resume state: a stopped run continues the same average.
"""

from __future__ import annotations

import torch
from torch import nn

from napari_glandseg.train.smit import ema_update, make_teacher

PREFIX = "average."
COUNT = "average_updates"


class WeightAverage:
    """The running average of ``net``'s parameters in a frozen copy of it (``.net``)."""

    def __init__(self, net: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"ema_decay must be in (0, 1), got {decay}")
        self.net = make_teacher(net).eval()
        self.decay = decay
        self.updates = 0

    def current_decay(self) -> float:
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    def update(self, net: nn.Module) -> None:
        """Fold ``net``'s current parameters into the average."""
        ema_update(self.net, net, self.current_decay())
        self.updates += 1

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """What the resume state keeps of the average."""
        tensors = {PREFIX + k: v for k, v in self.net.state_dict().items()}
        tensors[COUNT] = torch.tensor(self.updates, dtype=torch.int64)
        return tensors

    def restore(self, tensors: dict[str, torch.Tensor], net: nn.Module) -> None:
        """The average saved with a run's resume state; a run resumed without one (it was started
        without averaging) starts its average from ``net``'s resumed weights."""
        own = {k[len(PREFIX):]: v for k, v in tensors.items() if k.startswith(PREFIX)}
        if not own:
            self.net.load_state_dict(net.state_dict())
            self.updates = 0
            return
        self.net.load_state_dict(own)
        self.updates = int(tensors[COUNT])
