"""Text item encoder: a transformers encoder, a pooling head and an output projection.

Given token states ``H = backbone(ids, mask) ∈ R^{B×L×h}`` the item vector is::

    cls:        v = H[:, 0]
    mean:       v = Σ_t m_t H_t / max(Σ_t m_t, 1e-9)            (sentence-transformers' mean pooling)
    attention:  v = AttentionPooling(H, m)                        (TransRec's head, below)
    output:     e = W_o v + b_o      (``out_dim`` set; W_o xavier-normal, b_o = 0 as in PMMRec)
                e = e / ||e||_2      (``normalize``)

The backbone is any transformers encoder (BERT, RoBERTa, XLM-R, MiniLM): the installed MiniLM, a
local folder, a hub name, or a transformers config (random init). ``trainable_top_layers`` keeps
the embeddings and all but the top N layers frozen (0: all frozen, -1: all train).

Example::

    enc = TextEncoder(TextEncoderConfig(encoder="minilm", pooling="mean", normalize=True))
    tokens = tokenize_texts(["red pen", "a box of 12 pencils"], enc.tokenizer, max_length=32)
    ids, mask = tokens.batch(torch.arange(2))
    vectors = enc(ids, mask)                 # [2, 384], unit norm
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from industrial.modules.pretrained import (
    MINILM,
    EncoderLoadError,
    EncoderSource,
    freeze_backbone,
    fully_frozen,
    keep_frozen_parts_in_eval,
    load_backbone,
    load_tokenizer,
)

log = logging.getLogger(__name__)


@dataclass
class TextEncoderConfig:
    """Configuration of :class:`TextEncoder`."""

    #: ``minilm`` (installed all-MiniLM-L6-v2), a local checkpoint folder, or a hub name.
    #: Ignored when ``model_config`` is set.
    encoder: str = MINILM
    #: A transformers config (with ``model_type``) to build the backbone with random initialisation.
    model_config: dict[str, Any] | None = None
    #: Where the tokenizer comes from; None: ``encoder`` (``minilm`` when built from ``model_config``).
    tokenizer: str | None = None
    #: Pooling of the token states: ``cls``, ``mean`` or ``attention`` (TransRec's head).
    pooling: Literal["cls", "mean", "attention"] = "mean"
    #: Output dimension (a Linear after the pooling); None keeps the pooled dimension.
    out_dim: int | None = None
    #: L2-normalise the output (sentence-transformers' Normalize).
    normalize: bool = False
    #: Backbone layers that train: 0 = frozen backbone, N = top N layers, -1 = everything.
    trainable_top_layers: int = 0
    #: Tokens per text (longer texts are truncated).
    max_length: int = 128
    #: Attention pooling: heads, dimension per head, additive-attention query dimension, dropout.
    attention_heads: int = 4
    attention_head_dim: int = 20
    attention_query_dim: int = 200
    attention_dropout: float = 0.1

    def validate(self) -> None:
        if self.max_length < 2:
            raise ValueError(f"max_length must be at least 2, got {self.max_length}")
        if self.out_dim is not None and self.out_dim <= 0:
            raise ValueError(f"out_dim must be positive, got {self.out_dim}")
        if self.trainable_top_layers < -1:
            raise ValueError(f"trainable_top_layers must be -1, 0 or positive, got {self.trainable_top_layers}")

    def tokenizer_source(self) -> str:
        if self.tokenizer is not None:
            return self.tokenizer
        return MINILM if self.model_config is not None else self.encoder


def masked_token_mean(states: Tensor, mask: Tensor | None) -> Tensor:
    """``Σ_t m_t x_t / max(Σ_t m_t, 1e-9)`` over dim 1 (a plain mean when ``mask`` is None).

    ``states`` is ``[B, L, D]``, ``mask`` ``[B, L]`` (nonzero = valid); an all-masked row gives zeros.
    """
    if mask is None:
        return states.mean(dim=1)
    m = mask.to(states.dtype).unsqueeze(-1)
    return (states * m).sum(dim=1) / m.sum(dim=1).clamp(min=1e-9)


class AttentionPooling(nn.Module):
    """TransRec's text head: multi-head self-attention over the tokens, then additive attention.

    With token states ``X ∈ R^{L×h}`` and key mask ``m``::

        Q_k, K_k, V_k = X W_Q^k, X W_K^k, X W_V^k                         (k = 1..heads, d = head_dim)
        C = concat_k softmax(Q_k K_k^T / √d  over valid keys) V_k          ∈ R^{L × heads·d}
        a_t = q^T tanh(W_1 c_t + b_1) + b_2,   α = softmax(a over valid t)
        v = Σ_t α_t c_t                                                   ∈ R^{heads·d}

    Dropout is applied to ``X`` and to ``C``. ``W_Q, W_K, W_V`` are xavier-uniform initialised.
    An all-masked row pools to zeros.

    Example::

        pool = AttentionPooling(hidden=768, heads=4, head_dim=20, query_dim=200)
        v = pool(states, mask)          # [B, 80]
    """

    def __init__(self, hidden: int, heads: int = 4, head_dim: int = 20, query_dim: int = 200, dropout: float = 0.1):
        super().__init__()
        self.heads, self.head_dim = heads, head_dim
        self.out_features = heads * head_dim
        self.w_q = nn.Linear(hidden, self.out_features)
        self.w_k = nn.Linear(hidden, self.out_features)
        self.w_v = nn.Linear(hidden, self.out_features)
        for lin in (self.w_q, self.w_k, self.w_v):
            nn.init.xavier_uniform_(lin.weight, gain=1.0)
        self.att_fc1 = nn.Linear(self.out_features, query_dim)
        self.att_fc2 = nn.Linear(query_dim, 1)
        self.dropout = nn.Dropout(dropout)

    def forward(self, states: Tensor, mask: Tensor) -> Tensor:
        """``states [B, L, h]``, ``mask [B, L]`` -> ``[B, heads·head_dim]``."""
        b, length, _ = states.shape
        valid = mask.bool()
        x = self.dropout(states)

        def split(t: Tensor) -> Tensor:
            return t.view(b, length, self.heads, self.head_dim).transpose(1, 2)

        q, k, v = split(self.w_q(x)), split(self.w_k(x)), split(self.w_v(x))
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.head_dim)
        scores = scores.masked_fill(~valid[:, None, None, :], torch.finfo(scores.dtype).min)
        attn = torch.softmax(scores, dim=-1) * valid[:, None, None, :]
        attn = attn / (attn.sum(dim=-1, keepdim=True) + 1e-8)
        context = (attn @ v).transpose(1, 2).reshape(b, length, self.out_features)
        context = self.dropout(context)
        logits = self.att_fc2(torch.tanh(self.att_fc1(context))).squeeze(-1)
        logits = logits.masked_fill(~valid, torch.finfo(logits.dtype).min)
        alpha = torch.softmax(logits, dim=-1) * valid
        alpha = alpha / (alpha.sum(dim=-1, keepdim=True) + 1e-8)
        return (alpha.unsqueeze(-1) * context).sum(dim=1)


def _usable_positions(model_config: Any) -> int | None:
    """Token positions a text backbone accepts (RoBERTa-style models reserve pad_token_id + 1)."""
    positions = getattr(model_config, "max_position_embeddings", None)
    if positions is None:
        return None
    if getattr(model_config, "model_type", "") in ("roberta", "xlm-roberta", "camembert"):
        return int(positions) - int(getattr(model_config, "pad_token_id", 1) or 1) - 1
    return int(positions)


def xavier_linear(in_features: int, out_features: int) -> nn.Linear:
    """``Linear`` with xavier-normal weight and zero bias (PMMRec's projection init)."""
    lin = nn.Linear(in_features, out_features)
    nn.init.xavier_normal_(lin.weight)
    nn.init.zeros_(lin.bias)
    return lin


class TextEncoder(nn.Module):
    """Item text -> vector: transformers backbone, pooling (cls / mean / attention), projection.

    ``forward(input_ids [B, L], attention_mask [B, L]) -> [B, out_features]``;
    ``token_states(input_ids, attention_mask) -> [B, L, out_features]`` (projected token states for
    fusion; needs ``cls`` or ``mean`` pooling, whose projection applies token-wise).

    ``backbone`` may be given directly (a transformers encoder); otherwise it is loaded from the
    config. The tokenizer is loaded lazily (``.tokenizer``).

    Example::

        enc = TextEncoder(TextEncoderConfig(pooling="attention", out_dim=256, trainable_top_layers=2))
        v = enc(ids, mask)                        # [B, 256]
    """

    def __init__(self, config: TextEncoderConfig, backbone: nn.Module | None = None):
        super().__init__()
        config.validate()
        self.config = config
        if backbone is None:
            backbone, source = load_backbone(
                name=None if config.model_config is not None else config.encoder, config=config.model_config
            )
        else:
            source = EncoderSource("given", type(backbone).__name__)
        self.source = source
        self.backbone = backbone
        self.hidden_size = int(backbone.config.hidden_size)
        positions = _usable_positions(backbone.config)
        if positions is not None and config.max_length > positions:
            raise ValueError(f"max_length {config.max_length} exceeds the {positions} positions of encoder {source.describe()}")
        freeze_backbone(self.backbone, config.trainable_top_layers)
        if config.pooling == "attention":
            self.head: nn.Module | None = AttentionPooling(
                self.hidden_size,
                config.attention_heads,
                config.attention_head_dim,
                config.attention_query_dim,
                config.attention_dropout,
            )
            pooled = self.head.out_features
        elif config.pooling in ("cls", "mean"):
            self.head = None
            pooled = self.hidden_size
        else:
            raise ValueError(f"text pooling must be cls, mean or attention, got {config.pooling!r}")
        self.proj: nn.Module = xavier_linear(pooled, config.out_dim) if config.out_dim else nn.Identity()
        self.out_features = config.out_dim or pooled
        self._tokenizer: Any = None
        keep_frozen_parts_in_eval(self.backbone)

    @property
    def tokenizer(self) -> Any:
        """The tokenizer (``config.tokenizer``, else the encoder's own, else MiniLM's for a config)."""
        if self._tokenizer is None:
            self._tokenizer = load_tokenizer(self.config.tokenizer_source())
            vocab = int(getattr(self.backbone.config, "vocab_size", 0) or 0)
            if vocab and len(self._tokenizer) > vocab:
                raise EncoderLoadError(
                    f"tokenizer {self.config.tokenizer_source()!r} has {len(self._tokenizer)} tokens but the "
                    f"encoder's vocab_size is {vocab}"
                )
        return self._tokenizer

    def train(self, mode: bool = True) -> TextEncoder:
        super().train(mode)
        keep_frozen_parts_in_eval(self.backbone)
        return self

    def hidden_states(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """Backbone token states ``[B, L, hidden]`` (without gradient when the backbone is frozen)."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and not fully_frozen(self.backbone)):
            out = self.backbone(input_ids=input_ids, attention_mask=attention_mask)
        return out.last_hidden_state

    def pool(self, states: Tensor, attention_mask: Tensor) -> Tensor:
        """Pool token states ``[B, L, hidden]`` into ``[B, pooled]``."""
        if self.config.pooling == "cls":
            return states[:, 0]
        if self.config.pooling == "mean":
            return masked_token_mean(states, attention_mask)
        assert self.head is not None
        return self.head(states, attention_mask)

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """``[B, L]`` token ids and mask -> item vectors ``[B, out_features]``."""
        vectors = self.proj(self.pool(self.hidden_states(input_ids, attention_mask), attention_mask))
        return F.normalize(vectors, dim=-1) if self.config.normalize else vectors

    def token_states(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """Projected token states ``[B, L, out_features]`` (the text tokens of fusion)."""
        if self.config.pooling == "attention":
            raise ValueError("token_states needs pooling 'cls' or 'mean': the attention head projects pooled vectors")
        return self.proj(self.hidden_states(input_ids, attention_mask))


@dataclass
class TokenizedTexts:
    """A catalogue's texts tokenized once: ``input_ids`` / ``attention_mask`` ``[N, max_length]``.

    Rows of missing texts are all padding (``lengths == 0``, ``present`` False). :meth:`batch`
    slices rows and trims them to the longest row of the batch, so short texts cost little.
    Saved with :meth:`save` and read back with :meth:`load` to tokenize a catalogue only once.
    """

    input_ids: Tensor  # int32 [N, L]
    attention_mask: Tensor  # bool [N, L]
    pad_token_id: int = 0
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def lengths(self) -> Tensor:
        return self.attention_mask.sum(dim=1)

    @property
    def present(self) -> Tensor:
        return self.lengths > 0

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])

    def batch(self, index: Tensor | Sequence[int]) -> tuple[Tensor, Tensor]:
        """Rows ``index`` as ``(input_ids int64 [B, T], attention_mask int64 [B, T])``, T = longest row."""
        index = torch.as_tensor(index, dtype=torch.long)
        mask = self.attention_mask[index]
        width = max(int(mask.sum(dim=1).max()) if len(index) else 0, 1)
        return self.input_ids[index, :width].long(), mask[:, :width].long()

    def save(self, path: str | Path) -> None:
        torch.save(
            {"input_ids": self.input_ids, "attention_mask": self.attention_mask, "pad_token_id": self.pad_token_id, "meta": self.meta},
            path,
        )

    @classmethod
    def load(cls, path: str | Path) -> TokenizedTexts:
        data = torch.load(path, weights_only=True)
        return cls(data["input_ids"], data["attention_mask"], int(data["pad_token_id"]), dict(data["meta"]))


def tokenize_texts(
    texts: Sequence[str | None], tokenizer: Any, max_length: int, batch_size: int = 2048
) -> TokenizedTexts:
    """Tokenize every text to ``max_length`` tokens (truncating); None or blank texts become empty rows."""
    n = len(texts)
    pad = int(tokenizer.pad_token_id or 0)
    input_ids = torch.full((n, max_length), pad, dtype=torch.int32)
    attention_mask = torch.zeros((n, max_length), dtype=torch.bool)
    rows = [i for i, t in enumerate(texts) if t is not None and t.strip()]
    for start in range(0, len(rows), batch_size):
        part = rows[start : start + batch_size]
        enc = tokenizer(
            [texts[i] for i in part], max_length=max_length, truncation=True, padding="max_length", return_tensors="pt"
        )
        input_ids[part] = enc["input_ids"].to(torch.int32)
        attention_mask[part] = enc["attention_mask"].bool()
    name = getattr(tokenizer, "name_or_path", type(tokenizer).__name__)
    return TokenizedTexts(input_ids, attention_mask, pad, {"tokenizer": str(name), "max_length": max_length})
