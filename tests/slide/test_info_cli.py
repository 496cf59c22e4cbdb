"""``glandseg info`` on real slides."""

from __future__ import annotations

import json

from napari_glandseg.cli import main


def test_info_json_on_cmu(cmu_svs, capsys):
    assert main(["info", str(cmu_svs), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["format"] == "aperio-svs"
    assert info["mpp"] == 0.499 and info["magnification"] == 20
    assert info["shape"] == [2967, 2220]
    assert info["associated"] == ["label", "macro", "thumbnail"]
    assert info["levels"][0] == {
        "level": 0, "shape": [2967, 2220], "downsample": 1.0, "chunk": [240, 240],
        "native": True, "mpp": 0.499,
    }


def test_info_table_on_tcga_with_mpp_override(tcga_svs, capsys):
    assert main(["info", str(tcga_svs)]) == 0
    out = capsys.readouterr().out
    assert "aperio-svs" in out and "unknown (pass --mpp)" in out and "4443" in out
    assert main(["info", str(tcga_svs), "--mpp", "0.25", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["mpp"] == 0.25 and abs(info["levels"][1]["mpp"] - 0.25 * 2.0005) < 1e-5


def test_info_error_exit_code(tmp_path, capsys):
    bad = tmp_path / "bad.svs"
    bad.write_text("not a slide")
    assert main(["info", str(bad)]) == 2
    assert "bad.svs" in capsys.readouterr().err


def test_info_into_a_closed_pipe_ends_quietly(cmu_svs):
    """``glandseg info … | head -0``: the reader is gone before anything is written; no traceback."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "napari_glandseg.cli", "info", str(cmu_svs)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # like head exiting at once
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141 and "Traceback" not in err and "BrokenPipe" not in err, err
