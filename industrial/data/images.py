"""The images of a prepared dataset: read and decode them, turn them into pixel tensors.

An item's image is either a file (``image_path``, relative to ``meta.json``'s ``image_root``) or
encoded bytes in ``items.parquet`` (``image_bytes``); an item with neither has no image. A file that
is missing or cannot be decoded raises :class:`ImageError` naming the item and the path, or, with
``on_error="missing"``, is reported back as missing (``None``) and recorded in ``failures``: the
caller decides.

- :func:`decode_image`: one image (a file or bytes) decoded to RGB with Pillow;
- :class:`ItemImages`: the images of a dataset's items by item id (``items.parquet`` + ``meta.json``);
- :class:`ImageTransform` (:class:`ImageTransformConfig`): a decoded image to the normalised
  ``float32 [3, crop, crop]`` pixels a vision encoder takes;
- :class:`ImageBuffer`: every image of a catalogue decoded and resized once, kept as uint8.

The vision encoders (:mod:`industrial.modules.vision`) take the pixel tensors; nothing in
``modules/`` reads an image file. The prepare-time resolution and check of a raw catalogue's images
is :mod:`industrial.data.ingest.images`.

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
import logging
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from industrial.data.schema import ITEMS_FILE, read_meta, read_table
from industrial.errors import UserError

log = logging.getLogger(__name__)

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


# --------------------------------------------------------------------------------------------------
# The catalogue's images as one uint8 buffer


@dataclass
class ImageBuffer:
    """A catalogue's images decoded and resized once: ``images [M, 3, S, S]`` uint8, ``rows [N]``
    int64 (row of each item, -1: no image).

    End-to-end vision training reads the images of every item of every batch. Decoding a JPEG and
    resizing it at each step costs far more than the small vision encoders that run on a CPU, so
    every image is decoded and transformed (resize, center-crop) **once**, when the model is built,
    and stored as ``uint8 [M, 3, S, S]`` (``M`` items with an image, ``S`` the encoder's input
    side); normalisation happens on the fly::

        x = (buffer[row_i] / 255 - mean) / std                     float32 [3, S, S]

    Memory is ``3·S²`` bytes per image (12 KiB at S = 64, 147 KiB at S = 224); the build refuses a
    buffer above ``max_mb`` with the numbers, so a large catalogue fails fast instead of swapping.
    Rounding to uint8 changes a pixel by at most 1/510 before normalisation.

    Items without an image (no path, no bytes) have ``row = -1``. An image that cannot be read
    raises :class:`ImageError` naming the item and the path (``on_error="raise"``), or, with
    ``on_error="missing"``, the item is counted in ``failures`` and treated as having no image: the
    caller's missing-modality fallback applies.

    Example::

        buffer = ImageBuffer.from_images(ItemImages.from_dataset(root), ImageTransformConfig.squash(64))
        pixels = buffer.pixels(torch.tensor([3, 17]))     # float32 [2, 3, 64, 64], items must have images
    """

    images: Tensor
    rows: Tensor
    mean: Tensor  # [3, 1, 1]
    std: Tensor  # [3, 1, 1]
    failures: dict[int, str]

    @property
    def present(self) -> Tensor:
        """``[N]`` bool: the item has a (readable) image."""
        return self.rows >= 0

    @property
    def size(self) -> int:
        return int(self.images.shape[-1])

    def __len__(self) -> int:
        return int(self.rows.numel())

    def pixels(self, ids: Tensor) -> Tensor:
        """Normalised pixels ``float32 [n, 3, S, S]`` of items that have an image (CPU)."""
        rows = self.rows[ids.cpu()]
        if bool((rows < 0).any()):
            bad = ids.cpu()[rows < 0][:5].tolist()
            raise ValueError(f"items {bad} have no image")
        x = self.images[rows].float().div_(255.0)
        return (x - self.mean) / self.std

    @classmethod
    def from_images(cls, images: ItemImages, transform: ImageTransformConfig, max_mb: float = 8192.0) -> ImageBuffer:
        """Decode, resize and crop every image of ``images`` once (see the module docstring)."""
        transform.validate()
        side = transform.crop
        present = [i for i in range(len(images)) if images.has_image(i)]
        need_mb = len(present) * 3 * side * side / 2**20
        if need_mb > max_mb:
            raise ValueError(
                f"{len(present)} images of {side}x{side} need {need_mb:.0f} MiB as uint8, above the "
                f"image buffer limit of {max_mb:.0f} MiB: lower the image size or raise the limit"
            )
        # the transform without normalisation gives [0, 1] pixels, stored as uint8
        to_unit = ImageTransform(replace(transform, mean=[0.0, 0.0, 0.0], std=[1.0, 1.0, 1.0]))
        buffer = torch.zeros((len(present), 3, side, side), dtype=torch.uint8)
        rows = torch.full((len(images),), -1, dtype=torch.int64)
        start, filled = time.perf_counter(), 0
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # one small image at a time: intra-op threads only add overhead (20x here)
        try:
            for item_id in present:
                image = images.load(item_id)  # raises ImageError, or None (recorded in failures)
                if image is None:
                    continue
                buffer[filled] = to_unit(image).mul_(255.0).round_().to(torch.uint8)
                rows[item_id] = filled
                filled += 1
        finally:
            torch.set_num_threads(threads)
        buffer = buffer[:filled].clone() if filled < len(present) else buffer
        log.info(
            "image buffer: %d of %d items decoded to %dx%d uint8 (%.1f MiB) in %.1f s; %d unreadable, %d without image",
            filled, len(images), side, side, buffer.numel() / 2**20, time.perf_counter() - start,
            len(images.failures), len(images) - len(present),
        )
        mean = torch.tensor(transform.mean, dtype=torch.float32).view(3, 1, 1)
        std = torch.tensor(transform.std, dtype=torch.float32).view(3, 1, 1)
        return cls(buffer, rows, mean, std, dict(images.failures))


def resized(transform: ImageTransformConfig, side: int) -> ImageTransformConfig:
    """``transform`` for another input side: the crop becomes ``side``, the resize scales with it."""
    if side == transform.crop:
        return transform
    resize = None if transform.resize is None else max(side, round(transform.resize * side / transform.crop))
    return replace(transform, crop=side, resize=resize)
