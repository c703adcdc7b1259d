"""Next-item prediction (``loss.kind: full_softmax``, ``sampled_softmax``, ``bce``): each user
state predicts the item that follows it, scored by a :class:`~industrial.objectives.base.ScoringObjective`.

Training batches (``target`` as long as ``history``) predict at every position; evaluation
batches (one target per sequence) from the last position. :func:`next_item_inputs` is the one
place where a batch's vectors become :class:`~industrial.objectives.base.ScoringInputs`; PMMRec's
next-item term (:mod:`industrial.recipes.pmmrec`) builds its inputs through it too.

Example::

    task = NextItemTask(Recommender(item_encoder, user_encoder), SampledSoftmaxLoss(), item_log_q)
    loss, logs = task(batch)
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from industrial.data.batch import SequenceBatch
from industrial.modules.recommender import Recommender
from industrial.objectives.base import LossOutput, ScoringInputs, ScoringObjective


def next_item_inputs(
    batch: SequenceBatch,
    queries: Tensor,
    target_vectors: Tensor,
    negative_vectors: Tensor | None,
    item_log_q: Tensor,
    catalogue: Tensor | None = None,
) -> ScoringInputs:
    """Scoring inputs of next-item prediction: ``queries [P, D]`` aligned with the batch's targets.

    ``negative_vectors`` (``[P·K, D]``, the batch's ``negative`` role, target-major) become
    ``[P, K, D]``; ``item_log_q`` ``[N]`` (empty: none) gives each target's log popularity for the
    logQ correction; ``catalogue`` ``[N, D]`` every item's vector (full softmax).
    """
    target_ids = batch.values("target")
    negative_ids = negatives = None
    if negative_vectors is not None and negative_vectors.numel():
        per_target = negative_vectors.shape[0] // max(target_ids.numel(), 1)
        negative_ids = batch.values("negative").view(-1, per_target)
        negatives = negative_vectors.view(negative_ids.shape[0], per_target, -1)
    return ScoringInputs(
        queries=queries,
        target_ids=target_ids,
        target_vectors=target_vectors,
        negative_ids=negative_ids,
        negative_vectors=negatives,
        catalogue_vectors=catalogue,
        target_log_q=item_log_q[target_ids] if item_log_q.numel() else None,
    )


class NextItemTask(nn.Module):
    """Next-item prediction over a :class:`Recommender` (module docstring).

    ``item_log_q`` (``[N]``, the log of each item's share of training events) feeds the logQ
    correction of sampled softmax.
    """

    def __init__(self, model: Recommender, loss: ScoringObjective, item_log_q: Tensor | None = None) -> None:
        super().__init__()
        self.model = model
        self.loss = loss
        self.register_buffer("item_log_q", item_log_q if item_log_q is not None else torch.zeros(0))

    def scoring_inputs(self, batch: SequenceBatch) -> ScoringInputs:
        catalogue = self.model.encode_item_range() if self.loss.needs_catalogue else None
        vectors, states = self.model.encode(batch, catalogue)
        history_lengths = batch.lengths("history")
        target_lengths = batch.lengths("target")
        if torch.equal(target_lengths, history_lengths):
            queries = states
        elif bool((target_lengths == 1).all()):
            queries = self.model.user_encoder.last(states, history_lengths)
        else:
            raise ValueError("each sequence needs one target per history item, or exactly one target")
        return next_item_inputs(batch, queries, vectors["target"], vectors["negative"], self.item_log_q, catalogue)

    def forward(self, batch: SequenceBatch) -> tuple[Tensor, dict[str, Tensor]]:
        """``(loss, logs)``: a tuple, not a dataclass, so that DDP (which DMP wraps the dense
        part in, with ``static_graph``) finds the loss and synchronises the dense gradients."""
        out: LossOutput = self.loss(self.scoring_inputs(batch))
        return out.loss, out.logs
