"""Scaling: IDRec on 1 vs 2 processes, and item tables of 10^4..10^7 rows split across ranks.

    python -m benchmarks.scaling                                   # both parts
    python -m benchmarks.scaling --part processes --repeats 10
    python -m benchmarks.scaling --part tables --rows 1e4,1e5,1e6,1e7

Every run starts its processes with ``torch.distributed.launcher.api.elastic_launch`` (a file
rendezvous, ``spawn``), gloo on CPU, the same launcher the 2-process tests use; one process runs
through it too, so both sides pay the same start-up. Each process runs ``--threads`` torch threads
(1 by default: 2 processes x 1 thread fill the 2 cores here).

**Processes.** IDRec (``configs/idrec_scientific.yaml``, real Scientific data) through the training
code path of :mod:`benchmarks.throughput` (``build`` + ``train_loader`` + ``Trainer.step``) with
the per-rank batch fixed (weak scaling: 2 ranks train twice the sequences per step). All ranks
pass a barrier before each timed repetition, so a repetition's time is the slowest rank's::

    samples/s (total)       = Σ_ranks sequences of the repetition / max_ranks wall seconds
    samples/s (per process) = total / world size
    scaling efficiency      = total(2) / (2 × total(1))

The sharding plan each run used is stored as text (``plan``).

**Tables.** One item-id table of ``rows × dim`` fp32, sharded ``row_wise`` by the project's planner
(``industrial.distributed.sharding.shard_model``) inside a small IDRec task (sampled softmax, so no
step touches the whole catalogue), initialised by ``init_table_normal``, then trained for a few
steps on random ids. Each rank reports the rows and bytes of its shards (read with
``local_shards``), its fused optimizer's state bytes and its peak RSS. Each world size is one launch
of fresh processes that build the tables in ascending size, freeing each before the next: as every
size is 10x the one before, a process's peak RSS after a size is that size's peak (what the
smaller ones left behind is within a few percent). A size whose estimated memory (table +
optimizer state + 1 GiB a process) exceeds what the machine has available is skipped, with the
reason.

Results: ``benchmarks/results/scaling.{json,md,png}``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.common import RESULTS, TMP, current_rss_bytes, human_bytes, human_count, markdown_table, peak_rss_bytes, write_json
from benchmarks.harness import Spread, result_header


@dataclass
class ProcessesConfig:
    world_sizes: list[int] = field(default_factory=lambda: [1, 2])
    model: str = "idrec"  # a name of benchmarks.throughput.MODELS
    data: str = "data/prepared/scientific"
    batch_size: int = 128  # sequences per step per rank
    steps: int = 4  # steps per timed repetition
    warmup: int = 1
    repeats: int = 6


@dataclass
class TablesConfig:
    rows: list[int] = field(default_factory=lambda: [10**4, 10**5, 10**6, 10**7])
    world_sizes: list[int] = field(default_factory=lambda: [1, 2])
    dim: int = 64
    sharding: str = "row_wise"
    sparse_optimizer: str = "adagrad"  # as configs/idrec_scientific.yaml (its state is one value per weight)
    batch_size: int = 128
    seq_len: int = 20
    steps: int = 3  # training steps on random ids after sharding
    reserve_bytes: int = 1 << 30  # per process, besides table and optimizer state, in the memory check


@dataclass
class ScalingConfig:
    parts: list[str] = field(default_factory=lambda: ["processes", "tables"])
    threads: int = 1  # torch threads per process
    processes: ProcessesConfig = field(default_factory=ProcessesConfig)
    tables: TablesConfig = field(default_factory=TablesConfig)
    workdir: str = str(TMP / "scaling")
    out: str = str(RESULTS)

    def validate(self) -> None:
        unknown = set(self.parts) - {"processes", "tables"}
        if unknown:
            raise ValueError(f"unknown part {sorted(unknown)[0]!r}: expected processes and/or tables")
        if self.threads < 1:
            raise ValueError("threads must be >= 1")


# ----------------------------------------------------------------------------- launching
def launch(nproc: int, entrypoint: Any, args: tuple, workdir: Path, run_id: str, threads: int) -> None:
    """Run ``entrypoint(*args)`` on ``nproc`` fresh processes (elastic_launch, file rendezvous)."""
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    workdir.mkdir(parents=True, exist_ok=True)
    rdzv = workdir / f"rdzv_{run_id}"
    rdzv.unlink(missing_ok=True)
    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=nproc,
        run_id=run_id,
        rdzv_backend="c10d",
        rdzv_endpoint=str(rdzv),
        rdzv_configs={"store_type": "file"},
        start_method="spawn",
        monitor_interval=0.2,
        max_restarts=0,
    )
    os.environ["INDUSTRIAL_DEVICE"] = "cpu"
    os.environ["OMP_NUM_THREADS"] = str(threads)
    elastic_launch(config, entrypoint=entrypoint)(*args)


def _rank_results(folder: Path, world_size: int) -> list[dict[str, Any]]:
    return [json.loads((folder / f"rank{r}.json").read_text()) for r in range(world_size)]


def _quiet_worker(threads: int):
    import logging
    import warnings

    import torch

    warnings.filterwarnings("ignore")
    logging.getLogger("torchrec").setLevel(logging.ERROR)
    torch.set_num_threads(threads)
    from industrial.distributed.env import init_distributed

    return init_distributed()


# ----------------------------------------------------------------------------- part 1: processes
def processes_worker(config_json: str, threads: int, out_dir: str) -> None:
    """One rank: IDRec through the training code path; timed repetitions behind barriers."""
    import torch.distributed as dist

    from benchmarks.throughput import ModelRun, ThroughputConfig

    pc = ProcessesConfig(**json.loads(config_json))
    env = _quiet_worker(threads)
    tcfg = ThroughputConfig(models=[pc.model], data=pc.data, batch_sizes=[pc.batch_size], steps=pc.steps,
                            workdir=str(Path(out_dir) / "runs"))  # fmt: skip
    model = ModelRun(pc.model, tcfg, env, pc.batch_size)
    plan = str(model.trainer.dmp.plan)
    for _ in range(pc.warmup):
        model.window()
    seconds, samples, interactions = [], [], []
    for _ in range(pc.repeats):
        dist.barrier()
        t0 = time.perf_counter()
        counters = model.window()
        seconds.append(time.perf_counter() - t0)
        samples.append(counters["samples"])
        interactions.append(counters["interactions"])
    dist.barrier()
    result = {"rank": env.rank, "world_size": env.world_size, "seconds": seconds, "samples": samples,
              "interactions": interactions, "plan": plan, "peak_rss_bytes": peak_rss_bytes()}  # fmt: skip
    Path(out_dir, f"rank{env.rank}.json").write_text(json.dumps(result))
    dist.destroy_process_group()


def run_processes(cfg: ScalingConfig) -> dict[str, Any]:
    runs = []
    for world in cfg.processes.world_sizes:
        out = Path(cfg.workdir) / f"processes_{world}"
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        print(f"scaling: {cfg.processes.model} on {world} process(es) ...", file=sys.stderr, flush=True)
        args = (json.dumps(asdict(cfg.processes)), cfg.threads, str(out))
        launch(world, processes_worker, args, Path(cfg.workdir), f"processes{world}", cfg.threads)
        ranks = _rank_results(out, world)
        rounds = len(ranks[0]["seconds"])
        totals = [sum(r["samples"][i] for r in ranks) / max(r["seconds"][i] for r in ranks) for i in range(rounds)]
        inter = [sum(r["interactions"][i] for r in ranks) / max(r["seconds"][i] for r in ranks) for i in range(rounds)]
        total = Spread.of(totals)
        runs.append(
            {
                "world_size": world,
                "samples_per_s_total": total.median,
                "samples_per_s_per_process": total.median / world,
                "interactions_per_s_total": Spread.of(inter).median,
                "samples_per_s_total_spread": total.to_dict(),
                "step_seconds": Spread.of([max(r["seconds"][i] for r in ranks) / cfg.processes.steps for i in range(rounds)]).to_dict(),
                "peak_rss_bytes_per_rank": [r["peak_rss_bytes"] for r in ranks],
                "plan": ranks[0]["plan"],
            }
        )
    by_world = {r["world_size"]: r for r in runs}
    summary: dict[str, Any] = {"runs": runs}
    if 1 in by_world and 2 in by_world:
        speedup = by_world[2]["samples_per_s_total"] / by_world[1]["samples_per_s_total"]
        summary["speedup_2_vs_1"] = speedup
        summary["efficiency_2_vs_1"] = speedup / 2
    return summary


# ----------------------------------------------------------------------------- part 2: tables
def tables_worker(config_json: str, threads: int, sizes: list[int], out_dir: str) -> None:
    """One rank: for each size (ascending), an item table sharded across the ranks; its shards
    and memory. Each table is freed before the next is built."""
    import gc

    import torch.distributed as dist

    tc = TablesConfig(**json.loads(config_json))
    env = _quiet_worker(threads)
    results = []
    for rows in sorted(sizes):
        results.append(_one_table(tc, env, rows))
        gc.collect()
    Path(out_dir, f"rank{env.rank}.json").write_text(json.dumps({"rank": env.rank, "world_size": env.world_size, "tables": results}))
    dist.barrier()
    dist.destroy_process_group()


def _one_table(tc: TablesConfig, env: Any, rows: int) -> dict[str, Any]:
    import torch
    import torch.distributed as dist

    from industrial.data.batch import make_batch
    from industrial.distributed.sharding import OptimConfig, ShardingConfig, init_table_normal, local_shards, shard_model
    from industrial.modules.item_tables import ITEM_ID_TABLE, ItemIdTable
    from industrial.modules.item_encoder import IdItemEncoder
    from industrial.modules.recommender import Recommender
    from industrial.recipes.next_item import NextItemTask
    from industrial.modules.user_encoder import UserEncoder, UserEncoderConfig
    from industrial.objectives import SampledSoftmaxLoss

    rss_start = current_rss_bytes()
    torch.manual_seed(0)
    user = UserEncoder(UserEncoderConfig(dim=tc.dim, layers=1, heads=2, inner_dim=4 * tc.dim, dropout=0.0, max_len=tc.seq_len))
    task = NextItemTask(Recommender(IdItemEncoder(ItemIdTable(rows, tc.dim)), user), SampledSoftmaxLoss())
    dmp, optimizer, plan = shard_model(task, env, ShardingConfig(default=tc.sharding), OptimConfig(sparse_optimizer=tc.sparse_optimizer))
    init_table_normal(dmp, ITEM_ID_TABLE, std=0.02, seed=0)
    rss_built = current_rss_bytes()
    shards = local_shards(dmp, ITEM_ID_TABLE)
    table_bytes = sum(t.numel() * t.element_size() for _, t in shards)
    state_bytes = _optimizer_state_bytes(dmp.fused_optimizer)
    gen = torch.Generator().manual_seed(env.rank)
    t0 = time.perf_counter()
    for _ in range(tc.steps):
        ids = torch.randint(0, rows, (tc.batch_size, tc.seq_len + 1), generator=gen).tolist()
        batch = make_batch(list(range(tc.batch_size)), [s[:-1] for s in ids], [s[1:] for s in ids])
        loss, _ = dmp(batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    step_seconds = (time.perf_counter() - t0) / max(tc.steps, 1)
    dist.barrier()
    return {
        "rows": rows,
        "shards": [{"row_offset": o[0], "col_offset": o[1], "rows": t.shape[0], "cols": t.shape[1]} for o, t in shards],
        "table_bytes": table_bytes,
        "optimizer_state_bytes": state_bytes,
        "rss_before_build_bytes": rss_start,
        "rss_after_build_bytes": rss_built,
        "peak_rss_bytes": peak_rss_bytes(),
        "step_seconds": step_seconds,
        "plan": str(plan),
    }


def _optimizer_state_bytes(optimizer: Any) -> int:
    """Bytes of this rank's fused-optimizer state (sharded tensors count their local shards)."""
    import torch

    total = 0
    for state in optimizer.state.values():
        for value in state.values():
            tensors = [s.tensor for s in value.local_shards()] if hasattr(value, "local_shards") else [value]
            total += sum(t.numel() * t.element_size() for t in tensors if isinstance(t, torch.Tensor))
    return total


