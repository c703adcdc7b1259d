"""The recommender: an item encoder (ids and/or content) and a user encoder over item vectors.

The model only computes vectors; what is done with them (the loss) belongs to the task
(:class:`~industrial.recipes.next_item.NextItemTask` and the other tasks of ``industrial/recipes/``),
so the same model trains under any objective and is evaluated the same way (TorchRec's
``TwoTower`` / ``TwoTowerTrainTask`` split).

Example::

    model = Recommender(IdItemEncoder(ItemIdTable(num_items, 64)), UserEncoder(UserEncoderConfig(dim=64)))
    task = NextItemTask(model, FullSoftmaxLoss())
    loss, logs = task(batch)
    users = model.user_vectors(batch)  # [B, 64] for ranking
"""

from __future__ import annotations

import torch
from torch import nn

from industrial.data.batch import SequenceBatch
from industrial.modules.item_encoder import ItemEncoderInterface
from industrial.modules.user_encoder import UserEncoder


class Recommender(nn.Module):
    """Item encoder + user encoder.

    ``item_domains`` (``[N]`` int64, optional) gives each item's domain index for the user
    encoder's domain embedding.
    """

    def __init__(self, item_encoder: ItemEncoderInterface, user_encoder: UserEncoder, item_domains: torch.Tensor | None = None) -> None:
        super().__init__()
        if item_encoder.dim != user_encoder.config.dim:
            raise ValueError(f"item vectors have dim {item_encoder.dim}, the user encoder expects {user_encoder.config.dim}")
        self.item_encoder = item_encoder
        self.user_encoder = user_encoder
        self.register_buffer("item_domains", item_domains if item_domains is not None else torch.zeros(0, dtype=torch.int64))

    @property
    def num_items(self) -> int:
        return self.item_encoder.num_items

    @property
    def device(self) -> torch.device:
        """Where the dense part lives (DMP puts it on the rank's device): inputs are built there."""
        return self.user_encoder.positions.weight.device

    def encode(self, batch: SequenceBatch, catalogue: torch.Tensor | None = None) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Item vectors by role and the user states at every history position ``[sum L, D]``.

        With ``catalogue`` (every item's vector, ``[N, D]``, already computed for a full-softmax
        objective) the batch's vectors are its rows, so no item is encoded twice in one step.
        """
        if catalogue is None:
            vectors = self.item_encoder(batch.items)
        else:
            vectors = {role: catalogue[batch.values(role)] for role in batch.items.keys()}
        history_ids = batch.values("history")
        domains = self.item_domains[history_ids] if self.item_domains.numel() else None
        states = self.user_encoder(vectors["history"], batch.lengths("history"), domains, batch.max_history_length)
        return vectors, states

    def user_vectors(self, batch: SequenceBatch) -> torch.Tensor:
        """One vector per sequence: the state at its last history position, ``[B, D]``."""
        _, states = self.encode(batch)
        return self.user_encoder.last(states, batch.lengths("history"))

    def encode_item_range(self, start: int = 0, stop: int | None = None) -> torch.Tensor:
        """Vectors of the catalogue's items ``start .. stop-1`` (default: all of it), ``[n, D]``.

        Through the item encoder's ``encode`` (one sharded lookup for table encoders, a
        collective call every rank makes alike), with the ids built on the model's device.
        """
        stop = self.num_items if stop is None else stop
        return self.item_encoder.encode(torch.arange(start, stop, dtype=torch.int64, device=self.device))
