"""What an objective receives and returns."""

from __future__ import annotations

import abc
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class ScoringInputs:
    """Vectors of one batch, aligned by prediction point ``p = 1..P``.

    ``queries[p]`` is the user state that predicts ``target_ids[p]``; ``target_vectors[p]`` is that
    item's vector. ``negative_ids/vectors`` hold ``K`` sampled negatives per point (``[P, K]`` /
    ``[P, K, D]``) when the loader sampled them; ``catalogue_vectors`` every item's vector
    (``[N, D]``, row = item id) when the objective asked for the whole catalogue;
    ``target_log_q`` the log sampling probability of each target (popularity) for logQ correction.
    """

    queries: torch.Tensor
    target_ids: torch.Tensor
    target_vectors: torch.Tensor
    negative_ids: torch.Tensor | None = None
    negative_vectors: torch.Tensor | None = None
    catalogue_vectors: torch.Tensor | None = None
    target_log_q: torch.Tensor | None = None


@dataclass
class LossOutput:
    """The scalar to minimise and named detached values to log."""

    loss: torch.Tensor
    logs: dict[str, torch.Tensor] = field(default_factory=dict)


class ScoringObjective(abc.ABC, nn.Module):
    """A next-item objective: ``forward(ScoringInputs) -> LossOutput``.

    ``needs_catalogue`` declares that the objective scores every item of the catalogue
    (``ScoringInputs.catalogue_vectors``): the task then encodes the whole catalogue at each step
    (and reads the batch's vectors from it). Objectives over in-batch / sampled candidates leave it
    ``False``.
    """

    needs_catalogue: bool = False

    @abc.abstractmethod
    def forward(self, inputs: ScoringInputs) -> LossOutput:
        """The loss of the scoring inputs of one batch."""


def similarity(queries: torch.Tensor, keys: torch.Tensor, temperature: float, normalize: bool) -> torch.Tensor:
    """``s(u, v) = <u, v> / tau``, on L2-normalised vectors when ``normalize`` (cosine / tau)."""
    if normalize:
        queries = F.normalize(queries, dim=-1)
        keys = F.normalize(keys, dim=-1)
    return queries @ keys.transpose(-1, -2) / temperature
