"""A run's training and validation samples, already at the model's µm/px, in one ``.npz`` file.

A machine that has neither ``../shared`` nor the slide readers (a lent GPU machine: no dask, zarr
or imagecodecs) trains on exactly the split and the glass a config gives here:
``training/pack_samples.py`` writes the file, a config's ``samples`` setting reads it.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import numpy as np

from napari_glandseg.train.data import Sample

FORMAT = "glandseg-samples/1"


def write_samples(path: Path, train: list[Sample], val: list[Sample], *, mpp: float, meta: dict | None = None) -> None:
    """Write both lists (images, instance labels, validity, grade, weight, organ), all at ``mpp`` µm/px,
    to ``path``, whole or not at all (written beside it, then renamed)."""
    path = Path(path)
    arrays, index = {}, []
    for split, samples in (("train", train), ("val", val)):
        for n, s in enumerate(samples):
            key = f"{split}{n}"
            arrays[f"{key}_image"], arrays[f"{key}_labels"] = s.image, s.labels.astype(np.int32)
            arrays[f"{key}_valid"] = s.valid
            index.append({"key": key, "split": split, "name": s.name, "tumor": int(s.tumor), "weight": float(s.weight),
                          "organ": s.organ})
    header = {"format": FORMAT, "mpp": float(mpp), "samples": index, **(meta or {})}
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    tmp = path.with_name(path.name + ".partial")
    with open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays)
    os.replace(tmp, path)


def read_samples(path: Path) -> tuple[list[Sample], list[Sample], dict]:
    """(train, val, header) as ``write_samples`` wrote them; a file that is not one, or is
    damaged, raises ValueError naming it."""
    path = Path(path)
    try:
        with np.load(path) as data:
            header = json.loads(bytes(data["header"]).decode()) if "header" in data else {}
            if header.get("format") != FORMAT:
                raise ValueError(f"not a samples file of format {FORMAT} (it says {header.get('format')!r})")
            out: dict[str, list[Sample]] = {"train": [], "val": []}
            for entry in header["samples"]:
                key = entry["key"]
                arrays = [data[f"{key}_{part}"] for part in ("image", "labels", "valid")]
                out[entry["split"]].append(Sample(entry["name"], *arrays, entry["tumor"], entry["weight"],
                                                  entry.get("organ")))
            float(header["mpp"])
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{path}: cannot read the samples file: {exc}") from exc
    return out["train"], out["val"], header
