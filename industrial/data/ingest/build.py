"""From a :class:`RawDataset` to the canonical tables: filter, truncate, split, remap.

The steps, in order (every drop is counted under the name in brackets):

1. **domains** (``domains``): keep the chosen domains' items and events
   (``events_dropped_outside_domains``, ``users_dropped_outside_domains``);
2. **content** (``require_content``): drop items without the required modality and their events
   (``items_dropped_content``, ``events_dropped_content``, ``users_dropped_content``);
3. **k-core** (``k_core``): repeatedly drop users and items with fewer than ``k`` events until
   none is left (``users_dropped_k_core``, ``items_dropped_k_core``, ``events_dropped_k_core``);
4. **minimum length** (``min_seq_len``): drop users with fewer events
   (``users_dropped_min_seq_len``, ``events_dropped_min_seq_len``);
5. **truncation** (``max_seq_len``): keep each user's last ``max_seq_len`` events
   (``users_truncated``, ``events_dropped_truncation``);
6. **split**: the source's own labels (``split="source"``) or leave-one-out by time: last event
   test, second last valid, the rest train; a user with fewer than 3 events goes to train only
   (``users_train_only``). A valid/test event with nothing before it cannot be evaluated and goes
   to train (``eval_examples_empty_history``); source targets lost to the filters are counted
   (``valid_targets_dropped``, ``test_targets_dropped``);
7. **remap**: dense ``item_id`` in catalogue order, dense ``user_id`` in order of first appearance.

Events are ordered by user, then timestamp, then the order the source listed them. Every event ends
up in exactly one place: a user's training sequence, or as the target of one valid or test row;
a valid/test row's history is every earlier event of its user.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pyarrow as pa

from industrial.data.ingest.base import Label, RawDataset
from industrial.data.ingest.problems import BadRowPolicy, Problems
from industrial.data.schema import (
    DEFAULT_ROW_GROUP_SIZE,
    EVAL_SCHEMA,
    EVENTS_SCHEMA,
    ITEMS_SCHEMA,
    TRAIN_SCHEMA,
    USERS_SCHEMA,
    DatasetError,
)

ContentRequirement = Literal["none", "text", "image", "any", "both"]
SplitPolicy = Literal["auto", "source", "leave-one-out"]
DuplicatePolicy = Literal["keep", "drop"]

#: A leave-one-out user needs this many events: at least one to train on, one valid, one test.
MIN_EVENTS_FOR_SPLIT = 3


@dataclass(kw_only=True)
class ProcessingOptions:
    """What ``industrial prepare`` does between reading and writing (shared by prepare and merge)."""

    #: Keep only these domains (empty: all).
    domains: list[str] = field(default_factory=list)
    #: Iterative k-core on users and items (0: off).
    k_core: int = 0
    #: Drop users with fewer events (after k-core).
    min_seq_len: int = 1
    #: Keep each user's last N events (None: all).
    max_seq_len: int | None = None
    #: Keep only items with this content: none, text, image, any (text or image), both.
    require_content: ContentRequirement = "none"
    #: auto: the source's own split where it has one, else leave-one-out by time.
    split: SplitPolicy = "auto"
    #: Open every image with Pillow (verify and decode); a bad one makes the item image-less.
    check_images: bool = True
    #: Store image bytes in items.parquet (``image_bytes``).
    embed_images: bool = False
    #: error: stop at the first bad row; skip: skip it, count it and keep the first examples.
    on_bad_row: BadRowPolicy = "error"
    #: Rows per Parquet row group.
    row_group_size: int = DEFAULT_ROW_GROUP_SIZE
    #: Events repeated with the same user, item and timestamp: keep them all, or drop the repeats
    #: (keep the first); either way they are counted (``duplicate_events``).
    duplicates: DuplicatePolicy = "keep"

    def validate(self) -> None:
        if self.duplicates not in ("keep", "drop"):
            raise ValueError(f"duplicates must be 'keep' or 'drop', got {self.duplicates!r}")
        if self.k_core < 0:
            raise ValueError(f"k_core must be >= 0, got {self.k_core}")
        if self.min_seq_len < 1:
            raise ValueError(f"min_seq_len must be >= 1, got {self.min_seq_len}")
        if self.max_seq_len is not None and self.max_seq_len < max(1, self.min_seq_len):
            raise ValueError(f"max_seq_len ({self.max_seq_len}) must be >= min_seq_len ({self.min_seq_len}) and >= 1")
        if self.row_group_size < 1:
            raise ValueError(f"row_group_size must be >= 1, got {self.row_group_size}")


@dataclass
class CanonicalDataset:
    """The canonical tables of one dataset, ready to write (see :mod:`industrial.data.schema`)."""

    items: pa.Table
    users: pa.Table
    events: pa.Table
    train: pa.Table
    valid: pa.Table
    test: pa.Table
    domains: list[str]
    split_policy: Literal["source", "leave-one-out"]


@dataclass
class _Events:
    """Event columns being filtered (numpy, one entry per event)."""

    user: np.ndarray
    item: np.ndarray
    timestamp: np.ndarray
    label: np.ndarray
    order: np.ndarray

    def take(self, index: np.ndarray) -> _Events:
        return _Events(self.user[index], self.item[index], self.timestamp[index], self.label[index], self.order[index])

    def __len__(self) -> int:
        return len(self.item)


def resolve_split_policy(raw: RawDataset, split: SplitPolicy, format_name: str) -> Literal["source", "leave-one-out"]:
    """``auto`` becomes ``source`` when the data carries its own split, else ``leave-one-out``."""
    if split == "auto":
        return "source" if raw.has_source_split else "leave-one-out"
    if split == "source" and not raw.has_source_split:
        raise DatasetError(f"format {format_name!r} has no split of its own; use split 'leave-one-out' or 'auto'")
    return split


def build(
    raw: RawDataset, options: ProcessingOptions, problems: Problems, split_policy: Literal["source", "leave-one-out"]
) -> CanonicalDataset:
    """Run the steps of the module docstring on ``raw``."""
    catalogue = _Catalogue.of(raw)
    log = raw.events
    events = _Events(
        user=np.asarray(log.users, dtype=np.int64),
        item=np.asarray(log.items, dtype=np.int64),
        timestamp=np.asarray(log.timestamps, dtype=np.int64),
        label=np.asarray(log.labels, dtype=np.int8),
        order=np.arange(len(log), dtype=np.int64),
    )
    source_targets = {label: int((events.label == label).sum()) for label in (Label.VALID, Label.TEST)}
    events = _duplicates(raw, events, options.duplicates, problems)
    keep_item, events = _filter(catalogue, events, options, problems)

    events = events.take(np.lexsort((events.order, events.timestamp, events.user)))
    unique_users, events.user = np.unique(events.user, return_inverse=True)
    events = _truncate(events, options.max_seq_len, problems)
    starts, counts = _user_bounds(events.user, len(unique_users))
    events.label = _split_labels(events, starts, counts, split_policy, problems)
    if split_policy == "source":
        for label, name in ((Label.VALID, "valid"), (Label.TEST, "test")):
            problems.count(f"{name}_targets_dropped", source_targets[label] - int((events.label == label).sum()))
    position = np.arange(len(events)) - starts[events.user]
    empty_history = (position == 0) & (events.label != Label.TRAIN)
    problems.count("eval_examples_empty_history", int(empty_history.sum()))
    events.label[empty_history] = Label.TRAIN

    dense_item = (np.cumsum(keep_item) - 1)[events.item]
    n_users = len(unique_users)
    return CanonicalDataset(
        items=_items_table([raw.catalog.items[i] for i in np.flatnonzero(keep_item)]),
        users=pa.table(
            {
                "user_id": np.arange(n_users, dtype=np.int64),
                "source_id": [raw.events.user_ids[u] for u in unique_users],
            },
            schema=USERS_SCHEMA,
        ),
        events=pa.table(
            {
                "user_id": events.user,
                "item_id": dense_item,
                "domain": catalogue.domain_names(events.item),
                "timestamp": events.timestamp,
            },
            schema=EVENTS_SCHEMA,
        ),
        train=_train_table(events.user, dense_item, events.timestamp, events.label == Label.TRAIN, problems, n_users),
        valid=_eval_table(events.user, dense_item, starts, events.label == Label.VALID),
        test=_eval_table(events.user, dense_item, starts, events.label == Label.TEST),
        domains=[d for d in catalogue.domains if not options.domains or d in options.domains],
        split_policy=split_policy,
    )


@dataclass
class _Catalogue:
    """Per-item arrays of the raw catalogue: domain index, has text, has image."""

    domains: list[str]
    domain: np.ndarray
    has_text: np.ndarray
    has_image: np.ndarray

    @classmethod
    def of(cls, raw: RawDataset) -> _Catalogue:
        items = raw.catalog.items
        domains = list(raw.domains)
        for item in items:
            if item.domain not in domains:
                domains.append(item.domain)
        index = {d: i for i, d in enumerate(domains)}
        return cls(
            domains=domains,
            domain=np.fromiter((index[it.domain] for it in items), np.int64, len(items)),
            has_text=np.fromiter((it.text is not None for it in items), bool, len(items)),
            has_image=np.fromiter(
                (it.image is not None or it.image_bytes is not None for it in items), bool, len(items)
            ),
        )

    def domain_names(self, item: np.ndarray) -> pa.Array:
        """The domain name of each item code in ``item``."""
        return pa.DictionaryArray.from_arrays(self.domain[item], self.domains).cast(pa.string())


def _filter(
    catalogue: _Catalogue, events: _Events, options: ProcessingOptions, problems: Problems
) -> tuple[np.ndarray, _Events]:
    """Steps 1-4: domains, content, k-core, minimum length. Returns the kept items and events."""
    in_domains = _domain_mask(catalogue.domains, options.domains)[catalogue.domain]
    events = _drop_events(events, in_domains[events.item], "outside_domains", problems)
    keep_item = _content_mask(options.require_content, catalogue.has_text, catalogue.has_image)
    problems.count("items_dropped_content", int((in_domains & ~keep_item).sum()))
    keep_item &= in_domains
    events = _drop_events(events, keep_item[events.item], "content", problems)
    keep_item, events = _k_core(events, keep_item, options.k_core, len(keep_item), problems)
    return keep_item, _min_length(events, options.min_seq_len, problems)


def _duplicates(raw: RawDataset, events: _Events, policy: DuplicatePolicy, problems: Problems) -> _Events:
    """Count events that repeat an earlier one (same user, item and timestamp); drop them under ``drop``."""
    if len(events) < 2:
        return events
    order = np.lexsort((events.order, events.timestamp, events.item, events.user))
    user, item, timestamp = events.user[order], events.item[order], events.timestamp[order]
    repeat = np.zeros(len(order), dtype=bool)
    repeat[1:] = (user[1:] == user[:-1]) & (item[1:] == item[:-1]) & (timestamp[1:] == timestamp[:-1])
    n = int(repeat.sum())
    if not n:
        return events
    what = "dropped (the first is kept)" if policy == "drop" else "kept (--duplicates drop keeps only the first)"
    examples = []
    for index in np.sort(order[repeat])[:5]:
        it = raw.catalog.items[int(events.item[index])]
        examples.append(
            f"user {raw.events.user_ids[int(events.user[index])]!r}, item {it.source_id!r} of {it.domain!r},"
            f" timestamp {int(events.timestamp[index])}: the same event again; {what}"
        )
    problems.many("duplicate_events", n, examples)
    if policy == "drop":
        return events.take(np.sort(order[~repeat]))
    return events


def _domain_mask(domains: list[str], chosen: list[str]) -> np.ndarray:
    """Which of ``domains`` are kept; a chosen domain that does not exist is an error."""
    unknown = [d for d in chosen if d not in domains]
    if unknown:
        raise DatasetError(f"unknown domain(s) {unknown}; the data has {domains}")
    return np.array([not chosen or d in chosen for d in domains], dtype=bool)


def _content_mask(requirement: ContentRequirement, has_text: np.ndarray, has_image: np.ndarray) -> np.ndarray:
    """Which items have the required content."""
    if requirement == "none":
        return np.ones_like(has_text)
    if requirement == "text":
        return has_text.copy()
    if requirement == "image":
        return has_image.copy()
    if requirement == "any":
        return has_text | has_image
    if requirement == "both":
        return has_text & has_image
    raise ValueError(f"unknown content requirement {requirement!r}")


def _count_users(user: np.ndarray) -> int:
    return int(np.unique(user).size)


def _drop_events(events: _Events, keep: np.ndarray, step: str, problems: Problems) -> _Events:
    """Keep the events where ``keep``; count the events and users dropped by ``step``."""
    if keep.all():
        return events
    kept = events.take(np.flatnonzero(keep))
    problems.count(f"events_dropped_{step}", len(events) - len(kept))
    problems.count(f"users_dropped_{step}", _count_users(events.user) - _count_users(kept.user))
    return kept


def _k_core(
    events: _Events, keep_item: np.ndarray, k: int, n_items: int, problems: Problems
) -> tuple[np.ndarray, _Events]:
    """Iteratively drop users and items with fewer than ``k`` events."""
    if k <= 1:
        if k == 1:  # items with no event at all
            unused = keep_item & (np.bincount(events.item, minlength=n_items) == 0)
            problems.count("items_dropped_k_core", int(unused.sum()))
            keep_item = keep_item & ~unused
        return keep_item, events
    keep_item = keep_item.copy()
    items_before = int(keep_item.sum())
    keep_event = np.ones(len(events), bool)
    n_users = int(events.user.max()) + 1 if len(events) else 0
    while True:
        user_count = np.bincount(events.user[keep_event], minlength=n_users)
        item_count = np.bincount(events.item[keep_event], minlength=n_items)
        keep_item &= item_count >= k
        new_keep = keep_event & (user_count >= k)[events.user] & keep_item[events.item]
        if (new_keep == keep_event).all():
            break
        keep_event = new_keep
    problems.count("items_dropped_k_core", items_before - int(keep_item.sum()))
    return keep_item, _drop_events(events, keep_event, "k_core", problems)


def _min_length(events: _Events, min_len: int, problems: Problems) -> _Events:
    if min_len <= 1 or len(events) == 0:
        return events
    counts = np.bincount(events.user)
    return _drop_events(events, counts[events.user] >= min_len, "min_seq_len", problems)


def _user_bounds(user: np.ndarray, n_users: int) -> tuple[np.ndarray, np.ndarray]:
    """For events sorted by dense user: each user's first index and event count."""
    counts = np.bincount(user, minlength=n_users)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    return starts, counts


