"""The images of a prepared dataset (``industrial/data/images.py``): decoding, the item reader, the
transform to pixels and the decoded-image buffer.

Images are tiny JPEG / PNG files written in tmp_path.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch
from PIL import Image

from industrial.data.images import ImageBuffer, ImageError, ImageTransform, ImageTransformConfig, ItemImages, decode_image, image_root_of


def _png(path: Path, color: tuple[int, int, int], size=(20, 14)) -> None:
    Image.new("RGB", size, color).save(path, format="PNG")


def _jpeg(size=(40, 30), color=(200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="JPEG")
    return buf.getvalue()


def test_decode_and_transform_real_jpeg(tmp_path):
    path = tmp_path / "a.jpg"
    path.write_bytes(_jpeg())
    image = decode_image(3, path)
    assert image.mode == "RGB" and image.size == (40, 30)
    pixels = ImageTransform(ImageTransformConfig.imagenet(crop=24))(image)
    assert pixels.shape == (3, 24, 24) and pixels.dtype == torch.float32
    # a flat red image: every pixel normalises to ((r/255 - mean) / std) (JPEG is near-lossless on flat colour)
    expected = (torch.tensor([200, 30, 30]) / 255 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225])
    assert torch.allclose(pixels.mean(dim=(1, 2)), expected, atol=0.05)
    gray = decode_image(4, data=(lambda b: (Image.new("L", (9, 9)).save(b, format="PNG"), b.getvalue())[1])(io.BytesIO()))
    assert gray.mode == "RGB"
    squash = ImageTransform(ImageTransformConfig.squash(16))(image)
    assert squash.shape == (3, 16, 16)


def test_corrupt_and_missing_images(tmp_path):
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    with pytest.raises(ImageError, match=r"item 7: image .*bad\.jpg: cannot decode"):
        decode_image(7, tmp_path / "bad.jpg")
    with pytest.raises(ImageError, match=r"item 8: image .*gone\.jpg: file not found"):
        decode_image(8, tmp_path / "gone.jpg")
    with pytest.raises(ImageError, match=r"item 9: image image_bytes: cannot decode"):
        decode_image(9, data=b"garbage")

    (tmp_path / "ok.jpg").write_bytes(_jpeg())
    paths = ["ok.jpg", None, "bad.jpg", None]
    blobs = [None, None, None, _jpeg()]
    strict = ItemImages(tmp_path, paths, blobs, on_error="raise")
    assert strict.load(0).size == (40, 30) and strict.load(1) is None and strict.load(3) is not None
    with pytest.raises(ImageError, match="item 2"):
        strict.load(2)
    lenient = ItemImages(tmp_path, paths, blobs, on_error="missing")
    assert lenient.load(2) is None and list(lenient.failures) == [2]


def test_transform_from_preprocessor_config():
    clip = ImageTransformConfig.from_preprocessor(
        {"size": {"shortest_edge": 224}, "crop_size": {"height": 224, "width": 224}, "do_center_crop": True, "resample": 3,
         "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711]}
    )
    assert (clip.resize, clip.crop, clip.interpolation) == (224, 224, "bicubic")
    resnet = ImageTransformConfig.from_preprocessor({"size": {"shortest_edge": 224}, "crop_pct": 0.875})
    assert (resnet.resize, resnet.crop) == (256, 224)
    vit = ImageTransformConfig.from_preprocessor({"size": {"height": 224, "width": 224}, "image_mean": [0.5] * 3, "image_std": [0.5] * 3})
    assert (vit.resize, vit.crop) == (None, 224)


def test_unreadable_image_raises_naming_item_and_path_or_is_counted(tmp_path):
    _png(tmp_path / "ok.png", (10, 10, 10))
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    with pytest.raises(ImageError, match=r"item 1: image .*bad\.jpg: cannot decode"):
        ImageBuffer.from_images(ItemImages(tmp_path, ["ok.png", "bad.jpg", None]), ImageTransformConfig.squash(16))
    buffer = ImageBuffer.from_images(ItemImages(tmp_path, ["ok.png", "bad.jpg", None], on_error="missing"), ImageTransformConfig.squash(16))
    assert buffer.present.tolist() == [True, False, False] and list(buffer.failures) == [1]
    assert buffer.images.shape == (1, 3, 16, 16) and buffer.images.dtype == torch.uint8
    # uint8 storage, normalised on the fly: a flat colour comes back within rounding
    assert torch.allclose(buffer.pixels(torch.tensor([0])), torch.full((1, 3, 16, 16), (10 / 255 - 0.5) / 0.5), atol=1e-2)
    with pytest.raises(ValueError, match=r"image buffer limit"):
        ImageBuffer.from_images(ItemImages(tmp_path, ["ok.png"]), ImageTransformConfig.squash(16), max_mb=1e-6)


def test_image_root_of_resolves_relative_to_the_dataset(tmp_path):
    assert image_root_of(tmp_path, {"image_root": "images"}) == tmp_path / "images"
    assert image_root_of(tmp_path, {"image_root": str(tmp_path / "abs")}) == tmp_path / "abs"
    assert image_root_of(tmp_path, {}) is None and image_root_of(tmp_path, {"image_root": ""}) is None
