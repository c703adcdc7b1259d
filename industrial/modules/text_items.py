"""Item vectors computed end to end from the item's text (MoRec / TransRec / PMMRec item side).

The catalogue is tokenized once (``[N, max_length]`` ids and mask, kept as buffers, not saved in
checkpoints); each batch encodes every *distinct* item it mentions once, whatever the number of
roles and repetitions, through a :class:`~industrial.modules.text.TextEncoder` whose top layers
train. Items without text get one learned "missing text" vector.

Example::

    tokens = tokenize_texts(texts, encoder.tokenizer, max_length=64)
    items = TextItemEncoder(TextEncoder(TextEncoderConfig(out_dim=64, trainable_top_layers=2)), tokens, dim=64)
    vectors = items(batch.items)            # {"history": [n_h, 64], "target": ..., ...}
"""

from __future__ import annotations

import torch
from torch import nn

from industrial.modules.item_encoder import ItemEncoderInterface
from industrial.modules.text import TextEncoder, TokenizedTexts


class TextItemEncoder(ItemEncoderInterface):
    """``v_i = TextEncoder(tokens_i)`` for items with text, a learned vector otherwise (``forward``: the interface's)."""

    def __init__(self, encoder: TextEncoder, tokens: TokenizedTexts, dim: int, encode_batch: int = 256) -> None:
        super().__init__()
        self.encoder = encoder
        self.dim = dim
        self.num_items = len(tokens)
        self.encode_batch = encode_batch
        self.register_buffer("input_ids", tokens.input_ids, persistent=False)
        self.register_buffer("attention_mask", tokens.attention_mask, persistent=False)
        self.missing = nn.Parameter(torch.zeros(dim))

    def encode(self, ids: torch.Tensor) -> torch.Tensor:
        """Vectors of the given (distinct) item ids, ``[n, dim]``, in sub-batches of ``encode_batch``."""
        out = self.missing.expand(ids.numel(), -1).clone() if ids.numel() else self.missing.new_zeros((0, self.dim))
        present = self.attention_mask[ids].any(dim=1)
        rows = torch.nonzero(present).flatten()
        for start in range(0, rows.numel(), self.encode_batch):
            part = rows[start : start + self.encode_batch]
            item_ids = ids[part]
            mask = self.attention_mask[item_ids]
            width = int(mask.sum(dim=1).max())
            out[part] = self.encoder(self.input_ids[item_ids, :width].long(), mask[:, :width].long())
        return out
