"""The batch the loader yields and the model consumes.

A batch holds ``B`` sequences. All item ids travel in one :class:`KeyedJaggedTensor` whose keys are
the roles an item plays, every key with ``B`` rows (stride ``B``):

=============  =====================================  ==========================================
key            row ``b`` holds                        length of row ``b``
=============  =====================================  ==========================================
``history``    the input items of sequence ``b``      ``L_b``
``target``     training: the next item at every       training: ``L_b``; evaluation: ``1``
               input position; evaluation: the
               held-out item
``negative``   sampled negatives, ``K`` per target    ``K * len(target_b)`` (0 when unused)
``augmented``  a corrupted copy of the history        ``L'_b`` (0 when unused)
               (crop / drop / reorder / substitute;
               always real item ids)
=============  =====================================  ==========================================

Every key is always present (possibly with zero lengths), so the TorchRec tables that read them
(one table, several feature names) see the same features in every batch. The model looks the
ids up in its item tables with one call, then splits the result by key.

``timestamps`` (per history item, same jagged layout as ``history``) are carried for models that
use time; ``user_ids`` name the users (global ids of the prepared dataset).
``max_history_length`` is the longest history of the batch, a host integer computed once by
whoever builds the batch (the loader, :func:`make_batch`), so that the user encoder sizes its
attention without reading the lengths back from the GPU (None: unknown, the encoder reads them).

TorchRec is imported only where a batch is built (:func:`make_batch`, the loader): this module,
and the dense modules that take a batch, import without it.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

try:
    from torchrec.streamable import Pipelineable
except ImportError:  # no TorchRec (a GPU host running the dense parts only): the same interface

    class Pipelineable(abc.ABC):  # type: ignore[no-redef]
        """``torchrec.streamable.Pipelineable``: moved across devices, marked on streams."""

        @abc.abstractmethod
        def to(self, device: torch.device, non_blocking: bool) -> "Pipelineable": ...

        @abc.abstractmethod
        def record_stream(self, stream: torch.Stream) -> None: ...

#: The keys of :attr:`SequenceBatch.items`, in this order.
ITEM_KEYS = ("history", "target", "negative", "augmented")


@dataclass
class SequenceBatch(Pipelineable):
    """One batch of sequences (see the module docstring for the layout)."""

    user_ids: torch.Tensor  # [B] int64
    items: KeyedJaggedTensor  # keys ITEM_KEYS, stride B
    timestamps: torch.Tensor  # [sum L_b] int64, aligned with the "history" values
    max_history_length: int | None = None  # longest history row, on the host (None: unknown)

    @property
    def batch_size(self) -> int:
        return int(self.user_ids.numel())

    def to(self, device: torch.device, non_blocking: bool = False) -> "SequenceBatch":
        return SequenceBatch(
            user_ids=self.user_ids.to(device, non_blocking=non_blocking),
            items=self.items.to(device, non_blocking=non_blocking),
            timestamps=self.timestamps.to(device, non_blocking=non_blocking),
            max_history_length=self.max_history_length,
        )

    def record_stream(self, stream: torch.Stream) -> None:
        self.user_ids.record_stream(stream)
        self.items.record_stream(stream)
        self.timestamps.record_stream(stream)

    def pin_memory(self) -> "SequenceBatch":
        return SequenceBatch(
            user_ids=self.user_ids.pin_memory(),
            items=self.items.pin_memory(),
            timestamps=self.timestamps.pin_memory(),
            max_history_length=self.max_history_length,
        )

    def lengths(self, key: str) -> torch.Tensor:
        """Per-row lengths of one key."""
        return self.items[key].lengths()

    def values(self, key: str) -> torch.Tensor:
        """Concatenated ids of one key."""
        return self.items[key].values()


def make_batch(
    user_ids: list[int] | torch.Tensor,
    histories: list[list[int]],
    targets: list[list[int]],
    negatives: list[list[int]] | None = None,
    augmented: list[list[int]] | None = None,
    timestamps: list[list[int]] | None = None,
) -> SequenceBatch:
    """Collate python lists into a :class:`SequenceBatch` (the loader's last step).

    ``targets[b]`` is either one id per history position (training) or a single id (evaluation).
    ``negatives[b]`` is flat: ``K`` ids per target, target-major.
    """
    size = len(histories)
    if len(targets) != size:
        raise ValueError(f"{len(targets)} target rows for {size} histories")
    empty: list[list[int]] = [[] for _ in range(size)]
    rows_by_key = {
        "history": histories,
        "target": targets,
        "negative": negatives if negatives is not None else empty,
        "augmented": augmented if augmented is not None else empty,
    }
    lengths = []
    values = []
    for key in ITEM_KEYS:
        rows = rows_by_key[key]
        if len(rows) != size:
            raise ValueError(f"{len(rows)} {key} rows for {size} histories")
        lengths.extend(len(r) for r in rows)
        for r in rows:
            values.extend(r)
    from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

    stamps = [t for row in (timestamps if timestamps is not None else empty) for t in row]
    if timestamps is not None and len(stamps) != sum(len(h) for h in histories):
        raise ValueError("timestamps must align with the history items")
    return SequenceBatch(
        user_ids=torch.as_tensor(user_ids, dtype=torch.int64),
        items=KeyedJaggedTensor.from_lengths_sync(
            keys=list(ITEM_KEYS),
            values=torch.tensor(values, dtype=torch.int64),
            lengths=torch.tensor(lengths, dtype=torch.int32),
        ),
        timestamps=torch.tensor(stamps, dtype=torch.int64),
        max_history_length=max((len(h) for h in histories), default=0),
    )


def batch_fields() -> list[str]:
    """Names of the tensor fields (for tests and state checks)."""
    return [f.name for f in fields(SequenceBatch) if f.name != "max_history_length"]
