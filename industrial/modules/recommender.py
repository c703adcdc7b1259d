"""The recommender: an item encoder (ids and/or content) and a user encoder over item vectors.

The model only computes vectors; what is done with them (the loss) belongs to
:class:`NextItemTask`, so the same model trains under any objective and is evaluated the same way
(TorchRec's ``TwoTower`` / ``TwoTowerTrainTask`` split).

Example::

    model = Recommender(IdItemEncoder(ItemIdTable(num_items, 64)), UserEncoder(UserEncoderConfig(dim=64)))
    task = NextItemTask(model, FullSoftmaxLoss())
    loss, logs = task(batch)
    users = model.user_vectors(batch)  # [B, 64] for ranking
"""

from __future__ import annotations

import torch
from torch import nn
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from industrial.data.batch import SequenceBatch
from industrial.modules.item_tables import CachedFeatureTable, ItemIdTable, catalogue_features
from industrial.modules.user_encoder import UserEncoder
from industrial.objectives.base import LossOutput, ScoringInputs


class ItemEncoder(nn.Module):
    """Maps the item ids of every role of a batch to vectors: ``{role: [n_role, dim]}``."""

    dim: int
    num_items: int

    def forward(self, items: KeyedJaggedTensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError


class IdItemEncoder(ItemEncoder):
    """Item vector = its row of the (sharded) item-id table."""

    def __init__(self, table: ItemIdTable) -> None:
        super().__init__()
        self.table = table
        self.dim = table.dim
        self.num_items = table.num_items

    def forward(self, items: KeyedJaggedTensor) -> dict[str, torch.Tensor]:
        return {role: jagged.values() for role, jagged in self.table(items).items()}


class CachedFeatureItemEncoder(ItemEncoder):
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

    def forward(self, items: KeyedJaggedTensor) -> dict[str, torch.Tensor]:
        features = self.table(items)  # frozen: detached, so no gradient is computed for them
        out = {role: self.projector(jagged.values().detach()) for role, jagged in features.items()}
        if self.id_table is not None:
            for role, jagged in self.id_table(items).items():
                out[role] = out[role] + jagged.values()
        return out


class Recommender(nn.Module):
    """Item encoder + user encoder.

    ``item_domains`` (``[N]`` int64, optional) gives each item's domain index for the user
    encoder's domain embedding.
    """

    def __init__(self, item_encoder: ItemEncoder, user_encoder: UserEncoder, item_domains: torch.Tensor | None = None) -> None:
        super().__init__()
        if item_encoder.dim != user_encoder.config.dim:
            raise ValueError(f"item vectors have dim {item_encoder.dim}, the user encoder expects {user_encoder.config.dim}")
        self.item_encoder = item_encoder
        self.user_encoder = user_encoder
        self.register_buffer("item_domains", item_domains if item_domains is not None else torch.zeros(0, dtype=torch.int64))

    @property
    def num_items(self) -> int:
        return self.item_encoder.num_items

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
        states = self.user_encoder(vectors["history"], batch.lengths("history"), domains)
        return vectors, states

    def user_vectors(self, batch: SequenceBatch) -> torch.Tensor:
        """One vector per sequence: the state at its last history position, ``[B, D]``."""
        _, states = self.encode(batch)
        return self.user_encoder.last(states, batch.lengths("history"))

    def encode_items(self, start: int = 0, stop: int | None = None) -> torch.Tensor:
        """Vectors of items ``start .. stop-1`` (default: the whole catalogue), ``[n, D]``."""
        return self.item_encoder(catalogue_features(self.num_items, start, stop))["history"]


class NextItemTask(nn.Module):
    """Next-item prediction: each user state predicts the item that follows it.

    Training batches (``target`` as long as ``history``) predict at every position; evaluation
    batches (one target per sequence) from the last position. ``item_log_q`` (``[N]``, the log of
    each item's share of training events) feeds the logQ correction of sampled softmax.
    """

    def __init__(self, model: Recommender, loss: nn.Module, item_log_q: torch.Tensor | None = None) -> None:
        super().__init__()
        self.model = model
        self.loss = loss
        self.register_buffer("item_log_q", item_log_q if item_log_q is not None else torch.zeros(0))

    def scoring_inputs(self, batch: SequenceBatch) -> ScoringInputs:
        catalogue = self.model.encode_items() if getattr(self.loss, "needs_catalogue", False) else None
        vectors, states = self.model.encode(batch, catalogue)
        history_lengths = batch.lengths("history")
        target_lengths = batch.lengths("target")
        target_ids = batch.values("target")
        if torch.equal(target_lengths, history_lengths):
            queries = states
        elif bool((target_lengths == 1).all()):
            queries = self.model.user_encoder.last(states, history_lengths)
        else:
            raise ValueError("each sequence needs one target per history item, or exactly one target")
        negatives = None
        negative_ids = None
        if vectors["negative"].numel():
            per_target = vectors["negative"].shape[0] // max(target_ids.numel(), 1)
            negative_ids = batch.values("negative").view(-1, per_target)
            negatives = vectors["negative"].view(negative_ids.shape[0], per_target, -1)
        log_q = self.item_log_q[target_ids] if self.item_log_q.numel() else None
        return ScoringInputs(
            queries=queries,
            target_ids=target_ids,
            target_vectors=vectors["target"],
            negative_ids=negative_ids,
            negative_vectors=negatives,
            catalogue_vectors=catalogue,
            target_log_q=log_q,
        )

    def forward(self, batch: SequenceBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``(loss, logs)``: a tuple, not a dataclass, so that DDP (which DMP wraps the dense
        part in, with ``static_graph``) finds the loss and synchronises the dense gradients."""
        out: LossOutput = self.loss(self.scoring_inputs(batch))
        return out.loss, out.logs
