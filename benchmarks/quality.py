"""Recommendation quality on real data: models trained to convergence, tested with full ranking.

    python -m benchmarks.quality                          # every suite (hours here; --jobs 2 halves it)
    python -m benchmarks.quality --suite scientific       # one suite
    python -m benchmarks.quality --suite fewshot --jobs 2
    python -m benchmarks.quality --dry-run                # the commands only

Suites (results in ``benchmarks/results/quality_<suite>.{json,md}``, curves as PNG):

``scientific``
    Amazon Scientific (UniSRec's leave-one-out split, full ranking over all 4,385 items): IDRec,
    the content-only model (cached MiniLM features + whitening/MoE), the content + id model,
    and the content + id model fine-tuned from a pre-training on Amazon Office (a new domain:
    no shared items or users; projector and user encoder transfer).
``ml100k``
    MovieLens-100K with posters: IDRec against models on the text (MiniLM over title + overview),
    the poster (EfficientNet-Lite0, ImageNet weights) or both, frozen features through
    whitening/MoE, alone (content only) and beside an item-id embedding; does the image add
    anything? Also TransRec's stage 1 and PMMRec's pre-training on the same items with frozen
    backbones (their CPU-sized configs).
``fewshot``
    Scientific with 5/10/20/50/100% of the training users (``industrial prepare sample``; every
    fraction is tested on all users): IDRec and the content + id model from scratch against the
    same model pre-trained on Office.
``robustness``
    The trained Scientific and MovieLens content models evaluated with 0/25/50/100% of the item
    texts (or posters) removed and with noised texts (``industrial prepare perturb``, features
    re-extracted from the perturbed catalogue, ``industrial evaluate --content``); IDRec, which
    reads no content, is the flat reference.

Every model is one ``industrial train`` / ``finetune`` / ``evaluate`` command, the one a user would
type, run in its own process (1 torch thread, ``--jobs`` at a time) with early stopping on
validation NDCG@10; test metrics come from the best validation checkpoint. Datasets and
features are made by the ``industrial prepare`` / ``extract`` commands listed in each suite
(skipped when present). A finished run (its ``result.json``) is read back, not retrained: delete
its folder under ``--workdir`` to retrain; an interrupted run resumes from its last checkpoint.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.common import REPO, RESULTS, TMP, git_commit, machine_info, markdown_table, write_json

METRICS = ("recall@10", "ndcg@10", "recall@50", "ndcg@50")
FRACTIONS = (0.05, 0.1, 0.2, 0.5, 1.0)
PUBLISHED = {"vq-rec": {"recall@10": 0.1211, "ndcg@10": 0.0643, "recall@50": 0.2369, "ndcg@50": 0.0897}}
SCI, OFFICE, ML = "data/prepared/scientific", "data/prepared/office", "data/prepared/ml100k"
SCI_FEATURES, OFFICE_FEATURES, ML_FEATURES = f"{SCI}/features/minilm", f"{OFFICE}/features/minilm", f"{ML}/features/minilm_effnet"


# ----------------------------------------------------------------------------- what is run
@dataclass(frozen=True)
class DataStep:
    """An ``industrial`` command that makes a dataset or features folder; skipped when ``done`` exists."""

    done: str  # a file that exists once the step has finished
    args: tuple[str, ...]  # arguments of ``industrial``


def _prepare(out: str, *args: str) -> DataStep:
    return DataStep(f"{out}/meta.json", ("prepare", *args, "--out", out))


def _extract(dataset: str, out: str, *args: str) -> DataStep:
    return DataStep(f"{out}/features.json", ("extract", "--dataset", dataset, "--out", out, *args))


def _text_features(dataset: str, out: str) -> DataStep:
    return _extract(dataset, out, "--modality", "text", "--encoder", "minilm", "--max-length", "64")


SCIENTIFIC_DATA = (
    _prepare(SCI, "--format", "unisrec", "--source", "data/amazon_scientific_unisrec"),
    _text_features(SCI, SCI_FEATURES),
    _prepare(OFFICE, "--format", "minionerec", "--source", "data/amazon18_minionerec_2dom", "--domains", "Office_Products"),
    _text_features(OFFICE, OFFICE_FEATURES),
)
ML_DATA = (
    _prepare(ML, "--format", "movielens", "--source", "../shared/data/ml100k_posters"),
    _extract(ML, ML_FEATURES, "--modality", "both", "--encoder", "minilm", "--image-encoder", "efficientnet-lite0", "--max-length", "128"),
)


@dataclass(frozen=True)
class QualityRun:
    """One model: an experiment YAML plus overrides, optionally fine-tuned from another run."""

    config: str
    description: str
    overrides: tuple[str, ...] = ()
    pretrained: str | None = None  # name of the run (same suite) whose best checkpoint this one starts from
    transfer: tuple[str, ...] = ()  # parts copied from it (industrial finetune --transfer)
    source: bool = False  # a pre-training run on a source domain: trained, reported apart
    same_as: str | None = None  # "suite/name" of the identical run of another suite: its folder is shared


OFFICE_PRETRAIN = QualityRun(
    "configs/unim2rec_office_pretrain.yaml",
    "pre-training on Amazon Office (source domain): sequence-item + sequence-sequence contrastive",
    source=True,
)
SCIENTIFIC: dict[str, QualityRun] = {
    "idrec": QualityRun("configs/idrec_scientific.yaml", "IDRec: item ids in a sharded table, SASRec-style"),
    "unim2rec": QualityRun(
        "configs/unim2rec_scientific.yaml", "cached MiniLM text features + whitening/MoE projector (content only, inductive)"
    ),
    "unim2rec_id": QualityRun(
        "configs/unim2rec_id_scientific.yaml",
        "cached MiniLM text features + projector + item-id embedding (transductive), dot-product softmax",
    ),
    "unim2rec_id_inbatch": QualityRun(
        "configs/unim2rec_id_scientific.yaml",
        "unim2rec_id with an in-batch sampled softmax (logQ-corrected) instead of the full softmax: the cheaper objective",
        ("loss.kind=sampled_softmax",),
    ),
    "unim2rec_office": OFFICE_PRETRAIN,
    "unim2rec_id_office": QualityRun(
        "configs/unim2rec_id_scientific.yaml",
        "unim2rec_id fine-tuned from the Office pre-training (projector + user encoder transferred)",
        pretrained="unim2rec_office",
        transfer=("projector", "user_encoder"),
    ),
}

ML100K: dict[str, QualityRun] = {
    "idrec": QualityRun("configs/idrec_ml100k.yaml", "IDRec: item ids in a sharded table, SASRec-style"),
    "text": QualityRun("configs/unim2rec_ml100k.yaml", "MiniLM text features only", ("model.item.feature_parts=[text]",)),
    "image": QualityRun("configs/unim2rec_ml100k.yaml", "EfficientNet-Lite0 poster features only", ("model.item.feature_parts=[image]",)),
    "text+image": QualityRun("configs/unim2rec_ml100k.yaml", "text and poster features, concatenated"),
}


def _with_ids(runs: dict[str, QualityRun]) -> dict[str, QualityRun]:
    """Each content model again beside a trainable item-id embedding, with the dot-product
    softmax of unim2rec_id on Scientific and the features as extracted (unit norm, not
    standardised): standardised 1280-d poster features put the initial dot-product logits in the
    tens (the loss stayed above log N, gradient clipping or not), and with cosine / 0.07 the +id
    models tested below the content-only ones (one run each)."""
    ids = ("model.item.kind=cached+id", "loss.temperature=1.0", "loss.normalize=false", "model.item.standardize=false")
    return {
        f"{n}+id": QualityRun(r.config, f"{r.description} (unit norm) + item-id embedding, dot product", r.overrides + ids)
        for n, r in runs.items()
        if n != "idrec"
    }


ML100K.update(_with_ids(ML100K))
#: the seed methods' own recipes with frozen backbones (their outputs computed once per item): the
#: CPU-sized configs (20 items of history, batch 32), trained to early stopping
_FROZEN = ("model.item.multimodal.text.trainable_top_layers=0", "model.item.multimodal.vision.trainable_top_layers=0")
ML100K.update(
    {
        "transrec_stage1": QualityRun(
            "configs/transrec_ml100k_stage1.yaml",
            "TransRec stage 1: mixture of modalities (MiniLM + attention pooling, or EfficientNet-Lite0), frozen backbones",
            ("train.epochs=30",),
        ),
        "pmmrec_frozen": QualityRun(
            "configs/pmmrec_ml100k.yaml",
            "PMMRec pre-training (NICL + NID + RCL + next item), merge-attention fusion over frozen MiniLM / EfficientNet-Lite0 tokens",
            (*_FROZEN, "train.epochs=30", "train.patience=3"),
        ),
    }
)


def _fewshot() -> dict[str, QualityRun]:
    """Per fraction: IDRec, content + id from scratch, content + id from Office; 100% and the
    Office pre-training are the scientific suite's runs (same commands, same folders)."""
    from dataclasses import replace

    runs: dict[str, QualityRun] = {"unim2rec_office": replace(OFFICE_PRETRAIN, same_as="scientific/unim2rec_office")}
    for f in FRACTIONS:
        full = f == 1.0
        data = () if full else (f"data.path={_fraction_path(f)}",)
        for kind, base, what in (("idrec", "idrec", "IDRec"), ("scratch", "unim2rec_id", "content + id from scratch"),
                                 ("pretrained", "unim2rec_id_office", "content + id fine-tuned from Office")):  # fmt: skip
            spec = SCIENTIFIC[base]
            runs[f"{kind}@{f:g}"] = replace(
                spec, description=f"{what}, {f:.0%} of the users", overrides=spec.overrides + data, same_as=f"scientific/{base}" if full else None
            )
    return runs