def available_memory_bytes() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def estimate_bytes(tc: TablesConfig, rows: int) -> int:
    """Table + optimizer state of one run, all ranks together (the state is as large as the table
    for adagrad, one value per row for rowwise_adagrad, nothing for sgd)."""
    table = rows * tc.dim * 4
    state = {"adagrad": table, "rowwise_adagrad": rows * 4, "sgd": 0}.get(tc.sparse_optimizer, table)
    return table + state


def run_tables(cfg: ScalingConfig) -> dict[str, Any]:
    """One launch per world size; the sizes that fit in the available memory run in it, ascending."""
    tc = cfg.tables
    runs = []
    for world in tc.world_sizes:
        have = available_memory_bytes()
        sizes, skipped = [], []
        for rows in sorted(tc.rows):
            need = estimate_bytes(tc, rows) + world * tc.reserve_bytes
            entry = {"rows": rows, "world_size": world, "estimated_bytes": need, "available_bytes": have}
            if have is not None and need > have:
                entry["skipped"] = f"needs about {human_bytes(need)}, {human_bytes(have)} available"
                print(f"scaling: {human_count(rows)} rows on {world}: skipped ({entry['skipped']})", file=sys.stderr, flush=True)
                skipped.append(entry)
            else:
                sizes.append(entry)
        if sizes:
            out = Path(cfg.workdir) / f"tables_{world}"
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir(parents=True)
            rows_list = [e["rows"] for e in sizes]
            print(f"scaling: tables of {', '.join(human_count(r) for r in rows_list)} rows x {tc.dim} on {world} rank(s) ...", file=sys.stderr, flush=True)
            launch(world, tables_worker, (json.dumps(asdict(tc)), cfg.threads, rows_list, str(out)), Path(cfg.workdir), f"tables{world}", cfg.threads)
            ranks = _rank_results(out, world)
            for i, entry in enumerate(sizes):
                per_rank = [r["tables"][i] for r in ranks]
                entry.update(_table_entry(per_rank, entry["rows"] * tc.dim * 4))
        runs.extend(sorted(sizes + skipped, key=lambda e: e["rows"]))
    runs.sort(key=lambda e: (e["rows"], e["world_size"]))
    return {"runs": runs}


