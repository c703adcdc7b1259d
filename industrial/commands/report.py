"""``industrial report``: compare evaluated runs side by side (:mod:`industrial.evaluate.report`).

    industrial report runs/a runs/b [--metrics recall@10 ndcg@10] [--breakdown domain=Scientific]
                      [--out table.md] [--plot table.png]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from industrial.evaluate.report import DEFAULT_COLUMNS, comparison_rows, evaluated_on, markdown_table, plot_comparison, write_text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="industrial report", description="Compare evaluated runs side by side (one row per run)."
    )
    parser.add_argument("runs", nargs="+", metavar="RUN", help="a run folder holding metrics.json, or the file")
    parser.add_argument("--metrics", nargs="+", default=list(DEFAULT_COLUMNS), metavar="KEY",
                        help="columns, e.g. recall@10 ndcg@10 mrr@20 (default: %(default)s)")
    parser.add_argument("--breakdown", metavar="NAME=VALUE", help="compare one group, e.g. domain=Scientific")
    parser.add_argument("--out", metavar="FILE", help="also write the table as markdown to this file")
    parser.add_argument("--plot", metavar="FILE.png", help="also draw the table as grouped bars")
    args = parser.parse_args(argv)
    header, rows = comparison_rows(args.runs, args.metrics, args.breakdown)
    sources, mixed = evaluated_on(args.runs)
    missing = [c for i, c in enumerate(args.metrics, start=1) if all(row[i] is None for row in rows)]
    table = markdown_table(header, rows)
    print(table)
    print("\nevaluated on:\n" + "\n".join(f"  {line}" for line in sources))
    if mixed:
        print("industrial report: warning: these runs were evaluated on different datasets or splits; "
              "their numbers are not comparable", file=sys.stderr)
        table += "\n\n**Warning: these runs were evaluated on different datasets or splits; their numbers are not comparable.**"
    table += "\n\nEvaluated on:\n\n" + "\n".join(f"- {line}" for line in sources)
    if missing:
        print(f"note: no run reports {', '.join(missing)}")
    if args.out:
        scope = f" ({args.breakdown})" if args.breakdown else ""
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        write_text(out, f"# Runs compared{scope}\n\n{table}\n")
    if args.plot:
        plot_comparison(header, rows, args.plot, title=f"Runs compared{f' ({args.breakdown})' if args.breakdown else ''}")
        print(f"wrote {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
