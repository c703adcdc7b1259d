"""Item tables held in TorchRec ``EmbeddingCollection``s, looked up from a :class:`SequenceBatch`.

Two kinds of table, both built on the ``meta`` device and sharded by the planner:

- :class:`ItemIdTable`: a trainable embedding per item id (the IDRec baseline, or the ID part of
  a hybrid model).
- :class:`CachedFeatureTable`: frozen content vectors per item (text / image / cross-modal,
  computed once by ``industrial extract``), looked up by item id exactly like ids are. This is how
  frozen-feature methods scale to millions of items: the features live sharded across ranks.

One table serves every role of the batch (``history``, ``target``, ``negative``, ``augmented``):
each role is a feature name of the same table, so one lookup (one all-to-all) fetches them all.

Example::

    table = ItemIdTable(num_items=4385, dim=64)
    vectors = table(batch.items)          # {"history": JaggedTensor, "target": ..., ...}
"""

from __future__ import annotations

import torch
from torch import nn
from torchrec import EmbeddingCollection, EmbeddingConfig
from torchrec.sparse.jagged_tensor import JaggedTensor, KeyedJaggedTensor

from industrial.data.batch import ITEM_KEYS

ITEM_ID_TABLE = "item_id"
ITEM_FEATURE_TABLE = "item_features"


class _ItemTable(nn.Module):
    """An ``EmbeddingCollection`` with one table read by every item role of the batch."""

    table_name: str

    def __init__(self, num_items: int, dim: int, device: torch.device | None = None) -> None:
        super().__init__()
        if num_items <= 0 or dim <= 0:
            raise ValueError(f"table {self.table_name}: num_items and dim must be positive, got {num_items}, {dim}")
        self.num_items = num_items
        self.dim = dim
        self.collection = EmbeddingCollection(
            tables=[
                EmbeddingConfig(
                    name=self.table_name,
                    embedding_dim=dim,
                    num_embeddings=num_items,
                    feature_names=list(ITEM_KEYS),
                )
            ],
            device=device if device is not None else torch.device("meta"),
        )

    def forward(self, items: KeyedJaggedTensor) -> dict[str, JaggedTensor]:
        # Sharded, the lookup's backward all-to-all divides the gradient by the world size
        # (torchrec.distributed.comm_ops gradient division, on by default), matching DDP's
        # averaging of dense gradients: one step on n ranks equals one step of a single process
        # on the global batch (tests/test_distributed_training.py checks it).
        return self.collection(items)


class ItemIdTable(_ItemTable):
    """Trainable item-id embeddings (``num_items x dim``), initialised N(0, 0.02) at materialisation."""

    table_name = ITEM_ID_TABLE


class CachedFeatureTable(_ItemTable):
    """Frozen item content vectors (``num_items x feature_dim``).

    The trainer gives this table a zero learning rate and fills it from the features file after
    sharding (:func:`industrial.distributed.sharding.fill_table`); only the projector on top learns.
    """

    table_name = ITEM_FEATURE_TABLE


def ids_features(ids: torch.Tensor) -> KeyedJaggedTensor:
    """A KJT asking for ``ids`` once under the ``history`` role (every other role empty).

    How an item encoder built on these tables encodes given ids: one (sharded) lookup. The KJT is
    on ``ids``' device (TorchRec's input distribution does not move its input) and its per-key
    sizes are known on the host, so building it reads nothing back from the device.
    """
    n = ids.numel()
    lengths = torch.zeros(len(ITEM_KEYS), dtype=torch.int32, device=ids.device)
    lengths[0] = n
    return KeyedJaggedTensor(
        keys=list(ITEM_KEYS),
        values=ids,
        lengths=lengths,
        stride=1,
        length_per_key=[n] + [0] * (len(ITEM_KEYS) - 1),
        offset_per_key=[0] + [n] * len(ITEM_KEYS),
    )

