"""Metrics overall and per group of examples, reduced exactly across processes.

A *grouping* gives every evaluation example one group (or none): the domain of its target, how
often the target was seen in training (cold items), which modalities the target has, how long the
history is. The caller passes per-example labels; :func:`evaluate_ranks` returns the metrics of
the whole set and of every group value::

    groups = standard_groupings(targets, history_lengths, ItemInfo.from_dataset(root))
    evaluation = evaluate_ranks(ranks, groups)              # or any {name: labels array}
    evaluation.metrics["recall@10"], evaluation.breakdowns["cold"]["0"].metrics["ndcg@10"]

Across processes (each holding its share of the examples) the rank counts of the whole set and of
every group are integer sums (:class:`~industrial.evaluate.metrics.RankCounts`), all-reduced as
int64, so every process reports exactly the numbers one process would, per group too.

Bucket names: edges ``(1, 5, 20)`` give the buckets ``0``, ``1-4``, ``5-19``, ``20+``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch
import torch.distributed as dist

from industrial.data import schema
from industrial.distributed.env import collective_device
from industrial.evaluate.metrics import DEFAULT_CUTOFFS, RankCounts, as_ranks, check_cutoffs

#: Group names of the modality breakdown, in report order.
MODALITIES: tuple[str, ...] = ("text+image", "text-only", "image-only", "none")


@dataclass
class BreakdownConfig:
    """Which breakdowns to report and their buckets."""

    #: training-count buckets of the target item (cold items): edges (1, 5, 20) -> 0, 1-4, 5-19, 20+.
    cold_edges: list[int] = field(default_factory=lambda: [1, 5, 20])
    #: history-length buckets: edges (5, 10, 20, 50) -> 0-4, 5-9, 10-19, 20-49, 50+.
    history_edges: list[int] = field(default_factory=lambda: [5, 10, 20, 50])
    #: breakdowns computed by :func:`standard_groupings`.
    groupings: list[str] = field(default_factory=lambda: ["domain", "cold", "modality", "history_length"])

    def validate(self) -> None:
        for name in ("cold_edges", "history_edges"):
            edges = getattr(self, name)
            if any(e <= 0 for e in edges) or list(edges) != sorted(set(edges)):
                raise ValueError(f"{name} must be increasing positive integers, got {edges}")
        unknown = sorted(set(self.groupings) - set(STANDARD_GROUPINGS))
        if unknown:
            raise ValueError(f"unknown breakdown {unknown[0]!r} (known: {', '.join(STANDARD_GROUPINGS)})")


@dataclass
class Grouping:
    """Per-example group codes and the group names: example ``i`` is in ``values[codes[i]]``.

    A code of -1 leaves the example out of this breakdown. ``fixed_order``: ``values`` is the full,
    ordered list, the same in every process (the builders below); otherwise the values seen by any
    process are merged and sorted.
    """

    codes: np.ndarray  # [U] int64
    values: list[str]
    fixed_order: bool = True

    def __post_init__(self) -> None:
        self.codes = np.asarray(self.codes, dtype=np.int64).reshape(-1)
        self.values = [str(v) for v in self.values]
        if self.codes.size and (self.codes.min() < -1 or self.codes.max() >= len(self.values)):
            raise ValueError(f"group codes must be in -1..{len(self.values) - 1}")

    @classmethod
    def from_labels(cls, labels: Any) -> "Grouping":
        """From one label per example (strings or numbers); groups sorted by label."""
        if isinstance(labels, torch.Tensor):
            labels = labels.cpu().numpy()
        unique, inverse = np.unique(np.asarray(labels).reshape(-1).astype(str), return_inverse=True)
        values = sorted(unique.tolist(), key=_natural_key)
        position = {v: i for i, v in enumerate(values)}
        codes = np.array([position[v] for v in unique.tolist()], dtype=np.int64)[inverse.reshape(-1)]
        return cls(codes, values, fixed_order=False)


def _natural_key(label: str) -> tuple:
    """Numbers before words, numbers by value: ``2 < 10 < abc``."""
    try:
        return (0, float(label), "")
    except ValueError:
        return (1, 0.0, label)


def bucket_names(edges: Sequence[int]) -> list[str]:
    """Names of the buckets ``[0, e0), [e0, e1), ..., [e_last, inf)``: ``0``, ``1-4``, ``20+``."""
    names, lo = [], 0
    for hi in edges:
        names.append(str(lo) if hi - lo == 1 else f"{lo}-{hi - 1}")
        lo = hi
    names.append(f"{lo}+")
    return names


def bucket_grouping(values: Any, edges: Sequence[int]) -> Grouping:
    """Group non-negative integers by the buckets of :func:`bucket_names`."""
    values = np.asarray(values, dtype=np.int64).reshape(-1)
    return Grouping(np.searchsorted(np.asarray(edges, dtype=np.int64), values, side="right"), bucket_names(edges))


@dataclass
class ItemInfo:
    """What the breakdowns need to know about each item (arrays indexed by item id)."""

    domains: np.ndarray  # [N] str
    has_text: np.ndarray  # [N] bool
    has_image: np.ndarray  # [N] bool
    train_counts: np.ndarray  # [N] int64, occurrences in the training sequences

    @classmethod
    def from_dataset(cls, root: str | Path) -> "ItemInfo":
        """Read ``items.parquet`` and ``train.parquet`` of a prepared dataset (batch by batch)."""
        n = schema.num_items(root)
        domains = np.empty(n, dtype=object)
        has_text = np.zeros(n, dtype=bool)
        has_image = np.zeros(n, dtype=bool)
        items = pq.ParquetFile(Path(root) / schema.ITEMS_FILE)
        for batch in items.iter_batches(columns=["item_id", "domain", "text", "image_path", "image_bytes"]):
            ids = batch.column("item_id").to_numpy()
            domains[ids] = batch.column("domain").to_numpy(zero_copy_only=False)
            has_text[ids] = pc.is_valid(batch.column("text")).to_numpy(zero_copy_only=False)
            image = pc.or_(pc.is_valid(batch.column("image_path")), pc.is_valid(batch.column("image_bytes")))
            has_image[ids] = image.to_numpy(zero_copy_only=False)
        train = schema.read_table(root, schema.SPLIT_FILES["train"], columns=["item_ids"])
        seen = pc.list_flatten(train.column("item_ids")).to_numpy()
        return cls(domains, has_text, has_image, np.bincount(seen, minlength=n).astype(np.int64))


def domain_grouping(targets: Any, item_domains: np.ndarray) -> Grouping:
    """The domain of each example's target; groups are every domain of the catalogue, sorted."""
    values, item_codes = np.unique(np.asarray(item_domains).astype(str), return_inverse=True)
    return Grouping(item_codes[_np(targets)], values.tolist())


