"""The user encoder: a Transformer over the item vectors of a sequence.

Causal mode is SASRec (each position sees its past, predicting the next item at every position);
bidirectional mode is the BERT-style encoder of TransRec (the user vector is the state at the
last history position). Learned absolute positions, counted from the start of the sequence as in
SASRec, and an optional embedding of each item's domain (for mixed multi-domain flows).

Two paths compute the same function (``jagged`` selects; tested against each other):

- ``jagged: true`` (default): the token-wise layers (attention's input and output projections,
  the feed-forward block, the LayerNorms, dropout) run on the ``sum L`` real tokens only; only
  the attention itself pads, to ``[B, heads, L_max, L_max]``, with the causal and key-padding
  masks. Real sequences are short and skewed (Scientific: mean 4, a batch of 512 is 88% padding
  at ``L_max``), so this skips most of the work of the padded path;
- ``jagged: false``: the reference, ``torch.nn.TransformerEncoder`` over the right-padded batch.

Both use the same ``nn.TransformerEncoderLayer`` parameters (one state-dict layout).

Host syncs: the attention width is the batch's longest sequence. Given as ``max_length`` (a host
integer: the loader computes it once per batch, :attr:`~industrial.data.batch.SequenceBatch.max_history_length`),
a forward on a GPU reads nothing back from the device; without it, the forward reads the lengths'
minimum and maximum back once (one sync per forward, also checking them). On the CPU the lengths are
always checked (it costs nothing there).

Example::

    encoder = UserEncoder(UserEncoderConfig(dim=64, layers=2, heads=2, max_len=50))
    states = encoder(item_vectors, lengths)     # [sum(lengths), 64], one state per position
    users = encoder.last(states, lengths)       # [B, 64], the state at each last position
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class UserEncoderConfig:
    dim: int = 64  # hidden size (= item vector size)
    layers: int = 2  # Transformer blocks
    heads: int = 2  # attention heads per block
    inner_dim: int = 256  # feed-forward width
    dropout: float = 0.2  # dropout on embeddings, attention and feed-forward
    max_len: int = 50  # longest sequence (positions)
    causal: bool = True  # SASRec-style causal attention; False = bidirectional (BERT-style)
    num_domains: int = 0  # > 0 adds a learned domain embedding to every item vector
    norm_first: bool = False  # pre-LN blocks (more stable for deep stacks); SASRec uses post-LN
    jagged: bool = True  # token-wise layers on the real tokens only (False: the padded reference path)

    def validate(self) -> None:
        if self.dim % self.heads:
            raise ValueError(f"dim {self.dim} is not divisible by heads {self.heads}")
        if self.max_len < 1 or self.layers < 1:
            raise ValueError("max_len and layers must be >= 1")


def jagged_to_padded(values: torch.Tensor, lengths: torch.Tensor, max_len: int | None = None) -> torch.Tensor:
    """``[sum(lengths), D]`` -> ``[B, max_len, D]``, right-padded with zeros (differentiable).

    Without ``max_len`` the width is the longest row (read back from the device: one sync).
    """
    lengths = lengths.long()
    batch = lengths.numel()
    width = int(lengths.max().item()) if max_len is None and batch else (max_len or 0)
    rows, cols = jagged_index(lengths, values.shape[0])
    out = values.new_zeros((batch, width) + tuple(values.shape[1:]))
    out[rows, cols] = values
    return out


def jagged_index(lengths: torch.Tensor, total: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Row and column of every element of a jagged tensor with these ``lengths``.

    ``total`` (``sum(lengths)``, known on the host, e.g. the values' row count) spares the device
    sync that sizing the output from the lengths would cost.
    """
    lengths = lengths.long()
    rows = torch.repeat_interleave(torch.arange(lengths.numel(), device=lengths.device), lengths, output_size=total)
    starts = torch.cumsum(lengths, 0) - lengths
    cols = torch.arange(rows.numel(), device=lengths.device) - starts[rows]
    return rows, cols


