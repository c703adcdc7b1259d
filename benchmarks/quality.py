"""Recommendation quality on real data: every model trained to convergence, tested with full ranking.

    python -m benchmarks.quality                          # the Scientific suite (about an hour here)
    python -m benchmarks.quality --models idrec,unim2rec_id
    python -m benchmarks.quality --dry-run                # the commands only

Each model is one ``industrial train`` (or ``industrial finetune``) command, the one a user would
type, run in its own process with early stopping on validation NDCG@10; its test metrics come
from the run's ``result.json`` (the best validation checkpoint, full ranking over every item,
history items excluded). A model whose run folder already holds ``result.json`` is read back, not
retrained (delete the folder to retrain; an interrupted run resumes from its last checkpoint).

Results: ``benchmarks/results/quality_scientific.{json,md}``: ``models`` maps each name to its
``recall@10``, ``ndcg@10``, ``recall@50``, ``ndcg@50``, the validation metrics, epochs and the
exact ``command``; ``command`` at the top level is this benchmark's own command line.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.common import REPO, RESULTS, TMP, git_commit, machine_info, markdown_table, write_json

METRICS = ("recall@10", "ndcg@10", "recall@50", "ndcg@50")


@dataclass(frozen=True)
class QualityRun:
    """One model: an experiment YAML plus overrides, optionally fine-tuned from another run."""

    config: str
    description: str
    overrides: tuple[str, ...] = ()
    pretrained: str | None = None  # name of the run whose best checkpoint this one starts from
    transfer: tuple[str, ...] = ()  # parts copied from it (industrial finetune --transfer)
    source: bool = False  # a pre-training run on a source domain: trained, reported apart (not a Scientific model)


SCIENTIFIC: dict[str, QualityRun] = {
    "idrec": QualityRun("configs/idrec_scientific.yaml", "IDRec: item ids in a sharded table, SASRec-style"),
    "unim2rec": QualityRun(
        "configs/unim2rec_scientific.yaml", "cached MiniLM text features + whitening/MoE projector (text only, inductive)"
    ),
    "unim2rec_id": QualityRun(
        "configs/unim2rec_id_scientific.yaml",
        "cached MiniLM text features + projector + item-id embedding (transductive), dot-product softmax",
    ),
    "unim2rec_office": QualityRun(
        "configs/unim2rec_office_pretrain.yaml",
        "pre-training on Amazon Office (source domain): sequence-item + sequence-sequence contrastive",
        source=True,
    ),
    "unim2rec_id_office": QualityRun(
        "configs/unim2rec_id_scientific.yaml",
        "unim2rec_id fine-tuned from the Office pre-training (projector + user encoder transferred)",
        pretrained="unim2rec_office",
        transfer=("projector", "user_encoder"),
    ),
}

PUBLISHED = {"vq-rec": {"recall@10": 0.1211, "ndcg@10": 0.0643, "recall@50": 0.2369, "ndcg@50": 0.0897}}


@dataclass
class QualityConfig:
    models: list[str] = field(default_factory=lambda: list(SCIENTIFIC))
    workdir: str = str(TMP / "quality" / "scientific")  # one run folder per model
    out: str = str(RESULTS)
    extra: list[str] = field(default_factory=list)  # --set overrides for every model
    dry_run: bool = False

    def validate(self) -> None:
        unknown = [m for m in self.models if m not in SCIENTIFIC]
        if unknown:
            raise ValueError(f"unknown models {unknown}; known: {', '.join(SCIENTIFIC)}")
        for name in self.models:
            source = SCIENTIFIC[name].pretrained
            if source and source not in self.models:
                raise ValueError(f"{name} is fine-tuned from {source}: add it to --models")


def command_of(name: str, cfg: QualityConfig) -> list[str]:
    """The ``industrial`` command line that trains model ``name``."""
    spec = SCIENTIFIC[name]
    industrial = str(Path(sys.executable).parent / "industrial")
    sets = [*spec.overrides, f"train.out_dir={Path(cfg.workdir) / name}", "train.progress=false", *cfg.extra]
    if spec.pretrained:
        head = [industrial, "finetune", "--config", spec.config, "--from", str(Path(cfg.workdir) / spec.pretrained)]
        if spec.transfer:
            head += ["--transfer", *spec.transfer]
    else:
        head = [industrial, "train", "--config", spec.config]
    return head + [arg for s in sets for arg in ("--set", s)]


def train_one(name: str, cfg: QualityConfig) -> dict[str, Any]:
    """Train (or read back) one model; its test and validation metrics and its command."""
    command = command_of(name, cfg)
    folder = Path(cfg.workdir) / name
    result_file = folder / "result.json"
    printable = shlex.join(command).replace(str(REPO) + "/", "")
    seconds = None
    if not result_file.exists():
        print(f"== {name}\n$ {printable}", flush=True)
        folder.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        with open(folder.parent / f"{name}.log", "a") as log:
            proc = subprocess.run(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        seconds = time.perf_counter() - start
        if proc.returncode != 0:
            raise RuntimeError(f"{name} failed ({proc.returncode}); log: {folder.parent / f'{name}.log'}")
    result = json.loads(result_file.read_text())
    test = result.get("test") or {}
    missing = [m for m in METRICS if m not in test]
    if missing:
        raise RuntimeError(f"{result_file}: no test metrics {missing}")
    entry = {m: test[m] for m in METRICS}
    entry.update(
        description=SCIENTIFIC[name].description,
        valid={m: result["valid"][m] for m in METRICS if m in result.get("valid", {})},
        epochs=result.get("epochs"),
        best_checkpoint=result.get("checkpoint"),
        command=printable,
    )
    if seconds is not None:
        entry["train_seconds"] = round(seconds, 1)
    return entry


def run(cfg: QualityConfig) -> dict[str, Any]:
    cfg.validate()
    if cfg.dry_run:
        for name in cfg.models:
            print(shlex.join(command_of(name, cfg)))
        return {}
    trained = {name: train_one(name, cfg) for name in cfg.models}
    models = {name: entry for name, entry in trained.items() if not SCIENTIFIC[name].source}
    sources = {name: entry for name, entry in trained.items() if SCIENTIFIC[name].source}
    return {
        "benchmark": "quality_scientific",
        "data": "Amazon Scientific (UniSRec split, leave-one-out), full ranking over all 4,385 items, history excluded",
        "models": models,
        "pretraining": sources,
        "published": PUBLISHED,
        "goals": _goals(models),
        "command": "python -m benchmarks.quality " + " ".join(sys.argv[1:]),
        "machine": machine_info(),
        "commit": git_commit(),
    }


def _goals(models: dict[str, dict[str, Any]]) -> dict[str, Any]:
    content = {n: m for n, m in models.items() if n != "idrec"}
    if not content:
        return {}
    best_name = max(content, key=lambda n: content[n]["ndcg@10"])
    best = content[best_name]
    target = PUBLISHED["vq-rec"]
    goals: dict[str, Any] = {
        "best_content_model": best_name,
        "reaches_vq_rec": bool(best["recall@10"] >= target["recall@10"] and best["ndcg@10"] >= target["ndcg@10"]),
    }
    if "idrec" in models:
        idrec = models["idrec"]
        goals["beats_idrec"] = bool(best["recall@10"] > idrec["recall@10"] and best["ndcg@10"] > idrec["ndcg@10"])
    return goals


def markdown(result: dict[str, Any]) -> str:
    rows = [[name, m["description"], *(f"{m[k]:.4f}" for k in METRICS), m.get("epochs", "")] for name, m in result["models"].items()]
    rows += [[f"{name} (published)", "", *(f"{v[k]:.4f}" for k in METRICS), ""] for name, v in result["published"].items()]
    lines = [
        "# Quality on Amazon Scientific (test split, full ranking)",
        "",
        result["data"] + f". Commit {result['commit']}.",
        "",
        markdown_table(["model", "what", *METRICS, "epochs"], rows),
        "",
        f"Goals: {json.dumps(result['goals'])}",
        "",
        "Commands:",
        "",
        *(f"- `{name}`: `{m['command']}`" for name, m in {**result["pretraining"], **result["models"]}.items()),
        "",
    ]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> QualityConfig:
    d = QualityConfig()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default=",".join(d.models), help=f"comma separated, from {', '.join(SCIENTIFIC)}")
    p.add_argument("--workdir", default=d.workdir)
    p.add_argument("--out", default=d.out)
    p.add_argument("--set", dest="extra", action="append", default=[], metavar="KEY=VALUE", help="override for every model")
    p.add_argument("--dry-run", action="store_true")
    a = p.parse_args(argv)
    return QualityConfig(
        models=[m.strip() for m in a.models.split(",") if m.strip()], workdir=a.workdir, out=a.out, extra=a.extra, dry_run=a.dry_run
    )


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    result = run(cfg)
    if result:
        out = Path(cfg.out)
        write_json(result, out / "quality_scientific.json")
        (out / "quality_scientific.md").write_text(markdown(result))
        print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
