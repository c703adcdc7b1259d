"""Binary cross-entropy with sampled negatives (SASRec's original loss; TransRec, MoRec, NineRec)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from industrial.objectives.base import LossOutput, ScoringInputs, ScoringObjective


class SampledBCELoss(ScoringObjective):
    """Each target against its ``K`` sampled negatives, scored by a dot product:

    .. math::  L = \\frac{1}{P} \\sum_p \\Big[ -\\log \\sigma(\\langle u_p, v_{y_p} \\rangle)
               - \\frac{1}{K} \\sum_{k=1}^{K} \\log\\big(1 - \\sigma(\\langle u_p, v_{n_{p,k}} \\rangle)\\big) \\Big]
    """

    def forward(self, inputs: ScoringInputs) -> LossOutput:
        if inputs.negative_vectors is None or not inputs.negative_vectors.numel():
            raise ValueError("SampledBCELoss needs sampled negatives: set data.num_negatives > 0")
        pos = (inputs.queries * inputs.target_vectors).sum(-1)
        neg = torch.einsum("pd,pkd->pk", inputs.queries, inputs.negative_vectors)
        loss = F.binary_cross_entropy_with_logits(pos, torch.ones_like(pos)) + F.binary_cross_entropy_with_logits(
            neg, torch.zeros_like(neg)
        )
        return LossOutput(loss, {"bce_loss": loss.detach()})
