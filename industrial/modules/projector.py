"""UniSRec's parametric whitening and mixture-of-experts adaptor over frozen item features.

Parametric whitening (one expert)::

    PW(x) = W · (dropout(x) − b)          b ∈ R^{d_in} learnable, init 0;  W bias-free, init N(0, 0.02)

Mixture-of-experts adaptor with ``K`` experts (UniSRec: K = 8, d_in = 768 → d_out = 300)::

    g = softmax(x · W_gate + ε ⊙ (softplus(x · W_noise) + 0.01))      ε ~ N(0, 1), training only
    g = softmax(x · W_gate)                                            evaluation
    MoE(x) = Σ_k g_k · PW_k(x)

``W_gate`` and ``W_noise`` (``[d_in, K]``) are initialised to 0, so at evaluation the gate starts
uniform and ``MoE(x)`` is the mean of the experts. No top-k is applied: all experts are mixed.

Computed in one matmul: with ``x̃`` the dropped-out input and ``W = [W_1; …; W_K]``
(``[K·d_out, d_in]``), ``MoE(x) = Σ_k g_k ⊙ (W x̃)_k − Σ_k g_k ⊙ (W_k b_k)``. UniSRec draws an
independent dropout mask per expert (``dropout_mask="per_expert"``, a batched matmul over ``K``
copies of the input); the default ``"shared"`` draws one mask for all experts, the same
expectation at ``1/K`` of the random draws, which dominate the adaptor's cost on CPUs when the
whole catalogue is projected at every step (``benchmarks/throughput.py``).
Parameter names follow UniSRec (``experts.{k}.bias``, ``experts.{k}.lin.weight``, ``w_gate``,
``w_noise``), so its adaptor weights load with ``load_state_dict``.

Example::

    moe = MoEAdaptor(ProjectorConfig(in_dim=384, out_dim=300))
    item_vectors = moe(frozen_features)          # [..., 384] -> [..., 300]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass
class ProjectorConfig:
    """Configuration of :class:`MoEAdaptor` (UniSRec: 768 → 300, 8 experts, dropout 0.2).

    Also the ``model.item.projector`` section of an experiment config, where ``in_dim`` and
    ``out_dim`` are left unset: the build sets them (the feature table's width, ``model.user.dim``).
    """

    experts: int = 8  # whitening experts mixed by the gate (UniSRec n_exps)
    dropout: float = 0.2  # dropout on the input features (UniSRec adaptor_dropout_prob)
    noise: bool = True  # noisy gate during training (UniSRec noisy_gating)
    dropout_mask: Literal["shared", "per_expert"] = "shared"  # one input dropout mask for all experts, or one each (UniSRec)
    noise_epsilon: float = 1e-2  # the constant added to the gate noise's scale
    in_dim: int | None = None  # input feature width; in an experiment config, set by the build
    out_dim: int | None = None  # item vector width; in an experiment config, set by the build (model.user.dim)

    def validate(self) -> None:
        if self.dropout_mask not in ("shared", "per_expert"):
            raise ValueError(f"dropout_mask must be 'shared' or 'per_expert', got {self.dropout_mask!r}")
        if self.experts <= 0 or any(d is not None and d <= 0 for d in (self.in_dim, self.out_dim)):
            raise ValueError(f"in_dim, out_dim and experts must be positive, got {self.in_dim}, {self.out_dim}, {self.experts}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {self.dropout}")


class PWLayer(nn.Module):
    """Parametric whitening ``PW(x) = W · (dropout(x) − b)``: ``[..., in_dim] -> [..., out_dim]``.

    Example::

        pw = PWLayer(768, 300, dropout=0.2)
        y = pw(x)
    """

    def __init__(self, in_dim: int, out_dim: int, dropout: float = 0.0):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.bias = nn.Parameter(torch.zeros(in_dim))
        self.lin = nn.Linear(in_dim, out_dim, bias=False)
        nn.init.normal_(self.lin.weight, mean=0.0, std=0.02)

    def forward(self, x: Tensor) -> Tensor:
        return self.lin(self.dropout(x) - self.bias)


class MoEAdaptor(nn.Module):
    """Mixture of ``experts`` whitening experts with a (noisy in training) softmax gate.

    ``forward(x [..., in_dim]) -> [..., out_dim]``; ``gates(x) -> [..., experts]``. Formula in the
    module docstring.
    """

    def __init__(self, config: ProjectorConfig):
        super().__init__()
        config.validate()
        if config.in_dim is None or config.out_dim is None:
            raise ValueError(f"the projector needs in_dim and out_dim, got {config.in_dim}, {config.out_dim}")
        self.config = config
        self.experts = nn.ModuleList(PWLayer(config.in_dim, config.out_dim, config.dropout) for _ in range(config.experts))
        self.w_gate = nn.Parameter(torch.zeros(config.in_dim, config.experts))
        self.w_noise = nn.Parameter(torch.zeros(config.in_dim, config.experts))

    def gates(self, x: Tensor) -> Tensor:
        """Gate weights ``g`` (sum to 1 over the experts)."""
        logits = x @ self.w_gate
        if self.config.noise and self.training:
            noise_std = F.softplus(x @ self.w_noise) + self.config.noise_epsilon
            logits = logits + torch.randn_like(logits) * noise_std
        return torch.softmax(logits, dim=-1)

    def forward(self, x: Tensor) -> Tensor:
        cfg = self.config
        weight = torch.stack([expert.lin.weight for expert in self.experts])  # [K, out, in]
        bias = torch.stack([expert.bias for expert in self.experts])  # [K, in]
        flat = x.reshape(-1, cfg.in_dim)
        if cfg.dropout_mask == "per_expert" and self.training and cfg.dropout > 0:
            dropped = F.dropout(flat.expand(cfg.experts, -1, -1), cfg.dropout, training=True)  # [K, n, in]
            experts = torch.bmm(dropped, weight.transpose(1, 2)).transpose(0, 1)  # [n, K, out]
        else:
            dropped = F.dropout(flat, cfg.dropout, training=self.training)
            experts = (dropped @ weight.reshape(-1, cfg.in_dim).T).view(-1, cfg.experts, cfg.out_dim)
        experts = experts - torch.bmm(weight, bias.unsqueeze(-1)).squeeze(-1)  # − W_k b_k
        mixed = (self.gates(flat).unsqueeze(-1) * experts).sum(dim=-2)
        return mixed.view(*x.shape[:-1], cfg.out_dim)
