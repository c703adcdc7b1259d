"""Checkpoints: sharded state through ``torch.distributed.checkpoint``, the rest beside it.

Layout of one checkpoint (``<run>/checkpoints/step_00000120/``)::

    .metadata, __0_0.distcp, ...   model + optimizer state (DCP: each rank writes its own shards)
    rank_0.json, rank_1.json, ...  per-rank state: loader position, RNG states (plain JSON)
    trainer.json                   step, epoch, best metric, config

A checkpoint is written under ``step_N.tmp`` and renamed once every rank has finished, then the
``latest`` file is replaced atomically: a crash never leaves a half checkpoint as the latest.

Loading never unpickles arbitrary objects: tensors are read with ``weights_only=True`` (DCP's
default) and DCP's metadata file through an allow-list unpickler; per-rank state is JSON.
"""

from __future__ import annotations

import base64
import io
import json
import os
import pickle
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint import FileSystemReader
from torch.distributed.checkpoint.metadata import Metadata, StorageMeta

LATEST = "latest"
BEST = "best"


# ----------------------------------------------------------------------------- safe metadata reading
_ALLOWED_PREFIXES = ("torch.distributed.checkpoint.", "torch.distributed._shard.")
_ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"),
    ("builtins", "set"),
    ("builtins", "frozenset"),
    ("builtins", "slice"),
    ("torch", "Size"),
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch.storage", "_load_from_bytes"),
    ("torch.serialization", "_get_layout"),
    ("pathlib", "PosixPath"),
    ("pathlib", "PurePosixPath"),
    ("pathlib", "WindowsPath"),
    ("pathlib", "PureWindowsPath"),
}


class _MetadataUnpickler(pickle.Unpickler):
    """Unpickles DCP metadata only: its own dataclasses, torch dtypes / sizes / layouts."""

    def find_class(self, module: str, name: str) -> Any:
        if module.startswith(_ALLOWED_PREFIXES) or (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        if module == "torch" and isinstance(getattr(torch, name, None), (torch.dtype, torch.layout, torch.memory_format)):
            return getattr(torch, name)
        raise pickle.UnpicklingError(f"checkpoint metadata refers to {module}.{name}, which is not allowed")


class SafeFileSystemReader(FileSystemReader):
    """``FileSystemReader`` whose metadata is read with :class:`_MetadataUnpickler`."""

    def read_metadata(self, *args: Any, **kwargs: Any) -> Metadata:
        path = self._get_metadata_path(kwargs.get("rank"))
        with self.fs.create_stream(path, "rb") as stream:
            metadata = _MetadataUnpickler(io.BytesIO(stream.read())).load()
        if getattr(metadata, "storage_meta", None) is None:
            metadata.storage_meta = StorageMeta()
        metadata.storage_meta.load_id = self.load_id
        return metadata


# ----------------------------------------------------------------------------- JSON for per-rank state
def _encode(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        data = obj.detach().cpu().contiguous()
        return {"__tensor__": base64.b64encode(data.numpy().tobytes()).decode(), "dtype": str(data.dtype), "shape": list(data.shape)}
    if isinstance(obj, np.ndarray):
        return {"__ndarray__": base64.b64encode(np.ascontiguousarray(obj).tobytes()).decode(), "dtype": str(obj.dtype), "shape": list(obj.shape)}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v) for v in obj]}
    if isinstance(obj, list):
        return [_encode(v) for v in obj]
    if isinstance(obj, dict):
        if not all(isinstance(k, str) for k in obj):
            return {"__items__": [[_encode(k), _encode(v)] for k, v in obj.items()]}
        return {k: _encode(v) for k, v in obj.items()}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store {type(obj).__name__} in a checkpoint's per-rank state")


