"""Options every model-running command shares: precision, CPU threads, the organ's post-processing."""

from __future__ import annotations

import argparse

from napari_glandseg.model.precision import PRECISIONS


def _threads(text: str) -> int:
    n = int(text)
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {n}")
    return n


def add_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--precision", choices=PRECISIONS, default="auto",
                        help="auto (default: bf16 only where the CPU runs it natively and it times faster, "
                             "else fp32; mixed precision on a GPU), fp32 or bf16")
    parser.add_argument("--threads", type=_threads, default=None,
                        help="torch threads on a CPU (default: the cores free to this process)")
    parser.add_argument("--organ", default=None,
                        help="post-processing profile of the model card (e.g. colon, prostate; default: the card's)")
