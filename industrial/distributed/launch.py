"""The one mechanism behind every TorchX component: ``python -m industrial.cli <command>`` under
``torchrun`` through TorchX's ``dist.ddp``, with the resources the caller names."""

from __future__ import annotations

from typing import Dict, List, Optional

import torchx.specs as specs
from torchx.components.dist import ddp


def industrial_job(
    command: str,
    args: List[str],
    name: str,
    nproc_per_node: int,
    nnodes: int,
    cpu: int,
    gpu: int,
    memMB: int,
    env: Optional[Dict[str, str]],
    max_retries: int,
) -> specs.AppDef:
    """An AppDef running ``industrial <command> <args>`` on ``nnodes x nproc_per_node`` processes."""
    job_env = {"OMP_NUM_THREADS": str(max(1, cpu // max(nproc_per_node, 1))), "HF_HUB_OFFLINE": "1"}
    job_env.update(env or {})
    return ddp(
        command,
        *args,
        m="industrial.cli",
        name=name,
        j=f"{nnodes}x{nproc_per_node}",
        cpu=cpu,
        gpu=gpu,
        memMB=memMB,
        env=job_env,
        max_retries=max_retries,
    )
