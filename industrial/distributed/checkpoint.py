"""Checkpoints: sharded state through ``torch.distributed.checkpoint``, the rest beside it.

Layout of one checkpoint (``<run>/checkpoints/step_00000120/``)::

    .metadata, __0_0.distcp, ...   model + optimizer state (DCP: each rank writes its own shards)
    rank_0.json, rank_1.json, ...  per-rank state: loader position, RNG states (plain JSON)
    trainer.json                   step, epoch, best metric, config
    manifest.json                  size and SHA-256 of every other file (written last, by rank 0)

A checkpoint is written under ``step_N.tmp`` and renamed once every rank has finished, then the
``latest`` file is replaced atomically: a crash never leaves a half checkpoint as the latest.

Every load verifies the manifest first (:func:`verify_checkpoint`): a missing, truncated, changed
or unexpected file is refused with a :class:`CheckpointError` naming it. ``latest`` / ``best``
pointers must hold a plain ``step_XXXXXXXX`` name of this folder.

Loading never unpickles arbitrary objects: tensors are read with ``weights_only=True`` (DCP's
default), DCP's metadata file through an allow-list unpickler, and a metadata entry stored as
pickled bytes (which DCP would ``torch.load`` with ``weights_only=False``) is refused: the trainer
only ever stores tensors there. Per-rank state is JSON.
"""

from __future__ import annotations

import base64
import dataclasses
import enum
import hashlib
import io
import json
import os
import pickle
import random
import re
import shutil
from pathlib import Path
from typing import Any, Callable, TypeVar

import numpy as np
import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint import FileSystemReader
from torch.distributed.checkpoint.api import CheckpointException
from torch.distributed.checkpoint.metadata import BytesStorageMetadata, Metadata, StorageMeta
from torch.distributed.checkpoint.planner import LoadItemType, LoadPlan, LoadPlanner

from industrial.errors import UserError

LATEST = "latest"
BEST = "best"
MANIFEST = "manifest.json"
MANIFEST_FORMAT = "industrial.checkpoint/1"
_NAME = re.compile(r"step_\d{8,}")  # what checkpoint_name() writes: the only names a pointer may hold
_CHUNK = 4 << 20  # bytes hashed at a time
_T = TypeVar("_T")


class CheckpointError(UserError, ValueError):
    """A checkpoint that is missing, damaged, or holds what this project never writes."""


# ----------------------------------------------------------------------------- safe metadata reading
_ALLOWED_PREFIXES = ("torch.distributed.checkpoint.", "torch.distributed._shard.")  # their dataclasses and enums only
_ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"),
    ("builtins", "set"),
    ("builtins", "frozenset"),
    ("builtins", "slice"),
    ("torch", "Size"),
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch.serialization", "_get_layout"),
    ("pathlib", "PosixPath"),
    ("pathlib", "PurePosixPath"),
    ("pathlib", "WindowsPath"),
    ("pathlib", "PureWindowsPath"),
}


class _Refused(pickle.UnpicklingError):
    """The metadata pickle refers to something the allow-list does not hold."""


def _storage_from_bytes(data: bytes) -> Any:
    """``torch.storage._load_from_bytes`` (how a pickled tensor's storage comes back), tensors only.

    The original calls ``torch.load(weights_only=False)`` on bytes taken from the file.
    """
    try:
        return torch.load(io.BytesIO(data), weights_only=True)
    except Exception:  # noqa: BLE001 - torch's message is pages long; what matters is that it was refused
        raise _Refused("checkpoint metadata holds a pickled object that is not a tensor, which is not allowed") from None


class _MetadataUnpickler(pickle.Unpickler):
    """Unpickles DCP metadata only: its own dataclasses, torch dtypes / sizes / layouts.

    A global is either listed above, a torch dtype / layout / memory format, or a dataclass or
    enum defined in a DCP module: not any attribute of those modules (they import ``os``...), and
    never a dotted path (``module`` + ``os.system``).
    """

    def find_class(self, module: str, name: str) -> Any:
        refused = _Refused(f"checkpoint metadata refers to {module}.{name}, which is not allowed")
        if "." in name:
            raise refused
        if (module, name) == ("torch.storage", "_load_from_bytes"):
            return _storage_from_bytes
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        if module.startswith(_ALLOWED_PREFIXES):
            found = super().find_class(module, name)
            if isinstance(found, type) and found.__module__ == module and (dataclasses.is_dataclass(found) or issubclass(found, enum.Enum)):
                return found
            raise refused
        if module == "torch" and isinstance(getattr(torch, name, None), (torch.dtype, torch.layout, torch.memory_format)):
            return getattr(torch, name)
        raise refused


