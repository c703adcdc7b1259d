"""What an evaluation leaves behind, and ``industrial report`` to compare runs side by side.

In a run folder :func:`write_report` writes

- ``metrics.json``: every ``metric@k`` of the whole set at the top level, ``count``, ``cutoffs``,
  ``breakdowns`` (``{"domain": {"Scientific": {"count": .., "recall@10": ..}}, "cold": ..}``) and
  an optional ``meta`` section (split, checkpoint, ...);
- ``report.md``: the same as tables, with the plots linked;
- ``plots/metrics_vs_k.png`` (recall, NDCG, MRR against k) and ``plots/breakdown_<name>.png``
  (recall and NDCG at one cutoff per group);
- TensorBoard scalars ``<prefix>/recall@10``, ``<prefix>/domain/Scientific/recall@10``, ...

:func:`export_item_vectors` writes the item vectors for serving (Parquet and ``.npy``).

Command line::

    industrial report runs/a runs/b [--metrics recall@10 ndcg@10] [--breakdown domain=Scientific]
                      [--out table.md]

prints one row per run (a run folder holding ``metrics.json``, or the file itself) and one column
per metric (default ``recall@10 ndcg@10 recall@50 ndcg@50``), as a markdown table.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from industrial.errors import UserError
from industrial.evaluate.breakdown import Evaluation
from industrial.evaluate.metrics import METRIC_NAMES, metric_key

METRICS_FILE = "metrics.json"
REPORT_FILE = "report.md"
PLOTS_DIR = "plots"
#: Columns of ``industrial report`` unless ``--metrics`` names others.
DEFAULT_COLUMNS: tuple[str, ...] = ("recall@10", "ndcg@10", "recall@50", "ndcg@50")


#: How the reports title the standard breakdowns (others are titled by their name).
BREAKDOWN_TITLES: dict[str, str] = {
    "domain": "domain of the target",
    "cold": "training occurrences of the target (cold items)",
    "modality": "modalities of the target",
    "history_length": "history length",
}


def breakdown_title(name: str) -> str:
    return BREAKDOWN_TITLES.get(name, name.replace("_", " "))


class ReportError(UserError, ValueError):
    """A run folder or a metrics file cannot be read; the message names it."""


def write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


# --------------------------------------------------------------------------- metrics.json


def write_metrics_json(evaluation: Evaluation, run_dir: str | Path, meta: Mapping[str, Any] | None = None) -> Path:
    """Write ``run_dir/metrics.json`` atomically (NaN, for an empty set, is written as null)."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    data = evaluation.to_dict()
    if meta:
        data["meta"] = dict(meta)
    path = run_dir / METRICS_FILE
    write_text(path, json.dumps(data, indent=2, allow_nan=False) + "\n")
    return path


def find_metrics(run: str | Path) -> Path:
    """``run`` itself if it is a file, else ``run/metrics.json``, else the one ``metrics.json`` below it."""
    run = Path(run)
    if run.is_file():
        return run
    if not run.is_dir():
        raise ReportError(f"{run}: no such run folder or metrics file")
    if (run / METRICS_FILE).is_file():
        return run / METRICS_FILE
    found = sorted(run.rglob(METRICS_FILE))
    if len(found) == 1:
        return found[0]
    if not found:
        raise ReportError(f"{run}: no {METRICS_FILE} in this folder or below; was the run evaluated?")
    listed = ", ".join(str(p) for p in found[:5])
    raise ReportError(f"{run}: several {METRICS_FILE} below ({listed}); name one of them")


def load_metrics(run: str | Path) -> dict[str, Any]:
    """The ``metrics.json`` of a run (see :func:`find_metrics`) as plain data."""
    path = find_metrics(run)
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ReportError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise ReportError(f"{path}: expected a JSON object")
    return data


def load_evaluation(run: str | Path) -> Evaluation:
    return Evaluation.from_dict(load_metrics(run))


# --------------------------------------------------------------------------- markdown


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A markdown table; the first column left-aligned, the others right-aligned."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join([":---"] + ["---:"] * (len(header) - 1)) + "|"]
    lines += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _group_columns(cutoffs: Sequence[int]) -> list[str]:
    ks = sorted({k for k in (10, 50) if k in cutoffs} or {cutoffs[0], cutoffs[-1]})
    return [metric_key(name, k) for k in ks for name in ("recall", "ndcg")]


def markdown_report(evaluation: Evaluation, title: str = "Evaluation", plots: Sequence[Path] = ()) -> str:
    """The evaluation as markdown: metrics by cutoff, then one table per breakdown."""
    lines = [f"# {title}", "", f"{evaluation.count:,} evaluated examples (full ranking, history masked).", ""]
    header = ["metric"] + [f"@{k}" for k in evaluation.cutoffs]
    rows = [[name] + [evaluation.metrics.get(metric_key(name, k)) for k in evaluation.cutoffs] for name in METRIC_NAMES]
    lines += [markdown_table(header, rows), ""]
    columns = _group_columns(evaluation.cutoffs)
    for name, groups in evaluation.breakdowns.items():
        lines += [f"## By {breakdown_title(name)}", ""]
        rows = [[value, g.count] + [g.metrics.get(c) for c in columns] for value, g in groups.items()]
        lines += [markdown_table([name, "count"] + columns, rows), ""]
    if plots:
        lines += ["## Plots", ""] + [f"![{p.stem}]({PLOTS_DIR}/{p.name})" for p in plots] + [""]
    return "\n".join(lines)


