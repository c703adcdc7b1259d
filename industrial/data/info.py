"""What the model needs to know about a prepared dataset: catalogue size, domains, popularity."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from industrial.data.integrity import check_dataset
from industrial.data.negatives import count_items
from industrial.data.schema import ITEMS_FILE, SPLIT_FILES, DatasetError, read_table


@dataclass
class DatasetInfo:
    path: Path
    num_items: int
    domains: list[str]  # domain names; index = domain id
    item_domains: torch.Tensor  # [N] int64 domain id of every item
    item_counts: torch.Tensor  # [N] int64 occurrences of every item in the training sequences

    @property
    def item_log_q(self) -> torch.Tensor:
        """``log q_i``: log of each item's share of training events (smoothed by +1)."""
        counts = self.item_counts.double() + 1.0
        return torch.log(counts / counts.sum()).float()


def load_info(path: str | Path) -> DatasetInfo:
    """Read the catalogue and the training item counts of a prepared dataset.

    The dataset must be complete (:func:`industrial.data.integrity.check_dataset`): a partial or
    mixed folder (an interrupted prepare, files copied from two runs) is refused with a
    :class:`DatasetError` naming the file.
    """
    path = Path(path)
    check_dataset(path)
    items = read_table(path, ITEMS_FILE, columns=["item_id", "domain"])
    item_ids = items.column("item_id").to_numpy()
    num_items = len(item_ids)
    if num_items == 0:
        raise DatasetError(f"{path / ITEMS_FILE}: no item; re-run `industrial prepare` with a source that has items")
    if not np.array_equal(np.sort(item_ids), np.arange(num_items)):
        raise DatasetError(f"{path / ITEMS_FILE}: item_id must run over 0..{num_items - 1}")
    domain_names = items.column("domain").to_pylist()
    domains = sorted(set(domain_names))
    index = {name: i for i, name in enumerate(domains)}
    item_domains = np.empty(num_items, dtype=np.int64)
    item_domains[item_ids] = [index[d] for d in domain_names]
    counts = count_items([path / SPLIT_FILES["train"]], num_items)  # one row group at a time
    return DatasetInfo(path, num_items, domains, torch.from_numpy(item_domains), torch.from_numpy(counts.astype(np.int64)))