def _fraction_path(fraction: float) -> str:
    return SCI if fraction == 1.0 else f"{SCI}_users{fraction:g}"


FEWSHOT_DATA = SCIENTIFIC_DATA + tuple(
    DataStep(f"{_fraction_path(f)}/meta.json", ("prepare", "sample", "--input", SCI, "--users", f"{f:g}", "--out", _fraction_path(f)))
    for f in FRACTIONS
    if f < 1.0
)


@dataclass(frozen=True)
class Perturbation:
    """A catalogue with content removed or noised, and the curve it belongs to."""

    name: str
    curve: str  # "text removed", "images removed", "text noised"
    level: float  # x of the curve
    args: tuple[str, ...]  # industrial prepare perturb options


PERTURBATIONS = {
    "scientific": [Perturbation(f"text{int(p * 100)}", "text removed", p, ("--drop-text", f"{p:g}")) for p in (0.25, 0.5, 1.0)]
    + [Perturbation(f"noise{int(p * 100)}", "text noised", p, ("--noise-text", f"{p:g}", "--word-noise", "0.3")) for p in (0.5, 1.0)],
    "ml100k": [Perturbation(f"text{int(p * 100)}", "text removed", p, ("--drop-text", f"{p:g}")) for p in (0.25, 0.5, 1.0)]
    + [Perturbation(f"image{int(p * 100)}", "images removed", p, ("--drop-images", f"{p:g}")) for p in (0.25, 0.5, 1.0)]
    + [Perturbation("noise100", "text noised", 1.0, ("--noise-text", "1", "--word-noise", "0.3"))],
}
#: trained runs evaluated on the perturbed catalogues: (suite, run name)
ROBUST_RUNS = {"scientific": ("unim2rec", "unim2rec_id", "unim2rec_id_office"), "ml100k": ("text", "image", "text+image")}


