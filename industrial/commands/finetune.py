"""``industrial finetune``: start a target-domain model from a pre-trained one.

    industrial finetune --config configs/unim2rec_scientific.yaml --from runs/pretrain \\
        --transfer user_encoder projector [--set train.out_dir=runs/finetune ...]

Builds the target model from ``--config`` (its own dataset, tables and features), copies the
``--transfer`` parts from the source run's ``best`` checkpoint (or a checkpoint folder), keeps
the fresh initialisation of everything else, then trains exactly like ``industrial train``.
Parts, and the refusal of a checkpoint whose parameters do not fit, are described in
:mod:`industrial.train.transfer`; what was loaded is written to ``OUT_DIR/transfer.json``.
A rerun with the same ``train.out_dir`` resumes the fine-tuning run itself.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from industrial.config import add_override_argument, load
from industrial.distributed.env import DistEnv
from industrial.recipes.experiment import ExperimentConfig
from industrial.commands.train import report_result, train
from industrial.train.transfer import PART_PREFIXES, resolve_source, transfer_parts


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="industrial finetune", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="experiment YAML of the target")
    parser.add_argument("--from", dest="source", required=True, help="pre-trained run folder (its best checkpoint) or checkpoint folder")
    parser.add_argument("--transfer", nargs="+", default=["all"], choices=sorted(PART_PREFIXES), help="parts to copy (default: all)")
    add_override_argument(parser, "override a config key")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = load(ExperimentConfig, args.config, args.overrides)
    resolve_source(args.source)

    def load_pretrained(dmp, env: DistEnv) -> None:
        report = transfer_parts(dmp, args.source, args.transfer)
        if env.is_main:
            record = {"source": report.source, "parts": report.parts, "loaded": report.loaded, "fresh": report.fresh}
            (Path(cfg.train.out_dir) / "transfer.json").write_text(json.dumps(record, indent=2))
            print(f"transferred {len(report.loaded)} tensors ({', '.join(report.parts)}) from {report.source}")

    return report_result(train(cfg, after_build=load_pretrained))
