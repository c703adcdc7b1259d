"""Loader throughput and memory at 1, 10 and 50 million interactions, against pyarrow alone.

    python -m benchmarks.loader                      # sizes 1M,10M,50M
    python -m benchmarks.loader --sizes 1M,10M --repeats 3

For each size, a synthetic dataset (``industrial synth``; for throughput work only) is generated
once into ``benchmarks/results/tmp/`` (git-ignored) in its own process. Then, each in a fresh
process so that peak RSS belongs to one measurement:

- **ours**: one epoch of the training split through :func:`industrial.data.stream.build_loader`
  (shuffle on, window shuffle buffer, truncation, input/target at every position, KJT collate,
  prefetch), the batches consumed by the main thread;
- **pyarrow**: the ceiling: the same file, row group by row group, same columns
  (``user_id, item_ids, timestamps``), decoded to numpy views of the values and offsets, nothing
  else (pyarrow's defaults, its thread pool included).

Throughput is the training split's interactions times the passes, divided by wall time (best of
``--repeats`` runs, alternating the two readers; the machine may be shared: the load average
before and after each size is recorded). A pass over 1M interactions takes tens of milliseconds,
where one-off costs (thread start-up, the first window decoded before any batch can be built)
and timer noise swamp the figure, so both readers make ``ceil(--min-interactions / size)``
passes in one process (ours: successive epochs of the same loader, as training does); the first
pass's time is recorded beside it. ``ratio = ours / pyarrow``. Results: ``benchmarks/results/loader.json``
(``runs``, ``machine``, ``commit``) and ``loader.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.common import (
    RESULTS,
    TMP,
    cpu_seconds,
    current_rss_bytes,
    emit,
    git_commit,
    human_bytes,
    human_count,
    machine_info,
    markdown_table,
    peak_rss_bytes,
    run_child,
    write_json,
)

COLUMNS = ["user_id", "item_ids", "timestamps"]


def parse_size(text: str) -> int:
    text = text.strip().upper()
    scale = {"K": 1_000, "M": 1_000_000, "G": 1_000_000_000}.get(text[-1:], 1)
    return int(float(text[:-1] if scale > 1 else text) * scale)


# ----------------------------------------------------------------------------- children
def child_synth(args: argparse.Namespace) -> dict[str, Any]:
    from industrial.data.synth import SynthConfig, generate

    users = max(1, round(args.interactions / (args.mean_seq_len - 2)))  # train keeps all but 2 events
    items = int(min(max(args.interactions // 100, 10_000), 1_000_000))
    start = time.perf_counter()
    stats = generate(SynthConfig(out=args.data, users=users, items=items, domains=3, mean_seq_len=args.mean_seq_len, seed=0))
    return {
        "seconds": time.perf_counter() - start,
        "peak_rss_bytes": peak_rss_bytes(),
        "users": users,
        "items": items,
        "events": stats["events"],
        "train_interactions": stats["splits"]["train"]["events"],
    }


def child_ours(args: argparse.Namespace) -> dict[str, Any]:
    from industrial.data.stream import LoaderConfig, build_loader

    cfg = LoaderConfig(
        batch_size=args.batch_size,
        max_seq_len=args.max_seq_len,
        shuffle=True,
        equalize="none",
        num_workers=args.workers,
        prefetch=4,
    )
    rss_before, cpu_before = current_rss_bytes(), cpu_seconds()
    start = time.perf_counter()
    loader = build_loader(args.data, "train", cfg, rank=0, world_size=1)
    batches = sequences = items = 0
    first = None
    for _ in range(args.passes):
        for batch in loader:
            batches += 1
            sequences += batch.batch_size
            items += int(batch.items.values().numel())
        first = first or time.perf_counter() - start
    seconds = time.perf_counter() - start
    stats = loader.epoch_stats[-1]
    return {
        "seconds": seconds,
        "first_pass_seconds": first,
        "cpu_seconds": cpu_seconds() - cpu_before,
        "peak_rss_bytes": peak_rss_bytes(),
        "rss_before_bytes": rss_before,
        "batches": batches,
        "sequences": sequences,
        "kjt_values": items,
        "skipped_short": stats.skipped_short,
        "truncated_items": stats.truncated_items,
    }


def child_pyarrow(args: argparse.Namespace) -> dict[str, Any]:
    import numpy as np
    import pyarrow.parquet as pq

    rss_before, cpu_before = current_rss_bytes(), cpu_seconds()
    start = time.perf_counter()
    pf = pq.ParquetFile(Path(args.data) / "train.parquet")
    values = 0
    first = None
    for _ in range(args.passes):
        for rg in range(pf.num_row_groups):
            table = pf.read_row_group(rg, columns=COLUMNS)
            np.asarray(table.column("user_id").chunk(0))
            for name in COLUMNS[1:]:
                arr = table.column(name).chunk(0)
                np.asarray(arr.offsets)  # decoded like ours, then dropped
                values += len(np.asarray(arr.values))
        first = first or time.perf_counter() - start
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "first_pass_seconds": first,
        "cpu_seconds": cpu_seconds() - cpu_before,
        "peak_rss_bytes": peak_rss_bytes(),
        "rss_before_bytes": rss_before,
        "values": values,
    }


CHILDREN = {"synth": child_synth, "ours": child_ours, "pyarrow": child_pyarrow}


# ----------------------------------------------------------------------------- driver
def passes_for(args: argparse.Namespace, size: int) -> int:
    """Passes over a split of ``size`` interactions: enough for ``--min-interactions`` in all."""
    return max(1, -(-args.min_interactions // size))


def _child_args(args: argparse.Namespace, kind: str, data: Path, size: int) -> list[str]:
    return [
        "--child", kind, "--data", str(data), "--interactions", str(size), "--passes", str(passes_for(args, size)),
        "--mean-seq-len", str(args.mean_seq_len), "--batch-size", str(args.batch_size),
        "--max-seq-len", str(args.max_seq_len), "--workers", str(args.workers),
    ]  # fmt: skip


def _dataset(args: argparse.Namespace, size: int) -> tuple[Path, dict[str, Any]]:
    data = Path(args.workdir) / f"synth_{human_count(size)}_len{args.mean_seq_len:g}"
    info = data / "bench.json"
    if info.exists():
        return data, json.loads(info.read_text())
    if data.exists():
        shutil.rmtree(data)
    print(f"generating {human_count(size)} interactions into {data} ...", file=sys.stderr, flush=True)
    result = run_child("benchmarks.loader", _child_args(args, "synth", data, size))
    write_json(result, info)
    return data, result


def measure(args: argparse.Namespace, size: int) -> dict[str, Any]:
    data, synth = _dataset(args, size)
    interactions = synth["train_interactions"]
    passes = passes_for(args, size)
    load_before = os.getloadavg()[0]
    ours, arrow = [], []
    for _ in range(args.repeats):  # alternate, so that a busy moment does not hit one reader only
        arrow.append(run_child("benchmarks.loader", _child_args(args, "pyarrow", data, size)))
        ours.append(run_child("benchmarks.loader", _child_args(args, "ours", data, size)))
    best, best_arrow = min(ours, key=lambda r: r["seconds"]), min(arrow, key=lambda r: r["seconds"])
    run = {
        "interactions": interactions,
        "users": synth["users"],
        "items": synth["items"],
        "passes": passes,
        "interactions_per_s": passes * interactions / best["seconds"],
        "seconds": best["seconds"],
        "first_pass_interactions_per_s": interactions / min(r["first_pass_seconds"] for r in ours),
        "seconds_all": [r["seconds"] for r in ours],
        "cpu_seconds": min(r["cpu_seconds"] for r in ours),
        "peak_rss_bytes": max(r["peak_rss_bytes"] for r in ours),
        "rss_before_bytes": best["rss_before_bytes"],
        "batches": best["batches"],
        "sequences": best["sequences"],
        "skipped_short": best["skipped_short"],
        "truncated_items": best["truncated_items"],
        "pyarrow_interactions_per_s": passes * interactions / best_arrow["seconds"],
        "pyarrow_first_pass_interactions_per_s": interactions / min(r["first_pass_seconds"] for r in arrow),
        "pyarrow_seconds": best_arrow["seconds"],
        "pyarrow_seconds_all": [r["seconds"] for r in arrow],
        "pyarrow_cpu_seconds": min(r["cpu_seconds"] for r in arrow),
        "pyarrow_peak_rss_bytes": max(r["peak_rss_bytes"] for r in arrow),
        "synth_seconds": synth["seconds"],
        "synth_peak_rss_bytes": synth["peak_rss_bytes"],
        "synth_events": synth["events"],
        "load_average_1min": [load_before, os.getloadavg()[0]],  # before and after this size
    }
    run["ratio"] = run["interactions_per_s"] / run["pyarrow_interactions_per_s"]
    run["cpu_ratio"] = run["pyarrow_cpu_seconds"] / run["cpu_seconds"]  # work, whatever the contention
    print(
        f"{human_count(interactions)}: ours {human_count(run['interactions_per_s'])}/s, "
        f"pyarrow {human_count(run['pyarrow_interactions_per_s'])}/s, ratio {run['ratio']:.2f}, "
        f"peak RSS {human_bytes(run['peak_rss_bytes'])}",
        file=sys.stderr,
        flush=True,
    )
    return run


def report(runs: list[dict[str, Any]], config: dict[str, Any]) -> str:
    rows = [
        [
            human_count(r["interactions"]),
            str(r.get("passes", 1)),
            f"{human_count(r['interactions_per_s'])}/s",
            f"{human_count(r['pyarrow_interactions_per_s'])}/s",
            f"{r['ratio']:.2f}",
            f"{r['cpu_ratio']:.2f}",
            "{:.2f}".format(r["first_pass_interactions_per_s"] / r["pyarrow_first_pass_interactions_per_s"])
            if "first_pass_interactions_per_s" in r else "",
            human_bytes(r["peak_rss_bytes"]),
            human_bytes(r["rss_before_bytes"]),
            human_bytes(r["pyarrow_peak_rss_bytes"]),
            f"{r['synth_seconds']:.0f} s / {human_bytes(r['synth_peak_rss_bytes'])}",
            "{:.1f} / {:.1f}".format(*r["load_average_1min"]) if "load_average_1min" in r else "",
        ]
        for r in runs
    ]
    table = markdown_table(
        ["interactions", "passes", "ours", "pyarrow only", "ratio", "CPU-time ratio", "first-pass ratio", "peak RSS (ours)",
         "RSS after imports", "peak RSS (pyarrow)", "synth time / peak RSS", "load avg before / after"],
        rows,
    )  # fmt: skip
    settings = ", ".join(f"{k}={v}" for k, v in config.items())
    return (
        "# Loader throughput (training split)\n\n"
        f"{table}\n\n"
        f"Settings: {settings}. Throughput: training interactions x passes / wall time, best of the "
        "repeats (ratio = ours / pyarrow; passes in one process, ours as successive epochs, so that "
        "small sizes are not timer noise; first-pass ratio: the first pass alone, one-off start-up "
        "costs included); CPU-time ratio = pyarrow CPU seconds / ours (all threads; less "
        "sensitive to other load on the machine). Load avg: the machine's 1-minute load average before "
        f"and after the size's runs ({os.cpu_count()} cores). Each measurement runs in a fresh process; "
        "peak RSS includes the interpreter and its imports (torch, torchrec for ours).\n"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="1M,10M,50M", help="interactions of the training split, comma separated")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--min-interactions", type=parse_size, default=parse_size("10M"), help="passes per measurement: enough for this many interactions")
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--max-seq-len", type=int, default=200)
    p.add_argument("--mean-seq-len", type=float, default=50.0)
    p.add_argument("--workers", type=int, default=0, help="collate threads of the loader")
    p.add_argument("--workdir", default=str(TMP))
    p.add_argument("--out", default=str(RESULTS))
    p.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    p.add_argument("--interactions", type=int, help=argparse.SUPPRESS)
    p.add_argument("--passes", type=int, default=1, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        emit(CHILDREN[args.child](args))
        return 0
    sizes = [parse_size(s) for s in args.sizes.split(",") if s.strip()]
    config = {
        "batch_size": args.batch_size,
        "max_seq_len": args.max_seq_len,
        "mean_seq_len": args.mean_seq_len,
        "workers": args.workers,
        "repeats": args.repeats,
        "min_interactions": args.min_interactions,
        "shuffle": True,
    }
    runs = [measure(args, size) for size in sizes]
    out = Path(args.out)
    result = {"benchmark": "loader", "config": config, "runs": runs, "machine": machine_info(), "commit": git_commit()}
    write_json(result, out / "loader.json")
    (out / "loader.md").write_text(report(runs, config))
    print((out / "loader.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