class SafeFileSystemReader(FileSystemReader):
    """``FileSystemReader`` that reads tensors only.

    Its metadata is read with :class:`_MetadataUnpickler` and refused when it holds a bytes entry
    (DCP unpickles those with ``weights_only=False``) or names a data file outside the folder.
    """

    def read_metadata(self, *args: Any, **kwargs: Any) -> Metadata:
        if kwargs.get("rank") is not None:  # DCP's fallback to per-rank metadata: never written here
            raise CheckpointError(f"{self.path}: rank-local metadata is not supported; use a checkpoint written by `industrial train`")
        path = Path(self._get_metadata_path())
        try:
            with self.fs.create_stream(path, "rb") as stream:
                metadata = _MetadataUnpickler(io.BytesIO(stream.read())).load()
        except FileNotFoundError:
            raise CheckpointError(f"{path}: missing; {_ADVICE}") from None
        except _Refused as err:
            raise CheckpointError(f"{path}: {err}: refusing to load it (it could run code); {_FOREIGN}") from None
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError, IndexError, KeyError) as err:
            raise CheckpointError(f"{path}: unreadable checkpoint metadata ({err}); {_ADVICE}") from None
        if not isinstance(metadata, Metadata):
            raise CheckpointError(f"{path}: holds a {type(metadata).__name__}, not checkpoint metadata; {_ADVICE}")
        _check_metadata(metadata, path)
        if getattr(metadata, "storage_meta", None) is None:
            metadata.storage_meta = StorageMeta()
        metadata.storage_meta.load_id = self.load_id
        return metadata

    def read_data(self, plan: LoadPlan, planner: LoadPlanner):
        # second line of defence: even with metadata read elsewhere, never unpickle a bytes item
        for item in plan.items:
            if item.type == LoadItemType.BYTE_IO:
                raise CheckpointError(f"{self.path}: entry {item.storage_index.fqn!r} is stored as pickled bytes, which is refused; {_FOREIGN}")
        return super().read_data(plan, planner)


_ADVICE = "the checkpoint is damaged or incomplete: use another of the run's checkpoints"
_FOREIGN = "`industrial train` never writes that, so this checkpoint was altered or comes from elsewhere: load only checkpoints you trust"


def _check_metadata(metadata: Metadata, path: Path) -> None:
    """Refuse bytes entries and data files outside the checkpoint folder."""
    entries = getattr(metadata, "state_dict_metadata", None)
    if not isinstance(entries, dict):
        raise CheckpointError(f"{path}: malformed checkpoint metadata; {_ADVICE}")
    foreign = sorted(str(k) for k, v in entries.items() if isinstance(v, BytesStorageMetadata))
    if foreign:
        more = f" and {len(foreign) - 3} more" if len(foreign) > 3 else ""
        raise CheckpointError(
            f"{path}: refusing to load non-tensor entries {', '.join(map(repr, foreign[:3]))}{more} "
            f"(stored as pickled objects, which could run code when loaded); {_FOREIGN}"
        )
    for info in (getattr(metadata, "storage_data", None) or {}).values():
        name = getattr(info, "relative_path", "")
        if not isinstance(name, str) or not _plain_file_name(name):
            raise CheckpointError(f"{path}: names data file {name!r} outside the checkpoint folder; {_FOREIGN}")


def _plain_file_name(name: str) -> bool:
    return bool(name) and name not in (".", "..") and "/" not in name and "\\" not in name and "\0" not in name


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
        write_manifest(tmp)  # every rank's files are in place: record them, then publish
        if final.exists():  # the same step saved again (an epoch's end after its last batch): swap, then delete
            aside = directory / (final.name + ".old")
            shutil.rmtree(aside, ignore_errors=True)
            os.replace(final, aside)
            os.replace(tmp, final)
            shutil.rmtree(aside, ignore_errors=True)
        else:
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
    steps = list_checkpoints(directory)  # newest first, by step number
    for old in steps[keep_last:] if keep_last > 0 else []:
        if old.name not in protect and old.name not in pointed:
            shutil.rmtree(old, ignore_errors=True)


def read_pointer(directory: str | Path, pointer: str = LATEST) -> str | None:
    path = Path(directory) / pointer
    return path.read_text(errors="replace").strip() if path.exists() else None


def is_checkpoint_name(name: str) -> bool:
    """True for a plain ``step_XXXXXXXX`` folder name (what :func:`checkpoint_name` writes)."""
    return _NAME.fullmatch(name) is not None


