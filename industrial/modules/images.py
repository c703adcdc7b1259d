"""Item images: decode with Pillow, transform with torch (resize, center-crop, normalise).

An item's image is either a file (``image_path``, relative to ``meta.json``'s ``image_root``) or
encoded bytes in ``items.parquet`` (``image_bytes``); an item with neither has no image. A file that
is missing or cannot be decoded raises :class:`ImageError` naming the item and the path, or, with
``on_error="missing"``, is reported back as missing (``None``) and recorded in ``failures``: the
caller decides.

The transform (torchvision's ``Resize(resize) → CenterCrop(crop) → ToTensor → Normalize``)::

    x = image / 255                                   (RGB, [3, H, W])
    x = resize(x, shorter side -> resize)              (or to crop × crop when ``resize`` is None)
    x = center_crop(x, crop)
    x = (x - mean) / std

Example::

    transform = ImageTransform(ImageTransformConfig.imagenet())     # TransRec: 256 -> 224, ImageNet stats
    reader = ItemImages.from_dataset("data/prepared/hm")
    image = reader.load(17)                                          # PIL image, or None (no image)
    pixels = transform(image)                                        # [3, 224, 224]
"""

from __future__ import annotations

import io
import json
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from industrial.errors import UserError

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
HALF = [0.5, 0.5, 0.5]

#: Pillow resample codes as written in transformers' preprocessor_config.json.
_RESAMPLE = {2: "bilinear", 3: "bicubic"}


class ImageError(UserError, ValueError):
    """An item's image is missing or cannot be decoded; names the item id and the path."""

    def __init__(self, item_id: int | None, path: str | None, reason: str):
        self.item_id, self.path, self.reason = item_id, path, reason
        where = path if path is not None else "image_bytes"
        super().__init__(f"item {item_id}: image {where}: {reason}")


@dataclass
class ImageTransformConfig:
    """Resize, center-crop and normalisation of item images."""

    #: Shorter side after resizing (aspect kept); None resizes straight to ``crop × crop``.
    resize: int | None = 256
    #: Side of the square center crop: the encoder's input size.
    crop: int = 224
    mean: list[float] = field(default_factory=lambda: list(IMAGENET_MEAN))
    std: list[float] = field(default_factory=lambda: list(IMAGENET_STD))
    interpolation: Literal["bilinear", "bicubic"] = "bilinear"

    def validate(self) -> None:
        if self.crop <= 0 or (self.resize is not None and self.resize < self.crop):
            raise ValueError(f"need 0 < crop <= resize, got resize={self.resize}, crop={self.crop}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError(f"mean and std need 3 channels (std > 0), got {self.mean}, {self.std}")

    @classmethod
    def imagenet(cls, crop: int = 224) -> ImageTransformConfig:
        """ResNet / TransRec: resize the shorter side to crop·8/7 (256 for 224), crop, ImageNet stats."""
        return cls(resize=round(crop * 8 / 7), crop=crop)

    @classmethod
    def clip(cls, crop: int = 224) -> ImageTransformConfig:
        """CLIP: bicubic resize of the shorter side to ``crop``, crop, CLIP stats."""
        return cls(resize=crop, crop=crop, mean=list(CLIP_MEAN), std=list(CLIP_STD), interpolation="bicubic")

    @classmethod
    def squash(cls, crop: int = 224, mean: Sequence[float] = HALF, std: Sequence[float] = HALF) -> ImageTransformConfig:
        """ViT / PMMRec: resize to ``crop × crop`` (aspect not kept), mean = std = 0.5."""
        return cls(resize=None, crop=crop, mean=list(mean), std=list(std))

    @classmethod
    def from_preprocessor(cls, data: Mapping[str, Any]) -> ImageTransformConfig:
        """From a transformers ``preprocessor_config.json``.

        ``size: {shortest_edge: s}`` resizes the shorter side to ``s`` (to ``s / crop_pct`` when
        ``crop_pct`` is set, then crops ``s``, as the ConvNeXt/ResNet processor does) and crops
        ``crop_size``; a fixed ``{height, width}`` size resizes straight to a square.
        """
        size = data.get("size", 224)
        common = dict(
            mean=list(data.get("image_mean", IMAGENET_MEAN)),
            std=list(data.get("image_std", IMAGENET_STD)),
            interpolation=_RESAMPLE.get(int(data.get("resample", 2)), "bilinear"),
        )
        if isinstance(size, Mapping) and "shortest_edge" in size:
            edge = int(size["shortest_edge"])
            if data.get("crop_pct"):
                return cls(resize=round(edge / float(data["crop_pct"])), crop=edge, **common)  # type: ignore[arg-type]
            crop = _side(data.get("crop_size", edge)) if data.get("do_center_crop", True) else edge
            return cls(resize=edge, crop=crop, **common)  # type: ignore[arg-type]
        crop = _side(data.get("crop_size", size)) if data.get("do_center_crop", False) else _side(size)
        return cls(resize=None, crop=crop, **common)  # type: ignore[arg-type]

    @classmethod
    def for_model(cls, model_config: Any, folder: str | None = None) -> ImageTransformConfig:
        """The transform a vision backbone expects: its ``preprocessor_config.json`` when ``folder``
        has one, else by model type (ResNet: ImageNet 256/224; CLIP: CLIP stats; ViT: 0.5 stats;
        EfficientNet-Lite: 256/224, 0.5 stats)."""
        if folder is not None and (Path(folder) / "preprocessor_config.json").exists():
            return cls.from_preprocessor(json.loads((Path(folder) / "preprocessor_config.json").read_text()))
        model_type = getattr(model_config, "model_type", "")
        size = int(getattr(model_config, "image_size", 224) or 224)
        if model_type.startswith("clip"):
            return cls.clip(size)
        if model_type == "vit":
            return cls.squash(size)
        if model_type == "efficientnet_lite":  # ImageNet resize and crop, the Lite models' (x - 127) / 128
            return cls(resize=round(size * 8 / 7), crop=size, mean=list(HALF), std=list(HALF))
        return cls.imagenet(size)


def _side(size: Any) -> int:
    if isinstance(size, Mapping):
        return int(size.get("height", size.get("shortest_edge", 224)))
    return int(size)


def decode_image(item_id: int | None = None, path: str | Path | None = None, data: bytes | None = None) -> Image.Image:
    """Decode an image (``data`` bytes, else the file ``path``) to RGB; raise :class:`ImageError`."""
    where = None if path is None or data is not None else str(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            if data is not None:
                image = Image.open(io.BytesIO(data))
            elif path is not None:
                image = Image.open(path)
            else:
                raise ImageError(item_id, None, "the item has no image")
            image.load()
        return image.convert("RGB")
    except ImageError:
        raise
    except FileNotFoundError:
        raise ImageError(item_id, where, "file not found") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombWarning, Image.DecompressionBombError) as e:
        raise ImageError(item_id, where, f"cannot decode ({type(e).__name__}: {e})") from None


class ImageTransform:
    """Callable: PIL image -> normalised ``float32 [3, crop, crop]`` tensor (see module docstring)."""

    def __init__(self, config: ImageTransformConfig):
        config.validate()
        self.config = config
        self.mean = torch.tensor(config.mean, dtype=torch.float32).view(3, 1, 1)
        self.std = torch.tensor(config.std, dtype=torch.float32).view(3, 1, 1)

    def __call__(self, image: Image.Image) -> Tensor:
        if image.mode != "RGB":
            image = image.convert("RGB")
        w, h = image.size
        x = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8).view(h, w, 3).permute(2, 0, 1)
        x = x.float().div_(255.0).unsqueeze(0)
        c = self.config
        if c.resize is None:
            size = (c.crop, c.crop)
        elif h <= w:
            size = (c.resize, max(c.resize, int(c.resize * w / h)))
        else:
            size = (max(c.resize, int(c.resize * h / w)), c.resize)
        if size != (h, w):
            x = F.interpolate(x, size=size, mode=c.interpolation, align_corners=False, antialias=True)
        x = x.squeeze(0)
        top, left = int(round((x.shape[1] - c.crop) / 2.0)), int(round((x.shape[2] - c.crop) / 2.0))
        x = x[:, top : top + c.crop, left : left + c.crop].clamp_(0.0, 1.0)
        return (x - self.mean) / self.std


