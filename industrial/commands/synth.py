"""``industrial synth``: synthetic multi-domain data at any scale (:mod:`industrial.data.synth`).

    industrial synth --out data/synthetic/1m --users 100000 --items 50000 --domains 3
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time

from industrial.data.stats import format_stats
from industrial.data.synth import PURPOSE, SynthConfig, generate


def parse_args(argv: list[str] | None) -> tuple[SynthConfig, bool]:
    """``(config, quiet)`` from the command line."""
    d = SynthConfig()
    p = argparse.ArgumentParser(
        prog="industrial synth",
        description=(
            "Generate a synthetic multi-domain dataset in the canonical Parquet format, in bounded memory. "
            "FOR SCALE AND THROUGHPUT WORK ONLY (benchmarks, memory bounds, tests): it imitates the shape "
            "of interaction logs (power-law popularity, session walks, cross-domain tastes), not real "
            "behaviour; meta.json says synthetic: true."
        ),
    )
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--users", type=int, default=d.users)
    p.add_argument("--items", type=int, default=d.items)
    p.add_argument("--domains", type=int, default=d.domains)
    p.add_argument("--mean-seq-len", type=float, default=d.mean_seq_len, help="mean events per user (>= 3)")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--images", action=argparse.BooleanOptionalAction, default=d.images, help="write small image files")
    p.add_argument("--image-size", type=int, default=d.image_size)
    p.add_argument("--image-format", choices=["png", "jpeg"], default=d.image_format)
    p.add_argument("--topics", type=int, default=d.topics, help="0: about items / (20 * domains)")
    p.add_argument("--gamma", type=float, default=d.gamma, help="within-bucket popularity exponent (>= 1)")
    p.add_argument("--chunk-events", type=int, default=d.chunk_events, help="events held in memory at once")
    p.add_argument("--row-group-size", type=int, default=d.row_group_size, help="rows per row group of the splits")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out (a previous dataset)")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    args = p.parse_args(argv)
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(SynthConfig)}
    return SynthConfig(**values), args.quiet


def main(argv: list[str] | None = None) -> int:
    cfg, quiet = parse_args(argv)
    try:
        cfg.validate()
    except ValueError as e:
        print(f"industrial synth: {e}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    stats = generate(cfg, progress=not quiet)
    if not quiet:
        print(format_stats(stats))
        print(f"\nwrote {cfg.out} in {time.perf_counter() - start:.1f}s (synthetic: {PURPOSE})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