def checkpoint_folder(directory: str | Path, name: str, what: str | None = None) -> Path:
    """``directory/name`` for a plain checkpoint name that exists; a CheckpointError otherwise.

    ``what`` says where the name came from (a pointer file), for the message.
    """
    directory = Path(directory)
    source = what or str(directory)
    if not is_checkpoint_name(name):
        raise CheckpointError(
            f"{source}: {name!r} is not a checkpoint folder name (step_ and 8 digits, a folder of {directory}); "
            "refusing it: name one of the run's step_XXXXXXXX folders"
        )
    path = directory / name
    if not path.is_dir():
        raise CheckpointError(f"{source}: names {name}, but {path} does not exist; {_ADVICE}")
    return path


def find_checkpoint(directory: str | Path, pointer: str = LATEST) -> Path | None:
    """The checkpoint a pointer names, or None when there is none yet.

    The name must be a plain ``step_XXXXXXXX`` folder that exists and has a manifest whose files
    are all present with their recorded sizes (contents are hashed when loading).
    """
    name = read_pointer(directory, pointer)
    if name is None:
        return None
    path = checkpoint_folder(directory, name, what=str(Path(directory) / pointer))
    verify_checkpoint(path, hashes=False)
    return path


def list_checkpoints(directory: str | Path) -> list[Path]:
    """The complete-looking ``step_*`` folders of ``directory`` (no ``.tmp``), newest first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = [p for p in directory.iterdir() if is_checkpoint_name(p.name) and p.is_dir()]
    return sorted(found, key=lambda p: int(p.name.split("_")[1]), reverse=True)


# ----------------------------------------------------------------------------- manifest
def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def write_manifest(folder: str | Path) -> Path:
    """Record size and SHA-256 of every file of ``folder`` in ``folder/manifest.json``."""
    folder = Path(folder)
    files = {}
    for path in sorted(folder.iterdir()):
        if path.name != MANIFEST and path.is_file():
            files[path.name] = {"size": path.stat().st_size, "sha256": _sha256(path)}
    target = folder / MANIFEST
    tmp = folder / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps({"format": MANIFEST_FORMAT, "files": files}, indent=1))
    os.replace(tmp, target)
    return target


def _read_manifest(folder: Path) -> dict[str, dict[str, Any]]:
    manifest = folder / MANIFEST
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: checkpoint folder is missing; {_ADVICE}")
    if not manifest.is_file():
        raise CheckpointError(
            f"{manifest}: missing, so the checkpoint cannot be verified (it is incomplete, damaged, or was written "
            f"before checkpoints carried a manifest); {_ADVICE}"
        )
    try:
        data = json.loads(manifest.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise CheckpointError(f"{manifest}: unreadable ({err}); {_ADVICE}") from None
    files = data.get("files") if isinstance(data, dict) else None
    if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT or not isinstance(files, dict):
        raise CheckpointError(f"{manifest}: not a {MANIFEST_FORMAT} manifest; {_ADVICE}")
    for name, entry in files.items():
        if (
            not _plain_file_name(name)
            or name == MANIFEST
            or not isinstance(entry, dict)
            or not isinstance(entry.get("size"), int)
            or not isinstance(entry.get("sha256"), str)
        ):
            raise CheckpointError(f"{manifest}: malformed entry {name!r}; {_ADVICE}")
    for required in (".metadata", "trainer.json", "rank_0.json"):
        if required not in files:
            raise CheckpointError(f"{manifest}: does not list {required}, which every checkpoint has; {_ADVICE}")
    return files


def verify_checkpoint(path: str | Path, hashes: bool = True) -> None:
    """Check a checkpoint folder against its manifest; a CheckpointError names the first problem.

    Every listed file must exist with its recorded size (and, with ``hashes``, SHA-256), and the
    folder must hold no file the manifest does not list.
    """
    folder = Path(path)
    files = _read_manifest(folder)
    for name, entry in files.items():
        file = folder / name
        if not file.is_file():
            raise CheckpointError(f"{file}: missing (listed in {MANIFEST}); {_ADVICE}")
        size = file.stat().st_size
        if size != entry["size"]:
            raise CheckpointError(f"{file}: {size} bytes, but {MANIFEST} records {entry['size']} (truncated or damaged); {_ADVICE}")
    extra = sorted(p.name for p in folder.iterdir() if p.name != MANIFEST and p.name not in files)
    if extra:
        raise CheckpointError(f"{folder / extra[0]}: not listed in {MANIFEST} (a checkpoint holds only what it wrote); {_ADVICE}")
    if hashes:
        for name, entry in files.items():
            if _sha256(folder / name) != entry["sha256"]:
                raise CheckpointError(f"{folder / name}: contents differ from {MANIFEST} (SHA-256 mismatch: the file is damaged); {_ADVICE}")


def _agreed(fn: Callable[[], _T]) -> _T:
    """``fn()`` run on rank 0 only; every rank returns its result or raises its CheckpointError.

    Every rank of a job must take the same decision about a checkpoint (a rank that refuses while
    another loads would hang the collective load), and hashing it once is enough.
    """
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return fn()
    box: list[Any] = [None]
    if dist.get_rank() == 0:
        try:
            box[0] = ("ok", fn())
        except CheckpointError as err:
            box[0] = ("error", str(err))
        except Exception as err:  # noqa: BLE001 - the other ranks must not wait forever
            box[0] = ("bug", f"{type(err).__name__}: {err}")
            dist.broadcast_object_list(box, src=0)
            raise
    dist.broadcast_object_list(box, src=0)
    kind, value = box[0]
    if kind == "error":
        raise CheckpointError(value)
    if kind == "bug":
        raise RuntimeError(f"rank 0 failed while checking a checkpoint: {value}")
    return value


def _reason(err: CheckpointError) -> str:
    return str(err).removesuffix(f"; {_ADVICE}")


def verify_everywhere(path: str | Path) -> None:
    """:func:`verify_checkpoint` on rank 0, its verdict on every rank (every rank calls this)."""
    _agreed(lambda: verify_checkpoint(path))


def resume_point(directory: str | Path) -> tuple[Path | None, list[str]]:
    """The checkpoint a run resumes from and the warnings to log (every rank calls this).

    ``latest`` when it verifies; otherwise the newest ``step_*`` folder that does, with a warning
    naming what is wrong with the ones skipped. None (start from scratch) only when the folder has
    no checkpoint and no pointer at all; a CheckpointError when there are some but none verifies.
    """
    directory = Path(directory)

    def decide() -> tuple[str | None, list[str]]:
        warnings: list[str] = []
        problems: list[str] = []
        tried: set[str] = set()
        latest = read_pointer(directory, LATEST)
        if latest is not None:
            try:
                path = checkpoint_folder(directory, latest, what=str(directory / LATEST))
                tried.add(path.name)
                verify_checkpoint(path)
                return path.name, warnings
            except CheckpointError as err:
                problems.append(_reason(err))
        for path in list_checkpoints(directory):
            if path.name in tried:
                continue
            try:
                verify_checkpoint(path)
            except CheckpointError as err:
                problems.append(_reason(err))
                continue
            if problems or latest is None:
                what = "; ".join(problems) if problems else f"{directory / LATEST} is missing"
                warnings.append(f"the latest checkpoint cannot be used ({what}); falling back to {path}, the newest checkpoint that verifies")
            return path.name, warnings
        if latest is None and not problems:
            return None, warnings  # a fresh run
        raise CheckpointError(
            f"{directory}: no checkpoint to resume from verifies ({'; '.join(problems)}); "
            "to start again from scratch, move this run folder away or set train.out_dir to a new one"
        )

    name, warnings = _agreed(decide)
    return (directory / name if name is not None else None), warnings


# ----------------------------------------------------------------------------- load
def load_error(err: CheckpointException, path: Path) -> CheckpointError:
    """DCP's CheckpointException (a BaseException, with a traceback per rank) as one CheckpointError."""
    failures = list(err.failures.values())
    for exc, _trace in failures:
        if isinstance(exc, CheckpointError):
            return exc
    detail = "; ".join(" ".join(f"{type(exc).__name__}: {exc}".split()) for exc, _trace in failures[:1]) or "unknown failure"
    return CheckpointError(f"{path}: cannot be loaded into this model ({detail}); was it written by the same recipe and config?")