def _table_entry(per_rank: list[dict[str, Any]], full_bytes: int) -> dict[str, Any]:
    entry = {
        "full_table_bytes": full_bytes,
        "table_bytes_per_rank": [r["table_bytes"] for r in per_rank],
        "optimizer_state_bytes_per_rank": [r["optimizer_state_bytes"] for r in per_rank],
        "peak_rss_bytes_per_rank": [r["peak_rss_bytes"] for r in per_rank],
        "rss_before_build_bytes_per_rank": [r["rss_before_build_bytes"] for r in per_rank],
        "rss_after_build_bytes_per_rank": [r["rss_after_build_bytes"] for r in per_rank],
        "shards_per_rank": [r["shards"] for r in per_rank],
        "step_seconds_per_rank": [r["step_seconds"] for r in per_rank],
        "plan": per_rank[0]["plan"],
    }
    entry["table_fraction_per_rank"] = [b / full_bytes for b in entry["table_bytes_per_rank"]]
    return entry


# ----------------------------------------------------------------------------- report
def markdown(result: dict[str, Any]) -> str:
    cfg = result["config"]
    lines = ["# Scaling", ""]
    if "processes" in result:
        p, pc = result["processes"], cfg["processes"]
        rows = [
            [r["world_size"], f"{r['samples_per_s_total']:,.0f} ({r['samples_per_s_total_spread']['p10']:,.0f}–"
             f"{r['samples_per_s_total_spread']['p90']:,.0f})", f"{r['samples_per_s_per_process']:,.0f}",
             f"{r['interactions_per_s_total']:,.0f}", f"{r['step_seconds']['median'] * 1000:,.0f}",
             ", ".join(human_bytes(b) for b in r["peak_rss_bytes_per_rank"])]
            for r in p["runs"]
        ]  # fmt: skip
        lines += [
            f"## {pc['model']}: 1 vs 2 processes (gloo, {cfg['threads']} torch thread(s) per process)",
            "",
            f"Real data ({pc['data']}), {pc['batch_size']} sequences per step per rank (weak scaling),"
            f" {pc['steps']} steps x {pc['repeats']} repetitions after {pc['warmup']} warm-up.",
            "",
            markdown_table(["processes", "samples/s total (p10–p90)", "samples/s per process", "interactions/s total",
                            "ms/step", "peak RSS per rank"], rows),  # fmt: skip
            "",
        ]
        if "speedup_2_vs_1" in p:
            lines += [f"2 vs 1 process: speed-up **{p['speedup_2_vs_1']:.2f}x**, efficiency {p['efficiency_2_vs_1'] * 100:.0f}%.", ""]
        last = p["runs"][-1]
        lines += [f"Sharding plan ({last['world_size']} processes):", "", "```", last["plan"].strip(), "```", ""]
    if "tables" in result:
        tc = cfg["tables"]
        rows = []
        for r in result["tables"]["runs"]:
            if "skipped" in r:
                rows.append([f"{r['rows']:,}", r["world_size"], "skipped: " + r["skipped"], "", "", ""])
                continue
            rows.append(
                [
                    f"{r['rows']:,}",
                    r["world_size"],
                    " / ".join(human_bytes(b) for b in r["table_bytes_per_rank"]),
                    " / ".join(f"{f:.2f}" for f in r["table_fraction_per_rank"]),
                    " / ".join(human_bytes(b) for b in r["optimizer_state_bytes_per_rank"]),
                    " / ".join(human_bytes(b) for b in r["peak_rss_bytes_per_rank"]),
                ]
            )
        lines += [
            f"## Item table memory per rank ({tc['sharding']}, dim {tc['dim']}, fp32, fused {tc['sparse_optimizer']})",
            "",
            markdown_table(["rows", "ranks", "table bytes per rank", "share of the table", "optimizer state per rank", "peak RSS per rank"], rows),
            "",
            "Table bytes are read from each rank's shards (`local_shards`); peak RSS is the whole process"
            " (interpreter, torch, the table, its optimizer state and a few training steps on random ids).",
            "",
        ]
    lines.append(f"{result['machine']['cpu']}; torch {result['versions']['torch']}, torchrec {result['versions']['torchrec']}; commit {result['commit']}.")
    return "\n".join(lines) + "\n"


