"""Sharding plan, DistributedModelParallel wrapping and the (fused sparse + dense) optimizer.

Every item table is a TorchRec ``EmbeddingCollection`` built on ``meta``. Before sharding, each
table's parameters get their optimizer *in backward* (TorchRec fuses it into the embedding
kernel: the table's gradient is never materialised); the planner then places the tables with the
sharding type the config asks for, and DMP materialises only each rank's shard. Dense modules are
replicated and data-parallel; their optimizer is an ordinary torch optimizer, combined with the
fused one for checkpointing.

Example::

    dmp, optimizer, plan = shard_model(task, env, ShardingConfig(), OptimConfig())
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.distributed as dist
from torch import nn
from torchrec.distributed import DistributedModelParallel
from torchrec.distributed.embedding import EmbeddingCollectionSharder
from torchrec.distributed.planner import EmbeddingShardingPlanner, ParameterConstraints, Topology
from torchrec.distributed.types import ShardingPlan
from torchrec.modules.embedding_modules import EmbeddingCollection
from torchrec.optim.apply_optimizer_in_backward import apply_optimizer_in_backward
from torchrec.optim.keyed import CombinedOptimizer, KeyedOptimizer, KeyedOptimizerWrapper
from torchrec.optim.optimizers import in_backward_optimizer_filter

from industrial.distributed.env import DistEnv
from industrial.modules.item_tables import ITEM_FEATURE_TABLE

ShardingType = Literal["table_wise", "row_wise", "column_wise", "data_parallel"]


@dataclass
class ShardingConfig:
    # sharding type per table name (item_id, item_features); tables not named use `default`
    tables: dict[str, ShardingType] = field(default_factory=dict)
    default: ShardingType = "row_wise"  # row-wise divides a table's memory across ranks


@dataclass
class OptimConfig:
    lr: float = 1e-3  # dense (encoders, projector, Transformer) learning rate, AdamW
    weight_decay: float = 0.0  # dense weight decay
    # optimizer fused into the item-id table's backward; fbgemm's CPU kernels offer adagrad,
    # rowwise_adagrad and sgd, its CUDA kernels adam too
    sparse_optimizer: Literal["adam", "adagrad", "rowwise_adagrad", "sgd"] = "adagrad"
    sparse_lr: float = 0.05  # item-id table learning rate
    sparse_weight_decay: float = 0.0
    grad_clip: float = 0.0  # max global norm of dense gradients; 0 = off

    def validate(self) -> None:
        if not (self.lr > 0 and self.sparse_lr >= 0):
            raise ValueError(f"learning rates must be positive (lr={self.lr}, sparse_lr={self.sparse_lr})")
        if self.weight_decay < 0 or self.sparse_weight_decay < 0 or self.grad_clip < 0:
            raise ValueError("weight_decay, sparse_weight_decay and grad_clip must be >= 0")


def _sparse_optimizer(cfg: OptimConfig) -> tuple[type[torch.optim.Optimizer], dict]:
    if cfg.sparse_optimizer == "adam":
        return torch.optim.Adam, {"lr": cfg.sparse_lr, "weight_decay": cfg.sparse_weight_decay}
    if cfg.sparse_optimizer == "adagrad":
        return torch.optim.Adagrad, {"lr": cfg.sparse_lr, "weight_decay": cfg.sparse_weight_decay}
    if cfg.sparse_optimizer == "rowwise_adagrad":
        from torchrec.optim.rowwise_adagrad import RowWiseAdagrad

        return RowWiseAdagrad, {"lr": cfg.sparse_lr, "weight_decay": cfg.sparse_weight_decay}
    return torch.optim.SGD, {"lr": cfg.sparse_lr}


def _table_names(model: nn.Module) -> list[str]:
    names = []
    for module in model.modules():
        if isinstance(module, EmbeddingCollection):
            names.extend(config.name for config in module.embedding_configs())
    return names


def attach_sparse_optimizers(model: nn.Module, cfg: OptimConfig, device: torch.device) -> None:
    """Fuse each table's optimizer into its backward; frozen feature tables get SGD with lr 0."""
    if cfg.sparse_optimizer == "adam" and device.type != "cuda":
        raise ValueError(
            "optim.sparse_optimizer=adam: the fused Adam kernel exists only on CUDA; "
            "use adagrad, rowwise_adagrad or sgd on CPU"
        )
    optimizer_cls, kwargs = _sparse_optimizer(cfg)
    for module in model.modules():
        if not isinstance(module, EmbeddingCollection):
            continue
        for config in module.embedding_configs():
            params = [p for n, p in module.named_parameters() if n.split(".")[-2] == config.name]
            if config.name == ITEM_FEATURE_TABLE:
                apply_optimizer_in_backward(torch.optim.SGD, params, {"lr": 0.0})
            else:
                apply_optimizer_in_backward(optimizer_cls, params, dict(kwargs))


def device_memory(device: torch.device) -> int | None:
    """Bytes of memory of ``device`` when it is a GPU (what the planner may fill), else None."""
    if device.type != "cuda":
        return None
    index = device.index if device.index is not None else torch.cuda.current_device()
    return int(torch.cuda.get_device_properties(index).total_memory)


def planner_topology(env: DistEnv) -> Topology:
    """The cluster as the planner must see it: ranks per host (``LOCAL_WORLD_SIZE``: 16 ranks on 2
    hosts are 2 hosts of 8, whose intra-host links are faster) and this GPU's memory (TorchRec
    assumes 32 GiB otherwise). Every rank plans alike: the hosts' GPUs are taken to be the same."""
    return Topology(
        world_size=env.world_size,
        compute_device=env.device.type,
        local_world_size=env.local_world_size,
        hbm_cap=device_memory(env.device),
    )


