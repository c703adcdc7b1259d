"""TorchX component: Fine-tune a pre-trained checkpoint on a target dataset.

    torchx run -s local_cwd launch/finetune.py:finetune --config configs/unim2rec_scientific.yaml \
        --nproc_per_node 2 -- --from runs/pretrain --transfer user_encoder projector
"""


from typing import Dict, Optional

import torchx.specs as specs

from industrial.distributed.launch import industrial_job


def finetune(
    *script_args: str,
    config: str = "configs/unim2rec_scientific.yaml",
    nproc_per_node: int = 2,
    nnodes: int = 1,
    cpu: int = 2,
    gpu: int = 0,
    memMB: int = 8192,
    name: str = "industrial-finetune",
    env: Optional[Dict[str, str]] = None,
    max_retries: int = 0,
) -> specs.AppDef:
    """Fine-tune a pre-trained checkpoint on a target dataset.

    Args:
        script_args: arguments of `industrial finetune`: --from RUN [--transfer PARTS] [--set key=value]
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
        "finetune", ["--config", config, *script_args], name, nproc_per_node, nnodes, cpu, gpu, memMB, env, max_retries
    )
