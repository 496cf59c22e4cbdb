"""Writing a model into the package: fp16 weights + card beside the bundled ones, the card's
provenance free of machine paths (the run folder is called RUN), and the run's training log."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

WEIGHTS = Path(__file__).resolve().parents[1] / "src" / "napari_glandseg" / "model" / "weights"
#: An absolute path in running text (as tests/model/test_shipped_files.py looks for them).
ABSOLUTE = re.compile(r"(?<![\w.~])(/(?:work|home|root|mnt|tmp|Users|opt|srv|data)/|[A-Za-z]:\\)")


def without_run_dir(provenance: dict, run_dir: Path, name: str = "RUN") -> dict:
    """``provenance`` with the run folder's path written ``name`` (tests/model/test_shipped_files.py)."""
    text = json.dumps(provenance, default=str)
    return json.loads(text.replace(str(run_dir.resolve()), name).replace(str(run_dir), name))


def machine_paths(provenance: dict) -> list[str]:
    """The absolute paths ``provenance`` still records (none may ship)."""
    return ABSOLUTE.findall(json.dumps(provenance, default=str))


def write_bundled(model, card, run_dir: Path, name: str) -> Path:
    """Save ``model`` with ``card`` as the bundled ``name`` (fp16) and copy the run's log beside it."""
    from napari_glandseg.model import save_checkpoint

    save_checkpoint(model, WEIGHTS / name, card=card, half=True)
    log = run_dir / "log.jsonl"
    if log.exists():
        shutil.copy(log, WEIGHTS / f"{name}.training_log.jsonl")
    return WEIGHTS / f"{name}.safetensors"
