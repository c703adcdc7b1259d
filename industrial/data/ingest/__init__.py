"""Ingest adapters: one module per raw format, each reading its files into a :class:`RawDataset`.

:data:`ADAPTERS` maps a format name (``industrial prepare --format NAME``) to its adapter::

    from industrial.data.ingest import get_adapter
    adapter = get_adapter("unisrec")

Shared mechanisms live beside them: :mod:`.base` (the intermediate), :mod:`.problems` (bad rows
and fallbacks), :mod:`.reading` (line-numbered readers), :mod:`.chain` (sequences from example
rows), :mod:`.images` (image checks) and :mod:`.build` (filters, split, remap to canonical tables).
"""

from __future__ import annotations

from industrial.data.ingest.base import Adapter, IngestRequest, RawDataset
from industrial.data.ingest.generic import GenericAdapter
from industrial.data.ingest.hm import HMAdapter
from industrial.data.ingest.minionerec import MiniOneRecAdapter
from industrial.data.ingest.movielens import MovieLensAdapter
from industrial.data.ingest.prepared import PreparedAdapter
from industrial.data.ingest.s3rec import S3RecAdapter
from industrial.data.ingest.unisrec import UniSRecAdapter
from industrial.data.schema import DatasetError

ADAPTERS: dict[str, Adapter] = {
    adapter.name: adapter
    for adapter in (
        UniSRecAdapter(),
        MiniOneRecAdapter(),
        S3RecAdapter(),
        MovieLensAdapter(),
        HMAdapter(),
        GenericAdapter(),
        PreparedAdapter(),
    )
}


def get_adapter(name: str) -> Adapter:
    """The adapter of format ``name``; an unknown name is an error listing the known ones."""
    try:
        return ADAPTERS[name]
    except KeyError:
        raise DatasetError(f"unknown format {name!r}; known formats: {', '.join(ADAPTERS)}") from None


__all__ = ["ADAPTERS", "Adapter", "IngestRequest", "RawDataset", "get_adapter"]