def write_markdown(evaluation: Evaluation, path: str | Path, title: str = "Evaluation", plots: Sequence[Path] = ()) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, markdown_report(evaluation, title, plots))
    return path


# --------------------------------------------------------------------------- plots


def _figure(width: float, height: float):
    """A matplotlib figure on the Agg canvas (no pyplot, no global backend switch)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def plot_metrics_vs_k(evaluation: Evaluation, path: str | Path) -> Path:
    """Recall, NDCG and MRR of the whole set against the cutoff k."""
    fig = _figure(6, 4)
    ax = fig.add_subplot()
    ks = list(evaluation.cutoffs)
    for name in ("recall", "ndcg", "mrr"):
        ax.plot(ks, [evaluation.metrics.get(metric_key(name, k), math.nan) for k in ks], marker="o", label=name)
    ax.set_xlabel("k")
    ax.set_xticks(ks)
    ax.set_ylabel("metric@k")
    ax.set_title(f"Full ranking, {evaluation.count:,} examples")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    return Path(path)


def plot_breakdown(evaluation: Evaluation, name: str, path: str | Path) -> Path:
    """Recall and NDCG at one cutoff (10 when reported) for every group of breakdown ``name``."""
    groups = evaluation.breakdowns[name]
    k = 10 if 10 in evaluation.cutoffs else evaluation.cutoffs[0]
    labels = [f"{value}\n(n={g.count:,})" for value, g in groups.items()]
    x = np.arange(len(labels))
    fig = _figure(max(5, 1.1 * len(labels) + 2), 4)
    ax = fig.add_subplot()
    for i, metric in enumerate(("recall", "ndcg")):
        values = [g.metrics.get(metric_key(metric, k), math.nan) for g in groups.values()]
        ax.bar(x + (i - 0.5) * 0.4, values, width=0.4, label=f"{metric}@{k}")
    ax.axhline(evaluation.metrics.get(metric_key("recall", k), math.nan), color="C0", ls="--", lw=1)
    ax.axhline(evaluation.metrics.get(metric_key("ndcg", k), math.nan), color="C1", ls="--", lw=1)
    ax.set_xticks(x, labels, fontsize=8)
    ax.set_title(f"By {breakdown_title(name)} (dashed: all examples)", fontsize=10)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    return Path(path)


def write_plots(evaluation: Evaluation, out_dir: str | Path) -> list[Path]:
    """``metrics_vs_k.png`` and one ``breakdown_<name>.png`` per non-empty breakdown."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [plot_metrics_vs_k(evaluation, out_dir / "metrics_vs_k.png")]
    for name, groups in evaluation.breakdowns.items():
        if groups:
            paths.append(plot_breakdown(evaluation, name, out_dir / f"breakdown_{name}.png"))
    return paths


# --------------------------------------------------------------------------- TensorBoard


def tensorboard_tag(prefix: str, key: str) -> str:
    tag = f"{prefix}/{key}" if prefix else key
    return "_".join(tag.split())


def write_tensorboard(evaluation: Evaluation, log_dir: str | Path, step: int = 0, prefix: str = "eval") -> Path:
    """Every scalar of :meth:`Evaluation.scalars` at ``step`` as ``<prefix>/<key>``; NaNs skipped."""
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(log_dir=str(log_dir))
    try:
        for key, value in evaluation.scalars().items():
            if not math.isnan(value):
                writer.add_scalar(tensorboard_tag(prefix, key), value, global_step=step)
    finally:
        writer.close()
    return Path(log_dir)


# --------------------------------------------------------------------------- all of it


@dataclass
class ReportFiles:
    """The files :func:`write_report` wrote."""

    metrics: Path
    markdown: Path
    plots: list[Path] = field(default_factory=list)
    tensorboard: Path | None = None


def write_report(
    evaluation: Evaluation,
    run_dir: str | Path,
    *,
    title: str = "Evaluation",
    meta: Mapping[str, Any] | None = None,
    plots: bool = True,
    tensorboard_dir: str | Path | None = None,
    step: int = 0,
    prefix: str = "eval",
) -> ReportFiles:
    """``metrics.json``, ``report.md``, the plots and (when ``tensorboard_dir``) the scalars."""
    run_dir = Path(run_dir)
    metrics = write_metrics_json(evaluation, run_dir, meta)
    plot_paths = write_plots(evaluation, run_dir / PLOTS_DIR) if plots else []
    markdown = write_markdown(evaluation, run_dir / REPORT_FILE, title, plot_paths)
    tb = write_tensorboard(evaluation, tensorboard_dir, step, prefix) if tensorboard_dir is not None else None
    return ReportFiles(metrics, markdown, plot_paths, tb)


