"""``industrial train``: train a recipe on a prepared dataset, on one process or many.

    industrial train --config configs/idrec_scientific.yaml [--set train.epochs=5 ...]
    torchrun --nproc_per_node 2 -m industrial.cli train --config ...     (or through TorchX)

Writes into ``train.out_dir``: ``config.yaml`` (resolved), ``train.log``, ``tensorboard/``,
``checkpoints/`` (``latest``, ``best``) and ``result.json`` (valid/test metrics of the best
checkpoint). A rerun with the same ``out_dir`` resumes from ``checkpoints/latest``.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any, Callable

import torch

from industrial.config import ConfigError, add_override_argument, load
from industrial.data.integrity import check_dataset
from industrial.data.info import DatasetInfo
from industrial.distributed.env import DistEnv, init_distributed, shutdown
from industrial.evaluate.breakdown import Evaluation, ItemInfo
from industrial.evaluate.metrics import METRIC_NAMES
from industrial.evaluate.model_eval import evaluate_model
from industrial.evaluate.report import write_report
from industrial.recipes.build import build_sharded
from industrial.recipes.experiment import ExperimentConfig
from industrial.recipes.loaders import eval_loader, train_loader
from industrial.recipes.run_dataset import record_run_dataset
from industrial.train.trainer import Trainer, setup_run_folder

log = logging.getLogger("industrial.train")


def parse_args(argv: list[str] | None, prog: str = "industrial train") -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="experiment YAML (see configs/)")
    add_override_argument(parser, "override a config key, e.g. train.epochs=3")
    return parser.parse_args(argv)


def model_evaluator(cfg: ExperimentConfig, env: DistEnv, dmp: torch.nn.Module, info: DatasetInfo):
    """``evaluate(split) -> metrics`` over the whole split, every rank taking part."""
    model = dmp.module.model
    item_info = ItemInfo.from_dataset(cfg.data.path)

    def evaluate(split: str) -> Evaluation:
        loader = eval_loader(cfg, split, env)
        return evaluate_model(model, loader, env.device, cfg.eval.ks, cfg.eval.item_chunk, item_info)

    return evaluate


def check_inputs(cfg: ExperimentConfig) -> None:
    """Refuse a missing or partial dataset or features folder, or a resume on another dataset,
    before anything is written (every rank decides alike, so no rank waits for a failed one)."""
    name = cfg.train.metric.partition("@")[0]
    if name not in METRIC_NAMES:
        raise ConfigError(f"train.metric={cfg.train.metric!r}: {name!r} is not one of the metrics {list(METRIC_NAMES)}")
    check_dataset(cfg.data.path)
    if cfg.model.item.kind.startswith("cached") and not Path(cfg.model.item.features).exists():
        raise ConfigError(f"model.item.features={cfg.model.item.features}: no such features folder (write it with `industrial extract`)")
    record_run_dataset(cfg.train.out_dir, cfg.data.path, resuming=_resuming(cfg), write=False)


def _resuming(cfg: ExperimentConfig) -> bool:
    return cfg.train.resume and (Path(cfg.train.out_dir) / "checkpoints" / "latest").exists()


def train(cfg: ExperimentConfig, after_build: Callable[[torch.nn.Module, DistEnv], None] | None = None) -> dict[str, Any]:
    """Build, (optionally) adjust the fresh model, train, test. A rerun resumes from `latest`."""
    check_inputs(cfg)
    env = init_distributed()
    setup_run_folder(cfg, env)
    if env.is_main:
        record_run_dataset(cfg.train.out_dir, cfg.data.path, resuming=_resuming(cfg))
    dmp, optimizer, info = build_sharded(cfg, env)
    if after_build is not None:
        after_build(dmp, env)
    out = Path(cfg.train.out_dir)

    def report_test(evaluation: Evaluation, meta: dict[str, Any]) -> None:
        write_report(evaluation, out, title=f"{cfg.recipe}: test", meta=meta)

    evaluate = model_evaluator(cfg, env, dmp, info)
    trainer = Trainer(cfg, env, dmp, optimizer, train_loader(cfg, env, info), evaluate, info, report_test)
    return trainer.fit()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return report_result(train(load(ExperimentConfig, args.config, args.overrides)))


def report_result(result: dict[str, Any]) -> int:
    """Print the test line on rank 0, leave the process group."""
    rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
    if result.get("test") and rank == 0:
        metrics = result["test"]
        print("test " + " ".join(f"{k}={metrics[k]:.4f}" for k in ("recall@10", "ndcg@10", "recall@50", "ndcg@50") if k in metrics))
    shutdown()
    return 0