@dataclass(frozen=True)
class Suite:
    name: str
    data: tuple[DataStep, ...]
    runs: dict[str, QualityRun]
    title: str
    notes: str = ""  # printed under the table


SUITES: dict[str, Suite] = {
    "scientific": Suite("scientific", SCIENTIFIC_DATA, SCIENTIFIC, "Amazon Scientific (test split, full ranking)"),
    "ml100k": Suite(
        "ml100k",
        ML_DATA,
        ML100K,
        "MovieLens-100K with posters (test split, full ranking)",
        "Content-only models (text, image, text+image): configs/unim2rec_ml100k.yaml, cosine / 0.07, features "
        "standardised per part. The +id models add an item-id embedding and use the dot-product softmax of "
        "unim2rec_id on unit-norm features (see _with_ids in benchmarks/quality.py for why). TransRec stage 1 and PMMRec "
        "run their own configs (20 items of history, batch 32) with frozen backbones. One run per model.",
    ),
    "fewshot": Suite("fewshot", FEWSHOT_DATA, _fewshot(), "Scientific few-shot: a fraction of the training users"),
}


@dataclass
class QualityConfig:
    suites: list[str] = field(default_factory=lambda: [*SUITES, "robustness"])
    workdir: str = str(TMP / "quality")  # one folder per suite, one run folder per model
    out: str = str(RESULTS)
    jobs: int = 1  # training processes at a time (each with 1 torch thread)
    extra: list[str] = field(default_factory=list)  # --set overrides for every model
    dry_run: bool = False

    def validate(self) -> None:
        unknown = [s for s in self.suites if s not in SUITES and s != "robustness"]
        if unknown:
            raise ValueError(f"unknown suite {unknown[0]!r}; known: {', '.join([*SUITES, 'robustness'])}")
        if self.jobs < 1:
            raise ValueError("jobs must be >= 1")