class ItemImages:
    """Reads items' images by item id from a prepared dataset's ``image_path`` / ``image_bytes``.

    ``load(item_id)`` returns a PIL image, or None when the item has no image. A missing or corrupt
    file raises :class:`ImageError` (``on_error="raise"``) or returns None and is recorded in
    ``failures`` (``on_error="missing"``).
    """

    def __init__(
        self,
        image_root: str | Path | None,
        paths: Sequence[str | None],
        blobs: Sequence[bytes | None] | None = None,
        on_error: Literal["raise", "missing"] = "raise",
    ):
        if on_error not in ("raise", "missing"):
            raise ValueError(f"on_error must be 'raise' or 'missing', got {on_error!r}")
        self.image_root = Path(image_root) if image_root is not None else None
        self.paths = list(paths)
        self.blobs = list(blobs) if blobs is not None else [None] * len(self.paths)
        if len(self.blobs) != len(self.paths):
            raise ValueError(f"{len(self.paths)} image paths but {len(self.blobs)} image blobs")
        self.on_error = on_error
        self.failures: dict[int, str] = {}

    @classmethod
    def from_dataset(cls, root: str | Path, on_error: Literal["raise", "missing"] = "raise") -> ItemImages:
        """From ``items.parquet`` (sorted by item_id) and ``meta.json``'s ``image_root`` (relative to ``root``)."""
        from industrial.data.schema import ITEMS_FILE, read_meta, read_table

        table = read_table(root, ITEMS_FILE, columns=["item_id", "image_path", "image_bytes"]).sort_by("item_id")
        return cls(
            image_root_of(root, read_meta(root)),
            table.column("image_path").to_pylist(),
            table.column("image_bytes").to_pylist(),
            on_error,
        )

    def __len__(self) -> int:
        return len(self.paths)

    def has_image(self, item_id: int) -> bool:
        return self.blobs[item_id] is not None or self.paths[item_id] is not None

    def path_of(self, item_id: int) -> str | None:
        rel = self.paths[item_id]
        if rel is None:
            return None
        return str(self.image_root / rel) if self.image_root is not None else rel

    def load(self, item_id: int) -> Image.Image | None:
        if not self.has_image(item_id):
            return None
        try:
            return decode_image(item_id, self.path_of(item_id), self.blobs[item_id])
        except ImageError as e:
            if self.on_error == "raise":
                raise
            self.failures[item_id] = str(e)
            return None


def image_root_of(root: str | Path, meta: Mapping[str, Any]) -> Path | None:
    """``meta.json``'s ``image_root``, resolved against the dataset folder when relative."""
    value = meta.get("image_root")
    if not value:
        return None
    path = Path(value).expanduser()
    return path if path.is_absolute() else Path(root) / path
