"""Streaming loader: Parquet row groups of a split -> :class:`SequenceBatch`, rank-sharded,
shuffled, equalised across ranks and resumable at the exact next batch.

Pipeline (``torchdata.nodes``)::

    RowGroupSource      stateful BaseNode: the rank's row groups for the epoch, read a shuffle
                        window at a time, valid rows permuted, cut into batches of row indices
      -> Mapper / ParallelMapper(Collate)   truncate, input/target, negatives, augmentation,
                        KeyedJaggedTensor built straight from the Arrow list offsets
      -> [PinMemory] -> Prefetcher -> Loader   (one epoch per ``iter()``)

How a trainer uses it::

    loader = build_loader(dataset_root, "train", LoaderConfig(batch_size=256))   # rank/world from
    for epoch in range(epochs):                                                    # torch.distributed
        for batch in loader:            # SequenceBatch (industrial.data.batch)
            ...
            state = loader.state_dict()  # plain JSON-able dict, one per rank
    loader.load_state_dict(state)        # the next iter() continues with exactly the next batch

**Sharding.** The unit of work is a row group (``DEFAULT_ROW_GROUP_SIZE`` rows in the canonical
files); the units of all files are listed in file order. Each epoch, the training split permutes
them with an RNG seeded by ``(seed, epoch)`` and rank ``r`` of ``W`` takes ``order[r::W]``, so ranks
read disjoint row-group sets that together cover the split, and every epoch mixes differently.
Evaluation splits keep file order (``units[r::W]``). Parallel collate workers are threads working
on whole batches after the source, so no row group needs to be shared out among workers. Batching
happens in the source, on row indices, rather than in a ``Batcher`` over single rows: a Python
call per row and node would cost more than all the array work.

**Shuffle.** A bounded *window* shuffle: consecutive units of the rank's epoch order are grouped
into windows of at most ``shuffle_buffer`` rows (at least one row group); a window's valid rows are
read together (on a reader thread, one window ahead, and the next epoch's first window during an
epoch's last, so Parquet decoding overlaps collation) and
permuted by an RNG seeded by ``(seed, epoch, rank, window)``. Memory is two windows plus the
prefetched batches, whatever the size of the split. Because every random choice derives from a
counter (epoch, window, batch index), the loader's state is a handful of integers: it rebuilds
the shuffle buffer by re-reading the window's row groups and redrawing the same permutation,
instead of storing the buffer.

**Training rows.** A sequence is truncated to its last ``max_seq_len + 1`` items; the history is
``seq[:-1]`` and the target at every position is ``seq[1:]`` (both ``<= max_seq_len`` long).
Sequences shorter than 2 items have no target: they are skipped, counted (``skipped_short`` in
:class:`EpochStats` and the state) and logged. **Evaluation rows** keep the last ``max_seq_len``
history items and their single target; none is ever skipped.

**Equal batch counts.** DDP hangs when one rank runs out of batches before the others, so for
the training split (``equalize``):

- ``"drop"``: every rank yields ``T = ⌊min_r V_r / B⌋`` full batches (``V_r``: valid sequences of
  rank ``r`` this epoch); the rest of each rank's share is counted as ``unused``. The assignment
  changes every epoch, so no sequence is left out systematically.
- ``"pad"``: every rank yields ``T = ⌈max_r V_r / B⌉`` full batches; a rank whose share runs out
  starts its epoch order again, and the extra rows are counted as ``repeated``.
- ``"none"``: each rank yields its whole share (last batch partial); counts may differ by rank.

With more than one rank, ``drop``/``pad`` need every rank's ``V_r`` up front, so the loader counts
the valid sequences of each row group once (one read of the ``item_ids`` column). Evaluation
splits always cover every example exactly once (``"none"``); :meth:`SequenceLoader.batches_per_rank`
gives every rank's count from the Parquet metadata, for evaluators that step in lock-step.

**State.** ``state_dict()`` holds epoch, pass, window, offset within the window (row groups of the
window named for humans), batches yielded, the counters, the seed of the counter-based RNGs and a
fingerprint of files and settings; ``load_state_dict`` refuses a state made for other files,
another rank/world size or other batch settings, naming the difference.
"""

from __future__ import annotations

import copy
import logging
import math
import os
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property
from itertools import accumulate
from pathlib import Path
from typing import Any, Iterator, Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
import torch.distributed as dist
from torchdata.nodes import BaseNode, Loader, Mapper, ParallelMapper, PinMemory, Prefetcher
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from industrial.data.augment import AugmentConfig, augment
from industrial.data.batch import ITEM_KEYS, SequenceBatch
from industrial.data.jagged import offsets_from_lengths, ranges, row_ids
from industrial.data.negatives import (
    Exclusion,
    ItemDistribution,
    PopularityItems,
    UniformItems,
    count_items,
    sample_negatives,
)
from industrial.data.schema import SPLIT_FILES, DatasetError, num_items as dataset_num_items

log = logging.getLogger(__name__)

TRAIN_COLUMNS = ("user_id", "item_ids", "timestamps")
EVAL_COLUMNS = ("user_id", "history", "target")
STATE_VERSION = 1
_STATE_MARKER = "industrial.stream"
# Independent RNG streams: every draw is seeded by (seed, stream, counters...).
_STREAM_UNITS, _STREAM_WINDOW, _STREAM_BATCH = 1, 2, 3

Equalize = Literal["drop", "pad", "none"]


