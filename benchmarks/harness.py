"""The timing harness every training benchmark shares: typed config, warm-up, repetitions,
median and spread, peak RSS, FLOP counting, the matmul peak and an optional profiler trace.

Shape taken from TorchRec's ``distributed/benchmark`` (dataclass configs, warm-up, percentiles,
memory, trace), for CPU: wall time from ``time.perf_counter``, CPU time from
``time.process_time``, memory as the process's peak RSS.

Example::

    cfg = HarnessConfig(warmup=2, repeats=8)
    set_threads(cfg.threads)
    results = run_interleaved({"a": window_a, "b": window_b}, cfg)   # each window returns {"samples": n, ...}
    results["a"].rate("samples").median                                 # samples/s, median over repetitions

**Spread.** Every figure is the median over ``repeats`` repetitions, with the 10th and 90th
percentiles (linear interpolation between order statistics) beside it.

**Ratios in one run.** :func:`run_interleaved` runs the candidates round-robin, one repetition of
each in turn (the order rotating every round), so a burst of load from other work on a shared
machine falls on all of them alike and their ratio stays meaningful.

**MFU.** Model FLOPs utilisation of a training step::

    MFU = (FLOPs per sample × samples/s) / peak FLOP/s

FLOPs per sample come from :func:`count_flops` (``torch.utils.flop_counter.FlopCounterMode``) on
real steps, forward and backward: it counts the matmul-class operators (``mm``, ``addmm``,
``bmm``, ``baddbmm``, scaled-dot-product attention, convolutions) at ``2·m·n·k`` per product, and
nothing else (no element-wise work, normalisation, softmax, dropout, embedding lookups or
optimizer updates). The peak is :func:`matmul_peak`: the best rate of a plain fp32
``n×n @ n×n`` matmul (``2·n³`` FLOPs) at the same thread count, measured in the same run.
"""

from __future__ import annotations

import importlib.metadata
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import git_commit, machine_info, peak_rss_bytes

Counters = dict[str, float]
Window = Callable[[], Counters]


