"""A catalogue's images decoded and resized once, kept as a compact uint8 buffer.

End-to-end vision training reads the images of every item of every batch. Decoding a JPEG and
resizing it at each step costs far more than the small vision encoders that run on a CPU, so
every image is decoded and transformed (resize, center-crop) **once**, when the model is built,
and stored as ``uint8 [M, 3, S, S]`` (``M`` items with an image, ``S`` the encoder's input side);
normalisation happens on the fly::

    x = (buffer[row_i] / 255 - mean) / std                     float32 [3, S, S]

Memory is ``3·S²`` bytes per image (12 KiB at S = 64, 147 KiB at S = 224); the build refuses a
buffer above ``max_mb`` with the numbers, so a large catalogue fails fast instead of swapping.
Rounding to uint8 changes a pixel by at most 1/510 before normalisation.

Items without an image (no path, no bytes) have ``row = -1``. An image that cannot be read raises
:class:`~industrial.modules.images.ImageError` naming the item and the path
(``on_error="raise"``), or, with ``on_error="missing"``, the item is counted in ``failures`` and
treated as having no image: the caller's missing-modality fallback applies.

Example::

    buffer = ImageBuffer.from_images(ItemImages.from_dataset(root), ImageTransformConfig.squash(64))
    pixels = buffer.pixels(torch.tensor([3, 17]))     # float32 [2, 3, 64, 64], items must have images
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace

import torch
from torch import Tensor

from industrial.modules.images import ImageTransform, ImageTransformConfig, ItemImages

log = logging.getLogger(__name__)


@dataclass
class ImageBuffer:
    """``images [M, 3, S, S]`` uint8, ``rows [N]`` int64 (row of each item, -1: no image)."""

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
