"""The loaders an experiment reads: its training split (shuffled, equalised across ranks) and its
evaluation splits (file order, every example exactly once)."""

from __future__ import annotations

from dataclasses import replace

from industrial.data.augment import AugmentConfig
from industrial.data.info import DatasetInfo
from industrial.data.stream import LoaderConfig, SequenceLoader, build_loader
from industrial.distributed.env import DistEnv
from industrial.recipes.experiment import ExperimentConfig


def pin_memory(cfg: ExperimentConfig, env: DistEnv | None) -> bool:
    """``data.pin_memory``, resolved: on by default when the device is CUDA, never without CUDA."""
    on_cuda = env is not None and env.device.type == "cuda"
    return on_cuda and (cfg.data.pin_memory is None or cfg.data.pin_memory)


def loader_config(cfg: ExperimentConfig, env: DistEnv | None = None) -> LoaderConfig:
    """The loader settings of ``cfg`` for a process on ``env``'s device (None: the CPU)."""
    data = cfg.data
    return LoaderConfig(
        batch_size=data.batch_size,
        max_seq_len=data.max_seq_len,
        shuffle=True,
        shuffle_buffer=data.shuffle_buffer,
        length_buckets=data.length_buckets,
        seed=cfg.train.seed,
        equalize=data.equalize,
        num_negatives=data.num_negatives,
        negative_sampler=data.negative_sampling,
        exclude_own_items=data.exclude_own_items,
        augment=data.augment,
        pin_memory=pin_memory(cfg, env),
    )


def train_loader(cfg: ExperimentConfig, env: DistEnv, info: DatasetInfo) -> SequenceLoader:
    return build_loader(
        cfg.data.path,
        "train",
        loader_config(cfg, env),
        rank=env.rank,
        world_size=env.world_size,
        item_counts=info.item_counts.numpy(),
    )


def eval_loader(cfg: ExperimentConfig, split: str, env: DistEnv) -> SequenceLoader:
    config = replace(
        loader_config(cfg, env),
        batch_size=cfg.data.eval_batch_size,
        shuffle=False,
        equalize="none",
        num_negatives=0,
        augment=AugmentConfig(),
    )
    return build_loader(cfg.data.path, split, config, rank=env.rank, world_size=env.world_size)