def _decode(obj: Any) -> Any:
    if isinstance(obj, list):
        return [_decode(v) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if "__tensor__" in obj:
        dtype = getattr(torch, obj["dtype"].removeprefix("torch."))
        raw = np.frombuffer(base64.b64decode(obj["__tensor__"]), dtype=torch.empty(0, dtype=dtype).numpy().dtype)
        return torch.from_numpy(raw.copy()).reshape(obj["shape"])
    if "__ndarray__" in obj:
        raw = np.frombuffer(base64.b64decode(obj["__ndarray__"]), dtype=np.dtype(obj["dtype"]))
        return raw.copy().reshape(obj["shape"])
    if "__tuple__" in obj:
        return tuple(_decode(v) for v in obj["__tuple__"])
    if "__items__" in obj:
        return {_decode(k): _decode(v) for k, v in obj["__items__"]}
    return {k: _decode(v) for k, v in obj.items()}


def dumps_state(state: Any) -> str:
    """Per-rank state as JSON text (tensors and arrays base64-encoded)."""
    return json.dumps(_encode(state))


def loads_state(text: str) -> Any:
    return _decode(json.loads(text))


# ----------------------------------------------------------------------------- RNG
def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    python = state["python"]
    random.setstate((python[0], tuple(python[1]), python[2]))
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


# ----------------------------------------------------------------------------- save / load
def _rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def _barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def checkpoint_name(step: int) -> str:
    return f"step_{step:08d}"


def save_checkpoint(
    directory: str | Path,
    step: int,
    sharded_state: dict[str, Any],
    rank_state: dict[str, Any],
    trainer_state: dict[str, Any],
    keep_last: int = 2,
    protect: tuple[str, ...] = (),
) -> Path:
    """Write a checkpoint collectively (every rank calls this) and point ``latest`` at it."""
    directory = Path(directory)
    final = directory / checkpoint_name(step)
    tmp = directory / (checkpoint_name(step) + ".tmp")
    if _rank() == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    _barrier()
    dcp.save(sharded_state, checkpoint_id=str(tmp))
    (tmp / f"rank_{_rank()}.json").write_text(dumps_state(rank_state))
    if _rank() == 0:
        (tmp / "trainer.json").write_text(json.dumps(trainer_state, indent=2))
    _barrier()
    if _rank() == 0:
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        _write_pointer(directory / LATEST, final.name)
        _prune(directory, keep_last, protect + (final.name,))
    _barrier()
    return final


def _write_pointer(path: Path, name: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(name + "\n")
    os.replace(tmp, path)


def mark(directory: str | Path, pointer: str, checkpoint: str | Path) -> None:
    """Point ``pointer`` (e.g. ``best``) at a checkpoint (rank 0 only)."""
    if _rank() == 0:
        _write_pointer(Path(directory) / pointer, Path(checkpoint).name)


def _prune(directory: Path, keep_last: int, protect: tuple[str, ...]) -> None:
    pointed = {read_pointer(directory, p) for p in (LATEST, BEST)}
    steps = sorted(p for p in directory.glob("step_*") if p.is_dir() and not p.name.endswith(".tmp"))
    for old in steps[:-keep_last] if keep_last > 0 else []:
        if old.name not in protect and old.name not in pointed:
            shutil.rmtree(old, ignore_errors=True)


def read_pointer(directory: str | Path, pointer: str = LATEST) -> str | None:
    path = Path(directory) / pointer
    return path.read_text().strip() if path.exists() else None


def find_checkpoint(directory: str | Path, pointer: str = LATEST) -> Path | None:
    """The checkpoint a pointer names, or None when there is none yet."""
    name = read_pointer(directory, pointer)
    if name is None:
        return None
    path = Path(directory) / name
    if not (path / "trainer.json").exists():
        raise FileNotFoundError(f"{directory}/{pointer} names {name}, which is incomplete or missing")
    return path


def load_checkpoint(path: str | Path, sharded_state: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Load sharded state in place; return (this rank's state, trainer state)."""
    path = Path(path)
    dcp.load(sharded_state, storage_reader=SafeFileSystemReader(str(path)))
    rank_file = path / f"rank_{_rank()}.json"
    if not rank_file.exists():
        raise FileNotFoundError(f"{rank_file}: missing; was this checkpoint written with a different world size?")
    return loads_state(rank_file.read_text()), json.loads((path / "trainer.json").read_text())
