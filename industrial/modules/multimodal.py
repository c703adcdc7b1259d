"""Multi-modal item encoder: item vectors computed end to end from the catalogue's texts and images.

``model.item.kind: multimodal``. Every item may have text, an image, both or neither. The text
encoder (:class:`~industrial.modules.text.TextEncoder`) and the vision encoder
(:class:`~industrial.modules.vision.VisionEncoder`) both project to the user encoder's width
``D``; ``combine`` says how an item's modalities become one vector:

``fusion`` (PMMRec)
    text token states ``T = W_t H_text`` and image token states ``I = W_v H_image`` go through
    :class:`~industrial.modules.fusion.MergeAttentionFusion` (token-type embedding, BERT blocks,
    masked mean over all tokens). Items with one modality use PMMRec's single-modality towers
    (``single_modality: tower``): ``t = masked mean of T`` (text only), ``v = mean of I`` (image
    only); ``single_modality: fusion`` runs them through the fusion block with the absent
    modality masked out instead.
``mixture`` (TransRec)
    text vector ``t = W_o AttentionPooling(BERT(tokens))`` (TransRec's head; any text pooling
    works), image vector ``v = W_v pool(ResNet(pixels))`` (TransRec: average pool then a linear
    layer). With ``modality_embedding`` a learned type vector is added: ``t' = t + E_text``,
    ``v' = v + E_image`` (TransRec's optional ``modal_embeddings``). An item with both gets
    ``both: mean`` ``(t' + v') / 2`` (TransRec's own data never has both: each item is a news
    text or a video cover), or only ``text`` / ``image``.

**Missing content, counted.** An item with neither text nor image gets one learned vector
``no_content`` (zero at init); the build logs how many items have both, text only, image only,
neither, and how many images could not be read (``on_image_error: missing`` counts them and treats
the item as image-less; ``raise`` stops with the item id and path).

**Per-modality vectors** (for NICL): :meth:`encode_modalities` returns ``text [n, D]`` and
``image [n, D]`` beside the item vectors, with ``has_text`` / ``has_image`` masks: in ``fusion``
mode the towers' ``masked mean(T)`` and ``mean(I)``, in ``mixture`` mode ``t`` and ``v``.

**Cost.** The catalogue is tokenized once (``input_ids`` / ``attention_mask`` buffers, not saved in
checkpoints) and its images decoded and resized once into a uint8 buffer
(:class:`~industrial.data.images.ImageBuffer`). A batch encodes each *distinct* item it
mentions once, in sub-batches of ``encode_batch``. A **fully frozen** backbone
(``trainable_top_layers: 0``) is a fixed function, so its outputs (text token states, image
tokens or pooled features) are computed once per item and kept (``cache_frozen``, bounded by
``cache_max_mb``; recomputed if the backbone's weights are ever written, e.g. by a checkpoint
load). In evaluation (eval mode, no gradient) each item's final vector is computed once per
evaluation, so ranking the catalogue and reading the users' histories share the work.

**Static graph.** DMP wraps the dense modules in DDP with ``static_graph``, which needs the same
parameters used at every step. A batch without any image item (or any item lacking content)
would leave the vision encoder (or ``no_content``) unused; such parts are added to the vectors
times zero, so every trainable parameter always takes part (with a zero gradient).

Example::

    root = "data/prepared/ml100k"                # the catalogue is read in data/, the builder gets it
    items = build_multimodal_items(MultiModalConfig(combine="fusion", vision=VisionEncoderConfig(model_config=VIT)), dim=64,
                                   texts=read_item_texts(root, 1682), images=ItemImages.from_dataset(root))
    vectors = items(batch.items)                 # {"history": [n_h, 64], "target": ..., ...}
    parts = items.encode_modalities(item_ids)    # .vectors, .text, .image, .has_text, .has_image
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from industrial.data.images import ImageBuffer, ImageTransform, ItemImages, resized
from industrial.modules.fusion import FusionConfig, MergeAttentionFusion, image_only, text_only
from industrial.modules.pretrained import fully_frozen
from industrial.modules.item_encoder import ItemEncoderInterface, ItemVectors
from industrial.modules.text import TextEncoder, TextEncoderConfig, TokenizedTexts, tokenize_texts
from industrial.modules.vision import VisionEncoder, VisionEncoderConfig

log = logging.getLogger(__name__)

COMBINE = ("fusion", "mixture")


@dataclass
class MultiModalConfig:
    """``model.item.multimodal``: the encoders and how an item's modalities combine."""

    #: fusion (PMMRec merge-attention over text and image tokens) or mixture (TransRec: text
    #: vector or image vector, mean for items with both)
    combine: Literal["fusion", "mixture"] = "fusion"
    #: text encoder (out_dim is set to model.user.dim); fusion needs pooling mean or cls (token
    #: states), mixture uses the pooled vector (TransRec: attention)
    text: TextEncoderConfig = field(default_factory=lambda: TextEncoderConfig(pooling="mean", max_length=32))
    #: vision encoder (out_dim is set to model.user.dim): a local checkpoint / hub name, or a
    #: transformers config (random init); no vision weights are installed
    vision: VisionEncoderConfig = field(default_factory=VisionEncoderConfig)
    #: side of the square images fed to the vision encoder; None: the encoder's own input size
    image_size: int | None = None
    #: fusion block (its dim is set to model.user.dim; num_heads must divide it)
    fusion: FusionConfig = field(default_factory=lambda: FusionConfig(dim=64, num_heads=2))
    #: fusion: items with one modality use the single-modality tower (PMMRec) or the fusion block
    single_modality: Literal["tower", "fusion"] = "tower"
    #: mixture: an item with text and image gets the mean of both vectors, or only one of them
    both: Literal["mean", "text", "image"] = "mean"
    #: mixture: add a learned modality-type embedding to the text / image vectors (TransRec)
    modality_embedding: bool = False
    #: an unreadable image: raise (naming item and path) or count it and treat the item as image-less
    on_image_error: Literal["raise", "missing"] = "raise"
    #: items per encoder call (bounds activation memory)
    encode_batch: int = 256
    #: keep the outputs of a fully frozen backbone per item (computed once)
    cache_frozen: bool = True
    #: largest cache of frozen outputs per encoder, MiB (above it: recomputed every time)
    cache_max_mb: float = 1024.0
    #: largest decoded-image buffer, MiB (the build refuses a larger one)
    image_buffer_max_mb: float = 8192.0

    def validate(self) -> None:
        if self.combine not in COMBINE:
            raise ValueError(f"combine must be one of {COMBINE}, got {self.combine!r}")
        self.text.validate()
        self.vision.validate()
        if self.combine == "fusion" and self.text.pooling == "attention":
            raise ValueError("combine=fusion fuses text token states: text.pooling must be mean or cls, not attention")
        if self.image_size is not None and self.image_size < 8:
            raise ValueError(f"image_size must be at least 8, got {self.image_size}")
        if self.encode_batch < 1:
            raise ValueError(f"encode_batch must be >= 1, got {self.encode_batch}")


