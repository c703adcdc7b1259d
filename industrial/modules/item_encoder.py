"""The item side of a recommender: what every item encoder implements, and the two table-backed ones.

:class:`ItemEncoderInterface` (TorchRec's ``*Interface`` style: an abstract ``nn.Module``) is the
contract between an item side and everything that uses it (the :class:`~industrial.modules.recommender.Recommender`,
the recipe tasks, the evaluator)::

    dim: int                                  width D of the item vectors
    num_items: int                            catalogue size N (ids 0 .. N-1)
    has_modalities: bool                      encode_modalities is supported (declared per class)
    forward(items: KJT) -> {role: [n_role, D]}    every role of a batch (history, target, ...)
    encode(ids [n], distinct) -> [n, D]
    encode_modalities(ids [n], distinct) -> ItemVectors    item + per-modality vectors

Content encoders (text, multi-modal) implement ``encode`` and inherit ``forward``: the distinct
ids of all roles are encoded once and the vectors split back by role. Table encoders (id and
cached-feature tables, sharded by TorchRec) implement ``forward`` as one sharded lookup over the
batch's KJT (a sharded table must read a KJT) and ``encode`` through it.

Implementations: :class:`IdItemEncoder`, :class:`CachedFeatureItemEncoder` (here),
:class:`~industrial.modules.text_items.TextItemEncoder`,
:class:`~industrial.modules.multimodal.MultiModalItemEncoder` (the only one with modalities).

Example::

    items = IdItemEncoder(ItemIdTable(num_items, 64))
    vectors = items(batch.items)                 # {"history": [n_h, 64], "target": ..., ...}
    some = items.encode(torch.tensor([3, 7]))    # [2, 64]
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

if TYPE_CHECKING:  # TorchRec is needed by the table encoders only, imported when they run
    from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

    from industrial.modules.item_tables import CachedFeatureTable, ItemIdTable


@dataclass
class ItemVectors:
    """Vectors of ``n`` items: the item vector and the per-modality vectors (zero where absent)."""

    vectors: Tensor  # [n, D]
    text: Tensor  # [n, D]
    image: Tensor  # [n, D]
    has_text: Tensor  # [n] bool
    has_image: Tensor  # [n] bool

    def __getitem__(self, index: Tensor) -> ItemVectors:
        return ItemVectors(self.vectors[index], self.text[index], self.image[index], self.has_text[index], self.has_image[index])


class ItemEncoderInterface(abc.ABC, nn.Module):
    """Maps item ids to ``dim``-wide vectors (the contract in the module docstring).

    Subclasses set ``dim`` and ``num_items`` in ``__init__`` and implement :meth:`encode`;
    ``has_modalities = True`` declares that :meth:`encode_modalities` is implemented.
    """

    dim: int
    num_items: int
    #: per-modality vectors (text, image) are available through :meth:`encode_modalities`
    has_modalities: bool = False

    @abc.abstractmethod
    def encode(self, ids: Tensor) -> Tensor:
        """Vectors of distinct item ids ``[n]``: ``[n, dim]``."""

    def encode_modalities(self, ids: Tensor) -> ItemVectors:
        """Item and per-modality vectors of distinct item ids ``[n]`` (when ``has_modalities``)."""
        raise ValueError(f"{type(self).__name__} has no per-modality vectors: use model.item.kind=multimodal")

    def forward(self, items: KeyedJaggedTensor) -> dict[str, Tensor]:
        """``{role: [n_role, dim]}`` for every role of ``items``, each distinct item encoded once."""
        roles = items.to_dict()
        values = [roles[key].values() for key in items.keys()]
        all_ids = torch.cat(values) if values else torch.zeros(0, dtype=torch.int64, device=items.values().device)
        unique, inverse = torch.unique(all_ids, return_inverse=True)
        vectors = self.encode(unique)[inverse]
        return dict(zip(items.keys(), torch.split(vectors, [v.numel() for v in values])))


class IdItemEncoder(ItemEncoderInterface):
    """Item vector = its row of the (sharded) item-id table."""

    def __init__(self, table: ItemIdTable) -> None:
        super().__init__()
        self.table = table
        self.dim = table.dim
        self.num_items = table.num_items

    def forward(self, items: KeyedJaggedTensor) -> dict[str, Tensor]:
        return {role: jagged.values() for role, jagged in self.table(items).items()}

    def encode(self, ids: Tensor) -> Tensor:
        from industrial.modules.item_tables import ids_features

        return self(ids_features(ids))["history"]


class CachedFeatureItemEncoder(ItemEncoderInterface):
    """Item vector = ``projector(frozen content feature)``, the feature read from a sharded table.

    With ``id_table`` set, the item-id embedding is added (UniSRec's transductive setting).
    """

    def __init__(self, table: CachedFeatureTable, projector: nn.Module, dim: int, id_table: ItemIdTable | None = None) -> None:
        super().__init__()
        self.table = table
        self.projector = projector
        self.id_table = id_table
        self.dim = dim
        self.num_items = table.num_items

    def forward(self, items: KeyedJaggedTensor) -> dict[str, Tensor]:
        features = self.table(items)  # frozen: detached, so no gradient is computed for them
        out = {role: self.projector(jagged.values().detach()) for role, jagged in features.items()}
        if self.id_table is not None:
            for role, jagged in self.id_table(items).items():
                out[role] = out[role] + jagged.values()
        return out

    def encode(self, ids: Tensor) -> Tensor:
        from industrial.modules.item_tables import ids_features

        return self(ids_features(ids))["history"]