def chart(result: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    parts = [k for k in ("processes", "tables") if k in result]
    fig, axes = plt.subplots(1, len(parts), figsize=(5.2 * len(parts), 3.8), squeeze=False)
    for ax, part in zip(axes[0], parts):
        if part == "processes":
            runs = result["processes"]["runs"]
            labels = [f"{r['world_size']} proc" for r in runs]
            x = range(len(runs))
            ax.bar([i - 0.2 for i in x], [r["samples_per_s_total"] for r in runs], 0.4, label="total")
            ax.bar([i + 0.2 for i in x], [r["samples_per_s_per_process"] for r in runs], 0.4, label="per process")
            ax.set_xticks(list(x), labels)
            ax.set_ylabel("samples / s")
            ax.set_title("IDRec training, gloo", fontsize=10)
            ax.legend(fontsize=8)
        else:
            runs = [r for r in result["tables"]["runs"] if "skipped" not in r]
            for world in sorted({r["world_size"] for r in runs}):
                sel = [r for r in runs if r["world_size"] == world]
                ax.plot([r["rows"] for r in sel], [max(r["table_bytes_per_rank"]) / 2**20 for r in sel], "o-", label=f"table / rank, {world} rank(s)")
                ax.plot([r["rows"] for r in sel], [max(r["peak_rss_bytes_per_rank"]) / 2**20 for r in sel], "s--", label=f"peak RSS / rank, {world} rank(s)")
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("item table rows (dim 64)")
            ax.set_ylabel("MiB per rank")
            ax.set_title("Row-wise sharded table memory", fontsize=10)
            ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# ----------------------------------------------------------------------------- CLI
def _ints(text: str) -> list[int]:
    return [int(float(t)) for t in text.split(",") if t.strip()]


def main(argv: list[str] | None = None) -> int:
    d = ScalingConfig()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--part", action="append", choices=("processes", "tables"), help="default: both")
    p.add_argument("--threads", type=int, default=d.threads)
    p.add_argument("--world-sizes", default="1,2")
    p.add_argument("--batch-size", type=int, default=d.processes.batch_size)
    p.add_argument("--steps", type=int, default=d.processes.steps)
    p.add_argument("--repeats", type=int, default=d.processes.repeats)
    p.add_argument("--warmup", type=int, default=d.processes.warmup)
    p.add_argument("--data", default=d.processes.data)
    p.add_argument("--rows", default=",".join(str(r) for r in d.tables.rows), help="table sizes, e.g. 1e4,1e5")
    p.add_argument("--dim", type=int, default=d.tables.dim)
    p.add_argument("--sparse-optimizer", default=d.tables.sparse_optimizer, choices=("adagrad", "rowwise_adagrad", "sgd"))
    p.add_argument("--table-steps", type=int, default=d.tables.steps)
    p.add_argument("--workdir", default=d.workdir)
    p.add_argument("--out", default=d.out)
    a = p.parse_args(argv)
    worlds = _ints(a.world_sizes)
    cfg = ScalingConfig(
        parts=a.part or ["processes", "tables"],
        threads=a.threads,
        processes=ProcessesConfig(world_sizes=worlds, data=a.data, batch_size=a.batch_size, steps=a.steps, warmup=a.warmup, repeats=a.repeats),
        tables=TablesConfig(rows=_ints(a.rows), world_sizes=worlds, dim=a.dim, sparse_optimizer=a.sparse_optimizer, steps=a.table_steps),
        workdir=a.workdir,
        out=a.out,
    )
    try:
        cfg.validate()
    except ValueError as err:
        print(f"benchmarks.scaling: {err}", file=sys.stderr)
        return 2
    parts = {}
    if "processes" in cfg.parts:
        parts["processes"] = run_processes(cfg)
    if "tables" in cfg.parts:
        parts["tables"] = run_tables(cfg)
    result = {**result_header("scaling", cfg), **parts}
    result["data"] = {"processes": {"path": cfg.processes.data, "synthetic": False},
                      "tables": {"synthetic": True, "note": "random item ids, for memory and sharding only"}}  # fmt: skip
    out = Path(cfg.out)
    write_json(result, out / "scaling.json")
    (out / "scaling.md").write_text(markdown(result))
    chart(result, out / "scaling.png")
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