def _put(base: Tensor, rows: Tensor, values: Tensor) -> Tensor:
    """``base`` with ``rows`` replaced by ``values`` (out of place; bf16 autocast outputs cast to ``base``'s dtype)."""
    return base.index_copy(0, rows, values.to(base.dtype))


def _version(module: nn.Module) -> int:
    """Sum of the in-place version counters of ``module``'s parameters: changes whenever any is written."""
    return sum(p._version for p in module.parameters())


class ItemCache:
    """Rows per item computed lazily, kept until ``key`` changes (see the module docstring).

    ``get(ids, key, compute)`` returns ``[n, ...]`` for ``ids``, calling ``compute(missing_ids)``
    (without gradient) for the ids not stored yet. ``width`` fixes dim 1 of the store (text: the
    tokenized length; a computed block may be narrower, the rest is padding). A store above
    ``max_mb`` is not kept: every call computes.
    """

    def __init__(self, num_items: int, name: str, max_mb: float, width: int | None = None) -> None:
        self.num_items, self.name, self.max_mb, self.width = num_items, name, max_mb, width
        self.store: Tensor | None = None
        self.filled: Tensor | None = None
        self.key: object = None
        self.disabled = False

    def clear(self) -> None:
        self.store, self.filled, self.key = None, None, None

    def get(self, ids: Tensor, key: object, compute: Callable[[Tensor], Tensor]) -> Tensor:
        if self.disabled:
            return compute(ids)
        if key != self.key or (self.filled is not None and self.filled.device != ids.device):
            self.clear()
            self.key = key
        missing = torch.unique(ids if self.filled is None else ids[~self.filled[ids]])
        if missing.numel():
            with torch.no_grad():
                block = compute(missing)
            if self.store is None:
                tail = tuple(block.shape[1:])
                if self.width is not None:
                    tail = (self.width,) + tail[1:]
                mb = self.num_items * block.element_size() * int(torch.tensor(tail).prod()) / 2**20
                if mb > self.max_mb:
                    self.disabled = True
                    log.info("%s cache not kept: %.0f MiB above cache_max_mb=%.0f; recomputing every time", self.name, mb, self.max_mb)
                    return compute(ids)
                self.store = block.new_zeros((self.num_items,) + tail)
                self.filled = torch.zeros(self.num_items, dtype=torch.bool, device=ids.device)
            if self.width is not None:
                self.store[missing, : block.shape[1]] = block
            else:
                self.store[missing] = block
            self.filled[missing] = True
        assert self.store is not None
        return self.store[ids]