@dataclass
class HarnessConfig:
    """How a benchmark times its candidates."""

    warmup: int = 1  # untimed repetitions of every candidate first (allocator, caches, lazy state)
    repeats: int = 8  # timed repetitions of every candidate
    # torch intra-op threads (0: leave torch's default). 1 by default: on a CPU shared with other
    # work, a second intra-op thread that gets descheduled stalls every parallel region at its
    # barrier (element-wise ops measured 100x slower at 2 threads than at 1 under load here).
    threads: int = 1
    trace_dir: str = ""  # non-empty: write a torch.profiler chrome trace of each candidate there
    trace_repeats: int = 1  # repetitions recorded in the trace

    def validate(self) -> None:
        if self.warmup < 0 or self.repeats < 1 or self.threads < 0 or self.trace_repeats < 1:
            raise ValueError(
                f"need warmup >= 0, repeats >= 1, threads >= 0, trace_repeats >= 1; got {self.warmup}, "
                f"{self.repeats}, {self.threads}, {self.trace_repeats}"
            )


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100), linear between order statistics (numpy's default)."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


@dataclass
class Spread:
    """Median and spread of repeated measurements."""

    median: float
    p10: float
    p90: float
    mean: float
    min: float
    max: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        values = [float(v) for v in values]
        return cls(
            median=percentile(values, 50),
            p10=percentile(values, 10),
            p90=percentile(values, 90),
            mean=sum(values) / len(values),
            min=min(values),
            max=max(values),
            n=len(values),
        )

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass
class Measurement:
    """The timed repetitions of one candidate: wall and CPU seconds, and the counters of each."""

    name: str
    seconds: list[float] = field(default_factory=list)
    cpu_seconds: list[float] = field(default_factory=list)
    counters: list[Counters] = field(default_factory=list)

    def total(self, key: str) -> float:
        return sum(c[key] for c in self.counters)

    def rate(self, key: str) -> Spread:
        """``counter / wall second`` of every repetition (e.g. samples/s)."""
        return Spread.of([c[key] / max(s, 1e-12) for c, s in zip(self.counters, self.seconds)])

    def time(self) -> Spread:
        return Spread.of(self.seconds)

    def to_dict(self, rates: Sequence[str] = ()) -> dict[str, Any]:
        out: dict[str, Any] = {
            "repeats": len(self.seconds),
            "seconds": self.time().to_dict(),
            "seconds_all": self.seconds,
            "cpu_seconds_all": self.cpu_seconds,
            "cpu_utilisation": sum(self.cpu_seconds) / max(sum(self.seconds), 1e-12),
        }
        for key in rates:
            out[f"{key}_per_s"] = self.rate(key).to_dict()
        return out


def set_threads(threads: int) -> int:
    """Set torch's intra-op threads (0 keeps the default); return the count in force."""
    if threads:
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def time_once(window: Window) -> tuple[float, float, Counters]:
    """Wall seconds, process CPU seconds and the counters of one call."""
    cpu0, t0 = time.process_time(), time.perf_counter()
    counters = window()
    return time.perf_counter() - t0, time.process_time() - cpu0, counters


def run_interleaved(candidates: Mapping[str, Window], cfg: HarnessConfig) -> dict[str, Measurement]:
    """Warm every candidate up, then time ``cfg.repeats`` rounds of one repetition each.

    The order rotates every round (a, b, c / b, c, a / ...), so no candidate always runs right
    after another one's allocations or right at the start of a round.
    """
    cfg.validate()
    names = list(candidates)
    for name in names:
        for _ in range(cfg.warmup):
            candidates[name]()
    results = {name: Measurement(name) for name in names}
    for r in range(cfg.repeats):
        for i in range(len(names)):
            name = names[(i + r) % len(names)]
            wall, cpu, counters = time_once(candidates[name])
            results[name].seconds.append(wall)
            results[name].cpu_seconds.append(cpu)
            results[name].counters.append(counters)
    return results


# ----------------------------------------------------------------------------- FLOPs and the peak
@dataclass
class FlopCount:
    """FLOPs counted by ``FlopCounterMode`` over some calls, in total and by operator."""

    total: int
    by_operator: dict[str, int]
    calls: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def count_flops(fn: Callable[[], Any], calls: int = 1) -> FlopCount:
    """Count the FLOPs of ``calls`` calls of ``fn`` (what is counted: see the module docstring)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        for _ in range(calls):
            fn()
    by_op = {str(op): int(n) for op, n in counter.get_flop_counts().get("Global", {}).items()}
    return FlopCount(total=int(counter.get_total_flops()), by_operator=by_op, calls=calls)


@dataclass
class MatmulPeak:
    """The measured peak: best rate of a plain fp32 ``size×size`` matmul."""

    size: int
    threads: int
    flops_per_s: float  # best repetition
    median_flops_per_s: float
    all_flops_per_s: list[float]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def matmul_peak(size: int = 2048, repeats: int = 5, warmup: int = 2) -> MatmulPeak:
    """Rate of ``C = A @ B`` with fp32 ``size×size`` operands: ``2·size³`` FLOPs a call."""
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(size, size, generator=g), torch.randn(size, size, generator=g)
    out = torch.empty(size, size)
    for _ in range(warmup):
        torch.mm(a, b, out=out)
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.mm(a, b, out=out)
        rates.append(2.0 * size**3 / (time.perf_counter() - t0))
    return MatmulPeak(size, torch.get_num_threads(), max(rates), percentile(rates, 50), rates)


def mfu(flops_per_sample: float, samples_per_s: float, peak_flops_per_s: float) -> float:
    """``MFU = flops_per_sample × samples_per_s / peak_flops_per_s``."""
    return flops_per_sample * samples_per_s / peak_flops_per_s


# ----------------------------------------------------------------------------- trace
def trace(fn: Callable[[], Any], path: str | Path, calls: int = 1, row_limit: int = 25) -> str:
    """Run ``fn`` ``calls`` times under ``torch.profiler`` (CPU), write a chrome trace to ``path``
    and return the table of the operators that took the most CPU time."""
    from torch.profiler import ProfilerActivity, profile

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        for _ in range(calls):
            fn()
    prof.export_chrome_trace(str(path))
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=row_limit)


# ----------------------------------------------------------------------------- results
def library_versions() -> dict[str, str | None]:
    """Versions of the training stack (fbgemm under whichever wheel is installed)."""

    def dist_version(*names: str) -> str | None:
        for name in names:
            try:
                return importlib.metadata.version(name)
            except importlib.metadata.PackageNotFoundError:
                continue
        return None

    return {
        "torch": torch.__version__,
        "torchrec": dist_version("torchrec"),
        "fbgemm_gpu": dist_version("fbgemm-gpu-cpu", "fbgemm-gpu", "fbgemm_gpu"),
        "torchdata": dist_version("torchdata"),
    }


def result_header(benchmark: str, config: Any) -> dict[str, Any]:
    """What every results file starts with: name, config, machine, versions, commit, peak RSS."""
    return {
        "benchmark": benchmark,
        "config": asdict(config) if hasattr(config, "__dataclass_fields__") else config,
        "machine": machine_info(),
        "versions": library_versions(),
        "commit": git_commit(),
        "torch_threads": torch.get_num_threads(),
        "peak_rss_bytes": peak_rss_bytes(),
    }


def bar_chart(
    path: str | Path,
    labels: Sequence[str],
    values: Sequence[float],
    *,
    title: str,
    ylabel: str,
    low: Sequence[float] | None = None,
    high: Sequence[float] | None = None,
    reference: tuple[float, str] | None = None,
    annotations: Sequence[str] | None = None,
) -> Path:
    """A PNG bar chart; ``low``/``high`` draw the spread (p10..p90), ``reference`` a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(max(4.0, 1.4 * len(labels) + 2), 3.6))
    errors = None
    if low is not None and high is not None:
        errors = [[max(v - lo, 0) for v, lo in zip(values, low)], [max(hi - v, 0) for v, hi in zip(values, high)]]
    bars = ax.bar(list(labels), list(values), yerr=errors, capsize=4, color="#4C72B0")
    if annotations:
        for bar, text in zip(bars, annotations):
            ax.annotate(text, (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom",
                        xytext=(0, 3), textcoords="offset points", fontsize=8)  # fmt: skip
    if reference is not None:
        ax.axhline(reference[0], color="#C44E52", linestyle="--", linewidth=1, label=reference[1])
        ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    ax.set_ylabel(ylabel)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
