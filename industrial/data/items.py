"""The item content of a prepared dataset by item id: the texts of ``items.parquet``.

The images are :mod:`industrial.data.images` (:class:`~industrial.data.images.ItemImages`).
Builders of content item encoders read the texts here and hand them to the encoder, which only
tokenizes them (:mod:`industrial.modules.text`).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa

from industrial.data.schema import ITEMS_FILE, DatasetError, read_table


def read_item_texts(root: str | os.PathLike, num_items: int) -> list[str | None]:
    """Every item's text (None: no text) from a prepared dataset's ``items.parquet``, by item id."""
    items = read_table(root, ITEMS_FILE, columns=["item_id", "text"])
    texts: list[str | None] = [None] * num_items
    for item_id, text in zip(items.column("item_id").to_pylist(), items.column("text").to_pylist()):
        texts[item_id] = text
    return texts


def read_items(root: str | os.PathLike, columns: list[str]) -> pa.Table:
    """``items.parquet``'s ``item_id`` and ``columns``, sorted by item id; a :class:`DatasetError`
    unless the ids run over ``0 .. n-1`` (row ``i`` is item ``i``)."""
    table = read_table(root, ITEMS_FILE, columns=["item_id", *columns]).sort_by("item_id")
    ids = table.column("item_id").to_numpy()
    expected = np.arange(len(ids))
    if not np.array_equal(ids, expected):
        bad = int(np.flatnonzero(ids != expected)[0])
        raise DatasetError(
            f"{Path(root) / ITEMS_FILE}: item_id must run over 0..{len(ids) - 1}; after sorting, row {bad} has item_id {int(ids[bad])}"
        )
    return table
