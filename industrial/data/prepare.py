"""``industrial prepare``: a public raw format (or prepared datasets) -> the canonical Parquet dataset.

Command line::

    industrial prepare --format unisrec --source data/amazon_scientific_unisrec --out out/scientific
    industrial prepare --format hm --source ../shared/data/hm_sample --out out/hm --require-content both
    industrial prepare merge --inputs out/industrial out/office --out out/two_domains
    industrial prepare sample --input out/scientific --users 0.1 --out out/scientific_10pct
    industrial prepare perturb --input out/scientific --drop-text 0.5 --out out/scientific_text50

Python::

    from industrial.data.prepare import PrepareConfig, prepare_dataset
    root = prepare_dataset(PrepareConfig(format="movielens", source="../shared/data/ml100k_posters", out="out/ml"))

Reading is the adapter's job (:mod:`industrial.data.ingest`); image checks, filters, split, id
remapping (:mod:`industrial.data.ingest.build`), statistics (:mod:`industrial.data.stats`) and
writing are shared. The output folder holds the files of :mod:`industrial.data.schema`. The
formats, options and fallbacks are described in ``docs/data.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


from industrial.config import ConfigError, from_dict, read_yaml, to_dict
from industrial.data.ingest import ADAPTERS, Adapter, IngestRequest, get_adapter
from industrial.data.ingest.build import CanonicalDataset, ProcessingOptions, build, resolve_split_policy
from industrial.data.ingest.images import resolve_images
from industrial.data.ingest.problems import Problems
from industrial.data.integrity import check_output_folder, staged_dataset
from industrial.data.schema import (
    EVENTS_FILE,
    ITEMS_FILE,
    META_FILE,
    SPLIT_FILES,
    STATS_FILE,
    USERS_FILE,
    DatasetError,
    write_json,
    write_table,
)
from industrial.data.stats import compute_stats, format_stats

@dataclass(kw_only=True)
class PrepareConfig(ProcessingOptions):
    """``industrial prepare``: read ``source`` in ``format`` and write the dataset to ``out``."""

    #: The raw format: one of :data:`industrial.data.ingest.ADAPTERS` (required).
    format: str = ""
    #: The raw data folder (required).
    source: str = ""
    #: The output folder (required).
    out: str = ""
    #: The dataset's name in meta.json / stats.json (default: the output folder's name).
    name: str | None = None
    #: Source fields joined into item text (default: the format's own; see docs/data.md).
    text_fields: list[str] = field(default_factory=list)
    #: generic format: the events file, relative to ``source`` (default events.{csv,tsv,jsonl}).
    events_file: str | None = None
    #: generic format: the items file, relative to ``source`` (default items.{csv,tsv,jsonl}).
    items_file: str | None = None
    #: Write into a non-empty ``out``.
    overwrite: bool = False

    def validate(self) -> None:
        super().validate()
        for key in ("format", "source", "out"):
            if not getattr(self, key):
                raise ValueError(f"{key} is required")
        if self.format not in ADAPTERS:
            raise ValueError(f"format {self.format!r} is not one of {list(ADAPTERS)}")


@dataclass(kw_only=True)
class MergeConfig(ProcessingOptions):
    """``industrial prepare merge``: merge prepared datasets into ``out`` (see ``ingest/prepared.py``)."""

    #: Prepared dataset folders (required).
    inputs: list[str] = field(default_factory=list)
    #: The output folder (required).
    out: str = ""
    #: The dataset's name (default: the output folder's name).
    name: str | None = None
    #: Write into a non-empty ``out``.
    overwrite: bool = False

    def validate(self) -> None:
        super().validate()
        if not self.inputs:
            raise ValueError("inputs: give at least one prepared dataset")
        if not self.out:
            raise ValueError("out is required")


def prepare_dataset(config: PrepareConfig) -> Path:
    """Prepare ``config.source`` into ``config.out``; returns the output folder."""
    request = IngestRequest(
        sources=[Path(config.source)],
        problems=Problems(config.on_bad_row),
        domains=list(config.domains),
        text_fields=list(config.text_fields),
        events_file=config.events_file,
        items_file=config.items_file,
    )
    return _run(get_adapter(config.format), request, config, Path(config.out), config.name, config.overwrite)


def merge_datasets(config: MergeConfig) -> Path:
    """Merge the prepared datasets ``config.inputs`` into ``config.out``; returns the output folder."""
    request = IngestRequest(sources=[Path(p) for p in config.inputs], problems=Problems(config.on_bad_row))
    return _run(get_adapter("prepared"), request, config, Path(config.out), config.name, config.overwrite)


def _run(
    adapter: Adapter, request: IngestRequest, config: ProcessingOptions, out: Path, name: str | None, overwrite: bool
) -> Path:
    check_output_folder(out, overwrite, request.sources)  # before reading: fail fast
    problems = request.problems
    raw = adapter.read(request)
    resolve_images(raw.catalog, raw.image_root, check=config.check_images, embed=config.embed_images)
    policy = resolve_split_policy(raw, config.split, adapter.name)
    dataset = build(raw, config, problems, policy)
    _require_events(raw, dataset, problems)
    name = name or out.resolve().name
    stats = compute_stats(
        dataset.items,
        dataset.events,
        dataset.train,
        dataset.valid,
        dataset.test,
        fallbacks=dict(problems.counts),
        examples=problems.examples,
        name=name,
    )
    meta = {
        "name": name,
        "format": adapter.name,
        "sources": raw.sources,
        "domains": dataset.domains,
        "image_root": str(raw.image_root.resolve()) if raw.image_root is not None else None,
        "timestamps": raw.timestamps,
        "split": {"policy": policy, **_split_description(policy)},
        "notes": raw.notes,
        "options": to_dict(config),
        "counts": {"users": stats["users"], "items": stats["items"], "events": stats["events"]},
        "fallbacks": stats["fallbacks"],
        "examples": stats["examples"],
    }
    with staged_dataset(out, overwrite=overwrite, sources=request.sources) as stage:
        _write(stage, dataset, config.row_group_size, meta, stats)
    return out


def _require_events(raw: Any, dataset: CanonicalDataset, problems: Problems) -> None:
    """A source without events would make a dataset that trains on nothing and evaluates to NaN:
    refuse it, naming the files. (Events all dropped by the options are counted, and the command
    warns: see :func:`_warn_about`.)"""
    if len(raw.events) == 0:
        files = ", ".join(raw.event_files) or ", ".join(raw.sources)
        skipped = problems.skipped
        why = f" (every row was skipped as bad: {_counts(skipped)})" if skipped else " (only a header, or no rows)"
        raise DatasetError(f"{files}: no event to prepare{why}; give a file with events")


def _counts(counts: Any) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items()) if v) or "none counted"


def _split_description(policy: str) -> dict[str, str]:
    if policy == "leave-one-out":
        return {
            "valid": "each user's second-last event (users with >= 3 events)",
            "test": "each user's last event (users with >= 3 events)",
            "train": "every other event; users with fewer than 3 events are train only",
        }
    return {"valid": "the source's valid targets", "test": "the source's test targets", "train": "every other event"}


def _write(
    out: Path, dataset: CanonicalDataset, row_group_size: int, meta: dict[str, Any], stats: dict[str, Any]
) -> None:
    tables = {
        ITEMS_FILE: dataset.items,
        USERS_FILE: dataset.users,
        EVENTS_FILE: dataset.events,
        SPLIT_FILES["train"]: dataset.train,
        SPLIT_FILES["valid"]: dataset.valid,
        SPLIT_FILES["test"]: dataset.test,
    }
    for file, table in tables.items():
        write_table(table, out / file, row_group_size=row_group_size)
    write_json(stats, out / STATS_FILE)
    write_json(meta, out / META_FILE)  # last: its presence marks a complete dataset


# --------------------------------------------------------------------------------------------- CLI


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
        from industrial.data.derive import main as derive

        return derive(argv[0], argv[1:])
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


if __name__ == "__main__":
    sys.exit(main())
