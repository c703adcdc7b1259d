"""``industrial prepare``: a public raw format (or prepared datasets) -> the canonical Parquet dataset.

    industrial prepare --format unisrec --source data/amazon_scientific_unisrec --out out/scientific
    industrial prepare merge --inputs out/industrial out/office --out out/two_domains
    industrial prepare sample --input out/scientific --users 0.1 --out out/scientific_10pct
    industrial prepare perturb --input out/scientific --drop-text 0.5 --out out/scientific_text50

The work is :mod:`industrial.data.prepare` (formats, merge) and :mod:`industrial.data.derive`
(sample, perturb); this module reads the command line and prints what was written.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from industrial.config import ConfigError, from_dict, read_yaml
from industrial.data import derive
from industrial.data.derive import PerturbConfig, SampleConfig, perturb_content, sample_users
from industrial.data.ingest import ADAPTERS, get_adapter
from industrial.data.prepare import MergeConfig, PrepareConfig, merge_datasets, prepare_dataset
from industrial.data.schema import META_FILE, STATS_FILE, DatasetError
from industrial.data.stats import format_stats


def _add_processing_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("processing")
    group.add_argument("--domains", nargs="+", metavar="DOMAIN", help="keep only these domains (default: all)")
    group.add_argument(
        "--k-core", dest="k_core", type=int, metavar="N", help="iterative k-core on users and items (default 0: off)"
    )
    group.add_argument(
        "--min-seq-len", dest="min_seq_len", type=int, metavar="N", help="drop users with fewer events (default 1)"
    )
    group.add_argument(
        "--max-seq-len", dest="max_seq_len", type=int, metavar="N", help="keep each user's last N events (default: all)"
    )
    group.add_argument(
        "--require-content",
        dest="require_content",
        choices=["none", "text", "image", "any", "both"],
        help="keep only items with this content; their events are dropped and counted (default none)",
    )
    group.add_argument(
        "--split",
        choices=["auto", "source", "leave-one-out"],
        help="auto (default): the source's own split where it has one, else leave-one-out by time",
    )
    group.add_argument(
        "--check-images",
        dest="check_images",
        action=argparse.BooleanOptionalAction,
        help="open every image with Pillow; a bad one makes its item image-less (default on)",
    )
    group.add_argument(
        "--embed-images", dest="embed_images", action="store_true", help="store image bytes in items.parquet"
    )
    group.add_argument(
        "--on-bad-row",
        dest="on_bad_row",
        choices=["error", "skip"],
        help="error (default): stop at the first bad row; skip: skip and count it",
    )
    group.add_argument(
        "--row-group-size", dest="row_group_size", type=int, metavar="N", help="rows per Parquet row group"
    )
    group.add_argument(
        "--duplicates",
        choices=["keep", "drop"],
        help="events repeated with the same user, item and timestamp: keep (default) or drop the repeats;"
        " counted either way (duplicate_events)",
    )
    parser.add_argument("--name", help="dataset name (default: the output folder's name)")
    parser.add_argument("--overwrite", action="store_true", help="write into a non-empty output folder")
    parser.add_argument("--config", metavar="YAML", help="read options from a YAML file; flags override it")
    parser.add_argument("--quiet", action="store_true", help="do not print the statistics table")


def _prepare_parser() -> argparse.ArgumentParser:
    formats = "\n".join(f"  {name:<11} {adapter.summary}" for name, adapter in ADAPTERS.items())
    parser = argparse.ArgumentParser(
        prog="industrial prepare",
        description="Convert a public dataset format into the canonical Parquet dataset (see docs/data.md).",
        epilog=(
            f"formats:\n{formats}\n\nmerge prepared datasets: industrial prepare merge --help\n"
            "few-shot training users: industrial prepare sample --help\n"
            "item content removed or noised: industrial prepare perturb --help"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        argument_default=argparse.SUPPRESS,
    )
    parser.add_argument("--format", choices=list(ADAPTERS), help="the raw format")
    parser.add_argument("--source", help="the raw data folder")
    parser.add_argument("--out", help="the output folder")
    parser.add_argument(
        "--text-fields", dest="text_fields", nargs="+", metavar="FIELD", help="source fields joined into item text"
    )
    parser.add_argument(
        "--events", dest="events_file", metavar="FILE", help="generic: the events file (relative to --source)"
    )
    parser.add_argument(
        "--items", dest="items_file", metavar="FILE", help="generic: the items file (relative to --source)"
    )
    parser.add_argument("--list-domains", action="store_true", help="print the domains found in --source and exit")
    _add_processing_flags(parser)
    return parser


def _merge_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="industrial prepare merge",
        description=(
            "Merge prepared datasets of different domains into one: users matched by source id, items kept per"
            " domain, each user's events merged by time; each event keeps its input's split unless --split"
            " leave-one-out."
        ),
        argument_default=argparse.SUPPRESS,
    )
    parser.add_argument("--inputs", nargs="+", metavar="DATASET", help="prepared dataset folders")
    parser.add_argument("--out", help="the output folder")
    _add_processing_flags(parser)
    return parser


def _config(cls: type, args: argparse.Namespace) -> Any:
    values = vars(args)
    data: dict[str, Any] = {}
    config_path = values.pop("config", None)
    values.pop("quiet", None)
    values.pop("list_domains", None)
    if config_path is not None:
        path = Path(config_path)
        data = read_yaml(path) or {}
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping at the top level")
    if "domains" in values:
        values["domains"] = [d for entry in values["domains"] for d in entry.split(",") if d]
    data.update(values)
    return from_dict(cls, data)


def _list_domains(args: argparse.Namespace) -> int:
    if not hasattr(args, "format") or not hasattr(args, "source"):
        raise ConfigError("--list-domains needs --format and --source")
    source = Path(args.source)
    if not source.is_dir():
        raise DatasetError(f"{source}: source folder does not exist")
    domains = get_adapter(args.format).available_domains(source)
    if not domains:
        adapter = get_adapter(args.format)
        raise DatasetError(f"{source}: no {adapter.name} data found ({adapter.summary})")
    for domain in domains:
        print(domain)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``industrial prepare`` (and ``industrial prepare merge``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("sample", "perturb"):
        return derive_main(argv[0], argv[1:])
    merge = bool(argv) and argv[0] == "merge"
    parser = _merge_parser() if merge else _prepare_parser()
    args = parser.parse_args(argv[1:] if merge else argv)
    quiet = getattr(args, "quiet", False)
    # a DatasetError / ConfigError (user errors) goes up to `industrial`: one line, exit code 2
    if getattr(args, "list_domains", False):
        return _list_domains(args)
    if merge:
        out = merge_datasets(_config(MergeConfig, args))
    else:
        out = prepare_dataset(_config(PrepareConfig, args))
    stats = json.loads((out / STATS_FILE).read_text())
    if not quiet:
        print(format_stats(stats))
    _warn_about(stats)
    print(f"wrote {out}")
    return 0


def _warn_about(stats: dict[str, Any]) -> None:
    """Say on stderr what a user must know even with --quiet: duplicates, nothing to evaluate."""
    fallbacks = stats.get("fallbacks") or {}
    if not stats.get("events"):
        dropped = ", ".join(f"{k} {v}" for k, v in fallbacks.items() if k.startswith(("events_dropped", "items_dropped")))
        print(
            f"industrial prepare: warning: the options dropped every event ({dropped}): the dataset is empty;"
            " loosen --k-core / --min-seq-len / --require-content / --domains",
            file=sys.stderr,
        )
        return
    if fallbacks.get("duplicate_events"):
        example = (stats.get("examples", {}).get("duplicate_events") or [""])[0]
        print(f"industrial prepare: note: {fallbacks['duplicate_events']} duplicate events ({example})", file=sys.stderr)
    splits = stats.get("splits") or {}
    if not any((splits.get(name) or {}).get("rows") for name in ("valid", "test")):
        print(
            "industrial prepare: warning: no valid or test example (every user has fewer than 3 events, or the"
            " source split has none): `industrial evaluate` has nothing to measure on this dataset",
            file=sys.stderr,
        )


def _derive_parser(operation: str) -> argparse.ArgumentParser:
    doc = derive.__doc__.split("\n\n")
    parser = argparse.ArgumentParser(
        prog=f"industrial prepare {operation}",
        description=next(p for p in doc if p.startswith(f"``{operation}``")),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--input", required=True, help="prepared dataset folder")
    parser.add_argument("--out", required=True, help="output folder")
    if operation == "sample":
        parser.add_argument("--users", type=float, required=True, help="fraction of the training users kept, in (0, 1]")
    else:
        parser.add_argument("--drop-text", type=float, default=0.0, help="fraction of the item texts removed")
        parser.add_argument("--drop-images", type=float, default=0.0, help="fraction of the item images removed")
        parser.add_argument("--noise-text", type=float, default=0.0, help="fraction of the item texts noised")
        parser.add_argument("--word-noise", type=float, default=0.3, help="noised text: probability that a word is replaced")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overwrite", action="store_true", help="write into a non-empty --out")
    return parser


def derive_main(operation: str, argv: list[str]) -> int:
    """``industrial prepare sample|perturb``."""
    args = vars(_derive_parser(operation).parse_args(argv))
    # a DatasetError / ConfigError (user errors) goes up to `industrial`: one line, exit code 2
    out = sample_users(SampleConfig(**args)) if operation == "sample" else perturb_content(PerturbConfig(**args))
    derived = json.loads((out / META_FILE).read_text())["derived"][-1]
    print(", ".join(f"{k} {v}" for k, v in derived.items() if k not in ("from", "operation")))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
