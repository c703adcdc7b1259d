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

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


from industrial.config import to_dict
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
from industrial.data.stats import compute_stats

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