def plan_sharding(model: nn.Module, env: DistEnv, cfg: ShardingConfig) -> ShardingPlan:
    """Plan table placement with one constraint per table (its sharding type)."""
    known = set(_table_names(model))
    unknown = sorted(set(cfg.tables) - known)
    if unknown:
        raise ValueError(f"sharding.tables: unknown table {unknown[0]!r} (tables: {sorted(known)})")
    constraints = {name: ParameterConstraints(sharding_types=[cfg.tables.get(name, cfg.default)]) for name in known}
    planner = EmbeddingShardingPlanner(topology=planner_topology(env), constraints=constraints)
    return planner.collective_plan(model, [EmbeddingCollectionSharder()], dist.GroupMember.WORLD)


def shard_model(
    model: nn.Module, env: DistEnv, sharding: ShardingConfig, optim: OptimConfig
) -> tuple[DistributedModelParallel, KeyedOptimizer, ShardingPlan]:
    """Attach fused optimizers, plan, wrap in DMP and build the combined optimizer."""
    attach_sparse_optimizers(model, optim, env.device)
    plan = plan_sharding(model, env, sharding)
    dmp = DistributedModelParallel(model, device=env.device, plan=plan, sharders=[EmbeddingCollectionSharder()])
    dense_params = dict(in_backward_optimizer_filter(dmp.named_parameters(), include=False))
    dense_params = {name: p for name, p in dense_params.items() if p.requires_grad}
    dense = KeyedOptimizerWrapper(dense_params, lambda params: dense_optimizer(params, optim, env.device))
    return dmp, CombinedOptimizer([("sparse", dmp.fused_optimizer), ("dense", dense)]), plan


def dense_optimizer(params: list[torch.Tensor], optim: OptimConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW over the dense parameters; on CUDA its fused kernel (one launch for every parameter)."""
    return torch.optim.AdamW(params, lr=optim.lr, weight_decay=optim.weight_decay, fused=device.type == "cuda" or None)


def _table_weight(dmp: nn.Module, table_name: str):
    for name, value in dmp.state_dict().items():
        if name.endswith(f"embeddings.{table_name}.weight"):
            return value
    raise KeyError(f"no table {table_name!r} in the model")


def local_shards(dmp: nn.Module, table_name: str) -> list[tuple[tuple[int, int], torch.Tensor]]:
    """``((row_offset, col_offset), tensor)`` for every shard of a table held by this rank.

    The tensors are views of the live weights: writing to them changes the table.
    """
    value = _table_weight(dmp, table_name)
    if hasattr(value, "local_shards"):
        return [(tuple(s.metadata.shard_offsets[:2]), s.tensor) for s in value.local_shards()]
    return [((0, 0), value)]


@torch.no_grad()
def fill_table(dmp: nn.Module, table_name: str, weights) -> None:
    """Copy a full ``[N, D]`` matrix into the shards of a table (e.g. cached content features).

    ``weights`` is a tensor or anything sliced like one into tensors (``weights[r0:r1, c0:c1]``, e.g.
    memory-mapped :class:`~industrial.data.features.FeatureRows`): only this rank's shards are read.
    """
    for (row, col), shard in local_shards(dmp, table_name):
        rows, cols = shard.shape
        shard.copy_(weights[row : row + rows, col : col + cols].to(shard.dtype))


@torch.no_grad()
def init_table_normal(dmp: nn.Module, table_name: str, std: float = 0.02, seed: int = 0) -> None:
    """Initialise a table N(0, std) independently of the world size (same values on 1 or n ranks).

    Each row's values come from a generator seeded by (seed, row block), so a sharded table holds
    exactly the rows a single-process table would.
    """
    block = 4096
    full_dim = _table_weight(dmp, table_name).size(1)
    for (row, col), shard in local_shards(dmp, table_name):
        rows, cols = shard.shape
        start_block, stop_block = row // block, (row + rows - 1) // block
        for b in range(start_block, stop_block + 1):
            gen = torch.Generator().manual_seed(seed * 1_000_003 + b)
            values = torch.randn(block, full_dim, generator=gen) * std
            lo, hi = max(row, b * block), min(row + rows, (b + 1) * block)
            shard[lo - row : hi - row].copy_(values[lo - b * block : hi - b * block, col : col + cols].to(shard.dtype))



@torch.no_grad()
def materialize_optimizer_state(optimizer: CombinedOptimizer) -> None:
    """Create the lazily-built state of the dense optimizer (AdamW's ``step``, ``exp_avg``...).

    A fresh optimizer's ``state_dict()`` has no entries for them, so loading a checkpoint into it
    would silently restore nothing. One step with zero gradients at learning rate 0 creates them
    without moving any parameter (the loaded state then overwrites them).
    """
    for _, part in optimizer.optimizers:
        if part is optimizer.optimizers[0][1]:
            continue  # the fused sparse optimizer holds its state from the start
        params = [p for group in part.param_groups for p in group["params"]]
        if all(part.state.get(p) for p in params):
            continue
        saved_lr = [group["lr"] for group in part.param_groups]
        for group in part.param_groups:
            group["lr"] = 0.0
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        part.step()
        for group, lr in zip(part.param_groups, saved_lr):
            group["lr"] = lr
        for p in params:
            p.grad = None