def _truncate(events: _Events, max_len: int | None, problems: Problems) -> _Events:
    """Keep each user's last ``max_len`` events (events sorted by dense user, then time)."""
    if max_len is None or len(events) == 0:
        return events
    starts, counts = _user_bounds(events.user, int(events.user.max()) + 1)
    position = np.arange(len(events)) - starts[events.user]
    keep = position >= counts[events.user] - max_len
    if keep.all():
        return events
    problems.count("users_truncated", int((counts > max_len).sum()))
    problems.count("events_dropped_truncation", int((~keep).sum()))
    return events.take(np.flatnonzero(keep))


def _split_labels(
    events: _Events, starts: np.ndarray, counts: np.ndarray, policy: str, problems: Problems
) -> np.ndarray:
    """The split of every event under ``policy``."""
    label = events.label.copy()
    if policy == "source":
        label[label == Label.UNSET] = Label.TRAIN
        return label
    label[:] = Label.TRAIN
    long_enough = counts >= MIN_EVENTS_FOR_SPLIT
    problems.count("users_train_only", int((~long_enough & (counts > 0)).sum()))
    ends = starts + counts
    label[ends[long_enough] - 1] = Label.TEST
    label[ends[long_enough] - 2] = Label.VALID
    return label


def _list_array(values: np.ndarray, lengths: np.ndarray) -> pa.ListArray:
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), pa.array(values, pa.int64()))


