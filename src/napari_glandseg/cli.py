"""The ``glandseg`` command: each sub-command lives in ``napari_glandseg.commands.<name>``."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from napari_glandseg import __version__
from napari_glandseg.errors import Cancelled, GlandsegError

#: Sub-command modules; each exposes ``register(subparsers)`` and sets ``func`` on its parser.
COMMANDS = ("info", "segment", "evaluate", "finetune", "propose")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="glandseg", description="Gland segmentation for H&E whole-slide images."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more detail")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"napari_glandseg.commands.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe (``| head``) shows here, inside the handlers below
        return code
    except BrokenPipeError:
        # the reader stopped reading: no traceback, and none at exit when Python flushes stdout
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, as a shell tool killed by the closed pipe
    except GlandsegError as exc:
        print(f"glandseg {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except Cancelled:
        print(f"glandseg {args.command}: cancelled; run again with --resume to continue", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print(f"glandseg {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
