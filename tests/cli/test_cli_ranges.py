"""µm/px and counts out of range are one clear line, not a traceback or silent zeros (issue 23)."""

from __future__ import annotations

import pytest

from napari_glandseg.cli import main
from napari_glandseg.model import ModelCard


@pytest.mark.parametrize("argv, says", [
    (["segment", "{cmu}", "--out", "{tmp}/o", "--mpp", "1e9"], "--mpp"),
    (["segment", "{cmu}", "--out", "{tmp}/o", "--mpp", "200"], "--mpp"),
    (["evaluate", "--images", "{glas}/images", "--masks", "{glas}/instances", "--mpp", "1e-9"], "--mpp"),
    (["evaluate", "--images", "{glas}/images", "--masks", "{glas}/instances", "--limit", "-1"], "--limit"),
])
def test_out_of_range_is_one_line(argv, says, cmu_svs, shared_data, tmp_path, capsys):
    glas = shared_data / "glas" / "testA"
    argv = [a.format(cmu=cmu_svs, tmp=tmp_path, glas=glas) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and says in err[0] and "Traceback" not in err[0], err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("mpp", [1e-4, 1e6])
def test_a_card_with_an_absurd_mpp_is_refused(mpp):
    with pytest.raises(ValueError, match="mpp must be a µm/px"):
        ModelCard("m", mpp=mpp)
