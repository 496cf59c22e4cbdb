"""Progress without a terminal (issue 10.4): a line every few seconds with done/total, rate, ETA."""

from __future__ import annotations

import io

from _inference_models import ThresholdModel, disc_image, write_disc_slide

from napari_glandseg.inference import SlideRunSettings, segment_slide
from napari_glandseg.inference.progress import ProgressLog, format_seconds
from napari_glandseg.slide import open_slide


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_a_line_per_stage_start_every_few_seconds_and_at_the_end():
    out, clock = io.StringIO(), Clock()
    log = ProgressLog("slide", every_s=5.0, stream=out, clock=clock)
    log(0, 4, "chunks")
    log(0, 100, "tiles")
    for done in range(1, 101):
        clock.t += 0.5  # 2 tiles/s
        log(done, 100, "tiles")
    log(4, 4, "chunks")
    lines = out.getvalue().splitlines()
    assert lines[0] == "slide: chunks 0/4 (0 %)"
    assert lines[1] == "slide: tiles 0/100 (0 %); chunks 0/4"
    # 50 s of tiles: one line every 5 s, plus the last
    assert len([x for x in lines if x.startswith("slide: tiles")]) == 1 + 10 + 1
    assert "slide: tiles 10/100 (10 %), 2/s, ETA 45 s; chunks 0/4" in lines
    assert lines[-2] == "slide: tiles 100/100 (100 %), 2/s; chunks 0/4"
    assert lines[-1] == "slide: tiles 100/100 (100 %), 2/s; chunks 4/4"


def test_seconds_read_well():
    assert [format_seconds(s) for s in (0.4, 42, 185, 7440)] == ["0 s", "42 s", "3 min 05 s", "2 h 04 min"]


def test_a_whole_slide_run_reports_its_model_tiles(tmp_path):
    img = disc_image(700, 900, [(200, 300, 60), (500, 650, 80)], tissue=(0, 0, 700, 600))
    path = write_disc_slide(tmp_path / "discs.tif", img, mpp=1.0)
    seen: list[tuple[int, int, str]] = []
    run = segment_slide(open_slide(path), tmp_path / "s.zarr", ThresholdModel(), SlideRunSettings(chunk_px=256),
                        tile_progress=lambda d, t, m: seen.append((d, t, m)))
    assert {m for _, _, m in seen} == {"tiles"}
    done = [d for d, _, _ in seen]
    assert done == sorted(done) and done[0] == 0 and done[-1] == run.tiles_run == seen[-1][1]