# ----------------------------------------------------------------------------- running
def _industrial() -> str:
    return str(Path(sys.executable).parent / "industrial")


def _printable(command: list[str]) -> str:
    return shlex.join(command).replace(_industrial(), "industrial").replace(str(REPO) + "/", "")


def _run(command: list[str], log: Path, dry_run: bool) -> float:
    """Run one command (1 torch thread), its output to ``log``; seconds taken."""
    print(f"$ {_printable(command)}", flush=True)
    if dry_run:
        return 0.0
    log.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    with open(log, "a") as out:
        proc = subprocess.run(command, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"failed ({proc.returncode}): {_printable(command)}; log: {log}")
    return time.perf_counter() - start


def make_data(steps: tuple[DataStep, ...], cfg: QualityConfig) -> None:
    for step in steps:
        if not (REPO / step.done).exists():
            _run([_industrial(), *step.args], Path(cfg.workdir) / "data.log", cfg.dry_run)


def run_folder(suite: Suite, name: str, cfg: QualityConfig) -> Path:
    """``WORKDIR/<suite>/<name>``, or the folder of the identical run of another suite."""
    return Path(cfg.workdir) / (suite.runs[name].same_as or f"{suite.name}/{name}")


def command_of(suite: Suite, name: str, cfg: QualityConfig) -> list[str]:
    """The ``industrial`` command line that trains model ``name`` of ``suite``."""
    spec = suite.runs[name]
    sets = [*spec.overrides, f"train.out_dir={run_folder(suite, name, cfg)}", "train.progress=false", *cfg.extra]
    if spec.pretrained:
        head = [_industrial(), "finetune", "--config", spec.config, "--from", str(run_folder(suite, spec.pretrained, cfg))]
        if spec.transfer:
            head += ["--transfer", *spec.transfer]
    else:
        head = [_industrial(), "train", "--config", spec.config]
    return head + [arg for s in sets for arg in ("--set", s)]


def _read_result(folder: Path, command: str) -> dict[str, Any]:
    result = json.loads((folder / "result.json").read_text())
    test = result.get("test") or {}
    missing = [m for m in METRICS if m not in test]
    if missing:
        raise RuntimeError(f"{folder / 'result.json'}: no test metrics {missing}")
    return {
        **{m: test[m] for m in METRICS},
        "valid": {m: result["valid"][m] for m in METRICS if m in result.get("valid", {})},
        "epochs": result.get("epochs"),
        "best_checkpoint": result.get("checkpoint"),
        "command": command,
    }