@dataclass
class LoaderConfig:
    """How a split is streamed into batches (one config per loader; per rank sizes)."""

    batch_size: int = 256  # sequences per batch, per rank
    max_seq_len: int = 50  # history items kept (the most recent); training reads max_seq_len + 1
    shuffle: bool = True  # training split only: row-group order and rows within a window
    shuffle_buffer: int = 16384  # rows per shuffle window (whole row groups): memory grows with it
    length_buckets: int = 0  # training, shuffled: sort by length within runs of this many batches (0: off)
    seed: int = 0  # seeds every random choice, with the epoch / window / batch counters
    equalize: Equalize = "drop"  # training split only: same batch count on every rank (see module doc)
    num_negatives: int = 0  # K sampled negatives per target (0: none)
    negative_sampler: Literal["uniform", "popularity"] = "uniform"  # p_i = 1/N, or p_i ∝ count_i^alpha
    popularity_alpha: float = 1.0  # alpha of the popularity sampler
    exclude_own_items: bool = False  # negatives avoid every item of the user's sequence (always the target)
    augment: AugmentConfig = field(default_factory=AugmentConfig)  # fills the "augmented" key
    num_workers: int = 0  # collate threads (0: collate inline in the prefetch thread)
    prefetch: int = 4  # batches prepared ahead of the consumer
    pin_memory: bool = False  # pin batches in page-locked memory (CUDA only), so non_blocking copies overlap

    def validate(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.max_seq_len < 1:
            raise ValueError(f"max_seq_len must be >= 1, got {self.max_seq_len}")
        if self.shuffle_buffer < 1:
            raise ValueError(f"shuffle_buffer must be >= 1, got {self.shuffle_buffer}")
        if self.length_buckets < 0:
            raise ValueError(f"length_buckets must be >= 0, got {self.length_buckets}")
        if self.num_negatives < 0:
            raise ValueError(f"num_negatives must be >= 0, got {self.num_negatives}")
        if self.num_workers < 0 or self.prefetch < 1:
            raise ValueError("num_workers must be >= 0 and prefetch >= 1")
        if self.equalize not in ("drop", "pad", "none"):
            raise ValueError(f"equalize must be drop, pad or none, got {self.equalize!r}")
        self.augment.validate()


# ----------------------------------------------------------------------------- split files
@dataclass(frozen=True)
class SplitFiles:
    """The Parquet file(s) of one split and their row groups (the units shared out to ranks)."""

    paths: tuple[str, ...]
    kind: Literal["train", "eval"]
    unit_file: np.ndarray  # unit -> index into paths
    unit_group: np.ndarray  # unit -> row group within its file
    unit_rows: np.ndarray  # unit -> rows (from the Parquet metadata)

    @property
    def num_units(self) -> int:
        return len(self.unit_rows)

    @property
    def columns(self) -> tuple[str, ...]:
        return TRAIN_COLUMNS if self.kind == "train" else EVAL_COLUMNS

    def where(self, unit: int) -> str:
        return f"{self.paths[self.unit_file[unit]]}: row group {int(self.unit_group[unit])}"

    def fingerprint(self) -> dict[str, Any]:
        rows = np.bincount(self.unit_file, weights=self.unit_rows, minlength=len(self.paths))
        return {
            "files": [Path(p).name for p in self.paths],
            "rows": [int(r) for r in rows],
            "row_groups": [int(n) for n in np.bincount(self.unit_file, minlength=len(self.paths))],
        }


def open_split(paths: Sequence[str | os.PathLike]) -> SplitFiles:
    """Read the Parquet metadata of the split file(s); all must be training files or all eval files."""
    if not paths:
        raise DatasetError("no split file given")
    kinds, unit_file, unit_group, unit_rows = set(), [], [], []
    for i, path in enumerate(paths):
        if not Path(path).exists():
            raise DatasetError(f"{path}: missing split file")
        pf = pq.ParquetFile(path)
        names = set(pf.schema_arrow.names)
        if set(TRAIN_COLUMNS) <= names:
            kinds.add("train")
        elif set(EVAL_COLUMNS) <= names:
            kinds.add("eval")
        else:
            raise DatasetError(
                f"{path}: columns {sorted(names)} are neither a training split {list(TRAIN_COLUMNS)} "
                f"nor an evaluation split {list(EVAL_COLUMNS)}"
            )
        for rg in range(pf.num_row_groups):
            unit_file.append(i)
            unit_group.append(rg)
            unit_rows.append(pf.metadata.row_group(rg).num_rows)
    if len(kinds) > 1:
        raise DatasetError(f"{[str(p) for p in paths]}: mixes training and evaluation split files")
    return SplitFiles(
        paths=tuple(str(p) for p in paths),
        kind=kinds.pop(),
        unit_file=np.asarray(unit_file, dtype=np.int64),
        unit_group=np.asarray(unit_group, dtype=np.int64),
        unit_rows=np.asarray(unit_rows, dtype=np.int64),
    )


def valid_counts(split: SplitFiles) -> np.ndarray:
    """Rows of every unit that yield at least one example: all rows of an evaluation split, the
    rows with >= 2 items of a training split (one read of the ``item_ids`` column)."""
    if split.kind == "eval":
        return split.unit_rows.copy()
    counts = np.zeros(split.num_units, dtype=np.int64)
    files = [pq.ParquetFile(p) for p in split.paths]
    for u in range(split.num_units):
        table = files[split.unit_file[u]].read_row_group(int(split.unit_group[u]), columns=["item_ids"])
        offsets, _ = _list_column(table, "item_ids", split.where(u))
        counts[u] = int(np.count_nonzero(np.diff(offsets) >= 2))
    return counts


# ----------------------------------------------------------------------------- windows
@dataclass
class Part:
    """One row group as read: columnar numpy views of its Arrow buffers (no copy of the items)."""

    user_ids: np.ndarray  # [n]
    offsets: np.ndarray  # [n + 1] int64 into values, from 0
    values: np.ndarray  # item ids
    stamps: np.ndarray  # training: timestamps aligned with values; evaluation: empty
    targets: np.ndarray | None = None  # evaluation: [n] targets; training: None

    @cached_property
    def follow(self) -> np.ndarray:
        """``[n]`` the item after each row's history: training: its last item; evaluation: the target.

        Computed on first use, by the collate thread (the reader thread is the loader's critical path)."""
        return self.targets if self.targets is not None else _last_items(self.offsets, self.values)


@dataclass
class Window:
    """The row groups of one shuffle window and the order in which their valid rows are used.

    Rows are numbered across the parts (part ``k`` holds rows ``row_start[k]:row_start[k + 1]``).
    The per-row fields are concatenated over the parts once per window (a few ints per row: the
    row bounds when the window is read, the user ids and next items when the first batch needs
    them), so a batch picks its rows' fields with one fancy index each; the items are never
    concatenated: a batch gathers them from each part straight into its output.
    """

    parts: list[Part]
    row_start: np.ndarray  # [len(parts) + 1]
    starts: np.ndarray  # [rows] first item of the row in its part's ``values`` / ``stamps``
    ends: np.ndarray  # [rows] one past its last item
    order: np.ndarray  # valid rows, in use order

    # the fields only batches need are concatenated on first use, in the collate thread
    @cached_property
    def users(self) -> np.ndarray:
        """``[rows]`` user ids."""
        return _cat([p.user_ids for p in self.parts])

    @cached_property
    def follow(self) -> np.ndarray:
        """``[rows]`` :attr:`Part.follow`."""
        return _cat([p.follow for p in self.parts])

    @property
    def size(self) -> int:
        return len(self.order)

    def lengths(self) -> np.ndarray:
        """Items of every row."""
        return self.ends - self.starts

    def select(self, rows: np.ndarray) -> tuple[np.ndarray, list[tuple[Part, int]]]:
        """``rows`` in storage order, and the parts they fall in: ``(part, number of rows)``.

        The shuffle decides which rows form a batch; inside the batch they follow the storage
        order, so that gathering them reads memory forwards (the order of the rows of a batch
        carries no meaning for the model).
        """
        rows = np.sort(rows)
        counts = np.diff(np.searchsorted(rows, self.row_start)).tolist()
        return rows, [(part, c) for part, c in zip(self.parts, counts) if c]


def _cat(arrays: list[np.ndarray]) -> np.ndarray:
    """``np.concatenate``, without the copy when there is a single array."""
    return arrays[0] if len(arrays) == 1 else np.concatenate(arrays)


def _list_column(table: pa.Table, name: str, where: str) -> tuple[np.ndarray, np.ndarray]:
    """(offsets from 0, values) of a ``list<int64>`` column, without copying the values."""
    col = table.column(name)
    arr = col.chunk(0) if col.num_chunks == 1 else col.combine_chunks()
    if arr.null_count or arr.values.null_count:
        raise DatasetError(f"{where}: column {name!r} holds nulls")
    offsets = np.asarray(arr.offsets, dtype=np.int64)
    values = np.asarray(arr.values)[offsets[0] : offsets[-1]]
    if values.dtype != np.int64:
        raise DatasetError(f"{where}: column {name!r} holds {values.dtype}, expected int64")
    return offsets - offsets[0], values


def _int_column(table: pa.Table, name: str, where: str) -> np.ndarray:
    col = table.column(name)
    if col.null_count:
        raise DatasetError(f"{where}: column {name!r} holds nulls")
    return np.asarray(col.combine_chunks() if col.num_chunks != 1 else col.chunk(0), dtype=np.int64)


def _last_items(offsets: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``values[offsets[b + 1] - 1]``, the last item of every row (0 for an empty row)."""
    ends = offsets[1:]
    last = np.zeros(len(ends), dtype=values.dtype)
    filled = ends > offsets[:-1]
    last[filled] = values[ends[filled] - 1]
    return last


def read_part(split: SplitFiles, files: list[pq.ParquetFile], unit: int) -> Part:
    """Read one row group; errors name the file and the row group."""
    where = split.where(unit)
    try:
        table = files[split.unit_file[unit]].read_row_group(int(split.unit_group[unit]), columns=list(split.columns))
    except (OSError, pa.ArrowException) as e:
        raise DatasetError(f"{where}: cannot be read: {e}") from e
    users = _int_column(table, "user_id", where)
    if split.kind == "train":
        offsets, values = _list_column(table, "item_ids", where)
        ts_offsets, stamps = _list_column(table, "timestamps", where)
        if not np.array_equal(offsets, ts_offsets):
            raise DatasetError(f"{where}: timestamps and item_ids have different lengths")
        return Part(users, offsets, values, stamps)
    offsets, values = _list_column(table, "history", where)
    return Part(users, offsets, values, np.zeros(0, dtype=np.int64), _int_column(table, "target", where))


@dataclass(frozen=True)
class Bucketing:
    """Length bucketing of a shuffled window: runs of ``batches`` batches of ``batch_size`` rows
    are sorted by (truncated) length, cut into batches, and those batches permuted."""

    batch_size: int
    batches: int
    keep: int  # items kept per row (longer rows sort as this long)

    def order(self, rows: np.ndarray, lengths: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """``rows`` (already permuted) reordered run by run; a short last batch stays last."""
        size, out = self.batch_size, []
        run = size * self.batches
        for start in range(0, len(rows), run):
            chunk = rows[start : start + run]
            chunk = chunk[np.argsort(np.minimum(lengths[chunk], self.keep), kind="stable")]
            full = len(chunk) // size
            out += [chunk[b * size : (b + 1) * size] for b in rng.permutation(full)]
            out.append(chunk[full * size :])
        return _cat(out) if out else rows


def read_window(
    split: SplitFiles,
    files: list[pq.ParquetFile],
    units: np.ndarray,
    rng: np.random.Generator | None,
    bucketing: Bucketing | None = None,
) -> Window:
    """Read ``units`` into one :class:`Window`; ``rng`` permutes its valid rows (None: file order),
    then ``bucketing`` groups rows of similar length into the same batches."""
    parts = [read_part(split, files, int(u)) for u in units]
    starts, ends = _cat([p.offsets[:-1] for p in parts]), _cat([p.offsets[1:] for p in parts])
    if split.kind == "train":
        valid = np.flatnonzero(ends - starts >= 2)
    else:
        valid = np.arange(len(starts), dtype=np.int64)
    order = valid if rng is None else valid[rng.permutation(len(valid))]
    if rng is not None and bucketing is not None:
        order = bucketing.order(order, ends - starts, rng)
    return Window(
        parts=parts,
        row_start=offsets_from_lengths(np.array([len(p.user_ids) for p in parts], dtype=np.int64)),
        starts=starts,
        ends=ends,
        order=order,
    )


# ----------------------------------------------------------------------------- epoch plan
@dataclass
class EpochPlan:
    """What one rank reads in one epoch."""

    epoch: int
    units: np.ndarray  # this rank's units, in read order
    windows: list[np.ndarray]  # consecutive groups of ``units``
    quota: int | None  # batches to yield, when fixed in advance (equalised training split)
    valid_rows: int | None  # V_r, when known
    short_rows: int | None  # rows too short to train on, when known


def rank_units(split: SplitFiles, shuffle: bool, seed: int, epoch: int, world_size: int) -> list[np.ndarray]:
    """Every rank's units for ``epoch``: ``order[r::world_size]``."""
    if shuffle:
        order = np.random.default_rng([seed, _STREAM_UNITS, epoch]).permutation(split.num_units)
    else:
        order = np.arange(split.num_units)
    return [order[r::world_size] for r in range(world_size)]


def make_windows(units: np.ndarray, rows: np.ndarray, buffer: int) -> list[np.ndarray]:
    """Group consecutive units into windows of at most ``buffer`` rows (at least one unit each)."""
    windows, start, total = [], 0, 0
    for i, u in enumerate(units):
        if i > start and total + rows[u] > buffer:
            windows.append(units[start:i])
            start, total = i, 0
        total += rows[u]
    if len(units):
        windows.append(units[start:])
    return windows


def plan_epoch(
    split: SplitFiles,
    cfg: LoaderConfig,
    rank: int,
    world_size: int,
    epoch: int,
    counts: np.ndarray | None,
) -> EpochPlan:
    """The rank's units, windows and (for an equalised training split) batch quota for ``epoch``."""
    shuffle = cfg.shuffle and split.kind == "train"
    shares = rank_units(split, shuffle, cfg.seed, epoch, world_size)
    mine = shares[rank]
    if shuffle:
        windows = make_windows(mine, split.unit_rows, cfg.shuffle_buffer)
    else:
        windows = [mine[i : i + 1] for i in range(len(mine))]
    quota = valid = short = None
    if counts is not None:
        per_rank = [int(counts[s].sum()) for s in shares]
        valid = per_rank[rank]
        short = int(split.unit_rows[mine].sum()) - valid
        if split.kind == "train" and world_size > 1 and cfg.equalize != "none":
            if cfg.equalize == "drop":
                quota = min(per_rank) // cfg.batch_size
            else:
                if min(per_rank) == 0:
                    empty = per_rank.index(0)
                    raise DatasetError(
                        f"{split.paths[0]}: rank {empty} of {world_size} gets no training sequence in epoch "
                        f"{epoch} ({split.num_units} row groups): nothing to repeat; write smaller row groups"
                    )
                quota = math.ceil(max(per_rank) / cfg.batch_size)
            if quota == 0:
                raise DatasetError(
                    f"{split.paths[0]}: equalize=drop leaves no full batch of {cfg.batch_size} on every one of "
                    f"{world_size} ranks in epoch {epoch} (valid sequences per rank: {per_rank}); lower the batch "
                    "size or write smaller row groups"
                )
    return EpochPlan(epoch, mine, windows, quota, valid, short)


# ----------------------------------------------------------------------------- source node
@dataclass
class RowBatch:
    """Rows chosen for one batch: ``(window, row indices)`` pieces, in batch order."""

    pieces: list[tuple[Window, np.ndarray]]
    epoch: int
    index: int  # batch index within the epoch: seeds the batch's RNG

    @property
    def size(self) -> int:
        return sum(len(rows) for _, rows in self.pieces)


@dataclass
class EpochStats:
    """What one rank did with its share in one epoch."""

    epoch: int
    rank: int
    batches: int  # batches yielded
    sequences: int  # rows put in batches (repeats included)
    repeated: int  # rows yielded a second time to equalise (equalize="pad")
    unused: int  # valid rows of the share left out to equalise (equalize="drop")
    skipped_short: int  # training rows with fewer than 2 items (no target)
    truncated_items: int  # items cut by max_seq_len, in the windows read


# fingerprint keys added after STATE_VERSION 1 states were first written, with the behaviour of
# the loader that wrote those states
_FINGERPRINT_BEFORE = {"length_buckets": 0}

_CURSOR_FIELDS = ("epoch", "pass", "window", "offset", "batches", "rows", "repeated", "unused", "counted",
                  "skipped_short", "truncated_items")  # fmt: skip


class RowGroupSource(BaseNode[RowBatch]):
    """Stateful source: the rank's row groups for the epoch, window by window, in batches of rows.

    ``reset(None)`` starts the next epoch (the first one after construction is epoch 0), or the
    position given to :meth:`resume`; ``reset(state)`` restores a position. A restored position at
    the very end of its epoch continues with the next epoch (as ``torchdata.nodes.Loader`` does).
    """

    def __init__(self, split: SplitFiles, cfg: LoaderConfig, rank: int, world_size: int):
        super().__init__()
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside 0..{world_size - 1}")
        self.split, self.cfg, self.rank, self.world_size = split, cfg, rank, world_size
        if split.kind == "train" and world_size > 1 and split.num_units < 8 * world_size and rank == 0:
            log.warning(
                "%s: %d row groups for %d ranks; rank shares differ by up to a whole row group, and "
                "equalize=%s loses or repeats that much every epoch. Write the split with smaller row "
                "groups (industrial prepare --row-group-size)",
                split.paths[0], split.num_units, world_size, cfg.equalize,
            )
        self.finished: list[EpochStats] = []  # epochs completed in this process
        self._fingerprint = {
            **split.fingerprint(),
            "kind": split.kind,
            "rank": rank,
            "world_size": world_size,
            "batch_size": cfg.batch_size,
            "shuffle": cfg.shuffle and split.kind == "train",
            "shuffle_buffer": cfg.shuffle_buffer,
            "length_buckets": cfg.length_buckets,
            "equalize": self.equalize,
            "seed": cfg.seed,
        }
        self._counts: np.ndarray | None = None
        self._files: list[pq.ParquetFile] | None = None
        self._pending: dict[str, Any] | None = None
        self._cur: dict[str, int] | None = None
        self._plan: EpochPlan | None = None
        self._window: tuple[int, Window] | None = None
        self._reader: ThreadPoolExecutor | None = None
        self._ahead: tuple[int, int, Future] | None = None  # (epoch, window, read in flight)
        self._next_plan: EpochPlan | None = None  # the next epoch's, made when its first window is read ahead
        self._resumed = False
        self._done = False
        self._quiet = False  # a probe (see ended) does not log the epochs it finishes

    @property
    def equalize(self) -> Equalize:
        return self.cfg.equalize if self.split.kind == "train" else "none"

    # --- counts and plans
    def needs_counts(self) -> bool:
        return self.split.kind == "train" and self.world_size > 1 and self.equalize != "none"

    def counts(self) -> np.ndarray:
        if self._counts is None:
            log.info("counting valid sequences per row group of %s", ", ".join(self.split.paths))
            self._counts = valid_counts(self.split)
        return self._counts

    def plan(self, epoch: int, rank: int | None = None, with_counts: bool = False) -> EpochPlan:
        counts = self.counts() if (with_counts or self.needs_counts()) else None
        return plan_epoch(self.split, self.cfg, self.rank if rank is None else rank, self.world_size, epoch, counts)

    # --- BaseNode
    def resume(self, state: dict[str, Any]) -> None:
        """Start from ``state`` at the next ``reset(None)``."""
        self.check_state(state)
        self._pending = state

    def ended(self, state: dict[str, Any]) -> EpochStats | None:
        """The stats of the epoch of position ``state`` when no batch of it is left, else None.

        Restoring such a position continues with the next epoch (see the class doc): a trainer
        that saved it right after the epoch's last batch, before it saw the epoch end, learns
        here that the epoch is over and what it did. Asked of a copy of this source, which reads
        at most what the next batch would (nothing with a batch quota); this one is left as it
        is, and the stats are those it will record when it passes that end.
        """
        self.check_state(state)
        if self.needs_counts():
            self.counts()  # computed once, shared with the probe
        probe = copy.copy(self)
        probe.finished, probe._quiet = [], True
        probe._files = probe._reader = probe._ahead = probe._next_plan = probe._pending = probe._window = None
        try:
            probe.reset(state)
            try:
                probe._next_batch()
            except StopIteration:
                return probe.finished[-1]
            return None
        finally:
            if probe._reader is not None:
                probe._reader.shutdown(wait=False, cancel_futures=True)

    def check_state(self, state: dict[str, Any]) -> None:
        if not isinstance(state, dict) or state.get(_STATE_MARKER) != STATE_VERSION:
            raise ValueError(f"not a loader state of version {STATE_VERSION} (keys: {sorted(state)[:8]})")
        saved = {**_FINGERPRINT_BEFORE, **state["fingerprint"]}
        diffs = [f"{k}: saved {saved.get(k)!r}, now {v!r}" for k, v in self._fingerprint.items() if saved.get(k) != v]
        if diffs:
            raise ValueError(
                "loader state does not match this loader (a state restores only on the same files, rank, "
                "world size and batch settings): " + "; ".join(diffs)
            )

    def reset(self, initial_state: dict[str, Any] | None = None):
        super().reset(initial_state)
        if self._files is None:
            self._files = [pq.ParquetFile(p) for p in self.split.paths]
        if initial_state is None and self._pending is not None:
            initial_state, self._pending = self._pending, None
        if initial_state is not None:
            self.check_state(initial_state)
            self._start(int(initial_state["epoch"]))
            self._cur = {k: int(initial_state[k]) for k in _CURSOR_FIELDS}
            self._resumed = True
        else:
            self._start(0 if self._cur is None else self._cur["epoch"] + 1)
            self._resumed = False

    def _start(self, epoch: int) -> None:
        upcoming, self._next_plan = self._next_plan, None
        self._plan = upcoming if upcoming is not None and upcoming.epoch == epoch else self.plan(epoch)
        self._cur = dict.fromkeys(_CURSOR_FIELDS, 0)
        self._cur["epoch"] = epoch
        self._window = None
        self._done = False

    def get_state(self) -> dict[str, Any]:
        cur, plan = self._cur, self._plan
        w = cur["window"]
        units = plan.windows[w] if w < len(plan.windows) else np.zeros(0, dtype=np.int64)
        names = self._fingerprint["files"]  # taken after every batch: no path parsing here
        return {
            _STATE_MARKER: STATE_VERSION,
            **cur,
            # for humans: the row groups of the current window (the offset counts its valid rows)
            "row_groups": [[names[self.split.unit_file[u]], int(self.split.unit_group[u])] for u in units],
            "fingerprint": self._fingerprint,
        }

    def next(self) -> RowBatch:
        try:
            batch = self._next_batch()
        except StopIteration:
            if not self._resumed:
                raise
            # Restored at the end of an epoch: go on with the next one.
            self._start(self._cur["epoch"] + 1)
            batch = self._next_batch()
        self._resumed = False
        return batch

    # --- batching
    def _read(self, plan: EpochPlan, w: int) -> Future:
        """Read window ``w`` of ``plan`` on the reader thread (every Parquet read happens there)."""
        rng = None
        if self.cfg.shuffle and self.split.kind == "train":
            rng = np.random.default_rng([self.cfg.seed, _STREAM_WINDOW, plan.epoch, self.rank, w])
        if self._reader is None:
            self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="row-group-reader")
        bucketing = None
        if rng is not None and self.cfg.length_buckets:
            bucketing = Bucketing(self.cfg.batch_size, self.cfg.length_buckets, self.cfg.max_seq_len + 1)
        return self._reader.submit(read_window, self.split, self._files, plan.windows[w], rng, bucketing)

    def _load(self, w: int) -> Window:
        """Window ``w`` of the current epoch; the next one is read ahead, overlapping decoding
        (pyarrow, GIL released) with the collation of this one. After the last window comes the
        next epoch's first (the plan is a pure function of the epoch), so that an epoch does not
        start by waiting for a read."""
        if self._window is not None and self._window[0] == w:
            return self._window[1]
        cur, plan = self._cur, self._plan
        ahead = self._ahead
        if ahead is not None and ahead[:2] == (plan.epoch, w):
            future, self._ahead = ahead[2], None
        else:  # a read ahead for another position (the next epoch's, while a pass repeats) stays
            future = self._read(plan, w)
        window = future.result()
        if w + 1 < len(plan.windows):
            self._ahead = (plan.epoch, w + 1, self._read(plan, w + 1))
        elif self._ahead is None or self._ahead[:2] != (plan.epoch + 1, 0):
            self._next_plan = upcoming = self.plan(plan.epoch + 1)
            if upcoming.windows:
                self._ahead = (upcoming.epoch, 0, self._read(upcoming, 0))
        if cur["pass"] == 0 and w >= cur["counted"]:
            lengths = window.lengths()
            keep = self.cfg.max_seq_len + (1 if self.split.kind == "train" else 0)
            if self.split.kind == "train":
                cur["skipped_short"] += len(lengths) - window.size
            cur["truncated_items"] += int(np.maximum(lengths[window.order] - keep, 0).sum())
            cur["counted"] = w + 1
        self._window = (w, window)
        return window

    def _next_batch(self) -> RowBatch:
        cur, plan, size = self._cur, self._plan, self.cfg.batch_size
        if self._done:
            raise StopIteration
        if (plan.quota is not None and cur["batches"] >= plan.quota) or (plan.quota is None and cur["pass"] > 0):
            self._finish()
        pieces, need = [], size
        while need:
            if cur["window"] >= len(plan.windows):
                # End of the share. pad: start it again, to reach the quota (several ranks; the plan
                # checked that the share is not empty) or to fill the last batch (one rank).
                if self.equalize == "pad" and (plan.quota is not None or need < size):
                    cur["pass"] += 1
                    cur["window"] = cur["offset"] = 0
                    continue
                break
            window = self._load(cur["window"])
            take = min(need, window.size - cur["offset"])
            if take > 0:
                pieces.append((window, window.order[cur["offset"] : cur["offset"] + take]))
                if cur["pass"] > 0:
                    cur["repeated"] += take
            cur["offset"] += take
            need -= take
            if cur["offset"] >= window.size:
                cur["window"] += 1
                cur["offset"] = 0
        got = size - need
        if got == 0:
            self._finish()
        if need and self.equalize == "drop":
            cur["unused"] += got
            self._finish()
        index = cur["batches"]
        cur["batches"] += 1
        cur["rows"] += got
        return RowBatch(pieces, plan.epoch, index)

    def _finish(self):
        cur, plan = self._cur, self._plan
        if not self._done:
            self._done = True
            short, unused = cur["skipped_short"], cur["unused"]
            if plan.quota is not None:  # not every window was read: totals come from the counts
                short = plan.short_rows
                unused = max(plan.valid_rows - plan.quota * self.cfg.batch_size, 0)
            stats = EpochStats(
                epoch=plan.epoch,
                rank=self.rank,
                batches=cur["batches"],
                sequences=cur["rows"],
                repeated=cur["repeated"],
                unused=unused,
                skipped_short=short,
                truncated_items=cur["truncated_items"],
            )
            self.finished.append(stats)
            name = Path(self.split.paths[0]).name
            if stats.skipped_short and not self._quiet:
                (log.warning if len(self.finished) == 1 else log.info)(
                    "%s rank %d epoch %d: %d sequences shorter than 2 items skipped (no target)",
                    name, self.rank, plan.epoch, stats.skipped_short,
                )  # fmt: skip
            if (stats.unused or stats.repeated) and not self._quiet:
                log.info(
                    "%s rank %d epoch %d: %d batches; equalize=%s left out %d and repeated %d sequences",
                    name, self.rank, plan.epoch, stats.batches, self.equalize, stats.unused, stats.repeated,
                )  # fmt: skip
        raise StopIteration


# ----------------------------------------------------------------------------- collate
def _take(source: np.ndarray, idx: np.ndarray, out: np.ndarray) -> None:
    # idx is always in range, so the mode never acts: "wrap" and "clip" write straight into ``out``
    # ("raise" buffers a copy), and "wrap" runs the gather loop ~10% faster than "clip".
    source.take(idx, out=out, mode="wrap")


@dataclass
class _Rows:
    """The rows of one batch: their per-row fields, and the parts that hold their items.

    Row ``b``'s items are ``part.values[starts[b]:ends[b]]`` of the part of its segment: the
    batch's rows come as consecutive runs (``segments``: ``(part, number of rows)``) of one part.
    """

    segments: list[tuple[Part, int]]
    users: np.ndarray
    starts: np.ndarray
    ends: np.ndarray
    follow: np.ndarray

    @classmethod
    def of(cls, batch: RowBatch) -> "_Rows":
        segments, fields = [], ([], [], [], [])
        for window, rows in batch.pieces:
            rows, parts = window.select(rows)
            segments += parts
            for out, column in zip(fields, (window.users, window.starts, window.ends, window.follow)):
                out.append(column[rows])
        return cls(segments, *(_cat(f) for f in fields))

    def gather(self, begin: np.ndarray, lengths: np.ndarray, outs: dict[str, np.ndarray]) -> None:
        """``outs[column] = concat_b part_b.<column>[begin[b] : begin[b] + lengths[b]]`` for every
        column: one index array for the whole batch (:func:`ranges`), then one ``np.take`` per
        segment and column."""
        idx = ranges(begin, lengths)
        cuts = np.cumsum(lengths)[np.cumsum([n for _, n in self.segments]) - 1].tolist()
        lo = 0
        for (part, _), hi in zip(self.segments, cuts):
            for column, out in outs.items():
                _take(getattr(part, column), idx[lo:hi], out[lo:hi])
            lo = hi


class Collate:
    """:class:`RowBatch` -> :class:`SequenceBatch`, on whole arrays (no per-row Python loop).

    The KJT's values are ``history | target | negative | augmented`` and its lengths the four
    per-row length vectors: the same structure :func:`industrial.data.batch.make_batch` builds
    from lists. Row ``b`` keeps the items ``[begin_b, end_b)`` of its stored sequence, with
    ``begin_b = max(start_b, end_b - keep)``; its history is ``[begin_b, end_b - 1)`` for training
    (``keep = max_seq_len + 1``) and ``[begin_b, end_b)`` for evaluation (``keep = max_seq_len``).
    History and timestamps are gathered from the Arrow buffers of each row group straight into
    the output arrays. The training target (item ``j + 1`` for history item ``j``) is the history
    shifted by one position, one contiguous copy, with each row's last position set to the row's
    last item; the evaluation target is the stored one. The KJT gets its per-key lengths and
    offsets from the same numbers, so building it costs no pass over the values.
    """

    def __init__(
        self,
        kind: Literal["train", "eval"],
        cfg: LoaderConfig,
        rank: int,
        num_items: int | None,
        negatives: ItemDistribution | None,
    ):
        self.kind, self.cfg, self.rank = kind, cfg, rank
        self.num_items = num_items
        self.negatives = negatives
        self.keep = cfg.max_seq_len + (1 if kind == "train" else 0)
        if cfg.num_negatives and negatives is None:
            raise ValueError("num_negatives > 0 needs an item distribution")
        if cfg.augment.substitute and num_items is None:
            raise ValueError("augment.substitute needs the number of items")

    def __call__(self, batch: RowBatch) -> SequenceBatch:
        rows = _Rows.of(batch)
        train = self.kind == "train"
        begin = np.maximum(rows.starts, rows.ends - self.keep)
        h_len = rows.ends - begin - (1 if train else 0)
        n = len(h_len)
        row_end = np.cumsum(h_len)
        n_hist = int(row_end[-1]) if n else 0
        t_len = h_len if train else np.ones(n, dtype=np.int64)
        n_target = n_hist if train else n
        k = self.cfg.num_negatives
        values = np.empty(n_hist + n_target + n_target * k, dtype=np.int64)
        stamps = np.empty(n_hist if train else 0, dtype=np.int64)
        history, target = values[:n_hist], values[n_hist : n_hist + n_target]
        rows.gather(begin, h_len, {"values": history, "stamps": stamps} if train else {"values": history})
        if not train:
            target[:] = rows.follow
        elif n_hist:
            # history shifted by one; the shift brings each row's last position the next row's
            # first item, which the row's own last item then replaces
            target[:-1] = history[1:]
            target[row_end - 1] = rows.follow
        aug_len, n_aug = np.zeros(n, dtype=np.int64), 0
        if k or self.cfg.augment.operations:
            rng = np.random.default_rng([self.cfg.seed, _STREAM_BATCH, batch.epoch, self.rank, batch.index])
            if k:
                exclude = self._own_items(rows) if self.cfg.exclude_own_items else None
                values[n_hist + n_target :] = sample_negatives(self.negatives, rng, k, target, row_ids(t_len), exclude)
            if self.cfg.augment.operations:
                aug_len, augmented = augment(rng, h_len, history, self.cfg.augment, self.num_items or 0)
                values, n_aug = np.concatenate([values, augmented]), len(augmented)
        lengths = np.concatenate([h_len, t_len, t_len * k, aug_len]).astype(np.int32)
        per_key = [n_hist, n_target, n_target * k, n_aug]
        return SequenceBatch(
            user_ids=torch.from_numpy(rows.users),
            items=KeyedJaggedTensor(
                keys=list(ITEM_KEYS),
                values=torch.from_numpy(values),
                lengths=torch.from_numpy(lengths),
                stride=n,
                length_per_key=per_key,
                offset_per_key=list(accumulate(per_key, initial=0)),
            ),
            timestamps=torch.from_numpy(stamps),
            max_history_length=int(h_len.max()) if n else 0,
        )

    def _own_items(self, rows: _Rows) -> Exclusion:
        """Every item of each row's whole sequence (before truncation), plus its target."""
        lengths = rows.ends - rows.starts
        items = np.empty(int(lengths.sum()), dtype=np.int64)
        rows.gather(rows.starts, lengths, {"values": items})
        row_of = row_ids(lengths)
        if self.kind == "eval":
            items = np.concatenate([items, rows.follow])
            row_of = np.concatenate([row_of, np.arange(len(lengths), dtype=np.int64)])
        return Exclusion(row_of, items, self.negatives.num_items)


# ----------------------------------------------------------------------------- loader
def _find_source_state(state: Any) -> dict[str, Any] | None:
    """The source's state inside the nested state of a torchdata pipeline."""
    if isinstance(state, dict):
        if state.get(_STATE_MARKER) == STATE_VERSION:
            return state
        if state.get("steps_since_snapshot", 0):
            raise RuntimeError("pipeline snapshot is not taken after every batch; cannot locate the position")
        for value in state.values():
            found = _find_source_state(value)
            if found is not None:
                return found
    return None


class SequenceLoader:
    """Iterable of :class:`SequenceBatch` for one split and one rank; each ``iter()`` is one epoch.

    ``state_dict()`` is the source position after the last batch handed out (plain ints and
    strings, JSON-able); ``load_state_dict(state)`` makes the next ``iter()`` continue with exactly
    the batch that would have come next.
    """

    def __init__(self, source: RowGroupSource, collate: Collate, cfg: LoaderConfig):
        self.source = source
        self.cfg = cfg
        node: BaseNode = (
            ParallelMapper(source, collate, num_workers=cfg.num_workers, in_order=True, method="thread")
            if cfg.num_workers
            else Mapper(source, collate)
        )
        if cfg.pin_memory:
            node = PinMemory(node)
        self._root = Prefetcher(node, prefetch_factor=cfg.prefetch)
        self._loader = Loader(self._root)

    @property
    def rank(self) -> int:
        return self.source.rank

    @property
    def world_size(self) -> int:
        return self.source.world_size

    @property
    def kind(self) -> str:
        return self.source.split.kind

    def __iter__(self) -> Iterator[SequenceBatch]:
        return iter(self._loader)

    def state_dict(self) -> dict[str, Any]:
        found = _find_source_state(self._loader.state_dict())
        if found is None:
            raise RuntimeError("no loader position found in the pipeline state")
        return dict(found)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.source.resume(state)
        self._loader = Loader(self._root)  # a fresh iterator: the next iter() resets from the state

    @property
    def epoch(self) -> int:
        """Epoch of the current (or, before the first batch, next) position."""
        return int(self.state_dict()["epoch"])

    @property
    def epoch_stats(self) -> list[EpochStats]:
        """Epochs completed in this process, with what was skipped, left out or repeated."""
        return list(self.source.finished)

    def epoch_ended(self, state: dict[str, Any]) -> EpochStats | None:
        """When position ``state`` (a :meth:`state_dict`) has no batch of its epoch left, the
        :class:`EpochStats` that epoch ends with; else None. After ``load_state_dict(state)`` the
        next ``iter()`` yields the next epoch's batches in the first case, this one's in the other."""
        return self.source.ended(state)

    def batches_per_rank(self, epoch: int | None = None) -> list[int]:
        """Batches every rank yields in ``epoch`` (default: the current one)."""
        epoch = self.epoch if epoch is None else epoch
        size, out = self.cfg.batch_size, []
        for r in range(self.world_size):
            plan = self.source.plan(epoch, rank=r, with_counts=True)
            if plan.quota is not None:
                out.append(plan.quota)
            elif self.source.equalize == "drop":
                out.append(plan.valid_rows // size)
            else:
                out.append(math.ceil(plan.valid_rows / size))
        return out

    def num_batches(self, epoch: int | None = None) -> int:
        """Batches this rank yields in ``epoch`` (the training split may need one counting pass)."""
        return self.batches_per_rank(epoch)[self.rank]


def resolve_rank(rank: int | None, world_size: int | None) -> tuple[int, int]:
    """Explicit rank/world size, else torch.distributed's when initialised, else (0, 1)."""
    initialised = dist.is_available() and dist.is_initialized()
    if rank is None:
        rank = dist.get_rank() if initialised else 0
    if world_size is None:
        world_size = dist.get_world_size() if initialised else 1
    return rank, world_size


def open_loader(
    files: Sequence[str | os.PathLike],
    cfg: LoaderConfig,
    *,
    num_items: int | None = None,
    item_counts: np.ndarray | None = None,
    rank: int | None = None,
    world_size: int | None = None,
) -> SequenceLoader:
    """A loader over one or several split files of the same kind.

    ``num_items`` is needed for uniform negatives and substitution; ``item_counts`` (``c_i``) for
    popularity negatives.
    """
    cfg.validate()
    rank, world_size = resolve_rank(rank, world_size)
    split = open_split(files)
    sampler: ItemDistribution | None = None
    if cfg.num_negatives:
        if cfg.negative_sampler == "popularity":
            if item_counts is None:
                raise ValueError("popularity negatives need item_counts (see negatives.count_items)")
            sampler = PopularityItems(item_counts, cfg.popularity_alpha)
        else:
            if num_items is None:
                raise ValueError("uniform negatives need num_items")
            sampler = UniformItems(num_items)
    source = RowGroupSource(split, cfg, rank, world_size)
    collate = Collate(split.kind, cfg, rank, num_items, sampler)
    return SequenceLoader(source, collate, cfg)


def build_loader(
    root: str | os.PathLike,
    split: str,
    cfg: LoaderConfig,
    *,
    rank: int | None = None,
    world_size: int | None = None,
    item_counts: np.ndarray | None = None,
) -> SequenceLoader:
    """The loader of one split (``train``, ``valid`` or ``test``) of a prepared dataset.

    Popularity negatives count items over the dataset's training split unless ``item_counts`` is
    given (pass it to avoid one read of ``train.parquet`` per loader).
    """
    if split not in SPLIT_FILES:
        raise ValueError(f"unknown split {split!r} (known: {', '.join(SPLIT_FILES)})")
    root = Path(root)
    n_items = dataset_num_items(root)
    if cfg.num_negatives and cfg.negative_sampler == "popularity" and item_counts is None:
        item_counts = count_items([root / SPLIT_FILES["train"]], n_items)
    return open_loader(
        [root / SPLIT_FILES[split]],
        cfg,
        num_items=n_items,
        item_counts=item_counts,
        rank=rank,
        world_size=world_size,
    )
