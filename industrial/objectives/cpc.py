"""TransRec stage 2: the CPC-style binary cross-entropy of one user vector against its next items
(TransRec, §3.3 "Stage 2: End-to-End Training", Eq. 9; released code ``model.py``).

TransRec splits a sequence into a history ``C^u`` and the ``l`` items that follow it ``C^e``. The
user encoder reads the history once, ``U^u = E_u(E_i(C^u))``; every following item is a positive
and ``j`` random items are negatives, all scored against that *single* user vector,
``r_{u,t} = <U^u, z_t>``:

.. math::  L_{CPC} = -\\sum_{u} \\Big[ \\sum_{t=n+1}^{n+l} \\log \\sigma(r_{u,t})
           + \\sum_{g=1}^{j} \\log \\big(1 - \\sigma(r_{u,g})\\big) \\Big]

``reduction="mean"`` (default) is the released code: the BCE averaged over all positives plus the
BCE averaged over all negatives (``l = 5`` last clicks, ``j = 5`` uniform negatives not in the
user's sequence). ``reduction="sum"`` is Eq. 9 per user, averaged over users (so that it does not
grow with the batch). The two differ by the constant factor ``l`` (= ``j``) when nothing is
masked. Raw dot product, no normalisation or temperature.

This differs from :class:`~industrial.objectives.bce.SampledBCELoss` in shape, not in kind: there
every position has its own query and one target; here one query has ``l`` positives. With the
user vector repeated ``l`` times and the ``j`` negatives repeated per positive, ``SampledBCELoss``
equals ``reduction="mean"``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from industrial.objectives.base import LossOutput

REDUCTIONS = ("mean", "sum")


@dataclass
class CPCConfig:
    """``reduction``: ``"mean"`` (released code) or ``"sum"`` (paper Eq. 9, per user)."""

    reduction: str = "mean"

    def validate(self) -> None:
        if self.reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {REDUCTIONS}, got {self.reduction!r}")


class CPCLoss(nn.Module):
    """TransRec's multi-positive BCE (formula in the module docstring).

    Inputs: ``users [B, D]`` (one vector per user, the user encoder over the history),
    ``positives [B, l, D]`` (the next ``l`` items' vectors), ``negatives [B, j, D]`` (sampled
    items), ``positive_mask [B, l]`` / ``negative_mask [B, j]`` bool (entries that exist; default
    all).
    """

    def __init__(self, config: CPCConfig | None = None) -> None:
        super().__init__()
        self.config = config or CPCConfig()
        self.config.validate()

    def forward(
        self,
        users: Tensor,
        positives: Tensor,
        negatives: Tensor,
        positive_mask: Tensor | None = None,
        negative_mask: Tensor | None = None,
    ) -> LossOutput:
        if users.dim() != 2:
            raise ValueError(f"users must be [B, D], got shape {tuple(users.shape)}")
        batch, dim = users.shape
        for name, x in (("positives", positives), ("negatives", negatives)):
            if x.dim() != 3 or x.shape[0] != batch or x.shape[2] != dim:
                raise ValueError(f"{name} must be [{batch}, k, {dim}], got shape {tuple(x.shape)}")
        for name, mask, x in (("positive_mask", positive_mask, positives), ("negative_mask", negative_mask, negatives)):
            if mask is not None and tuple(mask.shape) != tuple(x.shape[:2]):
                raise ValueError(f"{name} has shape {tuple(mask.shape)}, expected {tuple(x.shape[:2])}")
        pos = torch.einsum("bd,bkd->bk", users, positives)
        neg = torch.einsum("bd,bkd->bk", users, negatives)
        pos_w = torch.ones_like(pos) if positive_mask is None else positive_mask.to(pos.dtype)
        neg_w = torch.ones_like(neg) if negative_mask is None else negative_mask.to(neg.dtype)
        pos_terms = F.binary_cross_entropy_with_logits(pos, torch.ones_like(pos), reduction="none") * pos_w
        neg_terms = F.binary_cross_entropy_with_logits(neg, torch.zeros_like(neg), reduction="none") * neg_w
        if self.config.reduction == "mean":
            loss = pos_terms.sum() / pos_w.sum().clamp(min=1.0) + neg_terms.sum() / neg_w.sum().clamp(min=1.0)
        else:
            loss = (pos_terms.sum() + neg_terms.sum()) / max(batch, 1)
        return LossOutput(loss, {"cpc_loss": loss.detach()})