def cold_grouping(targets: Any, train_counts: np.ndarray, edges: Sequence[int] = (1, 5, 20)) -> Grouping:
    """How often each example's target occurs in training, bucketed (``0`` = never seen)."""
    return bucket_grouping(np.asarray(train_counts)[_np(targets)], edges)


def modality_grouping(targets: Any, has_text: np.ndarray, has_image: np.ndarray) -> Grouping:
    """Which modalities each example's target has: text+image, text-only, image-only, none."""
    t = _np(targets)
    text, image = np.asarray(has_text, dtype=bool)[t], np.asarray(has_image, dtype=bool)[t]
    codes = np.where(text, np.where(image, 0, 1), np.where(image, 2, 3))
    return Grouping(codes, list(MODALITIES))


def history_length_grouping(lengths: Any, edges: Sequence[int] = (5, 10, 20, 50)) -> Grouping:
    """The length of each example's history, bucketed."""
    return bucket_grouping(_np(lengths), edges)


STANDARD_GROUPINGS: tuple[str, ...] = ("domain", "cold", "modality", "history_length")


def standard_groupings(
    targets: Any, history_lengths: Any, info: ItemInfo, cfg: BreakdownConfig | None = None
) -> dict[str, Grouping]:
    """The breakdowns named in ``cfg.groupings`` for examples with these targets and histories."""
    cfg = cfg or BreakdownConfig()
    cfg.validate()
    build = {
        "domain": lambda: domain_grouping(targets, info.domains),
        "cold": lambda: cold_grouping(targets, info.train_counts, cfg.cold_edges),
        "modality": lambda: modality_grouping(targets, info.has_text, info.has_image),
        "history_length": lambda: history_length_grouping(history_lengths, cfg.history_edges),
    }
    return {name: build[name]() for name in cfg.groupings}


def _np(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.int64).reshape(-1)


@dataclass
class GroupResult:
    """Metrics of one group of examples."""

    count: int
    metrics: dict[str, float]


