"""Resolve, check and optionally embed the images of a catalogue.

For every item with an image path (relative to the dataset's ``image_root``):

1. a path that resolves outside ``image_root`` (``../``, an absolute path, a symlink out) is a bad
   row ``image_path_escapes``: an error, or under ``on_bad_row="skip"`` the image is dropped;
2. a file that does not exist: fallback ``image_missing``, the item keeps its text (text-only),
   unless it carries embedded bytes (an input of ``merge``), which then stand for the image;
3. with ``check=True``, Pillow opens it, ``verify()``-es it and decodes it at reduced size (which
   catches a truncated JPEG that ``verify()`` alone lets through): a failure is the fallback
   ``image_corrupt``, the item keeps its text;
4. with ``embed=True``, the file's bytes go to ``image_bytes``.

Items with embedded bytes and no path are checked from the bytes. Image files are never written.
This is the prepare step (torch-free); reading the images of a prepared dataset, decoding them and
turning them into pixels is :mod:`industrial.data.images`.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from industrial.data.ingest.base import Catalog, RawItem
from industrial.data.ingest.problems import Problems
from industrial.data.schema import DatasetError

#: The check decodes at 1/8 of the size where the format allows it (JPEG): fast, and it still reads
#: the whole file, so a truncated one fails.
_DRAFT_SCALE = 8


def verify_image(data: bytes | Path) -> None:
    """Raise when ``data`` (bytes or a file) is not a complete, decodable image."""

    def _open():
        return Image.open(io.BytesIO(data) if isinstance(data, bytes) else data)

    with _open() as image:
        image.verify()
    with _open() as image:
        width, height = image.size
        image.draft("RGB", (max(1, width // _DRAFT_SCALE), max(1, height // _DRAFT_SCALE)))
        image.load()


def resolve_images(
    catalog: Catalog, image_root: Path | None, check: bool, embed: bool, progress: bool = True
) -> None:
    """Apply the steps of the module docstring to every item of ``catalog`` that has an image."""
    with_images = [item for item in catalog.items if item.image is not None or item.image_bytes is not None]
    if not with_images:
        return
    problems = catalog.problems
    resolver = _Resolver(image_root) if image_root is not None else None
    description = "checking images" if check else "resolving images"
    bar = tqdm(with_images, desc=description, unit="img", disable=not progress or None)
    for item in bar:
        if item.image is not None:
            if resolver is None:
                raise DatasetError(f"{item.origin}: item {item.source_id!r} has an image path but no image root")
            _resolve_path(item, resolver, check, embed, problems)
        elif check:
            _check_embedded(item, problems)


class _Resolver:
    """Real paths under one root, with the real path of each folder computed once."""

    def __init__(self, root: Path) -> None:
        self.root = os.path.realpath(root)
        self._folders: dict[str, str] = {}

    def real_path(self, relative: str) -> str:
        """The real path of ``root/relative`` (symlinks followed), whether or not it exists."""
        path = os.path.normpath(os.path.join(self.root, relative))
        if os.path.islink(path):
            return os.path.realpath(path)
        folder, name = os.path.split(path)
        real_folder = self._folders.get(folder)
        if real_folder is None:
            real_folder = self._folders[folder] = os.path.realpath(folder)
        return os.path.join(real_folder, name)

    def inside(self, real: str) -> bool:
        return real.startswith(self.root.rstrip(os.sep) + os.sep)


def _resolve_path(item: RawItem, resolver: _Resolver, check: bool, embed: bool, problems: Problems) -> None:
    path = resolver.real_path(item.image)
    if not resolver.inside(path):
        problems.bad_row(
            "image_path_escapes",
            item.origin,
            f"image path {item.image!r} of item {item.source_id!r} escapes the dataset folder {resolver.root};"
            " the image is dropped",
        )
        item.image, item.image_bytes = None, None
        return
    if not os.path.isfile(path) and item.image_bytes is not None:
        item.image = None  # the embedded bytes (from a prepared input) still hold the image
        if check:
            _check_embedded(item, problems)
        return
    if not os.path.isfile(path):
        problems.fallback(
            "image_missing",
            item.origin,
            f"image {path} of item {item.source_id!r} does not exist; the item has no image",
        )
        item.image, item.image_bytes = None, None
        return
    if check:
        try:
            verify_image(Path(path))
        except Exception as e:  # Pillow raises many kinds (OSError, SyntaxError, ValueError, ...)
            problems.fallback(
                "image_corrupt",
                item.origin,
                f"image {path} of item {item.source_id!r} cannot be decoded ({type(e).__name__}: {e});"
                " the item has no image",
            )
            item.image, item.image_bytes = None, None
            return
    item.image = Path(path[len(resolver.root.rstrip(os.sep)) + 1 :]).as_posix()
    if embed:
        with open(path, "rb") as f:
            item.image_bytes = f.read()


def _check_embedded(item: RawItem, problems: Problems) -> None:
    try:
        verify_image(item.image_bytes)
    except Exception as e:
        problems.fallback(
            "image_corrupt",
            item.origin,
            f"embedded image of item {item.source_id!r} cannot be decoded ({type(e).__name__}: {e});"
            " the item has no image",
        )
        item.image_bytes = None


def relative_image_path(path: str | os.PathLike, root: Path) -> str:
    """``path`` relative to ``root`` as a POSIX string (it may go up with ``..``; checked later)."""
    return Path(os.path.relpath(Path(path), root)).as_posix()