def train_suite(suite: Suite, cfg: QualityConfig, only: tuple[str, ...] = ()) -> dict[str, dict[str, Any]]:
    """Train the models of ``suite`` (all, or ``only`` these and their sources), ``cfg.jobs`` at a
    time, a fine-tuning after its source."""
    make_data(suite.data, cfg)
    entries: dict[str, dict[str, Any]] = {}
    wanted = set(only or suite.runs)
    while any(suite.runs[n].pretrained and suite.runs[n].pretrained not in wanted for n in wanted):
        wanted |= {suite.runs[n].pretrained for n in wanted if suite.runs[n].pretrained}
    pending = {n: r for n, r in suite.runs.items() if n in wanted}
    running: dict[Future, str] = {}

    def start(pool: ThreadPoolExecutor, name: str) -> None:
        folder = run_folder(suite, name, cfg)
        if (folder / "result.json").exists() and not cfg.dry_run:
            running[pool.submit(lambda: 0.0)] = name  # trained before: read back
            return
        running[pool.submit(_run, command_of(suite, name, cfg), folder.with_name(folder.name + ".log"), cfg.dry_run)] = name

    with ThreadPoolExecutor(cfg.jobs) as pool:
        while pending or running:
            ready = [n for n, s in pending.items() if s.pretrained is None or s.pretrained in entries]
            for name in ready[: max(0, cfg.jobs - len(running))]:
                del pending[name]
                start(pool, name)
            if not running:
                raise RuntimeError(f"cannot order {sorted(pending)}: a source run is missing from the suite")
            finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for future in finished:
                name = running.pop(future)
                seconds = future.result()
                command = _printable(command_of(suite, name, cfg))
                entries[name] = {"command": command} if cfg.dry_run else _read_result(run_folder(suite, name, cfg), command)
                entries[name]["description"] = suite.runs[name].description
                if seconds:
                    entries[name]["train_seconds"] = round(seconds, 1)
    return {name: entries[name] for name in suite.runs if name in entries}


# ----------------------------------------------------------------------------- suites
def _header(name: str, title: str) -> dict[str, Any]:
    return {
        "benchmark": f"quality_{name}",
        "title": title,
        "command": "python -m benchmarks.quality " + " ".join(sys.argv[1:]),
        "machine": machine_info(),
        "commit": git_commit(),
    }


def _split(entries: dict[str, dict[str, Any]], suite: Suite) -> tuple[dict, dict]:
    models = {n: e for n, e in entries.items() if not suite.runs[n].source}
    sources = {n: e for n, e in entries.items() if suite.runs[n].source}
    return models, sources


def scientific_goals(models: dict[str, dict[str, Any]]) -> dict[str, Any]:
    content = {n: m for n, m in models.items() if n != "idrec"}
    if not content:
        return {}
    best_name = max(content, key=lambda n: content[n]["ndcg@10"])
    best, target = content[best_name], PUBLISHED["vq-rec"]
    goals: dict[str, Any] = {
        "best_content_model": best_name,
        "reaches_vq_rec": bool(best["recall@10"] >= target["recall@10"] and best["ndcg@10"] >= target["ndcg@10"]),
    }
    if "idrec" in models:
        goals["beats_idrec"] = bool(best["recall@10"] > models["idrec"]["recall@10"] and best["ndcg@10"] > models["idrec"]["ndcg@10"])
    return goals


def run_table_suite(name: str, cfg: QualityConfig) -> dict[str, Any]:
    suite = SUITES[name]
    models, sources = _split(train_suite(suite, cfg), suite)
    result = {**_header(name, suite.title), "models": models, "pretraining": sources, "notes": suite.notes}
    if name == "scientific":
        result["published"] = PUBLISHED
        result["data"] = "Amazon Scientific (UniSRec split, leave-one-out), full ranking over all 4,385 items, history excluded"
        result["goals"] = {} if cfg.dry_run else scientific_goals(models)
    if name == "ml100k":
        result["data"] = "MovieLens-100K (leave-one-out), full ranking over all 1,682 movies, history excluded; 1,663 posters"
        if not cfg.dry_run:
            result["image_adds"] = {  # relative change of test NDCG@10
                f"{more} vs {less}": round(models[more]["ndcg@10"] / models[less]["ndcg@10"] - 1, 4)
                for less, more in (("text", "text+image"), ("text+id", "text+image+id"), ("idrec", "image+id"), ("idrec", "text+id"))
                if {less, more} <= set(models)
            }
    return result


