"""Training throughput of every model family against the IDRec baseline, and its MFU.

    python -m benchmarks.throughput                              # idrec, unim2rec on Scientific
    python -m benchmarks.throughput --repeats 12 --steps 6 --trace   # longer, with profiler traces
    python -m benchmarks.throughput --set loss.kind=sampled_softmax  # an override for every model
    python -m benchmarks.throughput --batch-sizes 128,512,2048       # the batch sweep (last = headline)

Every model trains through the project's own code path: :func:`industrial.recipes.build.build_sharded`
(task, TorchRec sharding, DMP, fused sparse + dense optimizer, table initialisation),
:func:`industrial.recipes.loaders.train_loader` (the streaming loader) and ``Trainer.step``
(batch to device -> ``loss, logs = dmp(batch)`` -> backward -> clip -> optimizer step), on the
same data (the real Scientific split and its cached MiniLM features), the same batches (same loader
seed), the same batch size and sequence length and the **same user-encoder size**. What is held
equal is applied as config overrides to every model (:meth:`ThroughputConfig.shared_overrides`);
each model keeps its own item side, objective and optimizer (its YAML).

**Batch size.** A full-softmax content model projects the whole catalogue once per step (every
item's vector enters the softmax), a fixed cost per step that the batch amortises; IDRec reads its
catalogue from the table for free. The benchmark therefore sweeps the batch size (``batch_sizes``,
128, 512 and 2048 sequences by default, each size a separate interleaved run) and reports the
ratio at every size, and each model's best throughput over the sweep against IDRec's best (IDRec
is fastest per sequence at small batches: at large ones its softmax over the catalogue is bound
by memory traffic). The headline (``models``) is the last size.

**Measured.** A repetition is ``steps`` training steps, the time to fetch each batch from the
loader included (the loader prefetches in a thread). Models alternate repetition by repetition
(:func:`benchmarks.harness.run_interleaved`), all in one process and one run, so their ratio
is taken under the same machine load::

    samples/s       = sequences trained / wall second             (median over repetitions, p10/p90)
    interactions/s  = target positions trained / wall second      (each position predicts an item)
    ratio_to_idrec  = samples/s(model) / samples/s(idrec)         (ratio of the medians)
    MFU             = FLOPs per sample × samples/s / matmul peak  (see benchmarks/harness.py)

FLOPs per sample are counted with ``FlopCounterMode`` on ``flop_steps`` real training steps taken
after the timed ones (forward and backward of the dense computation: the Transformer, the
projector, the logits over the catalogue; matmul-class operators only) divided by the sequences
of those steps; counted after, so that a frozen encoder's per-item cache is as warm as in the
timed steps. The peak is a
plain fp32 2048×2048 matmul at the same thread count, measured before and after the models (the
best rate counts).

**Adding a model.** Register a :class:`ModelSpec` in :data:`MODELS` (its YAML and overrides).

**End-to-end content models** (``pmmrec_*``, ``transrec_*``) read the same data: Scientific has
text only, so they run their text towers (PMMRec's text-only tower, TransRec's text encoder) and
their vision encoders stay idle. They run at ``END_TO_END_BATCH`` sequences per step, in a run of
their own beside IDRec at that batch (their ratio is to it), since one step of 512 sequences
through MiniLM takes minutes here.

Results: ``benchmarks/results/throughput.{json,md,png}``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.common import RESULTS, TMP, REPO, current_rss_bytes, human_bytes, markdown_table, write_json
from benchmarks.harness import (
    Counters,
    FlopCount,
    HarnessConfig,
    Measurement,
    Spread,
    bar_chart,
    count_flops,
    matmul_peak,
    mfu,
    result_header,
    run_interleaved,
    set_threads,
    trace,
)

BASELINE = "idrec"


@dataclass(frozen=True)
class ModelSpec:
    """A model family as the benchmark builds it: its experiment YAML plus overrides."""

    config: str  # experiment YAML, relative to the repository root
    description: str
    overrides: tuple[str, ...] = ()  # KEY=VALUE on top of the YAML (before the shared ones)
    needs_features: bool = False  # reads cached content features (model.item.features)
    # end-to-end content encoders run at this batch, beside IDRec at the same batch (a step of 512
    # sequences through MiniLM takes minutes on a CPU)
    batch_size: int | None = None
    steps: int | None = None  # training steps per timed repetition (default: the config's)


def _encoders(trainable_top_layers: int) -> tuple[str, ...]:
    """Overrides that freeze (0) or train the top layers of both content encoders."""
    return (
        f"model.item.multimodal.text.trainable_top_layers={trainable_top_layers}",
        f"model.item.multimodal.vision.trainable_top_layers={trainable_top_layers}",
    )


END_TO_END_BATCH = 16

MODELS: dict[str, ModelSpec] = {
    "idrec": ModelSpec(
        "configs/idrec_scientific.yaml",
        "item ids in a sharded TorchRec table (SASRec-style ID baseline)",
    ),
    "unim2rec": ModelSpec(
        "configs/unim2rec_scientific.yaml",
        "cached MiniLM text features in a sharded TorchRec table + parametric whitening / MoE projector",
        needs_features=True,
    ),
    "unim2rec_id": ModelSpec(
        "configs/unim2rec_id_scientific.yaml",
        "cached MiniLM features + projector + item-id embedding, dot-product full softmax (the best content recipe)",
        needs_features=True,
    ),
    "unim2rec_id_inbatch": ModelSpec(
        "configs/unim2rec_id_scientific.yaml",
        "unim2rec_id with an in-batch sampled softmax (logQ-corrected): projects the batch's items, not the catalogue",
        ("loss.kind=sampled_softmax",),
        needs_features=True,
    ),
    "pmmrec_frozen": ModelSpec(
        "configs/pmmrec_ml100k_finetune.yaml",
        "PMMRec item tower (MiniLM tokens, merge-attention fusion), encoders frozen (outputs kept per item)",
        _encoders(0),
        batch_size=END_TO_END_BATCH,
        steps=1,
    ),
    "pmmrec_top2": ModelSpec(
        "configs/pmmrec_ml100k_finetune.yaml",
        "PMMRec item tower, top 2 layers of the encoders trained end to end",
        _encoders(2),
        batch_size=END_TO_END_BATCH,
        steps=1,
    ),
    "transrec_frozen": ModelSpec(
        "configs/transrec_ml100k_stage2.yaml",
        "TransRec mixture-of-modality item encoders (MiniLM + attention pooling), frozen; CPC/BCE",
        _encoders(0),
        batch_size=END_TO_END_BATCH,
        steps=1,
    ),
    "transrec_top2": ModelSpec(
        "configs/transrec_ml100k_stage2.yaml",
        "TransRec item encoders, top 2 layers trained end to end; CPC/BCE",
        _encoders(2),
        batch_size=END_TO_END_BATCH,
        steps=1,
    ),
}


@dataclass
class UserEncoderSize:
    """The user encoder every model gets (held equal across models)."""

    dim: int = 64
    layers: int = 2
    heads: int = 2
    inner_dim: int = 256


@dataclass
class ThroughputConfig:
    models: list[str] = field(default_factory=lambda: list(MODELS))  # the baseline is always included
    data: str = "data/prepared/scientific"  # prepared dataset (real data)
    features: str = "data/prepared/scientific/features/minilm"  # cached content features
    batch_sizes: list[int] = field(default_factory=lambda: [128, 512, 2048])  # sequences per step; the last is the headline
    max_seq_len: int = 50
    user: UserEncoderSize = field(default_factory=UserEncoderSize)
    seed: int = 0
    steps: int = 4  # training steps per timed repetition
    flop_steps: int = 2  # steps counted by FlopCounterMode (not timed)
    matmul_size: int = 2048
    overrides: list[str] = field(default_factory=list)  # KEY=VALUE for every model, applied last
    harness: HarnessConfig = field(default_factory=HarnessConfig)
    workdir: str = str(TMP / "throughput")  # run folders of the trainers (TensorBoard), traces
    out: str = str(RESULTS)

    def validate(self) -> None:
        self.harness.validate()
        unknown = [m for m in self.models if m not in MODELS]
        if unknown:
            raise ValueError(f"unknown model {unknown[0]!r}; known: {', '.join(MODELS)}")
        if self.steps < 1 or self.flop_steps < 1 or not self.batch_sizes or min(self.batch_sizes) < 1:
            raise ValueError("steps, flop_steps and every batch size must be >= 1")

    @property
    def batch_size(self) -> int:
        """The headline batch size (the last of ``batch_sizes``)."""
        return self.batch_sizes[-1]

    def model_names(self) -> list[str]:
        return [BASELINE] + [m for m in dict.fromkeys(self.models) if m != BASELINE]

    def shared_overrides(self, name: str, batch_size: int) -> list[str]:
        """What every model gets alike: data, batch, sequence length, user encoder, seed."""
        u = self.user
        return [
            f"data.path={self.data}",
            f"data.batch_size={batch_size}",
            f"data.max_seq_len={self.max_seq_len}",
            f"model.user.dim={u.dim}",
            f"model.user.layers={u.layers}",
            f"model.user.heads={u.heads}",
            f"model.user.inner_dim={u.inner_dim}",
            f"model.user.max_len={self.max_seq_len}",
            f"train.seed={self.seed}",
            f"train.out_dir={Path(self.workdir) / name}",
            "train.progress=false",
        ]


def check_inputs(cfg: ThroughputConfig) -> None:
    """Clear errors for a missing dataset or features file (with the commands that make them)."""
    if not (Path(cfg.data) / "meta.json").exists():
        raise FileNotFoundError(
            f"{cfg.data}: no prepared dataset. Make it with: industrial prepare --format unisrec "
            "--source data/amazon_scientific_unisrec --out data/prepared/scientific --row-group-size 256"
        )
    if any(MODELS[m].needs_features for m in cfg.models) and not Path(cfg.features).exists():
        raise FileNotFoundError(
            f"{cfg.features}: no features. Make them with: industrial extract --dataset {cfg.data} "
            f"--out {cfg.features} --modality text --encoder minilm"
        )


# ----------------------------------------------------------------------------- one model
class ModelRun:
    """A model built through the training code path, stepping through its own loader."""

    def __init__(self, name: str, cfg: ThroughputConfig, env: Any, batch_size: int) -> None:
        from industrial.config import load
        from industrial.recipes.experiment import ExperimentConfig
        from industrial.recipes.loaders import train_loader
        from industrial.recipes.build import build_sharded
        from industrial.train.trainer import Trainer

        spec = MODELS[name]
        self.name, self.spec = name, spec
        self.overrides = [*spec.overrides, *cfg.shared_overrides(name, batch_size)]
        if spec.needs_features:
            self.overrides.append(f"model.item.features={cfg.features}")
        self.overrides += cfg.overrides
        self.config = load(ExperimentConfig, REPO / spec.config, self.overrides)
        dmp, optimizer, info = build_sharded(self.config, env)
        self.trainer = Trainer(self.config, env, dmp, optimizer, train_loader(self.config, env, info), None, info)
        self.steps = spec.steps or cfg.steps
        self.batches = self._forever()
        self.rss_after_build = current_rss_bytes()
        dmp.train()

    def _forever(self) -> Iterator[Any]:
        while True:
            empty = True
            for batch in self.trainer.loader:
                empty = False
                yield batch
            if empty:
                raise RuntimeError(f"{self.name}: the training split yields no batch of {self.config.data.batch_size}")

    def window(self, steps: int | None = None) -> Counters:
        """``steps`` training steps (loader included); counters of what they trained."""
        counters = {"samples": 0.0, "interactions": 0.0, "tokens": 0.0, "padded_tokens": 0.0, "loader_seconds": 0.0}
        for _ in range(steps or self.steps):
            t0 = time.perf_counter()
            batch = next(self.batches)
            counters["loader_seconds"] += time.perf_counter() - t0
            self.trainer.step(batch)
            history = batch.lengths("history")
            counters["samples"] += batch.batch_size
            counters["interactions"] += int(batch.lengths("target").sum())
            counters["tokens"] += int(history.sum())
            counters["padded_tokens"] += int(history.max()) * batch.batch_size  # the user encoder pads to the longest
        return counters

    def parameters(self) -> dict[str, int]:
        """Parameter counts: user encoder, dense item side (projector...), each item table (rows x dim)."""
        from industrial.modules.item_tables import CachedFeatureTable, ItemIdTable

        model = self.trainer.dmp.module.model
        tables = {m.table_name: m.num_items * m.dim for m in model.modules() if isinstance(m, (ItemIdTable, CachedFeatureTable))}
        return {
            "user_encoder": sum(p.numel() for p in model.user_encoder.parameters()),
            "item_side_dense": sum(p.numel() for n, p in model.item_encoder.named_parameters() if "embeddings" not in n),
            **{f"table_{name}": n for name, n in tables.items()},
        }


# ----------------------------------------------------------------------------- the benchmark
def count_model_flops(model: ModelRun, steps: int) -> tuple[FlopCount, float]:
    """FLOPs of ``steps`` real training steps and the sequences they trained (untimed: the
    counter slows the step down)."""
    samples: list[float] = []
    flops = count_flops(lambda: samples.append(model.window(1)["samples"]), calls=steps)
    return flops, sum(samples)


def summarise(run: ModelRun, m: Measurement, flops: Any, flop_samples: float, peak: float) -> dict[str, Any]:
    from industrial.config import to_dict

    samples = m.rate("samples")
    flops_per_sample = flops.total / flop_samples
    return {
        "description": run.spec.description,
        "samples_per_s": samples.median,
        "interactions_per_s": m.rate("interactions").median,
        "mfu": mfu(flops_per_sample, samples.median, peak),
        "flops_per_sample": flops_per_sample,
        "flops_by_operator": flops.by_operator,
        "flop_steps": flops.calls,
        "achieved_flops_per_s": flops_per_sample * samples.median,
        "step_seconds": Spread.of([s / run.steps for s in m.seconds]).to_dict(),
        "loader_wait_fraction": m.total("loader_seconds") / sum(m.seconds),
        "padding_fraction": 1.0 - m.total("tokens") / m.total("padded_tokens"),
        "interactions_per_sample": m.total("interactions") / m.total("samples"),
        "parameters": run.parameters(),
        "rss_after_build_bytes": run.rss_after_build,
        "timing": m.to_dict(rates=("samples", "interactions")),
        "overrides": run.overrides,
        "experiment_config": to_dict(run.config),
    }


def add_ratios(models: dict[str, dict[str, Any]], measurements: dict[str, Measurement]) -> None:
    """``ratio_to_idrec`` (ratio of medians) and the spread of the per-round ratios."""
    base = models[BASELINE]
    base_rates = [r for r in _rates(measurements[BASELINE])]
    for name, entry in models.items():
        entry["ratio_to_idrec"] = entry["samples_per_s"] / base["samples_per_s"]
        entry["interactions_ratio_to_idrec"] = entry["interactions_per_s"] / base["interactions_per_s"]
        rounds = [a / b for a, b in zip(_rates(measurements[name]), base_rates)]
        entry["ratio_to_idrec_per_round"] = Spread.of(rounds).to_dict()


def _rates(m: Measurement) -> list[float]:
    return [c["samples"] / s for c, s in zip(m.counters, m.seconds)]


def measure(cfg: ThroughputConfig, env: Any, batch_size: int, names: list[str]) -> dict[str, dict[str, Any]]:
    """``names`` (IDRec first) at one batch size, interleaved: ``{name: summary}`` with ratios to
    the IDRec of the same run (MFU is filled in once the matmul peak is known)."""
    print(f"throughput: {', '.join(names)}, batch {batch_size}", file=sys.stderr, flush=True)
    runs = {name: ModelRun(name, cfg, env, batch_size) for name in names}
    measurements = run_interleaved({name: model.window for name, model in runs.items()}, cfg.harness)
    # after the timed steps: the FLOPs of steps like them (a frozen encoder's per-item cache as warm)
    flops = {name: count_model_flops(model, cfg.flop_steps) for name, model in runs.items()}
    models = {name: summarise(runs[name], measurements[name], *flops[name], 1.0) | {"batch_size": batch_size} for name in names}
    add_ratios(models, measurements)
    if cfg.harness.trace_dir:
        for name, model in runs.items():
            path = Path(cfg.harness.trace_dir) / f"throughput_{name}_b{batch_size}.json"
            table = trace(lambda: model.window(), path, calls=cfg.harness.trace_repeats)
            (path.with_suffix(".txt")).write_text(table)
            models[name]["trace"] = {"chrome_trace": str(path), "top_operators": str(path.with_suffix(".txt"))}
    return models


def run(cfg: ThroughputConfig) -> dict[str, Any]:
    """The batch sweep of IDRec and the cached-feature models, then the end-to-end models beside
    IDRec at their own (small) batch: every ratio compares models of one interleaved run."""
    from industrial.distributed.env import init_distributed

    cfg.validate()
    check_inputs(cfg)
    threads = set_threads(cfg.harness.threads)
    env = init_distributed()
    print(f"throughput on {cfg.data} ({threads} torch threads)", file=sys.stderr, flush=True)
    swept = [n for n in cfg.model_names() if MODELS[n].batch_size is None]
    end_to_end = [n for n in cfg.model_names() if MODELS[n].batch_size is not None]
    peak_before = matmul_peak(cfg.matmul_size)
    # the peak is taken before and after all the models; the best rate counts
    by_batch = {str(b): measure(cfg, env, b, swept) for b in cfg.batch_sizes}
    e2e = measure(cfg, env, END_TO_END_BATCH, [BASELINE, *end_to_end]) if end_to_end else {}
    peak_after = matmul_peak(cfg.matmul_size)
    peak = max(peak_before.flops_per_s, peak_after.flops_per_s)
    for models in [*by_batch.values(), e2e]:
        for m in models.values():
            m["mfu"] = mfu(m["flops_per_sample"], m["samples_per_s"], peak)
    models = {**by_batch[str(cfg.batch_size)], **{n: m for n, m in e2e.items() if n != BASELINE}}
    result = result_header("throughput", _config_dict(cfg))
    result.update(
        {
            "data": {"path": cfg.data, "synthetic": False, "features": cfg.features},
            "baseline": BASELINE,
            "batch_size": cfg.batch_size,
            "models": models,
            "by_batch_size": {b: {n: _brief(m) for n, m in ms.items()} for b, ms in by_batch.items()},
            "end_to_end": {"batch_size": END_TO_END_BATCH, "models": {n: _brief(m) for n, m in e2e.items()}},
            "matmul_peak": {"before": peak_before.to_dict(), "after": peak_after.to_dict(), "flops_per_s": peak},
            "goals": _goals(by_batch, cfg.batch_size),
        }
    )
    return result


def _brief(m: dict[str, Any]) -> dict[str, Any]:
    keys = ("samples_per_s", "interactions_per_s", "ratio_to_idrec", "mfu", "flops_per_sample", "padding_fraction", "batch_size")
    return {k: m[k] for k in keys} | {"ratio_to_idrec_per_round": m["ratio_to_idrec_per_round"], "step_seconds": m["step_seconds"]}


def _goals(by_batch: dict[str, dict[str, dict[str, Any]]], headline: int) -> dict[str, Any]:
    """The 0.8x goal at every batch size, and each model's best throughput against IDRec's best."""
    goal = 0.8
    content = [n for n in by_batch[str(headline)] if MODELS[n].needs_features]
    ratios = {b: {n: models[n]["ratio_to_idrec"] for n in content} for b, models in by_batch.items()}
    best = {n: max(by_batch, key=lambda b: by_batch[b][n]["samples_per_s"]) for n in [BASELINE, *content]}
    best_vs_best = {
        n: {
            "ratio": by_batch[best[n]][n]["samples_per_s"] / by_batch[best[BASELINE]][BASELINE]["samples_per_s"],
            "batch_size": int(best[n]),
            "idrec_batch_size": int(best[BASELINE]),
        }
        for n in content
    }
    return {
        "content_model_ratio": {
            "goal": f"cached-feature content model samples/s >= {goal} x IDRec at the same user-encoder size",
            "threshold": goal,
            "batch_size": headline,
            "ratios": ratios[str(headline)],
            "met": {n: r >= goal for n, r in ratios[str(headline)].items()},
            "ratios_by_batch_size": ratios,
            "met_at_batch_sizes": {n: [int(b) for b in ratios if ratios[b][n] >= goal] for n in content},
            "best_vs_best": best_vs_best,
        }
    }


def _config_dict(cfg: ThroughputConfig) -> dict[str, Any]:
    out = asdict(cfg)
    out["models"] = cfg.model_names()
    out["batch_size"] = cfg.batch_size
    return out


# ----------------------------------------------------------------------------- report
def markdown(result: dict[str, Any]) -> str:
    models = result["models"]
    rows = []
    for name, m in models.items():
        s, r = m["timing"]["samples_per_s"], m["ratio_to_idrec_per_round"]
        rows.append(
            [
                name,
                f"{m['samples_per_s']:,.0f} ({s['p10']:,.0f}–{s['p90']:,.0f})",
                f"{m['interactions_per_s']:,.0f}",
                f"**{m['ratio_to_idrec']:.2f}** ({r['p10']:.2f}–{r['p90']:.2f})",
                f"{m['mfu'] * 100:.1f}%",
                f"{m['flops_per_sample'] / 1e6:,.1f}",
                f"{m['step_seconds']['median'] * 1000:,.0f}",
                f"{m['padding_fraction'] * 100:.0f}%",
                f"{m['loader_wait_fraction'] * 100:.0f}%",
                f"{m['parameters']['user_encoder']:,}",
            ]
        )
    cfg, mach = result["config"], result["machine"]
    peak = result["matmul_peak"]["flops_per_s"]
    goal = result["goals"]["content_model_ratio"]
    by_size = goal["ratios_by_batch_size"]
    verdicts = "; ".join(
        f"{n}: " + ", ".join(f"{r[n]:.2f}x at {b} ({'met' if r[n] >= goal['threshold'] else 'NOT met'})" for b, r in by_size.items())
        + f"; best against best {goal['best_vs_best'][n]['ratio']:.2f}x ({n} at {goal['best_vs_best'][n]['batch_size']},"
        f" IDRec at {goal['best_vs_best'][n]['idrec_batch_size']})"
        for n in goal["ratios"]
    )
    e2e = result.get("end_to_end", {})
    e2e_note = (
        f" The end-to-end models (`pmmrec_*`, `transrec_*`) run at {e2e['batch_size']} sequences per step in their own"
        " interleaved run with IDRec at that batch: their ratio is to that IDRec."
        if e2e.get("models") else ""
    )
    sweep = result["by_batch_size"]
    swept = [n for n in models if all(n in ms for ms in sweep.values())]
    sweep_rows = [
        [b, *(f"{ms[n]['samples_per_s']:,.0f} ({ms[n]['ratio_to_idrec']:.2f}x)" for n in swept)] for b, ms in sweep.items()
    ]
    return "\n".join(
        [
            "# Training throughput against the IDRec baseline",
            "",
            f"Real data: {cfg['data']} (Scientific), batch {cfg['batch_size']} sequences (end-to-end models: see below), max length {cfg['max_seq_len']},"
            f" user encoder dim {cfg['user']['dim']} x {cfg['user']['layers']} layers x {cfg['user']['heads']} heads"
            f" (inner {cfg['user']['inner_dim']}) for every model. {cfg['steps']} steps per repetition,"
            f" {cfg['harness']['warmup']} warm-up + {cfg['harness']['repeats']} repetitions per model, models interleaved in one run."
            f" {mach['cpu']}, {result['torch_threads']} torch thread(s), torch {result['versions']['torch']},"
            f" torchrec {result['versions']['torchrec']}, fbgemm {result['versions']['fbgemm_gpu']}; commit {result['commit']}.",
            "",
            markdown_table(
                ["model", "samples/s (p10–p90)", "interactions/s", "ratio to IDRec (per-round p10–p90)", "MFU",
                 "MFLOP/sample", "ms/step", "padding", "loader wait", "user-encoder params"],
                rows,
            ),  # fmt: skip
            "",
            f"MFU = FLOPs per sample x samples/s / {peak / 1e9:,.1f} GFLOP/s (best fp32 {cfg['matmul_size']}² matmul,"
            f" same threads, same run). FLOPs: FlopCounterMode on {cfg['flop_steps']} real steps, forward + backward,"
            " matmul-class operators only (Transformer, projector, logits over the catalogue); element-wise work,"
            " embedding lookups and optimizer updates are not counted. Interactions = target positions trained."
            " Padding = share of the padded positions of the user encoder's attention (each batch pads to its longest sequence;"
            " the token-wise layers run on the real tokens only)."
            " FLOPs are counted on steps after the timed ones: the `*_frozen` models keep a frozen encoder's output per"
            " item after its first encoding, so those steps, like the timed ones, encode only items not seen before."
            + e2e_note,
            "",
            f"Goal (content model >= {goal['threshold']}x IDRec samples/s at the same batch): {verdicts}.",
            "",
            "Batch sweep (samples/s, ratio to IDRec), each size its own interleaved run; the full-softmax content"
            " model projects the whole catalogue once per step, a fixed cost the batch amortises:",
            "",
            markdown_table(["batch (sequences)", *swept], sweep_rows),
            "",
            f"Peak RSS of the run: {human_bytes(result['peak_rss_bytes'])}.",
            "",
        ]
    )


def chart(result: dict[str, Any], path: Path) -> Path:
    models = result["models"]
    names = list(models)
    spreads = [m["timing"]["samples_per_s"] for m in models.values()]
    return bar_chart(
        path,
        names,
        [m["samples_per_s"] for m in models.values()],
        low=[s["p10"] for s in spreads],
        high=[s["p90"] for s in spreads],
        title="Training samples/s (median, p10–p90)",
        ylabel="samples / s",
        reference=(0.8 * models[BASELINE]["samples_per_s"], "0.8 x IDRec"),
        annotations=[f"{m['ratio_to_idrec']:.2f}x, MFU {m['mfu'] * 100:.1f}%" for m in models.values()],
    )


def write(result: dict[str, Any], out: str | Path) -> None:
    out = Path(out)
    write_json(result, out / "throughput.json")
    (out / "throughput.md").write_text(markdown(result))
    chart(result, out / "throughput.png")


# ----------------------------------------------------------------------------- CLI
def parse_args(argv: list[str] | None) -> ThroughputConfig:
    d, h = ThroughputConfig(), HarnessConfig()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default=",".join(d.models), help=f"comma separated, from {', '.join(MODELS)} (idrec always runs)")
    p.add_argument("--data", default=d.data)
    p.add_argument("--features", default=d.features)
    p.add_argument("--batch-sizes", default=",".join(map(str, d.batch_sizes)), help="comma separated; the last is the headline")
    p.add_argument("--max-seq-len", type=int, default=d.max_seq_len)
    p.add_argument("--dim", type=int, default=d.user.dim)
    p.add_argument("--layers", type=int, default=d.user.layers)
    p.add_argument("--heads", type=int, default=d.user.heads)
    p.add_argument("--inner-dim", type=int, default=d.user.inner_dim)
    p.add_argument("--steps", type=int, default=d.steps, help="training steps per timed repetition")
    p.add_argument("--flop-steps", type=int, default=d.flop_steps)
    p.add_argument("--warmup", type=int, default=h.warmup)
    p.add_argument("--repeats", type=int, default=h.repeats)
    p.add_argument("--threads", type=int, default=h.threads, help="torch threads (0: torch's default)")
    p.add_argument("--matmul-size", type=int, default=d.matmul_size)
    p.add_argument("--trace", action="store_true", help="also write a torch.profiler trace of each model")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="config override for every model")
    p.add_argument("--workdir", default=d.workdir)
    p.add_argument("--out", default=d.out)
    a = p.parse_args(argv)
    return ThroughputConfig(
        models=[m.strip() for m in a.models.split(",") if m.strip()],
        data=a.data,
        features=a.features,
        batch_sizes=[int(b) for b in a.batch_sizes.split(",") if b.strip()],
        max_seq_len=a.max_seq_len,
        user=UserEncoderSize(a.dim, a.layers, a.heads, a.inner_dim),
        steps=a.steps,
        flop_steps=a.flop_steps,
        matmul_size=a.matmul_size,
        overrides=a.overrides,
        harness=HarnessConfig(
            warmup=a.warmup, repeats=a.repeats, threads=a.threads, trace_dir=str(Path(a.workdir) / "traces") if a.trace else ""
        ),
        workdir=a.workdir,
        out=a.out,
    )


def quiet() -> None:
    """Keep the benchmark's output to its results (TorchRec's planner warnings are noise here)."""
    warnings.filterwarnings("ignore")
    logging.getLogger("torchrec").setLevel(logging.ERROR)


def main(argv: list[str] | None = None) -> int:
    quiet()
    cfg = parse_args(argv)
    try:
        result = run(cfg)
    except (ValueError, FileNotFoundError) as err:
        print(f"benchmarks.throughput: {err}", file=sys.stderr)
        return 2
    write(result, cfg.out)
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
