"""Training runs side by side at equal wall time: validation object F1 / pixel Dice and the
training loss each run had reached after the same minutes (from each run's ``log.jsonl``).

Use it to compare settings that change the speed of a step (crop size × batch, precision,
threads): a setting is faster only if it is also ahead at an equal time, not only in crops/s.
Compare validation, not the training loss, between runs whose losses differ (e.g. weighted pixels).

    python training/compare_runs.py RUN_DIR [RUN_DIR ...] [--every 5]

One JSON line per run and checkpoint minute, then a summary line per run (crops/s, best
validation and when it came).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def read_log(run: Path) -> list[dict]:
    """The run's log records, ``time_s`` counted across resumed sessions (each session's clock
    starts at 0 again: it continues from where the one before ended)."""
    log = run / "log.jsonl"
    if not log.is_file():
        raise SystemExit(f"{run}: no log.jsonl (not a training run's folder)")
    records = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    offset = last = 0.0
    for r in records:
        if "time_s" not in r:
            continue
        if r["time_s"] + offset < last:  # a resumed session
            offset = last
        r["time_s"] += offset
        last = r["time_s"]
    return records


def crops_per_step(run: Path) -> int:
    """The batch size from the run's resolved config (crops per step)."""
    import yaml

    config = run / "config.yaml"
    return int(yaml.safe_load(config.read_text()).get("batch_size", 1)) if config.is_file() else 1


def at_minutes(records: list[dict], minutes: float, key: str, window: int = 5) -> float | None:
    """The last value of ``key`` logged by ``minutes`` (the loss: mean of the last ``window``)."""
    seen = [r[key] for r in records if key in r and r["time_s"] <= minutes * 60]
    if not seen:
        return None
    return round(sum(seen[-window:]) / len(seen[-window:]), 4) if key == "loss" else seen[-1]


def summary(run: Path, every: float) -> list[dict]:
    records = read_log(run)
    steps = [r for r in records if "loss" in r]
    vals = [r for r in records if r.get("event") == "validation"]
    batch = crops_per_step(run)
    end_min = max((r["time_s"] for r in records), default=0) / 60
    rows = []
    m = every
    while m <= end_min + 1e-9:
        rows.append({"run": run.name, "minutes": m, "step": at_minutes(records, m, "step"),
                     "loss": at_minutes(steps, m, "loss"), "object_f1": at_minutes(vals, m, "object_f1", 1),
                     "pixel_dice": at_minutes(vals, m, "pixel_dice", 1)})
        m += every
    best = max(vals, key=lambda r: r["object_f1"], default=None)
    last = steps[-1] if steps else {"step": 0, "time_s": 1}
    rows.append({"run": run.name, "summary": True, "minutes": round(end_min, 1), "steps": last["step"],
                 "crops_per_step": batch, "crops_per_s": round(last["step"] * batch / max(1e-9, last["time_s"]), 2),
                 "best_object_f1": best and best["object_f1"], "best_pixel_dice": best and best["pixel_dice"],
                 "best_at_minutes": best and round(best["time_s"] / 60, 1)})
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--every", type=float, default=5.0, help="minutes between rows")
    args = ap.parse_args(argv)
    for run in args.runs:
        for row in summary(run, args.every):
            print(json.dumps(row))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