def open_reader(path: str | Path, verify: bool = True) -> SafeFileSystemReader:
    """A verified checkpoint's reader whose metadata has been checked (every rank calls this)."""
    path = Path(path)
    if verify:
        verify_everywhere(path)
    reader = SafeFileSystemReader(str(path))
    reader.read_metadata()  # refuses bytes entries before DCP, which would wrap the error
    return reader


def load_checkpoint(
    path: str | Path, sharded_state: dict[str, Any], verify: bool = True, rank_state: bool = True
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Verify the checkpoint, load sharded state in place; return (this rank's state, trainer state).

    ``verify=False`` skips the manifest check for a checkpoint that was just verified.
    ``rank_state=False`` (evaluation: the model only, resharded by DCP to any world size) skips
    the per-rank loader and RNG state and returns ``{}`` for it.
    """
    path = Path(path)
    reader = open_reader(path, verify=verify)
    try:
        dcp.load(sharded_state, storage_reader=reader)
    except CheckpointException as err:
        raise load_error(err, path) from None
    trainer_state = json.loads((path / "trainer.json").read_text())
    if not rank_state:
        return {}, trainer_state
    rank_file = path / f"rank_{_rank()}.json"
    if not rank_file.exists():
        raise CheckpointError(f"{rank_file}: missing; was this checkpoint written with a different world size? Resume with the same number of processes")
    return loads_state(rank_file.read_text()), trainer_state