class UserEncoder(nn.Module):
    """Transformer over item vectors; returns one state per (non-padding) position."""

    def __init__(self, config: UserEncoderConfig) -> None:
        super().__init__()
        config.validate()
        self.config = config
        self.positions = nn.Embedding(config.max_len, config.dim)
        self.domains = nn.Embedding(config.num_domains, config.dim) if config.num_domains > 0 else None
        self.norm = nn.LayerNorm(config.dim, eps=1e-12)
        self.dropout = nn.Dropout(config.dropout)
        block = nn.TransformerEncoderLayer(
            d_model=config.dim,
            nhead=config.heads,
            dim_feedforward=config.inner_dim,
            dropout=config.dropout,
            activation="gelu",
            batch_first=True,
            norm_first=config.norm_first,
            layer_norm_eps=1e-12,
        )
        self.blocks = nn.TransformerEncoder(block, num_layers=config.layers, enable_nested_tensor=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Normal(0, 0.02) weights, zero biases, unit LayerNorms (SASRec / BERT initialisation)."""
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=0.02)
                if isinstance(module, nn.Linear) and module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(
        self,
        item_vectors: torch.Tensor,
        lengths: torch.Tensor,
        domain_ids: torch.Tensor | None = None,
        max_length: int | None = None,
    ) -> torch.Tensor:
        """``item_vectors [sum L, D]`` (jagged by ``lengths``) -> states ``[sum L, D]``.

        ``max_length``: the longest of ``lengths``, known on the host (the batch's
        ``max_history_length``); with it a GPU forward makes no host sync, and the caller vouches
        that every length is in ``1..max_length``. Without it the lengths are read back once.
        """
        width = self._width(lengths, max_length)
        rows, cols = jagged_index(lengths, item_vectors.shape[0])
        hidden = item_vectors + self.positions(cols)
        if self.domains is not None and domain_ids is not None:
            hidden = hidden + self.domains(domain_ids)
        hidden = self.dropout(self.norm(hidden))
        if self.config.jagged:
            return self._jagged_blocks(hidden, lengths, rows, cols, width)
        padded = jagged_to_padded(hidden, lengths, width)
        padding = torch.arange(width, device=lengths.device)[None, :] >= lengths[:, None]
        mask = None
        if self.config.causal:
            mask = torch.triu(torch.full((width, width), float("-inf"), device=padded.device), diagonal=1)
        out = self.blocks(padded, mask=mask, src_key_padding_mask=padding.float().masked_fill(padding, float("-inf")))
        return out[rows, cols]

    def _width(self, lengths: torch.Tensor, max_length: int | None) -> int:
        """The attention width: ``max_length``, else the longest sequence (one read of the lengths).

        The lengths are checked (>= 1, <= ``max_len``) whenever they are read: always on the CPU.
        """
        if max_length is None or lengths.device.type == "cpu":
            low, high = torch.stack(torch.aminmax(lengths)).tolist() if lengths.numel() else (1, 0)
            if low < 1:
                raise ValueError("every sequence needs at least one history item")
            if max_length is not None and high > max_length:
                raise ValueError(f"a sequence has {high} items, more than the batch's max_length={max_length}")
            max_length = high if max_length is None else max_length
        if max_length > self.config.max_len:
            raise ValueError(f"a sequence is longer than user.max_len={self.config.max_len}")
        return max_length

    def _jagged_blocks(
        self, x: torch.Tensor, lengths: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, width: int
    ) -> torch.Tensor:
        """The blocks of ``nn.TransformerEncoderLayer`` on jagged tokens ``x [sum L, D]``."""
        allowed = (torch.arange(width, device=x.device)[None, :] < lengths[:, None])[:, None, None, :]  # keys [B,1,1,W]
        if self.config.causal:
            allowed = allowed & torch.ones(width, width, dtype=torch.bool, device=x.device).tril()
        for layer in self.blocks.layers:
            if layer.norm_first:
                x = x + self._attention(layer, layer.norm1(x), allowed, rows, cols, width)
                x = x + self._feed_forward(layer, layer.norm2(x))
            else:
                x = layer.norm1(x + self._attention(layer, x, allowed, rows, cols, width))
                x = layer.norm2(x + self._feed_forward(layer, x))
        return x

    def _attention(
        self, layer: nn.TransformerEncoderLayer, x: torch.Tensor, allowed: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, width: int
    ) -> torch.Tensor:
        """``layer``'s self-attention block: projections on the tokens, attention padded."""
        attn = layer.self_attn
        heads, dim = self.config.heads, self.config.dim
        projected = F.linear(x, attn.in_proj_weight, attn.in_proj_bias)  # bf16 under autocast: pad in its dtype
        qkv = projected.new_zeros(allowed.shape[0], width, 3 * dim)
        qkv[rows, cols] = projected
        q, k, v = qkv.view(-1, width, 3, heads, dim // heads).permute(2, 0, 3, 1, 4)  # each [B, H, W, d]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, dropout_p=attn.dropout if self.training else 0.0)
        out = out.transpose(1, 2).reshape(-1, width, dim)[rows, cols]
        return layer.dropout1(attn.out_proj(out))

    @staticmethod
    def _feed_forward(layer: nn.TransformerEncoderLayer, x: torch.Tensor) -> torch.Tensor:
        return layer.dropout2(layer.linear2(layer.dropout(layer.activation(layer.linear1(x)))))

    @staticmethod
    def last(states: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The state at the last position of each sequence: ``[B, D]``."""
        ends = torch.cumsum(lengths.long(), 0) - 1
        return states[ends]