# --------------------------------------------------------------------------- export


@dataclass
class ExportFiles:
    """The files :func:`export_item_vectors` wrote."""

    parquet: Path  # item_id int64, vector fixed_size_list<float32>[D]
    vectors: Path  # [N, D] float32 .npy, row i is item ids[i]
    ids: Path  # [N] int64 .npy


def export_item_vectors(
    out_dir: str | Path, item_ids: Any, vectors: Any, name: str = "item_vectors"
) -> ExportFiles:
    """Write item vectors for serving: ``<name>.parquet`` (``item_id``, ``vector``) and ``.npy`` files."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import torch

    if isinstance(vectors, torch.Tensor):
        vectors = vectors.detach().float().cpu().numpy()
    if isinstance(item_ids, torch.Tensor):
        item_ids = item_ids.detach().cpu().numpy()
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    item_ids = np.asarray(item_ids, dtype=np.int64).reshape(-1)
    if vectors.ndim != 2 or vectors.shape[0] != item_ids.size:
        raise ValueError(f"expected [N, D] vectors for {item_ids.size} ids, got shape {vectors.shape}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    dim = vectors.shape[1]
    table = pa.table(
        {
            "item_id": pa.array(item_ids, pa.int64()),
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1), pa.float32()), dim),
        },
        schema=pa.schema(
            [pa.field("item_id", pa.int64(), nullable=False), pa.field("vector", pa.list_(pa.float32(), dim), nullable=False)]
        ),
    )
    files = ExportFiles(out_dir / f"{name}.parquet", out_dir / f"{name}.npy", out_dir / f"{name}_ids.npy")
    tmp = files.parquet.with_name(files.parquet.name + ".tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, files.parquet)
    for path, array in ((files.vectors, vectors), (files.ids, item_ids)):
        tmp = path.with_name(path.name + ".tmp.npy")
        np.save(tmp, array)
        os.replace(tmp, path)
    return files


# --------------------------------------------------------------------------- industrial report


def select(data: Mapping[str, Any], breakdown: str | None = None) -> Mapping[str, Any]:
    """The metrics of the whole set, or of one group (``breakdown="domain=Scientific"``)."""
    if breakdown is None:
        return data
    name, sep, value = breakdown.partition("=")
    if not sep:
        raise ReportError(f"--breakdown {breakdown!r}: expected NAME=VALUE, e.g. domain=Scientific")
    groups = data.get("breakdowns", {}).get(name)
    if groups is None:
        known = ", ".join(data.get("breakdowns", {})) or "none"
        raise ReportError(f"no breakdown {name!r} (known: {known})")
    return groups.get(value, {})


def comparison_rows(
    runs: Sequence[str | Path], columns: Sequence[str] = DEFAULT_COLUMNS, breakdown: str | None = None
) -> tuple[list[str], list[list[Any]]]:
    """Header and rows (one per run: its name, the columns, the count) of the comparison table."""
    loaded = [(Path(run), load_metrics(run)) for run in runs]
    names = [(p.parent.name if p.is_file() else p.name) or str(p) for p, _ in loaded]
    if len(set(names)) < len(names):
        names = [str(p) for p, _ in loaded]
    rows = []
    for run_name, (_, data) in zip(names, loaded):
        metrics = select(data, breakdown)
        rows.append([run_name] + [metrics.get(c) for c in columns] + [metrics.get("count")])
    return ["run", *columns, "count"], rows


def evaluated_on(runs: Sequence[str | Path]) -> tuple[list[str], bool]:
    """One line per run naming the dataset and split it was evaluated on (its metrics.json's meta),
    and whether they differ between runs (then the numbers are not comparable)."""
    lines, keys = [], set()
    for run in runs:
        meta = load_metrics(run).get("meta") or {}
        dataset, fingerprint, split = meta.get("dataset"), meta.get("dataset_fingerprint"), meta.get("split")
        keys.add((fingerprint or dataset, split))
        shown = f"{dataset} (fingerprint {fingerprint[:12]})" if dataset and fingerprint else (dataset or "dataset not recorded")
        lines.append(f"{run}: {shown}, split {split or 'not recorded'}")
    return lines, len(keys) > 1


def plot_comparison(header: Sequence[str], rows: Sequence[Sequence[Any]], path: str | Path, title: str = "") -> Path:
    """Grouped bars: one group per metric column, one bar per run (the comparison table drawn)."""
    columns = list(header[1:-1])  # between the run name and the count
    fig = _figure(max(6.0, 1.6 * len(columns) + 2), 4)
    ax = fig.add_subplot()
    x = np.arange(len(columns))
    width = 0.8 / max(len(rows), 1)
    for i, row in enumerate(rows):
        values = [math.nan if v is None else float(v) for v in row[1 : 1 + len(columns)]]
        bars = ax.bar(x + (i - (len(rows) - 1) / 2) * width, values, width, label=str(row[0]))
        ax.bar_label(bars, fmt="%.3f", fontsize=7, padding=1)
    ax.set_xticks(x, columns)
    ax.set_ylabel("test metric (full ranking)")
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return Path(path)
