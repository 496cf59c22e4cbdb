"""segment_slide on a real dask.distributed LocalCluster equals the local run."""

from __future__ import annotations

import numpy as np
import pytest
from _inference_models import ThresholdModel, disc_image, make_threshold_model, write_disc_slide

from napari_glandseg.inference import SlideRunSettings, segment_many, segment_slide
from napari_glandseg.inference.distributed_run import worker_stats
from napari_glandseg.slide import open_slide

distributed = pytest.importorskip("distributed")
pytestmark = pytest.mark.slow  # a LocalCluster of 2 worker processes

DISCS = [(256, 256, 60), (256, 600, 80), (520, 380, 70), (100, 700, 40), (600, 700, 50)]


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=None)
    with distributed.Client(cluster) as c:
        yield c
    cluster.close()


@pytest.fixture(scope="module")
def disc_slides(tmp_path_factory):
    d = tmp_path_factory.mktemp("dist")
    a = write_disc_slide(d / "a.tif", disc_image(700, 800, DISCS), mpp=1.0)
    b = write_disc_slide(d / "b.tif", disc_image(300, 500, DISCS[:1]), mpp=1.0)
    return a, b


def test_cluster_run_equals_local_run_and_loads_the_model_once_per_worker(client, disc_slides, tmp_path):
    path, _ = disc_slides
    local = segment_slide(open_slide(path), tmp_path / "local.zarr", ThresholdModel(), SlideRunSettings(chunk_px=128)).store
    run = segment_slide(open_slide(path), tmp_path / "dist.zarr", make_threshold_model,
                        SlideRunSettings(chunk_px=128, device="cpu"), client=client)
    assert run.chunks_run == run.chunks == 6 * 7
    np.testing.assert_array_equal(np.asarray(run.store.levels[0][:]), np.asarray(local.levels[0][:]))
    per_worker = client.run(worker_stats)
    assert sum(s["chunks"] for s in per_worker.values()) == 42
    assert all(s["model_loads"] <= 1 for s in per_worker.values())
    # a module (not a factory) is scattered to the workers once, not sent with every task
    dist2 = segment_slide(open_slide(path), tmp_path / "dist2.zarr", ThresholdModel(),
                          SlideRunSettings(chunk_px=128), client=client).store
    np.testing.assert_array_equal(np.asarray(dist2.levels[0][:]), np.asarray(local.levels[0][:]))
    assert all(s["model_loads"] <= 2 for s in client.run(worker_stats).values())


def test_segment_many_spreads_slides_over_the_cluster(client, disc_slides, tmp_path):
    out = segment_many(disc_slides, tmp_path / "many", model=make_threshold_model,
                       settings=SlideRunSettings(chunk_px=128), client=client)
    assert set(out) == {str(p) for p in disc_slides}
    for p, store_path in out.items():
        assert store_path == tmp_path / "many" / open_slide(p).name / "labels.ome.zarr"
        assert store_path.exists()


def test_a_worker_without_the_clients_weights_path_resolves_the_name_itself(tmp_path):
    """Remote workers get the client's resolved model; where its file path does not exist there
    (another machine or install), the worker looks the same name up in its own install."""
    import dataclasses

    from napari_glandseg.inference.distributed_run import _load_source
    from napari_glandseg.model.resolve import resolve

    here = resolve("glandseg_small")
    elsewhere = dataclasses.replace(here, weights=tmp_path / "not-on-this-worker" / "glandseg_small.safetensors")
    model = _load_source(elsewhere, "cpu")
    assert model.card.name == "glandseg_small" and model.in_chans == 3
