"""TorchX component: Pre-train (or train from scratch) a recipe on a prepared dataset.

    torchx run -s local_cwd launch/pretrain.py:pretrain --config configs/idrec_scientific.yaml \
        --nproc_per_node 2 -- --set train.epochs=5
"""


from typing import Dict, Optional

import torchx.specs as specs

from industrial.distributed.launch import industrial_job


def pretrain(
    *script_args: str,
    config: str = "configs/idrec_scientific.yaml",
    nproc_per_node: int = 2,
    nnodes: int = 1,
    cpu: int = 2,
    gpu: int = 0,
    memMB: int = 8192,
    name: str = "industrial-pretrain",
    env: Optional[Dict[str, str]] = None,
    max_retries: int = 0,
) -> specs.AppDef:
    """Pre-train (or train from scratch) a recipe on a prepared dataset.

    Args:
        script_args: extra arguments of `industrial train` (e.g. --set train.epochs=5)
        config: experiment config (YAML)
        nproc_per_node: processes per node (one per GPU on GPU hosts)
        nnodes: number of nodes
        cpu: CPUs per node
        gpu: GPUs per node (0 on CPU hosts)
        memMB: memory per node in MB
        name: job name
        env: extra environment variables
        max_retries: restarts after a failure (training resumes from the latest checkpoint)
    """
    return industrial_job(
        "train", ["--config", config, *script_args], name, nproc_per_node, nnodes, cpu, gpu, memMB, env, max_retries
    )