def _train_table(
    user: np.ndarray, item: np.ndarray, timestamp: np.ndarray, mask: np.ndarray, problems: Problems, n_users: int
) -> pa.Table:
    """One row per user with at least one training event: the whole training sequence."""
    lengths = np.bincount(user[mask], minlength=n_users)
    problems.count("users_without_train_events", int((lengths == 0).sum()))
    rows = np.flatnonzero(lengths)
    return pa.table(
        {
            "user_id": rows.astype(np.int64),
            "item_ids": _list_array(item[mask], lengths[rows]),
            "timestamps": _list_array(timestamp[mask], lengths[rows]),
        },
        schema=TRAIN_SCHEMA,
    )


def _eval_table(user: np.ndarray, item: np.ndarray, starts: np.ndarray, mask: np.ndarray) -> pa.Table:
    """One row per target event: the user's earlier events as history, then the target."""
    targets = np.flatnonzero(mask)
    first = starts[user[targets]]
    lengths = targets - first
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    index = np.arange(offsets[-1]) - np.repeat(offsets[:-1] - first, lengths)
    return pa.table(
        {
            "user_id": user[targets],
            "history": _list_array(item[index], lengths),
            "target": item[targets],
        },
        schema=EVAL_SCHEMA,
    )


def _items_table(items: list) -> pa.Table:
    return pa.table(
        {
            "item_id": np.arange(len(items), dtype=np.int64),
            "source_id": [it.source_id for it in items],
            "domain": [it.domain for it in items],
            "text": [it.text for it in items],
            "image_path": [it.image for it in items],
            "image_bytes": [it.image_bytes for it in items],
        },
        schema=ITEMS_SCHEMA,
    )
