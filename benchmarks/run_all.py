"""Every benchmark in sequence, one entry point (``make bench``).

    python -m benchmarks.run_all                  # the default sizes (under 20 minutes here)
    python -m benchmarks.run_all --quick          # small sizes: a smoke check, results under tmp/quick
    python -m benchmarks.run_all --only throughput,scaling
    python -m benchmarks.run_all --dry-run        # print the commands only

Each benchmark runs as ``python -m benchmarks.<name> <args> --out <folder>`` in its own process (a
failure in one does not stop the others; the exit status is 1 if any failed). Its output goes to
``benchmarks/results/tmp/run_all/<name>.log``; a summary (command, status, wall time of each) to
``benchmarks/results/run_all.json`` (for a run with ``--only``/``--skip``: beside the logs). The sizes are in :data:`STEPS`; the default run is sized to
fit 20 minutes on the 2-core development machine while other work shares it:

- ``loader``: 1M and 10M interactions, 2 repeats (its own default adds 50M and a third repeat);
- ``evaluate``: 5,000 users x 1,000,000 items, the ceiling on a quarter of each slice (its own
  default, 100,000 users, took 45 minutes here);
- ``throughput``: every model family, 5 repetitions (its default: 8); idrec and unim2rec at
  batch 128, 512 and 2048 (4 steps per repetition), the end-to-end pmmrec / transrec variants
  beside idrec at 16 (1 step per repetition);
- ``scaling``: 1 vs 2 processes, item tables of 10^4..10^7 rows (its default);
- ``recbole_sasrec``: a training budget of 150 s per side (RecBole's SASRec finishes about one
  epoch in it here, ours several: time per epoch, and the quality each reaches in equal time, not
  converged quality: run the module alone with ``--epochs 300 --time-budget 0`` for that).

Results go to ``benchmarks/results/``, except those of a benchmark run below its own default sizes
(``loader``, ``evaluate``), which go to ``benchmarks/results/make_bench/`` so that the full-size
results beside them are kept, and those of ``--quick``, which go to ``benchmarks/results/tmp/quick/``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from benchmarks.common import REPO, RESULTS, TMP, git_commit, machine_info, markdown_table, write_json


@dataclass(frozen=True)
class Step:
    """One benchmark: its module and the arguments of a default and of a quick run."""

    name: str
    args: tuple[str, ...] = ()
    quick: tuple[str, ...] = ()
    reduced: bool = False  # the default run is smaller than the module's own default sizes

    @property
    def module(self) -> str:
        return f"benchmarks.{self.name}"


STEPS: tuple[Step, ...] = (
    Step("loader", ("--sizes", "1M,10M", "--repeats", "2"), ("--sizes", "1M", "--repeats", "1"), reduced=True),
    Step("evaluate", ("--users", "5000", "--ceiling-fraction", "0.25"), ("--users", "2000", "--items", "200000"), reduced=True),
    Step("throughput", ("--repeats", "5"), ("--models", "idrec,unim2rec", "--repeats", "3", "--steps", "2", "--flop-steps", "1")),
    Step("scaling", (), ("--rows", "1e4,1e5", "--repeats", "3", "--steps", "2")),
    Step("recbole_sasrec", ("--epochs", "50", "--time-budget", "150"), ("--epochs", "1", "--time-budget", "60")),
)
REDUCED = RESULTS / "make_bench"
QUICK = TMP / "quick"


@dataclass
class StepResult:
    name: str
    command: list[str]
    status: str  # ok | failed (exit code) | timeout
    seconds: float
    log: str
    returncode: int | None = None


@dataclass
class RunAllConfig:
    quick: bool = False
    only: list[str] = field(default_factory=list)
    skip: list[str] = field(default_factory=list)
    timeout_s: float = 3600.0  # per benchmark
    logs: str = str(TMP / "run_all")
    out: str = str(RESULTS)

    def steps(self) -> list[Step]:
        known = {s.name for s in STEPS}
        unknown = [n for n in [*self.only, *self.skip] if n not in known]
        if unknown:
            raise ValueError(f"unknown benchmark {unknown[0]!r}; known: {', '.join(s.name for s in STEPS)}")
        return [s for s in STEPS if (not self.only or s.name in self.only) and s.name not in self.skip]

    def summary_path(self) -> Path:
        """A full run's summary is ``results/run_all.json``; a quick or partial run's goes to tmp."""
        if self.quick:
            return QUICK / "run_all.json"
        if self.only or self.skip:
            return Path(self.logs) / "run_all.json"
        return Path(self.out) / "run_all.json"

    def results_folder(self, step: Step) -> Path:
        if self.quick:
            return QUICK
        return REDUCED if step.reduced else Path(self.out)

    def command(self, step: Step) -> list[str]:
        args = step.quick if self.quick else step.args
        return [sys.executable, "-m", step.module, *args, "--out", str(self.results_folder(step))]


def run_step(cfg: RunAllConfig, step: Step) -> StepResult:
    command = cfg.command(step)
    log = Path(cfg.logs) / f"{step.name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH", "")]))}
    print(f"== {step.name}: {' '.join(command[1:])}", flush=True)
    t0 = time.perf_counter()
    with log.open("w") as f:
        try:
            proc = subprocess.run(command, cwd=REPO, env=env, stdout=f, stderr=subprocess.STDOUT, timeout=cfg.timeout_s)
            status, code = ("ok" if proc.returncode == 0 else "failed"), proc.returncode
        except subprocess.TimeoutExpired:
            status, code = "timeout", None
    result = StepResult(step.name, command, status, time.perf_counter() - t0, str(log), code)
    print(f"   {status} in {result.seconds:.0f} s (log: {log})", flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small sizes (a smoke check of every benchmark)")
    p.add_argument("--only", default="", help="comma separated benchmark names")
    p.add_argument("--skip", default="", help="comma separated benchmark names")
    p.add_argument("--timeout", type=float, default=RunAllConfig.timeout_s, help="seconds per benchmark")
    p.add_argument("--dry-run", action="store_true", help="print the commands and stop")
    p.add_argument("--out", default=str(RESULTS))
    a = p.parse_args(argv)
    split = lambda text: [t.strip() for t in text.split(",") if t.strip()]  # noqa: E731
    cfg = RunAllConfig(quick=a.quick, only=split(a.only), skip=split(a.skip), timeout_s=a.timeout, out=a.out)
    try:
        steps = cfg.steps()
    except ValueError as err:
        print(f"benchmarks.run_all: {err}", file=sys.stderr)
        return 2
    if a.dry_run:
        for step in steps:
            print(" ".join(cfg.command(step)[1:]))
        return 0
    t0 = time.perf_counter()
    results = [run_step(cfg, step) for step in steps]
    total = time.perf_counter() - t0
    summary = {
        "benchmark": "run_all",
        "quick": cfg.quick,
        "total_seconds": total,
        "steps": [asdict(r) for r in results],
        "machine": machine_info(),
        "commit": git_commit(),
    }
    write_json(summary, cfg.summary_path())
    rows = [[r.name, r.status, f"{r.seconds:.0f}"] for r in results]
    print("\n" + markdown_table(["benchmark", "status", "seconds"], rows) + f"\n\ntotal: {total / 60:.1f} min")
    return 0 if all(r.status == "ok" for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
