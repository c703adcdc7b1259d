"""The process group, device and backend, taken from the environment, never from code.

Under ``torchrun`` / TorchX the usual variables (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR``...) are set; a plain ``python`` run becomes a one-process group. The backend is
NCCL with one GPU per local rank when CUDA is available, gloo on CPU otherwise; ``INDUSTRIAL_DEVICE``
(``cpu`` / ``cuda``) forces the choice.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistEnv:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    backend: str
    local_world_size: int = 1  # processes on this host (LOCAL_WORLD_SIZE, set by torchrun / TorchX)

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _pick_device(local_rank: int) -> tuple[torch.device, str]:
    wanted = os.environ.get("INDUSTRIAL_DEVICE", "").lower()
    if wanted not in ("", "cpu", "cuda"):
        raise ValueError(f"INDUSTRIAL_DEVICE={wanted!r}: expected cpu or cuda")
    use_cuda = torch.cuda.is_available() if wanted == "" else wanted == "cuda"
    if use_cuda:
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank), "nccl"
    return torch.device("cpu"), "gloo"


def init_distributed() -> DistEnv:
    """Initialise (once) and describe the process group of this process."""
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device, backend = _pick_device(local_rank)
    if not dist.is_initialized():
        if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
            dist.init_process_group(backend=backend, device_id=device if device.type == "cuda" else None)
        else:  # a plain `python` run: a group of one, with an in-process store (no file, no port)
            dist.init_process_group(backend=backend, store=dist.HashStore(), rank=0, world_size=1)
    world_size = dist.get_world_size()
    return DistEnv(
        rank=dist.get_rank(),
        world_size=world_size,
        local_rank=local_rank,
        device=device,
        backend=dist.get_backend(),
        local_world_size=int(os.environ.get("LOCAL_WORLD_SIZE", world_size)),
    )


def collective_device(group: dist.ProcessGroup | None = None) -> torch.device:
    """The device whose tensors the collectives of ``group`` (default: the world) take.

    The CPU when the group has a CPU backend (gloo); else this process's current device of the
    group's accelerator (NCCL: ``cuda:<current>``, which :func:`init_distributed` sets to the local
    rank's GPU). An NCCL group has no CPU backend: a CPU tensor given to it fails.
    """
    group = group if group is not None else dist.group.WORLD
    types = [d.type for d in getattr(group, "_device_types", [])]
    if not types:  # no backend bound yet: decide by name
        types = ["cuda"] if dist.get_backend(group) == "nccl" else ["cpu"]
    if "cpu" in types:
        return torch.device("cpu")
    kind = types[0]
    return torch.device(kind, torch.get_device_module(kind).current_device())


def shutdown() -> None:
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
