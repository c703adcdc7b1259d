"""TorchX component: Full-ranking evaluation of a trained run.

    torchx run -s local_cwd launch/evaluate.py:evaluate --run runs/idrec_scientific \
        --nproc_per_node 2 -- --split test --export runs/idrec_scientific/export
"""


from typing import Dict, Optional

import torchx.specs as specs

from industrial.distributed.launch import industrial_job


def evaluate(
    *script_args: str,
    run: str = "runs/idrec_scientific",
    nproc_per_node: int = 2,
    nnodes: int = 1,
    cpu: int = 2,
    gpu: int = 0,
    memMB: int = 8192,
    name: str = "industrial-evaluate",
    env: Optional[Dict[str, str]] = None,
    max_retries: int = 0,
) -> specs.AppDef:
    """Full-ranking evaluation of a trained run.

    Args:
        script_args: extra arguments of `industrial evaluate` (e.g. --split valid --export DIR)
        run: run folder written by `industrial train`
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
        "evaluate", [run, *script_args], name, nproc_per_node, nnodes, cpu, gpu, memMB, env, max_retries
    )
