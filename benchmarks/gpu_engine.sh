#!/bin/bash
# Segment view's and Segment slide's compute on CUDA (the threaded engine, no dask.distributed):
# segment_view.py on a 2048×1024 field, then segment_slide.py end to end on a generated 40,000²
# slide of real GlaS tissue, reporting tiles/s against the bare forward rate of the same model,
# batch and device (engine_ratio) and where the time goes (the run's timings). One JSON line each,
# also written to $OUT.
#
# The device machine has PyTorch but not dask, zarr, imagecodecs and their needs, and ../shared
# does not travel. So, here, once per session (no device time):
#
#   bash benchmarks/gpu_engine.sh --prepare   # wheels (the lock's versions, Python 3.12: 37 MB) + 4 GlaS images
#   (4 images, not the 16-24 the benchmarks take from ../shared: the tissue repeats more, the work is the same)
#
# The working tree travels whole and may hold 64 MiB: --stash deletes, in this checkout, the
# tracked files the run does not need (the bundled weights but glandseg_small, the samples, the
# screenshots; about 66 MB), --unstash brings them back from git. So:
#
#   bash benchmarks/gpu_engine.sh --stash
#   run(command="bash benchmarks/gpu_engine.sh", carry=[".whl", ".gpu_tissue"], timeout_s=540)
#   bash benchmarks/gpu_engine.sh --unstash
#
# On a machine without CUDA, `bash benchmarks/gpu_engine.sh --device cpu --size 4000` runs the same
# path (what the tests here can check).
set -euo pipefail
cd "$(dirname "$0")/.."
DEVICE=cuda
SIZE=40000
BATCH=16
# What the device lacks (its image has toolz, cloudpickle, pyyaml, packaging, typing-extensions, fsspec).
WHEELS="dask zarr numcodecs donfig google-crc32c imagecodecs partd locket tifffile"

STASH="docs/images src/napari_glandseg/data src/napari_glandseg/model/weights"
if [ "${1:-}" = --stash ]; then
  [ -z "$(git status --porcelain -- src docs)" ] || { echo "commit first: --unstash restores from git" >&2; exit 1; }
  rm -rf docs/images src/napari_glandseg/data/*.ome.tif
  find src/napari_glandseg/model/weights -name '*.safetensors' ! -name glandseg_small.safetensors -delete
  exit 0
fi
if [ "${1:-}" = --unstash ]; then
  # shellcheck disable=SC2086
  git checkout -- $STASH
  exit 0
fi
if [ "${1:-}" = --prepare ]; then
  PY=${PYTHON:-.venv/bin/python}
  pins=""
  for n in $WHEELS; do
    pin=$(grep -i "^$n==" requirements/lock.txt) || { echo "$n is not in requirements/lock.txt" >&2; exit 1; }
    pins="$pins $pin"
  done
  rm -rf .whl && mkdir -p .whl .gpu_tissue
  # shellcheck disable=SC2086
  $PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d .whl $pins
  ls ../shared/data/glas/train/images/*.png | sort | head -4 | xargs -I{} cp {} .gpu_tissue/
  du -sh .whl .gpu_tissue
  exit 0
fi
while [ $# -gt 0 ]; do
  case "$1" in
    --device) DEVICE=$2; shift 2 ;;
    --size) SIZE=$2; shift 2 ;;
    --batch-size) BATCH=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

PY=python3
if [ "$DEVICE" = cpu ] && [ -x .venv/bin/python ]; then PY=.venv/bin/python; fi
if [ -d .whl ] && ! $PY -c "import dask, zarr, imagecodecs" 2>/dev/null; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
[ -d .gpu_tissue ] && export GLANDSEG_BENCH_TISSUE="$PWD/.gpu_tissue"
RESULTS=${OUT:-bench_out}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$RESULTS"
$PY -c "import torch; print({'torch': torch.__version__, 'cuda': torch.cuda.is_available(),
 'gpu': torch.cuda.get_device_name(0) if torch.cuda.is_available() else None})"
$PY benchmarks/segment_view.py --device "$DEVICE" --out "$WORK" | tee "$RESULTS/segment_view.jsonl"
$PY benchmarks/segment_slide.py --size "$SIZE" --quick --device "$DEVICE" --batch-size "$BATCH" \
  --out "$WORK" | tee "$RESULTS/segment_slide.jsonl"
