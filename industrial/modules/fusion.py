"""Fusion of an item's text tokens and image tokens into one item vector (PMMRec's merge-attention).

With projected text tokens ``T ∈ R^{Lt×d}`` (mask ``m^t``) and image tokens ``I ∈ R^{Li×d}``
(mask ``m^i``)::

    X = [T + E_type(0) ; I + E_type(1)]                 token-type embedding, then concatenation
    X = Block_N(... Block_1(X, m) ...)                  BERT self-attention + FFN blocks (post-LN)
    v = Σ_j m_j X_j / max(Σ_j m_j, 1e-9)                masked mean over all tokens, m = [m^t ; m^i]

Each block: ``X = LN(X + Drop(MHA(X, X, X; key mask m)))``, ``X = LN(X + Drop(W_2 GELU(W_1 X)))``.

Mixture of modalities: an item without image has ``m^i = 0`` (its image tokens are ignored, they
may hold anything), an item without text has ``m^t = 0``, so a text-only item's vector equals
the fusion of its text tokens alone. An item with neither gives a zero vector. Nothing is NaN:
a row whose keys are all masked attends to all (finite) positions and is then dropped by the
pooling. The single-modality towers are :func:`text_only` (masked mean of the text tokens) and
:func:`image_only` (mean of the image tokens).

PMMRec initialises its block from ``bert-base-uncased`` layer weights; here it is initialised
normal(0, 0.02) (BERT's init), since no such weights are available offline.

Example::

    fusion = MergeAttentionFusion(FusionConfig(dim=256, num_heads=4))
    v = fusion(text_tokens, text_mask, image_tokens, image_mask)    # [B, 256]
    image_mask = image_mask * has_image[:, None]                     # text-only items: mask images out
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from industrial.modules.text import masked_token_mean


@dataclass
class FusionConfig:
    """Configuration of :class:`MergeAttentionFusion` (PMMRec: dim 768, 12 heads, 1 layer)."""

    dim: int = 768
    num_layers: int = 1
    num_heads: int = 12
    #: FFN inner dimension; None: 4 · dim.
    ffn_dim: int | None = None
    dropout: float = 0.1
    layer_norm_eps: float = 1e-12

    def validate(self) -> None:
        if self.dim % self.num_heads:
            raise ValueError(f"fusion dim {self.dim} is not a multiple of num_heads {self.num_heads}")
        if self.num_layers < 1:
            raise ValueError(f"fusion num_layers must be at least 1, got {self.num_layers}")


class TransformerBlock(nn.Module):
    """BERT layer (post-LN): masked multi-head self-attention, then a GELU feed-forward.

    ``forward(x [B, L, d], key_mask [B, L] bool) -> [B, L, d]``; rows with no valid key attend to
    every position (finite output; the caller discards them).
    """

    def __init__(self, dim: int, num_heads: int, ffn_dim: int, dropout: float = 0.1, eps: float = 1e-12):
        super().__init__()
        self.num_heads = num_heads
        self.query, self.key, self.value = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.attn_out = nn.Linear(dim, dim)
        self.attn_norm = nn.LayerNorm(dim, eps=eps)
        self.ffn_in = nn.Linear(dim, ffn_dim)
        self.ffn_out = nn.Linear(ffn_dim, dim)
        self.ffn_norm = nn.LayerNorm(dim, eps=eps)
        self.dropout = nn.Dropout(dropout)
        self.attn_dropout = dropout

    def forward(self, x: Tensor, key_mask: Tensor) -> Tensor:
        b, length, dim = x.shape
        heads, head_dim = self.num_heads, dim // self.num_heads
        keys = key_mask | ~key_mask.any(dim=1, keepdim=True)  # all-masked rows: attend to everything

        def split(t: Tensor) -> Tensor:
            return t.view(b, length, heads, head_dim).transpose(1, 2)

        context = F.scaled_dot_product_attention(
            split(self.query(x)),
            split(self.key(x)),
            split(self.value(x)),
            attn_mask=keys[:, None, None, :],
            dropout_p=self.attn_dropout if self.training else 0.0,
            scale=1.0 / math.sqrt(head_dim),
        )
        context = context.transpose(1, 2).reshape(b, length, dim)
        x = self.attn_norm(x + self.dropout(self.attn_out(context)))
        return self.ffn_norm(x + self.dropout(self.ffn_out(F.gelu(self.ffn_in(x)))))


def _bert_init(module: nn.Module) -> None:
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)
    if isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


class MergeAttentionFusion(nn.Module):
    """PMMRec's merge-attention fusion (formula in the module docstring).

    ``forward(text_tokens [B, Lt, d] | None, text_mask [B, Lt] | None,
    image_tokens [B, Li, d] | None, image_mask [B, Li] | None) -> [B, d]``. A mask of None means
    all tokens of that modality are valid; a modality given as None is absent for every item.
    """

    def __init__(self, config: FusionConfig):
        super().__init__()
        config.validate()
        self.config = config
        self.token_type = nn.Embedding(2, config.dim)
        self.blocks = nn.ModuleList(
            TransformerBlock(config.dim, config.num_heads, config.ffn_dim or 4 * config.dim, config.dropout, config.layer_norm_eps)
            for _ in range(config.num_layers)
        )
        self.apply(_bert_init)

    def forward(
        self,
        text_tokens: Tensor | None,
        text_mask: Tensor | None,
        image_tokens: Tensor | None,
        image_mask: Tensor | None = None,
    ) -> Tensor:
        parts, masks = [], []
        for type_id, tokens, mask in ((0, text_tokens, text_mask), (1, image_tokens, image_mask)):
            if tokens is None:
                continue
            parts.append(tokens + self.token_type.weight[type_id])
            masks.append(mask.bool() if mask is not None else tokens.new_ones(tokens.shape[:2], dtype=torch.bool))
        if not parts:
            raise ValueError("fusion needs text tokens, image tokens or both")
        x, mask = torch.cat(parts, dim=1), torch.cat(masks, dim=1)
        for block in self.blocks:
            x = block(x, mask)
        return masked_token_mean(x, mask)


def text_only(text_tokens: Tensor, text_mask: Tensor) -> Tensor:
    """PMMRec's text-only tower: masked mean of the projected text tokens, ``[B, Lt, d] -> [B, d]``."""
    return masked_token_mean(text_tokens, text_mask)


def image_only(image_tokens: Tensor, image_mask: Tensor | None = None) -> Tensor:
    """PMMRec's image-only tower: mean of the projected image tokens, ``[B, Li, d] -> [B, d]``."""
    return masked_token_mean(image_tokens, image_mask)
