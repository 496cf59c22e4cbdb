"""The bundled model's card and MODEL_CARD.md name no path of the machine it was trained on."""

from __future__ import annotations

import json
import re
from pathlib import PurePosixPath, PureWindowsPath

from napari_glandseg.model.registry import bundled_weights_dir

#: An absolute path in running text: /work/..., /home/..., C:\...
ABSOLUTE = re.compile(r"(?<![\w.~])(/(?:work|home|root|mnt|tmp|Users|opt|srv|data)/|[A-Za-z]:\\)")


def _strings(obj):
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _strings(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _strings(v)


def test_shipped_card_and_model_card_have_no_machine_paths():
    folder = bundled_weights_dir()
    texts = sorted([*folder.glob("*.json"), *folder.glob("*.md"), *folder.glob("*.jsonl")])
    assert any(p.name == "MODEL_CARD.md" for p in texts)
    for path in texts:
        text = path.read_text(encoding="utf-8")
        hits = ABSOLUTE.findall(text)
        assert not hits, f"{path.name} records a machine path: {hits[:3]}"
        if path.suffix == ".json":
            for s in _strings(json.loads(text)):
                for word in s.split():
                    assert not (PurePosixPath(word).is_absolute() or PureWindowsPath(word).drive), (path.name, word)


def test_the_pattern_catches_machine_paths():
    assert ABSOLUTE.search("--out /work/runs/default_small")
    assert ABSOLUTE.search('"C:\\Users\\me"')
    assert not ABSOLUTE.search("--out runs/default_small ../shared/data/glas/train 1.24 µm/px")


def test_the_unsupervised_model_ships_with_a_card_that_says_it_saw_no_labels():
    from napari_glandseg.model import list_models
    from napari_glandseg.model.resolve import resolve
    from napari_glandseg.unsupervised.pseudo_labels import PROPOSAL_LABELS, SELF_TRAINING_LABELS

    assert "glandseg_unsupervised" in list_models()
    source = resolve("glandseg_unsupervised")
    assert source.trained and source.weights == bundled_weights_dir() / "glandseg_unsupervised.safetensors"
    card = source.card
    prov = card.provenance
    assert prov["labels"].startswith("none") and prov["data"] == ["PROPOSALS"]
    assert prov["proposals"]["labels"] in (PROPOSAL_LABELS, SELF_TRAINING_LABELS)
    assert prov["proposals"]["proposals"]["holdout"] > 0
    if prov["proposals"]["labels"] == SELF_TRAINING_LABELS:  # a self-training round: how its start was made
        first = prov["started_from"]
        while first["proposals"]["labels"] == SELF_TRAINING_LABELS:  # back to the round on proposals
            first = first["started_from"]
        assert first["labels"].startswith("none") and first["proposals"]["labels"] == PROPOSAL_LABELS
    assert card.classes == ("background", "gland", "border") and card.mpp == 1.24 and not card.profiles
