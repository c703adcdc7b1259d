"""Weighted sum of several objectives: ``L = Σ_i w_i L_i``.

Each objective takes its own inputs, so the recipe calls them and hands their outputs here;
this module only weighs, sums and logs.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from industrial.objectives.base import LossOutput


class CombinedLoss(nn.Module):
    """``L = Σ_i w_i L_i`` over named :class:`LossOutput` s.

    ``weights`` name every component (e.g. ``{"nicl": 1.0, "nid": 0.1, "rcl": 0.1}``). ``forward``
    takes ``{name: LossOutput}`` with exactly those names and returns the total, logging
    ``loss`` (the total), ``{name}`` (the unweighted ``L_i``) and every component's own logs. A
    component with weight ``0`` is logged but adds nothing to the graph.
    """

    def __init__(self, weights: Mapping[str, float]) -> None:
        super().__init__()
        if not weights:
            raise ValueError("CombinedLoss needs at least one component")
        for name, weight in weights.items():
            if weight < 0:
                raise ValueError(f"weight of {name!r} must be non-negative, got {weight}")
        self.weights = dict(weights)

    def forward(self, outputs: Mapping[str, LossOutput]) -> LossOutput:
        missing = sorted(set(self.weights) - set(outputs))
        unknown = sorted(set(outputs) - set(self.weights))
        if missing or unknown:
            raise ValueError(f"components missing: {missing}, unknown: {unknown}")
        total: torch.Tensor | None = None
        logs: dict[str, torch.Tensor] = {}
        for name, weight in self.weights.items():
            out = outputs[name]
            logs.update(out.logs)
            logs[name] = out.loss.detach()
            if weight:
                term = weight * out.loss
                total = term if total is None else total + term
        if total is None:
            total = sum(out.loss for out in outputs.values()) * 0.0
        logs["loss"] = total.detach()
        return LossOutput(total, logs)