def run_fewshot(cfg: QualityConfig) -> dict[str, Any]:
    suite = SUITES["fewshot"]
    models, sources = _split(train_suite(suite, cfg), suite)
    curves = {kind: {f"{f:g}": models.get(f"{kind}@{f:g}") for f in FRACTIONS} for kind in ("idrec", "scratch", "pretrained")}
    result = {**_header("fewshot", suite.title), "fractions": list(FRACTIONS), "models": models, "pretraining": sources, "curves": curves}
    if not cfg.dry_run:
        result["pretrained_beats_scratch"] = {
            f"{f:g}": bool(models[f"pretrained@{f:g}"]["ndcg@10"] > models[f"scratch@{f:g}"]["ndcg@10"]) for f in FRACTIONS
        }
        labels = {"idrec": "IDRec", "scratch": "content + id, from scratch", "pretrained": "content + id, pre-trained on Office"}
        _curve_png(
            Path(cfg.out) / "quality_fewshot.png",
            "Scientific, share of the training users (log scale; tested on all users)",
            {labels[k]: [(f, curves[k][f"{f:g}"]["ndcg@10"]) for f in FRACTIONS] for k in curves},
            log_x=True,
        )
    return result


def run_robustness(cfg: QualityConfig) -> dict[str, Any]:
    """Evaluate trained content models on perturbed catalogues (their suites are trained first)."""
    result = {**_header("robustness", "Trained models on item content removed or noised (test split)"), "suites": {}}
    for suite_name, run_names in ROBUST_RUNS.items():
        suite = SUITES[suite_name]
        entries = train_suite(suite, cfg, only=(*run_names, "idrec"))
        base = SCI if suite_name == "scientific" else ML
        features = SCI_FEATURES if suite_name == "scientific" else ML_FEATURES
        folder = Path(cfg.workdir) / "robustness" / suite_name
        rows: dict[str, dict[str, Any]] = {}
        for p in PERTURBATIONS[suite_name]:
            data = str(folder / p.name)
            feats = f"{data}/features/{Path(features).name}"
            make_data((DataStep(f"{data}/meta.json", ("prepare", "perturb", "--input", base, *p.args, "--out", data)),), cfg)
            modality = ("--modality", "text", "--encoder", "minilm", "--max-length", "64") if suite_name == "scientific" else (
                "--modality", "both", "--encoder", "minilm", "--image-encoder", "efficientnet-lite0", "--max-length", "128")  # fmt: skip
            make_data((_extract(data, feats, *modality, "--reuse", features),), cfg)  # encodes the changed items only
            for run in run_names:
                out = run_folder(suite, run, cfg) / "eval" / f"test-{p.name}"
                command = [_industrial(), "evaluate", str(run_folder(suite, run, cfg)), "--content", data, "--features", feats]
                if not (out / "metrics.json").exists():
                    _run(command, folder / "evaluate.log", cfg.dry_run)
                row = rows.setdefault(run, {"clean": {m: entries[run][m] for m in METRICS} if not cfg.dry_run else {}})
                if not cfg.dry_run:
                    metrics = json.loads((out / "metrics.json").read_text())
                    row[p.name] = {"curve": p.curve, "level": p.level, **{m: metrics[m] for m in METRICS}, "command": _printable(command)}
        if not cfg.dry_run:
            rows["idrec (reads no content)"] = {"clean": {m: entries["idrec"][m] for m in METRICS}}
        result["suites"][suite_name] = {"perturbations": [p.__dict__ for p in PERTURBATIONS[suite_name]], "models": rows}
        if not cfg.dry_run:
            curves, styles = {}, {}
            kinds = list(dict.fromkeys(p.curve for p in PERTURBATIONS[suite_name]))
            for i, run in enumerate(run_names):
                for p in PERTURBATIONS[suite_name]:
                    label = f"{run}: {p.curve}"
                    curves.setdefault(label, [(0.0, rows[run]["clean"]["ndcg@10"])]).append((p.level, rows[run][p.name]["ndcg@10"]))
                    styles[label] = {"color": f"C{i}", "linestyle": ("-", "--", ":")[kinds.index(p.curve) % 3]}
            reference = "idrec (reads no content)"
            curves[reference] = [(0.0, rows[reference]["clean"]["ndcg@10"]), (1.0, rows[reference]["clean"]["ndcg@10"])]
            styles[reference] = {"color": "grey", "linestyle": "-.", "marker": ""}
            _curve_png(Path(cfg.out) / f"quality_robustness_{suite_name}.png", f"{suite.title}: share of items perturbed", curves, styles=styles)
    return result


