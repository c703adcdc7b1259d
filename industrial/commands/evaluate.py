"""``industrial evaluate``: full-ranking evaluation of a trained run's checkpoint.

    industrial evaluate runs/idrec_scientific [--split test] [--checkpoint best] [--out DIR]
                        [--export DIR] [--set data.eval_batch_size=2048 ...]
    industrial evaluate runs/unim2rec_scientific --content data/prepared/scientific_text50 \
                        --features data/prepared/scientific_text50/features/minilm
    torchrun --nproc_per_node 2 -m industrial.cli evaluate runs/idrec_scientific   (or launch/evaluate.py)

Rebuilds the model from the run's ``config.yaml``, loads the checkpoint (``best`` by default),
encodes every item once, ranks every example of the split against the whole catalogue (history
masked) and writes ``metrics.json``, ``report.md``, plots and TensorBoard scalars into
``RUN/eval/<split>/`` (with ``--content``: ``RUN/eval/<split>-<DATASET name>/``; or ``--out``).
``--export`` also writes the item vectors (Parquet + NumPy) and the user encoder's weights
(safetensors), for serving retrieval with an ANN index.

``--content DATASET`` evaluates the trained model on other item content: a dataset with the same
items and evaluation examples whose texts or images differ (``industrial prepare perturb``: some
removed, or noised). End-to-end encoders read its texts and images; a cached-feature model takes
its feature table from ``--features`` (features extracted from DATASET) instead of the checkpoint.
Everything learned (encoders, projector, id table, user encoder) comes from the checkpoint.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from industrial.config import ConfigError, add_override_argument, load
from industrial.data.schema import SPLIT_FILES, DatasetError, read_table
from industrial.distributed.env import init_distributed, shutdown
from industrial.evaluate.breakdown import ItemInfo
from industrial.evaluate.model_eval import encode_catalogue, evaluate_model
from industrial.evaluate.report import export_item_vectors, write_report
from industrial.recipes.build import load_content_tables
from industrial.distributed import checkpoint as ckpt
from industrial.recipes.experiment import ExperimentConfig
from industrial.recipes.run_dataset import dataset_meta, read_run_dataset
from industrial.data.integrity import dataset_fingerprint
from industrial.recipes.loaders import eval_loader
from industrial.recipes.build import build_sharded


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="industrial evaluate", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", help="run folder written by `industrial train` (holds config.yaml, checkpoints/)")
    parser.add_argument("--split", default="test", choices=["valid", "test"])
    parser.add_argument("--checkpoint", default="best", help="best, latest, or a checkpoint folder name (step_...)")
    parser.add_argument("--out", help="report folder (default RUN/eval/SPLIT)")
    parser.add_argument("--export", metavar="DIR", help="also write item vectors and the user encoder for serving")
    parser.add_argument("--content", metavar="DATASET", help="item texts / images from this dataset (same items and examples)")
    parser.add_argument("--features", metavar="DIR", help="with --content, for cached-feature models: features extracted from DATASET")
    parser.add_argument("--other-dataset", action="store_true",
                        help="evaluate on data.path even when it is not the dataset the run trained on (its fingerprint differs)")
    add_override_argument(parser, "override a key of the run's config")
    return parser.parse_args(argv)


def content_overrides(cfg: ExperimentConfig, content: str, features: str | None) -> list[str]:
    """The config overrides of ``--content`` / ``--features``; a clear error when they do not fit."""
    if cfg.model.item.kind.startswith("cached") and features is None:
        raise ConfigError(f"--content: this run's items are cached features (model.item.kind={cfg.model.item.kind}): give --features extracted from {content}")
    for name in ("items.parquet", SPLIT_FILES["valid"], SPLIT_FILES["test"]):
        ours = read_table(cfg.data.path, name, columns=["item_id"] if name == "items.parquet" else ["user_id", "target"])
        theirs = read_table(content, name, columns=ours.column_names)
        if not ours.equals(theirs):
            raise ConfigError(f"--content {content}: {name} does not hold the same rows as {cfg.data.path}/{name}")
    return [f"data.path={content}"] + ([f"model.item.features={features}"] if features else [])


def check_same_dataset(run: Path, path: str, allow_other: bool) -> None:
    """Refuse a dataset other than the one the run trained on (its fingerprint, in ``RUN/dataset.json``)."""
    trained = read_run_dataset(run)
    if trained is None:
        print(f"industrial evaluate: note: {run} records no dataset fingerprint (trained before they existed); not checked", file=sys.stderr)
        return
    now = dataset_fingerprint(path)
    if now != trained["fingerprint"] and not allow_other:
        raise DatasetError(
            f"{path}: not the dataset {run} trained on (fingerprint {now[:12]} here, {trained['fingerprint'][:12]} "
            f"when trained from {trained['path']}); pass --other-dataset to evaluate on it anyway"
        )


def resolve_checkpoint(run: Path, name: str) -> Path:
    """``best``, ``latest`` or a ``step_XXXXXXXX`` folder of the run, its files all present.

    A damaged checkpoint or a pointer naming anything else is a ``CheckpointError``; contents are
    hashed against the manifest when the checkpoint is loaded.
    """
    directory = run / "checkpoints"
    if name in (ckpt.BEST, ckpt.LATEST):
        path = ckpt.find_checkpoint(directory, name)
    else:
        path = ckpt.checkpoint_folder(directory, name) if (directory / name).exists() or not ckpt.is_checkpoint_name(name) else None
    if path is None:
        raise FileNotFoundError(f"{run}: no {name!r} checkpoint (looked in {directory})")
    ckpt.verify_checkpoint(path, hashes=False)
    return path


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    run = Path(args.run)
    if not (run / "config.yaml").is_file():
        raise ConfigError(f"{run}: not a run folder (no config.yaml); give the train.out_dir of a run")
    cfg = load(ExperimentConfig, run / "config.yaml", args.overrides)
    if args.content:  # the same config, reading its item content from elsewhere
        cfg = load(ExperimentConfig, run / "config.yaml", [*args.overrides, *content_overrides(cfg, args.content, args.features)])
    elif args.features:
        raise ConfigError("--features goes with --content")
    else:
        check_same_dataset(run, cfg.data.path, args.other_dataset)
    checkpoint = resolve_checkpoint(run, args.checkpoint)
    if args.export:  # an export folder that cannot be written fails now, not after the evaluation
        Path(args.export).mkdir(parents=True, exist_ok=True)
    env = init_distributed()
    dmp, optimizer, info = build_sharded(cfg, env)
    state = {"model": dmp.state_dict(), "optimizer": optimizer.state_dict()}
    ckpt.load_checkpoint(checkpoint, state, rank_state=False)  # any world size: DCP reshards the model
    dmp.load_state_dict(state["model"])
    if args.content:
        load_content_tables(dmp, cfg, info)
    model = dmp.module.model
    evaluation = evaluate_model(
        model, eval_loader(cfg, args.split, env), env.device, cfg.eval.ks, cfg.eval.item_chunk, ItemInfo.from_dataset(cfg.data.path)
    )
    default_out = run / "eval" / (f"{args.split}-{Path(args.content).name}" if args.content else args.split)
    out = Path(args.out) if args.out else default_out
    if env.is_main:
        meta = {"run": str(run), "checkpoint": checkpoint.name, "split": args.split, "recipe": cfg.recipe, **dataset_meta(cfg.data.path)}
        if args.content:
            meta.update(content=args.content, features=args.features)
        files = write_report(evaluation, out, title=f"{cfg.recipe} ({run.name}): {args.split}", meta=meta, tensorboard_dir=out / "tensorboard")
        print(json.dumps({k: round(v, 4) for k, v in evaluation.metrics.items()}))
        print(f"wrote {files.metrics}, {files.markdown}")
    if args.export:
        model.eval()  # the vectors the evaluator ranked with: no dropout, no noisy gating
        with torch.no_grad():
            vectors = encode_catalogue(model, cfg.eval.item_chunk)
        if env.is_main:
            export = export_item_vectors(args.export, torch.arange(vectors.shape[0]), vectors)
            user_state = {k: v.detach().cpu().contiguous() for k, v in model.user_encoder.state_dict().items()}
            save_file(user_state, str(Path(args.export) / "user_encoder.safetensors"))
            (Path(args.export) / "user_encoder.json").write_text(json.dumps(cfg.model.user.__dict__, indent=2))
            print(f"exported {export.parquet} and {Path(args.export) / 'user_encoder.safetensors'}")
    shutdown()
    return 0
