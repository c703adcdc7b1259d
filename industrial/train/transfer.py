"""Transfer: copy chosen parts of a pre-trained model into a freshly built one.

Parts are the dense modules a content model shares across domains and platforms; item-id tables
never transfer (ids mean nothing on another platform) and cached-feature tables hold the target's
own features:

==================  ==============================================================
part                parameters
==================  ==============================================================
``user_encoder``    ``model.user_encoder.*`` (Transformer, positions, domains)
``projector``       ``model.item_encoder.projector.*`` (whitening + MoE)
``text_encoder``    ``model.item_encoder.encoder.*`` and ``missing`` (end-to-end text), or
                    ``model.item_encoder.text_encoder.*`` (multi-modal)
``vision_encoder``  ``model.item_encoder.vision_encoder.*`` (multi-modal)
``fusion``          ``model.item_encoder.fusion.*`` (multi-modal, PMMRec merge-attention)
``item_encoder``    every dense parameter of ``model.item_encoder`` (projector, text encoder, or the
                    multi-modal encoders, fusion, modality embedding and ``no_content`` vector)
``all``             ``user_encoder`` + ``item_encoder``
==================  ==============================================================

Every parameter of a chosen part must exist in the source with the same shape; otherwise the
transfer is refused with the names of the parameters that do not fit (nothing is loaded silently
or skipped). Parameters outside the chosen parts keep their fresh initialisation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.distributed.checkpoint.api import CheckpointException
from torch.distributed.checkpoint.state_dict_loader import _load_state_dict_from_keys

from industrial.errors import UserError
from industrial.distributed.checkpoint import MANIFEST, find_checkpoint, load_error, open_reader, verify_checkpoint

PART_PREFIXES: dict[str, tuple[str, ...]] = {
    "user_encoder": ("model.user_encoder.",),
    "projector": ("model.item_encoder.projector.",),
    "text_encoder": ("model.item_encoder.encoder.", "model.item_encoder.missing", "model.item_encoder.text_encoder."),
    "vision_encoder": ("model.item_encoder.vision_encoder.",),
    "fusion": ("model.item_encoder.fusion.",),
    "item_encoder": (
        "model.item_encoder.projector.",
        "model.item_encoder.encoder.",
        "model.item_encoder.missing",
        "model.item_encoder.text_encoder.",
        "model.item_encoder.vision_encoder.",
        "model.item_encoder.fusion.",
        "model.item_encoder.modality_embedding.",
        "model.item_encoder.no_content",
    ),
}
PART_PREFIXES["all"] = PART_PREFIXES["user_encoder"] + PART_PREFIXES["item_encoder"]
_DCP_PREFIX = "model."  # checkpoints store {"model": dmp.state_dict(), "optimizer": ...}


class TransferError(UserError, ValueError):
    """The source checkpoint does not fit the target model; the message names the parameters."""


@dataclass
class TransferReport:
    source: str
    parts: list[str]
    loaded: list[str] = field(default_factory=list)
    fresh: list[str] = field(default_factory=list)


def resolve_source(path: str | Path) -> Path:
    """A run folder (its ``best`` checkpoint) or a checkpoint folder (its files all present).

    Contents are hashed when :func:`transfer_parts` loads them.
    """
    path = Path(path)
    if any((path / name).exists() for name in ("trainer.json", MANIFEST, ".metadata")):
        verify_checkpoint(path, hashes=False)
        return path
    best = find_checkpoint(path / "checkpoints", "best") if (path / "checkpoints").exists() else None
    if best is None:
        raise TransferError(f"{path}: neither a checkpoint folder nor a run folder with checkpoints/best")
    return best


def _selected(name: str, parts: list[str]) -> bool:
    return any(name.startswith(prefix) for part in parts for prefix in PART_PREFIXES[part])


@torch.no_grad()
def transfer_parts(dmp: nn.Module, source: str | Path, parts: list[str]) -> TransferReport:
    """Copy ``parts`` of the source checkpoint into ``dmp`` (every rank calls it)."""
    unknown = [p for p in parts if p not in PART_PREFIXES]
    if unknown or not parts:
        raise TransferError(f"transfer parts {unknown or parts}: choose from {sorted(PART_PREFIXES)}")
    checkpoint = resolve_source(source)
    reader = open_reader(checkpoint)  # manifest verified, no pickled entries
    stored = reader.read_metadata().state_dict_metadata
    target = {name: value for name, value in dmp.state_dict().items() if isinstance(value, torch.Tensor)}
    wanted = sorted(name for name in target if _selected(name, parts))
    if not wanted:
        raise TransferError(f"the target model has no parameters in parts {parts}")
    available = {key[len(_DCP_PREFIX):]: meta for key, meta in stored.items() if key.startswith(_DCP_PREFIX)}
    missing = [n for n in wanted if n not in available]
    mismatched = [
        f"{n} (source {tuple(available[n].size)}, target {tuple(target[n].shape)})"
        for n in wanted
        if n in available and tuple(available[n].size) != tuple(target[n].shape)
    ]
    extra = sorted(n for n in available if _selected(n, parts) and n not in target)
    if missing or mismatched or extra:
        problems = []
        if missing:
            problems.append(f"missing in the source: {', '.join(missing[:8])}")
        if mismatched:
            problems.append(f"shapes differ: {', '.join(mismatched[:8])}")
        if extra:
            problems.append(f"in the source but not in the target: {', '.join(extra[:8])}")
        raise TransferError(f"{checkpoint} does not fit the target model for parts {parts}: " + "; ".join(problems))
    try:
        loaded = _load_state_dict_from_keys({_DCP_PREFIX + n for n in wanted}, storage_reader=reader)["model"]
    except CheckpointException as err:  # a BaseException holding each rank's traceback
        raise load_error(err, checkpoint) from None
    for name in wanted:
        target[name].copy_(loaded[name])
    fresh = sorted(n for n in target if n not in wanted and ".embeddings." not in n and not n.endswith(("item_log_q", "item_domains")))
    return TransferReport(str(checkpoint), parts, wanted, fresh)
