"""The canonical on-disk format every adapter writes and every reader consumes.

A *prepared dataset* is one folder::

    items.parquet     item_id, source_id, domain, text, image_path, image_bytes
    users.parquet     user_id, source_id
    events.parquet    user_id, item_id, domain, timestamp      (sorted by user, then time)
    train.parquet     user_id, item_ids, timestamps             (one row per user: the training sequence)
    valid.parquet     user_id, history, target                  (one row per evaluation example)
    test.parquet      user_id, history, target
    meta.json         name, source format, domains, image_root, split policy, options, fallbacks
    stats.json        users, items, events, per domain, sequence lengths, missing text / image

Conventions:

- ``item_id`` and ``user_id`` are dense ``int64`` indices, ``0 .. n-1``; the original identifier is
  kept in ``source_id``. No index is reserved for padding: sequences travel as jagged tensors with
  their lengths, so no padding item exists.
- Each item belongs to one ``domain``; an event's domain is its item's domain. Several source
  domains merged into one dataset keep each user's events across domains in one time-ordered flow
  (the mixed behaviour flow of UniM2Rec).
- ``text`` is null for an item without text, ``image_path`` (relative to ``meta.json``'s
  ``image_root``) and ``image_bytes`` are null for an item without image: an item may be text-only,
  image-only or both (TransRec's mixture of modalities).
- ``train.parquet`` holds every user's whole training sequence; the trainer predicts the next item
  at every position at once. ``valid``/``test`` hold ``history -> target`` examples; with
  leave-one-out the valid target is the second-to-last event and the test target the last.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from industrial.errors import UserError

ITEMS_FILE = "items.parquet"
USERS_FILE = "users.parquet"
EVENTS_FILE = "events.parquet"
SPLIT_FILES = {"train": "train.parquet", "valid": "valid.parquet", "test": "test.parquet"}
META_FILE = "meta.json"
STATS_FILE = "stats.json"

ITEMS_SCHEMA = pa.schema(
    [
        pa.field("item_id", pa.int64(), nullable=False),
        pa.field("source_id", pa.string(), nullable=False),
        pa.field("domain", pa.string(), nullable=False),
        pa.field("text", pa.string()),
        pa.field("image_path", pa.string()),
        pa.field("image_bytes", pa.binary()),
    ]
)
USERS_SCHEMA = pa.schema(
    [
        pa.field("user_id", pa.int64(), nullable=False),
        pa.field("source_id", pa.string(), nullable=False),
    ]
)
EVENTS_SCHEMA = pa.schema(
    [
        pa.field("user_id", pa.int64(), nullable=False),
        pa.field("item_id", pa.int64(), nullable=False),
        pa.field("domain", pa.string(), nullable=False),
        pa.field("timestamp", pa.int64(), nullable=False),
    ]
)
TRAIN_SCHEMA = pa.schema(
    [
        pa.field("user_id", pa.int64(), nullable=False),
        pa.field("item_ids", pa.list_(pa.int64()), nullable=False),
        pa.field("timestamps", pa.list_(pa.int64()), nullable=False),
    ]
)
EVAL_SCHEMA = pa.schema(
    [
        pa.field("user_id", pa.int64(), nullable=False),
        pa.field("history", pa.list_(pa.int64()), nullable=False),
        pa.field("target", pa.int64(), nullable=False),
    ]
)
SCHEMAS = {
    ITEMS_FILE: ITEMS_SCHEMA,
    USERS_FILE: USERS_SCHEMA,
    EVENTS_FILE: EVENTS_SCHEMA,
    SPLIT_FILES["train"]: TRAIN_SCHEMA,
    SPLIT_FILES["valid"]: EVAL_SCHEMA,
    SPLIT_FILES["test"]: EVAL_SCHEMA,
}

#: Rows per Parquet row group of the split files: the unit that ranks and workers share out.
DEFAULT_ROW_GROUP_SIZE = 4096
#: A split file is cut into at least this many row groups when it has enough rows, so that every
#: rank's share differs from the others by at most about one small row group (the loader shards
#: whole row groups; three groups of 4096, 4096 and 250 rows would leave one of two ranks 250 rows).
MIN_ROW_GROUPS = 64
MIN_ROW_GROUP_ROWS = 32


def balanced_row_group_size(num_rows: int, requested: int = DEFAULT_ROW_GROUP_SIZE) -> int:
    """``min(requested, max(MIN_ROW_GROUP_ROWS, ceil(num_rows / MIN_ROW_GROUPS)))``."""
    return max(1, min(requested, max(MIN_ROW_GROUP_ROWS, -(-num_rows // MIN_ROW_GROUPS))))


class DatasetError(UserError, ValueError):
    """A prepared dataset (or a raw input) is malformed; the message names the file and row."""


def write_table(table: pa.Table, path: str | os.PathLike, row_group_size: int = DEFAULT_ROW_GROUP_SIZE) -> None:
    """Write ``table`` to ``path`` atomically (temporary name, then rename), checking its schema.

    Split files get at least :data:`MIN_ROW_GROUPS` row groups (:func:`balanced_row_group_size`).
    """
    path = Path(path)
    expected = SCHEMAS.get(path.name)
    if expected is not None:
        table = table.select(expected.names).cast(expected)
    if path.name in SPLIT_FILES.values():
        row_group_size = balanced_row_group_size(table.num_rows, row_group_size)
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(table, tmp, row_group_size=row_group_size)
    os.replace(tmp, path)


def write_json(obj: Any, path: str | os.PathLike) -> None:
    """Write ``obj`` as indented JSON atomically."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)


def read_table(root: str | os.PathLike, name: str, columns: list[str] | None = None) -> pa.Table:
    """Read one file of a prepared dataset, with a clear error when it is missing or malformed."""
    path = Path(root) / name
    if not path.exists():
        raise DatasetError(f"{path}: missing; is {root} a dataset written by `industrial prepare`?")
    try:
        table = pq.read_table(path, columns=columns)
    except (pa.ArrowException, OSError) as e:
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise DatasetError(f"{path}: not a readable Parquet file ({reason}); re-run `industrial prepare`") from None
    expected = SCHEMAS.get(name)
    if expected is not None:
        for field in expected:
            if columns is not None and field.name not in columns:
                continue
            if field.name not in table.schema.names:
                raise DatasetError(f"{path}: column {field.name!r} is missing")
    return table


def read_meta(root: str | os.PathLike) -> dict[str, Any]:
    """Read ``meta.json`` of a prepared dataset; a missing folder or file, or malformed JSON, is a
    DatasetError naming it and saying how to write the dataset again."""
    root = Path(root)
    path = root / META_FILE
    rerun = "re-run `industrial prepare` (or the command that made it) to write it again"
    if not root.is_dir():
        raise DatasetError(f"{root}: no such dataset folder; make it with `industrial prepare`")
    if not path.is_file():
        raise DatasetError(f"{path}: missing, so {root} is not a complete dataset (an interrupted write, or not a dataset); {rerun}")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise DatasetError(f"{path}: not valid JSON ({first}); {rerun}") from None
    if not isinstance(meta, dict):
        raise DatasetError(f"{path}: expected a JSON object, got {type(meta).__name__}; {rerun}")
    return meta


def num_items(root: str | os.PathLike) -> int:
    """Number of items of a prepared dataset (``item_id`` runs over ``0 .. n-1``)."""
    return pq.ParquetFile(Path(root) / ITEMS_FILE).metadata.num_rows
