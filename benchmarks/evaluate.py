"""Full-ranking evaluator throughput against its ceiling, with bounded memory.

Synthetic random vectors (``--users`` x ``--dim`` users, ``--items`` x ``--dim`` items, a few history
items per user) go through the evaluator's own code path: :func:`rank_targets` (exact ranks, history
masked) then :func:`evaluate_ranks` (metrics and a history-length breakdown). In the same run, on
the same data, the *ceiling* is the least work any full-ranking evaluator does: a bare chunked
matmul plus a running top-k of the same tile sizes; the two alternate on slices of the users so
they share whatever load the machine carries. Reported: users/s of both, their ratio
(goal >= 0.7), and the peak RSS of the process (goal < 4 GiB at 100,000 x 1,000,000)::

    .venv/bin/python benchmarks/evaluate.py                       # 100k users x 1M items
    .venv/bin/python benchmarks/evaluate.py --users 10000 --items 200000 --topk-users 2048 --out /tmp/bench

Writes ``<out>/evaluate.json`` and ``<out>/evaluate.md`` (default ``benchmarks/results``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.common import RESULTS, git_commit, human_bytes, machine_info, markdown_table, peak_rss_bytes, write_json  # noqa: E402
from industrial.evaluate.breakdown import evaluate_ranks, history_length_grouping  # noqa: E402
from industrial.evaluate.ranking import History, RankingConfig, rank_targets  # noqa: E402


def make_data(users: int, items: int, dim: int, max_history: int, seed: int):
    """Random user and item vectors, random targets, histories of 1..max_history random items."""
    g = torch.Generator().manual_seed(seed)
    user_vectors = torch.randn(users, dim, generator=g)
    item_vectors = torch.randn(items, dim, generator=g)
    targets = torch.randint(0, items, (users,), generator=g)
    lengths = torch.randint(1, max_history + 1, (users,), generator=g)
    history = History.from_lengths(torch.randint(0, items, (int(lengths.sum()),), generator=g), lengths)
    return user_vectors, item_vectors, targets, history


def history_rows(history: History, rows: range) -> History:
    lo, hi = int(history.offsets[rows.start]), int(history.offsets[rows.stop])
    return History(history.values[lo:hi], history.offsets[rows.start : rows.stop + 1] - lo)


def evaluator_ranks(user_vectors, item_vectors, targets, history, cfg: RankingConfig) -> torch.Tensor:
    """The evaluator's code path for a slice of users: exact ranks, history masked."""
    return rank_targets(
        user_vectors, item_vectors, targets, history,
        chunk_size=cfg.chunk_size, user_batch_size=cfg.user_batch_size, topk=cfg.topk,
    ).ranks


def ceiling(user_vectors: torch.Tensor, item_vectors: torch.Tensor, cfg: RankingConfig, k: int) -> None:
    """The least work: chunked matmul and a running top-k per user, same tile sizes, nothing else."""
    B, C = cfg.user_batch_size, cfg.chunk_size
    tile = torch.empty(B, C)
    with torch.inference_mode():
        for b0 in range(0, user_vectors.shape[0], B):
            ub = user_vectors[b0 : b0 + B]
            best_s = torch.full((ub.shape[0], k), float("-inf"))
            best_i = torch.full((ub.shape[0], k), -1, dtype=torch.int64)
            for c0 in range(0, item_vectors.shape[0], C):
                width = min(C, item_vectors.shape[0] - c0)
                scores = torch.mm(ub, item_vectors[c0 : c0 + width].t(), out=tile[: ub.shape[0], :width])
                s, i = torch.topk(scores, min(k, width), dim=1, sorted=False)
                all_s, all_i = torch.cat((best_s, s), 1), torch.cat((best_i, i + c0), 1)
                best_s, pos = torch.topk(all_s, k, dim=1, sorted=False)
                best_i = torch.gather(all_i, 1, pos)