@dataclass
class Evaluation:
    """Metrics of the whole evaluated set and of every group of every breakdown."""

    count: int
    metrics: dict[str, float]
    breakdowns: dict[str, dict[str, GroupResult]] = field(default_factory=dict)
    cutoffs: tuple[int, ...] = DEFAULT_CUTOFFS

    def to_dict(self) -> dict[str, Any]:
        """The ``metrics.json`` layout: metrics at the top level, ``count``, ``breakdowns``."""
        return {
            **{k: _json_float(v) for k, v in self.metrics.items()},
            "count": self.count,
            "cutoffs": list(self.cutoffs),
            "breakdowns": {
                name: {
                    value: {"count": g.count, **{k: _json_float(v) for k, v in g.metrics.items()}}
                    for value, g in groups.items()
                }
                for name, groups in self.breakdowns.items()
            },
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Evaluation":
        def split(d: Mapping[str, Any]) -> tuple[int, dict[str, float]]:
            metrics = {k: math.nan if v is None else float(v) for k, v in d.items() if "@" in k}
            return int(d.get("count", 0)), metrics

        count, metrics = split(data)
        breakdowns = {
            name: {value: GroupResult(*split(g)) for value, g in groups.items()}
            for name, groups in data.get("breakdowns", {}).items()
        }
        cutoffs = tuple(data.get("cutoffs") or sorted({int(k.split("@")[1]) for k in metrics}))
        return cls(count, metrics, breakdowns, cutoffs)

    def scalars(self) -> dict[str, float]:
        """Flat ``{"recall@10": .., "domain/Scientific/recall@10": .., "count": ..}`` (for logs)."""
        out = {"count": float(self.count), **self.metrics}
        for name, groups in self.breakdowns.items():
            for value, g in groups.items():
                out[f"{name}/{value}/count"] = float(g.count)
                out.update({f"{name}/{value}/{k}": v for k, v in g.metrics.items()})
        return out


def _json_float(v: float) -> float | None:
    return None if math.isnan(v) else v


def _as_grouping(labels: Grouping | Any, num_examples: int, name: str) -> Grouping:
    grouping = labels if isinstance(labels, Grouping) else Grouping.from_labels(labels)
    if grouping.codes.size != num_examples:
        raise ValueError(f"breakdown {name!r} has {grouping.codes.size} labels for {num_examples} examples")
    return grouping


def _agree_on_values(groupings: dict[str, Grouping], group: Any) -> dict[str, Grouping]:
    """Make every process use the same value list per grouping (union, in rank order or sorted)."""
    local = {name: (g.values, g.fixed_order) for name, g in groupings.items()}
    gathered: list[Any] = [None] * dist.get_world_size(group)
    dist.all_gather_object(gathered, local, group=group)
    out = {}
    for name, g in groupings.items():
        union: list[str] = []
        for per_rank in gathered:
            if name not in per_rank:
                raise ValueError(f"breakdown {name!r} is missing on some processes")
            union += [v for v in per_rank[name][0] if v not in union]
        if not all(per_rank[name][1] for per_rank in gathered):
            union.sort(key=_natural_key)
        index = np.array([union.index(v) for v in g.values] + [-1], dtype=np.int64)
        out[name] = Grouping(index[g.codes], union, fixed_order=True)
    return out


def _count_table(ranks: np.ndarray, codes: np.ndarray, num_groups: int, max_rank: int) -> np.ndarray:
    """``[num_groups, max_rank + 1]`` int64: per group, the examples at each rank ``1..max_rank``, then all."""
    inside = codes >= 0
    codes, ranks = codes[inside], ranks[inside]
    top = ranks <= max_rank
    at_rank = np.bincount(codes[top] * max_rank + ranks[top] - 1, minlength=num_groups * max_rank)
    totals = np.bincount(codes, minlength=num_groups)
    return np.column_stack([at_rank.reshape(num_groups, max_rank), totals]).astype(np.int64)


def evaluate_ranks(
    ranks: Any,
    groupings: Mapping[str, Grouping | Any] | None = None,
    cutoffs: Sequence[int] = DEFAULT_CUTOFFS,
    process_group: Any = None,
) -> Evaluation:
    """Metrics of ``ranks`` overall and per group, exact across the processes of ``process_group``.

    Args:
        ranks: ``[U]`` ranks of this process's examples (from :func:`~industrial.evaluate.ranking.rank_targets`).
        groupings: ``{breakdown name: Grouping or per-example labels}``, each with ``U`` entries.
        cutoffs: the ``k`` of every ``metric@k``.
        process_group: when given (and torch.distributed is initialised), every process passes its
            own examples and gets the metrics of all of them; it must be called by every member.
    """
    cutoffs = check_cutoffs(cutoffs)
    max_rank = cutoffs[-1]
    r = as_ranks(ranks)
    groups = {name: _as_grouping(labels, r.size, name) for name, labels in (groupings or {}).items()}
    if process_group is not None:
        groups = _agree_on_values(groups, process_group)
    table = np.concatenate(
        [_count_table(r, np.zeros(r.size, dtype=np.int64), 1, max_rank)]
        + [_count_table(r, g.codes, len(g.values), max_rank) for g in groups.values()]
    )
    if process_group is not None:
        packed = torch.from_numpy(table).to(collective_device(process_group))  # NCCL: the GPU, gloo: the CPU
        dist.all_reduce(packed, group=process_group)
        table = packed.cpu().numpy()
    counts = [RankCounts(row[:-1].copy(), int(row[-1])) for row in table]
    overall, rest = counts[0], iter(counts[1:])
    breakdowns: dict[str, dict[str, GroupResult]] = {}
    for name, g in groups.items():
        breakdowns[name] = {}
        for value in g.values:
            c = next(rest)
            if c.total:
                breakdowns[name][value] = GroupResult(c.total, c.metrics(cutoffs))
    return Evaluation(overall.total, overall.metrics(cutoffs), breakdowns, cutoffs)