def _curve_png(
    path: Path, xlabel: str, curves: dict[str, list[tuple[float, float]]], log_x: bool = False, styles: dict[str, dict] | None = None
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for label, points in curves.items():
        points = sorted(dict(points).items())
        style = {"marker": "o", **(styles or {}).get(label, {})}
        ax.plot([x for x, _ in points], [y for _, y in points], label=label, **style)
    if log_x:
        ax.set_xscale("log")
        xs = sorted({x for points in curves.values() for x, _ in points})
        ax.set_xticks(xs, [f"{x:.0%}" for x in xs])
        ax.minorticks_off()
    ax.set_xlabel(xlabel)
    ax.set_ylabel("test NDCG@10")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ----------------------------------------------------------------------------- reports
def markdown(result: dict[str, Any]) -> str:
    lines = [f"# Quality: {result['title']}", "", f"Commit {result['commit']}. Command: `{result['command']}`.", ""]
    if "suites" in result:  # robustness
        for suite_name, suite in result["suites"].items():
            names = [p["name"] for p in suite["perturbations"]]
            rows = [[run, f"{row['clean'].get('ndcg@10', float('nan')):.4f}", *(f"{row[n]['ndcg@10']:.4f}" if n in row else "=" for n in names)]
                    for run, row in suite["models"].items()]  # fmt: skip
            lines += [f"## {suite_name}: test NDCG@10", "", markdown_table(["model", "clean", *names], rows), ""]
        lines += ["Columns: textN = N% of the item texts removed, imageN = N% of the posters removed, noiseN = N% of the",
                  "texts with 30% of their words replaced by random catalogue words.", ""]  # fmt: skip
        return "\n".join(lines)
    models = result["models"]
    rows = [[name, m.get("description", ""), *(f"{m[k]:.4f}" for k in METRICS), m.get("epochs", "")] for name, m in models.items()]
    rows += [[f"{name} (published)", "", *(f"{v[k]:.4f}" for k in METRICS), ""] for name, v in result.get("published", {}).items()]
    lines += [markdown_table(["model", "what", *METRICS, "epochs"], rows), ""]
    if result.get("notes"):
        lines += [result["notes"], ""]
    for key in ("goals", "image_adds", "pretrained_beats_scratch"):
        if result.get(key):
            lines += [f"{key}: `{json.dumps(result[key])}`", ""]
    lines += ["Commands:", ""]
    lines += [f"- `{name}`: `{m['command']}`" for name, m in {**result.get("pretraining", {}), **models}.items()]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None) -> QualityConfig:
    d = QualityConfig()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--suite", action="append", dest="suites", help=f"one of {', '.join(d.suites)} (repeatable; default all)")
    p.add_argument("--workdir", default=d.workdir)
    p.add_argument("--out", default=d.out)
    p.add_argument("--jobs", type=int, default=d.jobs, help="training processes at a time")
    p.add_argument("--set", dest="extra", action="append", default=[], metavar="KEY=VALUE", help="override for every model")
    p.add_argument("--dry-run", action="store_true")
    a = p.parse_args(argv)
    cfg = QualityConfig(suites=a.suites or d.suites, workdir=a.workdir, out=a.out, jobs=a.jobs, extra=a.extra, dry_run=a.dry_run)
    cfg.validate()
    return cfg


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    for name in cfg.suites:
        if name == "fewshot":
            result = run_fewshot(cfg)
        elif name == "robustness":
            result = run_robustness(cfg)
        else:
            result = run_table_suite(name, cfg)
        if not cfg.dry_run:
            out = Path(cfg.out)
            write_json(result, out / f"quality_{name}.json")
            (out / f"quality_{name}.md").write_text(markdown(result))
            print(markdown(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