def interleaved(data, cfg: RankingConfig, k: int, slices: int, ceiling_fraction: float = 1.0) -> dict:
    """Time the evaluator and the ceiling over the same users, slice by slice, alternating.

    Alternating on slices of the users makes both see the same machine load when other work
    shares the cores, so their ratio stays meaningful even when the absolute speeds move. With
    ``ceiling_fraction < 1`` the ceiling runs on that share of each slice (whole tiles), which
    shortens a long run; its rate is per user, so it compares all the same.
    """
    user_vectors, item_vectors, targets, history = data
    B = cfg.user_batch_size
    n = user_vectors.shape[0]
    step = -(-(-(-n // slices)) // B) * B  # whole tiles per slice
    out = {"seconds": 0.0, "ceiling_seconds": 0.0, "ceiling_users": 0, "ranks": []}
    for start in range(0, n, step):
        rows = range(start, min(n, start + step))
        few = min(len(rows), max(B, -(-int(len(rows) * ceiling_fraction) // B) * B))
        t0 = time.perf_counter()
        out["ranks"].append(
            evaluator_ranks(user_vectors[rows.start : rows.stop], item_vectors, targets[rows.start : rows.stop], history_rows(history, rows), cfg)
        )
        t1 = time.perf_counter()
        ceiling(user_vectors[rows.start : rows.start + few], item_vectors, cfg, k)
        t2 = time.perf_counter()
        out["seconds"] += t1 - t0
        out["ceiling_seconds"] += t2 - t1
        out["ceiling_users"] += few
        print(
            f"  users {rows.stop:>9,}/{n:,}: evaluator {out['seconds']:7.1f} s,"
            f" ceiling {out['ceiling_seconds']:7.1f} s on {out['ceiling_users']:,} users",
            flush=True,
        )
    out["ranks"] = torch.cat(out["ranks"])
    out["users_per_s"] = n / out["seconds"]
    out["ceiling_users_per_s"] = out["ceiling_users"] / out["ceiling_seconds"]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--max-history", type=int, default=8, help="history lengths are uniform in 1..this")
    parser.add_argument("--chunk-size", type=int, default=RankingConfig.chunk_size)
    parser.add_argument("--user-batch-size", type=int, default=RankingConfig.user_batch_size)
    parser.add_argument("--topk", type=int, default=50, help="k of the ceiling's top-k (and of --topk-users)")
    parser.add_argument("--slices", type=int, default=10, help="alternate evaluator and ceiling on this many user slices")
    parser.add_argument(
        "--ceiling-fraction", type=float, default=1.0,
        help="run the ceiling on this share of each slice (its rate is per user; < 1 shortens long runs)",
    )
    parser.add_argument(
        "--topk-users", type=int, default=0,
        help="also time the evaluator with a top-k export against the ceiling on this many users (0: skip)",
    )
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(RESULTS), help="folder of evaluate.json and evaluate.md")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    cfg = RankingConfig(chunk_size=args.chunk_size, user_batch_size=args.user_batch_size)
    cfg.validate()
    data = make_data(args.users, args.items, args.dim, args.max_history, args.seed)
    user_vectors, item_vectors, targets, history = data
    warm = range(0, min(args.users, cfg.user_batch_size))
    evaluator_ranks(user_vectors[: warm.stop], item_vectors, targets[: warm.stop], history_rows(history, warm), cfg)

    print(f"evaluator vs ceiling, {args.users:,} users x {args.items:,} items:", flush=True)
    timing = interleaved(data, cfg, args.topk, args.slices, args.ceiling_fraction)
    t0 = time.perf_counter()
    evaluation = evaluate_ranks(timing["ranks"], {"history_length": history_length_grouping(history.lengths())})
    ours_s = timing["seconds"] + time.perf_counter() - t0
    result = {
        "benchmark": "evaluate",
        "users": args.users,
        "items": args.items,
        "dim": args.dim,
        "mean_history": float(history.lengths().float().mean()),
        "chunk_size": cfg.chunk_size,
        "user_batch_size": cfg.user_batch_size,
        "torch_threads": torch.get_num_threads(),
        "seconds": ours_s,
        "users_per_s": args.users / ours_s,
        "scores_per_s": args.users * args.items / ours_s,
        "ceiling": f"chunked matmul + running top-{args.topk} (torch.topk), same tiles",
        "ceiling_users": timing["ceiling_users"],
        "ceiling_seconds": timing["ceiling_seconds"],
        "ceiling_users_per_s": timing["ceiling_users_per_s"],
        "ratio": (args.users / ours_s) / timing["ceiling_users_per_s"],
        "ratio_goal": 0.7,
        "recall@10_of_random_vectors": evaluation.metrics["recall@10"],
        "load_average_after": list(os.getloadavg()),
    }
    if args.topk_users:
        n = min(args.topk_users, args.users)
        sub = (user_vectors[:n], item_vectors, targets[:n], history_rows(history, range(n)))
        with_topk = RankingConfig(cfg.chunk_size, cfg.user_batch_size, topk=args.topk)
        print(f"evaluator with a top-{args.topk} export vs ceiling, {n:,} users:", flush=True)
        sub_timing = interleaved(sub, with_topk, args.topk, max(1, args.slices // 5))
        result["with_topk"] = {
            "users": n,
            "topk": args.topk,
            "users_per_s": sub_timing["users_per_s"],
            "ceiling_users_per_s": sub_timing["ceiling_users_per_s"],
            "ratio": sub_timing["users_per_s"] / sub_timing["ceiling_users_per_s"],
        }
    result["peak_rss_bytes"] = peak_rss_bytes()
    result["peak_rss_goal_bytes"] = 4 * 2**30
    result["machine"] = machine_info()
    result["commit"] = git_commit()

    out = Path(args.out)
    write_json(result, out / "evaluate.json")
    text = markdown(result)
    (out / "evaluate.md").write_text(text)
    print(text)
    return 0


def markdown(r: dict) -> str:
    rows = [
        ["evaluator: exact ranks, history masked, metrics + breakdown", f"{r['users_per_s']:,.0f}", f"{r['seconds']:.1f}"],
        [f"ceiling: {r['ceiling']} ({r['ceiling_users']:,} users)", f"{r['ceiling_users_per_s']:,.0f}", f"{r['ceiling_seconds']:.1f}"],
    ]
    lines = [
        "# Evaluator benchmark",
        "",
        f"{r['users']:,} users x {r['items']:,} items, D={r['dim']}, mean history {r['mean_history']:.1f};"
        f" tiles of {r['user_batch_size']} users x {r['chunk_size']} items; {r['machine']['cpu']},"
        f" {r['machine']['cores']} cores, torch {r['machine']['versions']['torch']} ({r['torch_threads']} threads);"
        f" commit {r['commit']}. Evaluator and ceiling alternate on slices of the users;"
        f" load average after the run {', '.join(f'{x:.1f}' for x in r['load_average_after'])}.",
        "",
        markdown_table(["path", "users/s", "seconds"], rows),
        "",
        f"Ratio evaluator / ceiling: **{r['ratio']:.2f}** (goal >= {r['ratio_goal']})."
        f" Peak RSS of the whole run: **{human_bytes(r['peak_rss_bytes'])}** (goal < {human_bytes(r['peak_rss_goal_bytes'])}).",
    ]
    if "with_topk" in r:
        t = r["with_topk"]
        lines += [
            "",
            f"With a top-{t['topk']} export as well ({t['users']:,} users): {t['users_per_s']:,.0f} users/s"
            f" against a ceiling of {t['ceiling_users_per_s']:,.0f} users/s, ratio {t['ratio']:.2f}.",
        ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
