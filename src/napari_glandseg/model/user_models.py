"""The user's models folder: fine-tuned models, one sub-folder each (``NAME/model.safetensors``
+ ``NAME/model.json``), listed by name in the Segment widget and accepted by ``--model NAME``.

Where: ``$GLANDSEG_MODELS_DIR``, else the platform's user data folder (platformdirs layout:
``~/.local/share/napari-glandseg/models`` on Linux, ``~/Library/Application Support/...`` on
macOS, ``%LOCALAPPDATA%\\napari-glandseg\\models`` on Windows). Folders whose name starts with a
dot are work in progress (a fine-tune writing its result) and are never listed.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from napari_glandseg.model.card import ModelCard
from napari_glandseg.model.checkpoint import read_card
from napari_glandseg.model.registry import list_models

log = logging.getLogger(__name__)

ENV_VAR = "GLANDSEG_MODELS_DIR"
APP = "napari-glandseg"
WEIGHTS_NAME = "model.safetensors"
CARD_NAME = "model.json"
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class UserModel:
    """A model in the user's folder: its name (the folder's), weights path and card."""

    name: str
    path: Path  # NAME/model.safetensors
    card: ModelCard


def models_dir() -> Path:
    """The user models folder (not created here)."""
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser()
    home = Path.home()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or home / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = home / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or home / ".local" / "share")
    return base / APP / "models"


def list_user_models(folder: str | os.PathLike | None = None) -> list[UserModel]:
    """Complete models in ``folder`` (default: :func:`models_dir`), newest first.

    A folder without both files or with an unreadable card is skipped (with a log line), so one
    broken model never hides the others.
    """
    root = Path(folder) if folder is not None else models_dir()
    if not root.is_dir():
        return []
    found = []
    for sub in root.iterdir():
        weights = sub / WEIGHTS_NAME
        if sub.name.startswith(".") or not sub.is_dir() or not weights.is_file():
            continue
        try:
            card = read_card(weights)
        except Exception as exc:  # noqa: BLE001 - one broken folder must not hide the rest
            log.warning("skipping %s: %s", sub, exc)
            continue
        found.append((weights.stat().st_mtime, UserModel(sub.name, weights, card)))
    return [m for _, m in sorted(found, key=lambda t: (-t[0], t[1].name))]


def find_user_model(name: str, folder: str | os.PathLike | None = None) -> UserModel | None:
    """The user model called ``name`` (its folder name), or None."""
    return next((m for m in list_user_models(folder) if m.name == name), None)


def new_model_dir(base: str, folder: str | os.PathLike | None = None) -> Path:
    """A fresh, unused ``folder/NAME`` for a model made from ``base``: ``BASE-ft-YYYYMMDD-HHMM``
    (``-2``, ``-3``… when taken). Names never equal a preset's, so the pickers stay unambiguous."""
    root = Path(folder) if folder is not None else models_dir()
    stem = _SAFE.sub("_", base).strip("._-") or "model"
    stem = re.sub(r"-ft-\d{8}-\d{4}(-\d+)?$", "", stem)  # a fine-tune of a fine-tune: one suffix
    stem = f"{stem}-ft-{time.strftime('%Y%m%d-%H%M')}"
    taken = set(list_models())
    name, i = stem, 1
    while name in taken or (root / name).exists():
        i += 1
        name = f"{stem}-{i}"
    return root / name
