"""Softmax next-item objectives: over the whole catalogue, or over sampled / in-batch candidates."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from industrial.objectives.base import LossOutput, ScoringInputs, ScoringObjective, similarity


class FullSoftmaxLoss(ScoringObjective):
    """Cross-entropy over every item of the catalogue (SASRec / RecBole ``CE``; UniSRec fine-tune).

    .. math::  L = -\\frac{1}{P} \\sum_p \\log \\frac{\\exp s(u_p, v_{y_p})}{\\sum_{j=1}^{N} \\exp s(u_p, v_j)}

    with ``s(u, v) = <u, v> / tau`` (cosine / tau when ``normalize``).
    """

    needs_catalogue = True

    def __init__(self, temperature: float = 1.0, normalize: bool = False) -> None:
        super().__init__()
        self.temperature = temperature
        self.normalize = normalize

    def forward(self, inputs: ScoringInputs) -> LossOutput:
        if inputs.catalogue_vectors is None:
            raise ValueError("FullSoftmaxLoss needs catalogue_vectors")
        logits = similarity(inputs.queries, inputs.catalogue_vectors, self.temperature, self.normalize)
        loss = F.cross_entropy(logits, inputs.target_ids)
        return LossOutput(loss, {"softmax_loss": loss.detach()})


class SampledSoftmaxLoss(ScoringObjective):
    """Softmax over in-batch targets plus sampled negatives, with popularity (logQ) correction.

    Candidates of point ``p`` are the targets of every point in the batch and its own ``K`` sampled
    negatives. A candidate with the same item id as ``y_p`` (other than ``p``'s own target) is
    masked, so an item never counts as its own negative:

    .. math::  L = -\\frac{1}{P} \\sum_p \\log \\frac{\\exp(s_{p,y_p} - c\\,\\log q_{y_p})}
               {\\sum_{j \\in C_p,\\, j \\ne y_p \\text{ or } j = p} \\exp(s_{p,j} - c\\,\\log q_j)}

    where ``q_j`` is the probability that ``j`` is drawn as a candidate (its popularity for
    in-batch targets) and ``c = 1`` when ``logq_correction`` (MoRec / PMMRec in-batch debiased CE)
    else ``0``. Sampled negatives are drawn by the loader; their own ``q`` is not corrected.
    """

    def __init__(self, temperature: float = 1.0, normalize: bool = False, logq_correction: bool = True) -> None:
        super().__init__()
        self.temperature = temperature
        self.normalize = normalize
        self.logq_correction = logq_correction

    def forward(self, inputs: ScoringInputs) -> LossOutput:
        queries, target_ids = inputs.queries, inputs.target_ids
        logits = similarity(queries, inputs.target_vectors, self.temperature, self.normalize)  # [P, P]
        if self.logq_correction and inputs.target_log_q is not None:
            logits = logits - inputs.target_log_q[None, :]
        same = target_ids[:, None] == target_ids[None, :]
        same.fill_diagonal_(False)
        logits = logits.masked_fill(same, float("-inf"))
        if inputs.negative_vectors is not None and inputs.negative_vectors.numel():
            neg = similarity(queries[:, None, :], inputs.negative_vectors, self.temperature, self.normalize)
            neg = neg.squeeze(1)  # [P, K]
            neg = neg.masked_fill(inputs.negative_ids == target_ids[:, None], float("-inf"))
            logits = torch.cat([logits, neg], dim=1)
        labels = torch.arange(queries.shape[0], device=queries.device)
        loss = F.cross_entropy(logits, labels)
        return LossOutput(loss, {"softmax_loss": loss.detach()})
