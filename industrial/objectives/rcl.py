"""RCL: robustness-aware contrastive learning (PMMRec, method section; not in the
released code).

The representation of a sequence and of its corrupted copy (items shuffled / replaced, the
corruption of :func:`industrial.objectives.nid.corrupt_sequences`) are pulled together, the other
sequences of the batch pushed away, so the user encoder stays stable under partial corruption.
With ``h_i`` the original and ``\\tilde h_i`` the corrupted representation (L2-normalised),
``δ(a, b) = exp(<a, b> / τ)``:

.. math::  \\ell_i = -\\log \\frac{\\delta(h_i, \\tilde h_i)}{\\delta(h_i, \\tilde h_i)
           + \\sum_{j \\ne i} \\big(\\delta(h_i, \\tilde h_j) + \\delta(h_i, h_j)\\big)},
           \\qquad L_{RCL} = \\frac{1}{2B} \\sum_i \\big(\\ell_i + \\tilde\\ell_i\\big)

(``\\tilde ℓ_i`` anchors the corrupted view) — the symmetric in-batch InfoNCE with both views'
other sequences as negatives (NT-Xent). ``τ = 1`` and cosine similarity, the ``δ`` of NICL.
"""

from __future__ import annotations

from torch import Tensor, nn

from industrial.objectives.base import LossOutput
from industrial.objectives.contrastive import TwoViewConfig, TwoViewInfoNCELoss


def rcl_config(temperature: float = 1.0) -> TwoViewConfig:
    """RCL's defaults: cosine / τ with τ = 1, both directions, negatives from both views."""
    return TwoViewConfig(temperature=temperature, normalize=True, symmetric=True, negatives="both_views")


class RobustnessContrastiveLoss(nn.Module):
    """In-batch InfoNCE between original and corrupted sequence representations.

    Inputs: ``original [B, D]`` and ``corrupted [B, D]`` (the user encoder's sequence
    representation, e.g. its last state, over the original and the corrupted history),
    ``mask [B]`` bool (sequences to use; default all).
    """

    def __init__(self, config: TwoViewConfig | None = None) -> None:
        super().__init__()
        self.two_view = TwoViewInfoNCELoss(config or rcl_config(), "rcl_loss")

    @property
    def config(self) -> TwoViewConfig:
        return self.two_view.config

    def forward(self, original: Tensor, corrupted: Tensor, mask: Tensor | None = None) -> LossOutput:
        return self.two_view(original, corrupted, mask=mask)