class MultiModalItemEncoder(ItemEncoderInterface):
    """Item vectors from text and / or image, fused (PMMRec) or mixed (TransRec); see the module docstring.

    The one item encoder with per-modality vectors (``has_modalities``); ``forward`` is the
    interface's (each distinct item of a batch encoded once through :meth:`encode`).
    """

    has_modalities = True

    def __init__(
        self,
        config: MultiModalConfig,
        text_encoder: TextEncoder,
        vision_encoder: VisionEncoder,
        tokens: TokenizedTexts,
        images: ImageBuffer,
        dim: int,
        fusion: MergeAttentionFusion | None = None,
    ) -> None:
        super().__init__()
        if len(tokens) != len(images):
            raise ValueError(f"{len(tokens)} tokenized texts but {len(images)} image rows")
        for name, width in (("text", text_encoder.out_features), ("vision", vision_encoder.out_features)):
            if width != dim:
                raise ValueError(f"the {name} encoder outputs {width}-d vectors, the item vectors are {dim}-d")
        if config.combine == "fusion" and (fusion is None or fusion.config.dim != dim):
            raise ValueError(f"combine=fusion needs a MergeAttentionFusion of dim {dim}")
        self.config = config
        self.dim = dim
        self.num_items = len(tokens)
        self.text_encoder = text_encoder
        self.vision_encoder = vision_encoder
        self.fusion = fusion if config.combine == "fusion" else None
        self.no_content = nn.Parameter(torch.zeros(dim))
        self.modality_embedding: nn.Embedding | None = None
        if config.combine == "mixture" and config.modality_embedding:
            self.modality_embedding = nn.Embedding(2, dim)
            nn.init.normal_(self.modality_embedding.weight, std=0.02)
        self.register_buffer("input_ids", tokens.input_ids, persistent=False)
        self.register_buffer("attention_mask", tokens.attention_mask, persistent=False)
        self.register_buffer("image_present", images.present.clone(), persistent=False)
        self.images = images  # CPU uint8; the batch's pixels move to the model's device
        self.max_length = int(tokens.input_ids.shape[1])
        self._text_cache = ItemCache(self.num_items, "frozen text", config.cache_max_mb, width=self.max_length)
        self._image_cache = ItemCache(self.num_items, "frozen image", config.cache_max_mb)
        self._eval_memo = ItemCache(self.num_items, "evaluation item vector", float("inf"))
        has_text, has_image = tokens.present, images.present
        self.content_counts = {
            "items": self.num_items,
            "text_and_image": int((has_text & has_image).sum()),
            "text_only": int((has_text & ~has_image).sum()),
            "image_only": int((~has_text & has_image).sum()),
            "no_content": int((~has_text & ~has_image).sum()),
            "unreadable_images": len(images.failures),
        }
        log.info(
            "multimodal items (%s): %s; text encoder %s; vision encoder %s",
            config.combine,
            ", ".join(f"{k} {v}" for k, v in self.content_counts.items()),
            text_encoder.source.describe(),
            vision_encoder.source.describe(),
        )
        if self.content_counts["no_content"]:
            log.warning("%d items have neither text nor image: they share the learned no_content vector", self.content_counts["no_content"])

    # ------------------------------------------------------------------ modes
    def train(self, mode: bool = True) -> MultiModalItemEncoder:
        super().train(mode)  # the encoders keep their frozen parts in eval mode themselves
        self._eval_memo.clear()
        return self

    # ------------------------------------------------------------------ backbones
    def _use_cache(self, backbone: nn.Module) -> bool:
        return self.config.cache_frozen and fully_frozen(backbone)

    def _text_states(self, ids: Tensor) -> tuple[Tensor, Tensor]:
        """Backbone token states ``[n, W, h]`` and mask ``[n, W]`` (W: the longest text of ``ids``)."""
        mask = self.attention_mask[ids]
        width = max(int(mask.sum(dim=1).max()), 1)
        backbone = self.text_encoder.backbone

        def compute(rows: Tensor) -> Tensor:
            m = self.attention_mask[rows]
            w = max(int(m.sum(dim=1).max()), 1)
            return self.text_encoder.hidden_states(self.input_ids[rows, :w].long(), m[:, :w].long())

        if self._use_cache(backbone):
            states = self._text_cache.get(ids, _version(backbone), compute)[:, :width]
        else:
            states = compute(ids)
        return states, mask[:, :width]

    def _image_features(self, ids: Tensor, tokens: bool) -> Tensor:
        """Backbone image token states ``[n, P, h]`` (``tokens``) or pooled features ``[n, h]``."""
        enc = self.vision_encoder
        device = self.no_content.device

        def compute(rows: Tensor) -> Tensor:
            out = enc._backbone(self.images.pixels(rows).to(device, non_blocking=True))
            return enc._tokens(enc.family, out) if tokens else enc._pooled(out)

        if self._use_cache(enc.backbone):
            return self._image_cache.get(ids, _version(enc.backbone), compute)
        return compute(ids)

    # ------------------------------------------------------------------ modalities
    def _text_vectors(self, ids: Tensor) -> Tensor:
        enc = self.text_encoder
        states, mask = self._text_states(ids)
        vectors = enc.proj(enc.pool(states, mask.long()))
        return F.normalize(vectors, dim=-1) if enc.config.normalize else vectors

    def _image_vectors(self, ids: Tensor) -> Tensor:
        enc = self.vision_encoder
        vectors = enc.proj(self._image_features(ids, tokens=False))
        return F.normalize(vectors, dim=-1) if enc.config.normalize else vectors

    def _encode_chunk(self, ids: Tensor) -> tuple[ItemVectors, set[str]]:
        n, used = ids.numel(), set()
        has_text = self.attention_mask[ids].any(dim=1)
        has_image = self.image_present[ids]
        t_rows = torch.nonzero(has_text).flatten()
        i_rows = torch.nonzero(has_image).flatten()
        zeros = self.no_content.new_zeros((n, self.dim))
        text, image = zeros, zeros
        if self.config.combine == "mixture":
            if t_rows.numel():
                text = _put(zeros, t_rows, self._text_vectors(ids[t_rows]))
                used.add("text")
            if i_rows.numel():
                image = _put(zeros, i_rows, self._image_vectors(ids[i_rows]))
                used.add("image")
            text_in, image_in = text, image
            if self.modality_embedding is not None and used:
                text_in = text + self.modality_embedding.weight[0]
                image_in = image + self.modality_embedding.weight[1]
                used.add("modality_embedding")
            t = has_text[:, None].to(zeros.dtype)
            v = has_image[:, None].to(zeros.dtype)
            if self.config.both == "text":
                v = v * (1 - t)
            elif self.config.both == "image":
                t = t * (1 - v)
            vectors = (t * text_in + v * image_in) / (t + v).clamp(min=1.0)
        else:
            assert self.fusion is not None
            text_tokens = text_mask = image_tokens = image_mask = None
            if t_rows.numel():
                states, mask = self._text_states(ids[t_rows])
                tokens = self.text_encoder.proj(states)
                text = _put(zeros, t_rows, text_only(tokens, mask))
                text_tokens = tokens.new_zeros((n,) + tuple(tokens.shape[1:])).index_copy(0, t_rows, tokens)
                text_mask = mask.new_zeros((n, mask.shape[1])).index_copy(0, t_rows, mask)
                used.add("text")
            if i_rows.numel():
                tokens = self.vision_encoder.proj(self._image_features(ids[i_rows], tokens=True))
                image = _put(zeros, i_rows, image_only(tokens))
                image_tokens = tokens.new_zeros((n,) + tuple(tokens.shape[1:])).index_copy(0, i_rows, tokens)
                image_mask = has_image[:, None].expand(n, tokens.shape[1])
                used.add("image")
            vectors = torch.where(has_text[:, None], text, image)
            fuse = has_text & has_image if self.config.single_modality == "tower" else has_text | has_image
            rows = torch.nonzero(fuse).flatten()
            if rows.numel():
                fused = self.fusion(
                    None if text_tokens is None else text_tokens[rows],
                    None if text_mask is None else text_mask[rows],
                    None if image_tokens is None else image_tokens[rows],
                    None if image_mask is None else image_mask[rows],
                )
                vectors = _put(vectors, rows, fused)
                used.add("fusion")
        none = ~(has_text | has_image)
        if bool(none.any()):
            vectors = torch.where(none[:, None], self.no_content.expand(n, -1).to(vectors.dtype), vectors)
            used.add("no_content")
        return ItemVectors(vectors, text, image, has_text, has_image), used

    def _parts(self) -> dict[str, list[nn.Parameter]]:
        parts = {
            "text": list(self.text_encoder.parameters()),
            "image": list(self.vision_encoder.parameters()),
            "fusion": list(self.fusion.parameters()) if self.fusion is not None else [],
            "modality_embedding": list(self.modality_embedding.parameters()) if self.modality_embedding is not None else [],
            "no_content": [self.no_content],
        }
        return {name: [p for p in params if p.requires_grad] for name, params in parts.items()}

    def encode_modalities(self, ids: Tensor) -> ItemVectors:
        """Item and per-modality vectors of distinct item ids ``[n]`` (module docstring)."""
        chunks, used = [], set()
        # near-equal chunks of at most encode_batch items (no tiny remainder: BatchNorm in training
        # mode needs more than one value per channel)
        size = -(-ids.numel() // max(-(-ids.numel() // self.config.encode_batch), 1)) if ids.numel() else 1
        for start in range(0, max(ids.numel(), 1), size):
            part, part_used = self._encode_chunk(ids[start : start + size])
            chunks.append(part)
            used |= part_used
        out = chunks[0] if len(chunks) == 1 else ItemVectors(*(torch.cat([getattr(c, f) for c in chunks]) for f in ItemVectors.__dataclass_fields__))
        if torch.is_grad_enabled():
            idle = [p for name, params in self._parts().items() if name not in used for p in params]
            if idle:  # keep DDP's static graph: every trainable parameter takes part (zero gradient)
                out.vectors = out.vectors + sum(p.sum() for p in idle) * 0.0
        return out

    def encode(self, ids: Tensor) -> Tensor:
        """Vectors of distinct item ids ``[n, D]`` (memoised per evaluation in eval mode without gradient)."""
        if not self.training and not torch.is_grad_enabled():
            return self._eval_memo.get(ids, _version(self), lambda rows: self.encode_modalities(rows).vectors)
        return self.encode_modalities(ids).vectors


def _check_input_size(encoder: VisionEncoder, side: int) -> None:
    """ViT / CLIP position embeddings fix the input size; refuse another one before training starts."""
    expected = getattr(encoder.backbone.config, "image_size", None)
    if encoder.family in ("vit", "clip") and expected is not None and int(expected) != side:
        raise ValueError(
            f"the {encoder.family} vision encoder takes {expected}x{expected} images but image_size is {side}: "
            f"set model.item.multimodal.image_size to {expected} (or build the encoder with image_size {side})"
        )


def build_multimodal_items(config: MultiModalConfig, dim: int, texts: list[str | None], images: ItemImages) -> MultiModalItemEncoder:
    """The encoders, the catalogue tokenized once and its images decoded once (module docstring).

    ``texts`` (None: no text) and ``images`` are the catalogue's by item id, read by the caller
    (:func:`industrial.data.items.read_item_texts`, :meth:`industrial.data.images.ItemImages.from_dataset`);
    the images are decoded and resized here, to the vision encoder's input."""
    config.validate()
    text_encoder = TextEncoder(replace(config.text, out_dim=dim))
    vision_encoder = VisionEncoder(replace(config.vision, out_dim=dim))
    transform = vision_encoder.transform.config
    if config.image_size is not None:
        transform = resized(transform, config.image_size)
    _check_input_size(vision_encoder, transform.crop)
    vision_encoder.transform = ImageTransform(transform)
    tokens = tokenize_texts(texts, text_encoder.tokenizer, config.text.max_length)
    buffer = ImageBuffer.from_images(images, transform, config.image_buffer_max_mb)
    fusion = MergeAttentionFusion(replace(config.fusion, dim=dim)) if config.combine == "fusion" else None
    return MultiModalItemEncoder(config, text_encoder, vision_encoder, tokens, buffer, dim, fusion)
