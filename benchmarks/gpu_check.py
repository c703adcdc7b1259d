"""``make gpu-check``: what one machine with one CUDA GPU shows about this system, in under 8 minutes.

    python -m benchmarks.gpu_check                  # writes benchmarks/results/gpu/gpu_check.{json,md}
    python -m benchmarks.gpu_check --budget-s 300   # a tighter time budget (the steps shrink or skip)
    python -m benchmarks.gpu_check --smoke-cpu --out /tmp/g   # every step on the CPU at tiny sizes:
                                                    # checks this script, measures nothing

Needs only PyTorch (with CUDA) and the dense parts of ``industrial``: TorchRec, fbgemm-gpu and
torchdata may be absent (the lent GPU machines have none of them), and then the TorchRec parts are
reported as not run, with the reason. In order, each step within what is left of the budget:

1. ``matmul_peak``: the measured bf16 (and fp32) matmul rate of this GPU, the denominator of MFU;
2. ``tests``: the CUDA-marked tests (``tests/test_cuda.py``) and the import test without TorchRec;
3. ``train_bf16``: a short bf16 training run of the dense parts (item vectors from frozen features
   through the MoE projector, the user encoder, in-batch softmax, fused AdamW) on synthetic
   sequences whose next item is learnable, then an evaluation of it by full ranking;
4. ``user_encoder``: training-step throughput of the user encoder at hidden 256-1024, sequence
   50-200, batch 512-4096, bf16, with model FLOPs (``FlopCounterMode``) and MFU;
5. ``losses``: full softmax over a 100k catalogue and in-batch softmax, forward + backward;
6. ``evaluator``: exact full ranking (float32, as evaluation computes it) of 100k users against 1M
   items at dim 64; when the budget left cannot hold all 100k users, as many as fit are ranked and
   the time of 100k is projected from their rate (the result says which).

Without a GPU (CI, a laptop) it writes a JSON saying ``"device": null``, why, and that nothing
ran, says so on stdout and exits 0. With one, it exits 1 when a test or a step failed.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import Any, Callable

import torch

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "benchmarks" / "results" / "gpu"
STEPS = ("matmul_peak", "tests", "train_bf16", "user_encoder", "losses", "evaluator")
TORCHREC_PARTS = (
    "the sharded model (DistributedModelParallel, the sharded EmbeddingCollection and its input "
    "all-to-all, fbgemm's fused table optimizers), the trainer loop around it and the torchdata loader"
)


# ------------------------------------------------------------------------------ timing


def _cuda() -> bool:
    return torch.cuda.is_available() and SIZES is FULL


def _sync() -> None:
    if _cuda():
        torch.cuda.synchronize()


def _cuda_time(fn: Callable[[], Any], repeats: int, warmup: int = 2) -> float:
    """Median seconds of ``fn`` over ``repeats`` runs (CUDA events), after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    _sync()
    times = []
    for _ in range(repeats):
        if not _cuda():  # the CPU smoke run
            start_s = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start_s)
            continue
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1000)
    return sorted(times)[len(times) // 2]


def _peak_gib() -> float:
    return torch.cuda.max_memory_allocated() / 2**30 if _cuda() else 0.0


def _flops(fn: Callable[[], Any]) -> int:
    """Matmul-class FLOPs of one call of ``fn`` (forward and backward), by ``FlopCounterMode``."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def _free() -> None:
    import gc

    gc.collect()
    if _cuda():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


#: the sizes of a GPU run (FULL) and of the CPU smoke run (SMOKE)
FULL: dict[str, Any] = {
    "device": "cuda",
    "matmul": 8192,
    "train": {"items": 50_000, "feature_dim": 384, "dim": 256, "max_len": 50, "batch": 512, "steps": 400, "eval_users": 10_000},
    "user_encoder": [(256, 50, 512), (256, 200, 2048), (512, 100, 4096), (1024, 200, 2048)],
    "losses": [("full_softmax", 16384, 100_000, 256), ("in_batch_softmax", 25600, 0, 256), ("in_batch_softmax", 32768, 0, 512)],
    "evaluator": {"users": 100_000, "items": 1_000_000, "dim": 64, "history": 20, "probe": 2048, "tiles": ((8192, 512), (16384, 2048))},
}
SMOKE: dict[str, Any] = {
    "device": "cpu",
    "matmul": 64,
    "train": {"items": 300, "feature_dim": 16, "dim": 16, "max_len": 8, "batch": 16, "steps": 30, "eval_users": 50},
    "user_encoder": [(16, 8, 4), (32, 6, 8)],
    "losses": [("full_softmax", 32, 100, 16), ("in_batch_softmax", 40, 0, 16)],
    "evaluator": {"users": 300, "items": 2000, "dim": 8, "history": 3, "probe": 64, "tiles": ((256, 32), (512, 64))},
}
SIZES = FULL


# ------------------------------------------------------------------------------ steps


def matmul_peak(ctx: dict[str, Any]) -> dict[str, Any]:
    """The best bf16 and fp32 ``n×n @ n×n`` rates (``2·n³`` FLOPs), on this GPU, now."""
    out, n, device = {}, SIZES["matmul"], SIZES["device"]
    for name, dtype, repeats in (("bf16", torch.bfloat16, 20), ("fp32", torch.float32, 5)):
        a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
        seconds = _cuda_time(lambda: a @ b, repeats, warmup=3)
        out[f"{name}_tflops"] = 2 * n**3 / seconds / 1e12
        a = b = None  # free them before the next size
    out["size"] = n
    out["tf32_allowed"] = bool(torch.backends.cuda.matmul.allow_tf32)
    ctx["peak_bf16"], ctx["peak_fp32"] = out["bf16_tflops"] * 1e12, out["fp32_tflops"] * 1e12
    _free()
    return out


def run_tests(ctx: dict[str, Any]) -> dict[str, Any]:
    """``pytest tests/test_cuda.py`` (every test there is marked ``cuda``) and the import test
    without TorchRec, in a child process."""
    if importlib.util.find_spec("pytest") is None:
        raise _Skip("pytest is not installed")
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "junit.xml"
        files = ["tests/test_cuda.py", "tests/test_dense_without_torchrec.py"]
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={report}", *files]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
        proc = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=max(30, min(240, ctx["left"]())))
        if not report.exists():
            raise RuntimeError(f"pytest wrote no report (exit {proc.returncode}):\n{proc.stdout[-3000:]}{proc.stderr[-2000:]}")
        cases, messages = {}, {}
        for case in ElementTree.parse(report).iter("testcase"):
            name = f"{case.get('classname', '').rpartition('.')[2]}::{case.get('name')}"
            cases[name] = "passed"
            for child in case:
                if child.tag in ("failure", "error"):
                    cases[name] = "failed"
                    messages[name] = (child.get("message") or child.text or "")[:500]
                elif child.tag == "skipped":
                    cases[name] = "skipped: " + (child.get("message") or "")[:200]
    ctx["tests_passed"] = sum(v == "passed" for v in cases.values())
    ctx["tests_failed"] = sum(v == "failed" for v in cases.values())
    return {"command": " ".join(command[1:]), "exit_code": proc.returncode, "passed": ctx["tests_passed"], "failed": ctx["tests_failed"],
            "skipped": sum(v.startswith("skipped") for v in cases.values()), "cases": cases, "failures": messages}  # fmt: skip


def _item_features(num_items: int, dim: int) -> torch.Tensor:
    """Smooth features of the item id (sinusoids of several frequencies): item ``i + 1`` follows
    item ``i`` in the synthetic sequences, which a model can learn from these features alone."""
    device = SIZES["device"]
    ids = torch.arange(num_items, device=device, dtype=torch.float32)[:, None]
    freqs = torch.logspace(0, -4, dim // 2, device=device) * 2 * math.pi
    return torch.cat([torch.sin(ids * freqs), torch.cos(ids * freqs)], dim=1)


def _sequences(num_users: int, num_items: int, max_len: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Jagged sequences ``i, i+1, i+2, ...`` (mod N) of random start and length ``3..max_len``."""
    device = SIZES["device"]
    lengths = torch.randint(3, max_len + 1, (num_users,), device=device, generator=generator)
    starts = torch.randint(0, num_items, (num_users,), device=device, generator=generator)
    total = int(lengths.sum())
    rows = torch.repeat_interleave(torch.arange(num_users, device=device), lengths, output_size=total)
    cols = torch.arange(total, device=device) - (torch.cumsum(lengths, 0) - lengths)[rows]
    return (starts[rows] + cols) % num_items, lengths


def train_bf16(ctx: dict[str, Any]) -> dict[str, Any]:
    """A short bf16 run of the dense parts, then a full-ranking evaluation of it."""
    from industrial.evaluate.breakdown import evaluate_ranks
    from industrial.evaluate.ranking import History, rank_targets
    from industrial.modules.projector import MoEAdaptor, ProjectorConfig
    from industrial.modules.user_encoder import UserEncoder, UserEncoderConfig, jagged_index
    from industrial.objectives import SampledSoftmaxLoss
    from industrial.objectives.base import ScoringInputs

    size, device = SIZES["train"], SIZES["device"]
    num_items, feature_dim, dim, max_len, batch = size["items"], size["feature_dim"], size["dim"], size["max_len"], size["batch"]
    g = torch.Generator(device=device).manual_seed(0)
    torch.manual_seed(0)
    features = _item_features(num_items, feature_dim)
    projector = MoEAdaptor(ProjectorConfig(in_dim=feature_dim, out_dim=dim, experts=4, dropout=0.1)).to(device)
    encoder = UserEncoder(UserEncoderConfig(dim=dim, layers=2, heads=4, inner_dim=4 * dim, dropout=0.1, max_len=max_len)).to(device)
    loss_fn = SampledSoftmaxLoss(temperature=0.07, normalize=True, logq_correction=False)
    optimizer = torch.optim.AdamW([*projector.parameters(), *encoder.parameters()], lr=1e-3, fused=True)

    def step(items: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        rows, cols = jagged_index(lengths, items.numel())
        inputs = items[cols < (lengths - 1)[rows]]  # every item but each sequence's last...
        targets = items[cols >= 1]  # ...predicts the one after it
        with torch.autocast(device, dtype=torch.bfloat16):
            states = encoder(projector(features[inputs]), lengths - 1, None, max_len)
            loss = loss_fn(ScoringInputs(states, targets, projector(features[targets]))).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    projector.train(), encoder.train()
    losses, steps, seconds_left = [], 0, min(90.0, ctx["left"]() * 0.25)
    _sync()
    start = time.perf_counter()
    while steps < size["steps"] and time.perf_counter() - start < seconds_left:
        losses.append(step(*_sequences(batch, num_items, max_len + 1, g)))
        steps += 1
    _sync()
    train_s = time.perf_counter() - start
    losses_host = torch.stack(losses).float().tolist()

    # evaluation: new sequences, each one's last item held out, ranked against every item
    projector.eval(), encoder.eval()
    users_n = size["eval_users"]
    with torch.no_grad():
        _sync()
        start = time.perf_counter()
        items, lengths = _sequences(users_n, num_items, max_len + 1, g)
        ends = torch.cumsum(lengths, 0) - 1
        keep = torch.ones_like(items, dtype=torch.bool)
        keep[ends] = False
        history, targets = items[keep], items[ends]
        users = torch.cat([encoder.last(encoder(projector(features[history[i0:i1]]), l), l)
                           for i0, i1, l in _user_chunks(lengths - 1, 2048)]).float()  # fmt: skip
        catalogue = torch.cat([projector(features[i : i + 65536]) for i in range(0, num_items, 65536)]).float()
        result = rank_targets(users, catalogue, targets, History.from_lengths(history.cpu(), (lengths - 1).cpu()))
        _sync()
        eval_s = time.perf_counter() - start
    metrics = evaluate_ranks(result.ranks.cpu(), cutoffs=[10, 50]).metrics
    out = {
        "config": {**size, "layers": 2, "amp": "bf16", "optimizer": "AdamW(fused=True)", "loss": "in-batch softmax, cosine / 0.07"},
        "steps": steps, "seconds": train_s, "steps_per_s": steps / train_s, "sequences_per_s": steps * batch / train_s,
        "loss_first": losses_host[0], "loss_last": float(sum(losses_host[-10:]) / len(losses_host[-10:])),
        "eval_users": users_n, "eval_seconds": eval_s, "eval_recall@10": metrics["recall@10"], "eval_ndcg@10": metrics["ndcg@10"],
        "eval_recall@10_of_random_scores": 10 / num_items, "peak_memory_gib": _peak_gib(),
    }  # fmt: skip
    if SIZES is FULL and not out["loss_last"] < out["loss_first"]:
        raise AssertionError(f"the bf16 run did not learn: loss {out['loss_first']:.3f} -> {out['loss_last']:.3f}")
    _free()
    return out


def _user_chunks(lengths: torch.Tensor, size: int):
    """``(value start, value stop, lengths)`` of consecutive groups of ``size`` sequences."""
    offsets = torch.cat([lengths.new_zeros(1), torch.cumsum(lengths, 0)]).tolist()
    for b0 in range(0, lengths.numel(), size):
        b1 = min(b0 + size, lengths.numel())
        yield offsets[b0], offsets[b1], lengths[b0:b1]


def user_encoder(ctx: dict[str, Any]) -> dict[str, Any]:
    """Training-step rate of the user encoder (bf16 autocast, full-length sequences), with MFU."""
    from industrial.modules.user_encoder import UserEncoder, UserEncoderConfig

    device, rows = SIZES["device"], []
    for dim, length, batch in SIZES["user_encoder"]:
        if ctx["left"]() < 30:
            rows.append({"dim": dim, "seq_len": length, "batch": batch, "skipped": "time budget"})
            continue
        encoder = x = None
        try:
            torch.manual_seed(0)
            encoder = UserEncoder(UserEncoderConfig(dim=dim, layers=2, heads=8, inner_dim=4 * dim, dropout=0.1, max_len=length)).to(device).train()
            x = torch.randn(batch * length, dim, device=device, requires_grad=True)
            lengths = torch.full((batch,), length, device=device)

            def one_step() -> None:
                with torch.autocast(device, dtype=torch.bfloat16):
                    states = encoder(x, lengths, None, length)
                states.float().square().mean().backward()
                encoder.zero_grad(set_to_none=True)
                x.grad = None

            flops = _flops(one_step)
            seconds = _cuda_time(one_step, repeats=5)
            rows.append({
                "dim": dim, "seq_len": length, "batch": batch, "layers": 2, "heads": 8, "inner_dim": 4 * dim,
                "ms_per_step": seconds * 1e3, "tokens_per_s": batch * length / seconds, "sequences_per_s": batch / seconds,
                "model_tflops": flops / seconds / 1e12, "mfu": flops / seconds / ctx["peak_bf16"], "peak_memory_gib": _peak_gib(),
            })  # fmt: skip
        except torch.cuda.OutOfMemoryError as e:
            rows.append({"dim": dim, "seq_len": length, "batch": batch, "error": f"out of memory: {str(e).splitlines()[0]}"})
        finally:
            encoder = x = None
            _free()
    return {"amp": "bf16", "flops": "matmul-class FLOPs of forward + backward (FlopCounterMode)", "rows": rows}


def losses(ctx: dict[str, Any]) -> dict[str, Any]:
    """Forward + backward of full softmax over a catalogue and of in-batch softmax, bf16 autocast."""
    from industrial.objectives import FullSoftmaxLoss, SampledSoftmaxLoss
    from industrial.objectives.base import ScoringInputs

    device, rows = SIZES["device"], []
    for name, points, catalogue_n, dim in SIZES["losses"]:
        queries = targets = catalogue = inputs = None
        try:
            g = torch.Generator(device=device).manual_seed(0)
            queries = torch.randn(points, dim, device=device, generator=g).requires_grad_()
            ids = torch.randint(0, max(catalogue_n, points), (points,), device=device, generator=g)
            targets = torch.randn(points, dim, device=device, generator=g).requires_grad_()
            catalogue = torch.randn(catalogue_n, dim, device=device, generator=g).requires_grad_() if catalogue_n else None
            loss_fn = FullSoftmaxLoss() if name == "full_softmax" else SampledSoftmaxLoss(logq_correction=False)
            inputs = ScoringInputs(queries, ids, targets, catalogue_vectors=catalogue)

            def one_step() -> None:
                with torch.autocast(device, dtype=torch.bfloat16):
                    loss = loss_fn(inputs).loss
                loss.backward()

            flops = _flops(one_step)
            seconds = _cuda_time(one_step, repeats=5)
            rows.append({"loss": name, "points": points, "candidates": catalogue_n or points, "dim": dim, "ms_per_step": seconds * 1e3,
                         "points_per_s": points / seconds, "model_tflops": flops / seconds / 1e12, "mfu": flops / seconds / ctx["peak_bf16"],
                         "peak_memory_gib": _peak_gib()})  # fmt: skip
        except torch.cuda.OutOfMemoryError as e:
            rows.append({"loss": name, "points": points, "error": f"out of memory: {str(e).splitlines()[0]}"})
        finally:
            queries = targets = catalogue = inputs = None
            _free()
    return {"amp": "bf16", "rows": rows}


def evaluator(ctx: dict[str, Any]) -> dict[str, Any]:
    """Exact full ranking, float32, 100k users × 1M items at dim 64 (projected when the budget is short)."""
    from industrial.evaluate.breakdown import evaluate_ranks
    from industrial.evaluate.ranking import History, rank_targets

    size, device = SIZES["evaluator"], SIZES["device"]
    num_users, num_items, dim, history_len = size["users"], size["items"], size["dim"], size["history"]
    g = torch.Generator(device=device).manual_seed(0)
    items = torch.randn(num_items, dim, device=device, generator=g)
    all_users = torch.randn(num_users, dim, device=device, generator=g)
    targets = torch.randint(0, num_items, (num_users,), device=device, generator=g)
    history_values = torch.randint(0, num_items, (num_users * history_len,), generator=torch.Generator().manual_seed(0))
    history_lengths = torch.full((num_users,), history_len)

    def run(n: int, chunk: int, user_batch: int) -> tuple[float, torch.Tensor]:
        history = History.from_lengths(history_values[: n * history_len], history_lengths[:n])
        _sync()
        start = time.perf_counter()
        ranks = rank_targets(all_users[:n], items, targets[:n], history, chunk_size=chunk, user_batch_size=user_batch).ranks.cpu()
        return time.perf_counter() - start, ranks

    probes = {}
    for chunk, user_batch in size["tiles"]:  # the evaluation's tiles, and larger ones
        probes[f"{user_batch}x{chunk}"] = size["probe"] / run(size["probe"], chunk, user_batch)[0]
    best = max(probes, key=probes.get)
    user_batch, chunk = (int(v) for v in best.split("x"))
    rate = probes[best]
    fits = int(min(num_users, rate * max(ctx["left"]() - 30, 0)) // user_batch * user_batch)
    if fits < user_batch:
        raise _Skip(f"time budget: {ctx['left']():.0f} s left; probe rate {rate:.0f} users/s")
    seconds, ranks = run(fits, chunk, user_batch)
    metrics = evaluate_ranks(ranks, cutoffs=[10]).metrics
    users_per_s = fits / seconds
    flops = 2 * fits * num_items * dim
    out = {
        "users": fits, "items": num_items, "dim": dim, "dtype": "float32", "history_per_user": history_len,
        "tile": {"user_batch_size": user_batch, "chunk_size": chunk}, "probe_users_per_s": probes,
        "seconds": seconds, "users_per_s": users_per_s, "scores_per_s": fits * num_items / seconds,
        "matmul_tflops": flops / seconds / 1e12, "fraction_of_fp32_peak": flops / seconds / ctx["peak_fp32"],
        "seconds_for_all_users": seconds if fits == num_users else num_users / users_per_s,
        "all_users": num_users, "projected": fits < num_users, "recall@10_random_vectors": metrics.get("recall@10"),
        "peak_memory_gib": _peak_gib(),
    }  # fmt: skip
    items = all_users = None
    _free()
    return out


STEP_FUNCTIONS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "matmul_peak": matmul_peak,
    "tests": run_tests,
    "train_bf16": train_bf16,
    "user_encoder": user_encoder,
    "losses": losses,
    "evaluator": evaluator,
}
#: seconds a step needs at least to start it
MIN_SECONDS = {"matmul_peak": 5, "tests": 30, "train_bf16": 40, "user_encoder": 45, "losses": 20, "evaluator": 40}


class _Skip(Exception):
    """A step that cannot run here, with the reason."""


# ------------------------------------------------------------------------------ report


def _torchrec_status() -> str:
    missing = [m for m in ("torchrec", "fbgemm_gpu", "torchdata") if importlib.util.find_spec(m) is None]
    if missing:
        return (f"not run: {', '.join(missing)} not installed here (the lent GPU machines have no TorchRec, "
                f"fbgemm-gpu or torchdata, and the fbgemm-gpu CUDA wheel, ~560 MB, cannot be carried): {TORCHREC_PARTS}")  # fmt: skip
    return (f"not run by this check: {TORCHREC_PARTS}; TorchRec is installed here, so run `industrial train` with "
            "a config on this GPU (train.amp=bf16, optim.sparse_optimizer=adam) to exercise them")  # fmt: skip


def base_report() -> dict[str, Any]:
    return {
        "device": None,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "platform": platform.platform(),
        "ran": [],
        "skipped": {},
        "failed": {},
        "tests_passed": 0,
        "tests_failed": 0,
        "benchmarks": {},
        "torchrec_parts": _torchrec_status(),
    }


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1e4 else f"{v:,.0f}"
    return str(v)


def markdown(report: dict[str, Any]) -> str:
    lines = ["# GPU check", ""]
    if report["device"] is None:
        lines += [f"**No GPU is present**: {report['reason']}. Nothing was run.", ""]
    else:
        lines += [f"Device: **{report['device']}** ({report.get('device_memory_gib', 0):.0f} GiB), torch {report['torch']}, CUDA {report['cuda']}, "
                  f"python {report['python']}; {report['seconds']:.0f} s.", ""]  # fmt: skip
    lines += [f"Tests: {report['tests_passed']} passed, {report['tests_failed']} failed.", ""]
    lines += [f"Ran: {', '.join(report['ran']) or 'nothing'}.", ""]
    if report["skipped"]:
        lines += ["Skipped:", ""] + [f"- `{k}`: {v}" for k, v in report["skipped"].items()] + [""]
    if report["failed"]:
        lines += ["Failed:", ""] + [f"- `{k}`: {v.splitlines()[-1] if v else ''}" for k, v in report["failed"].items()] + [""]
    lines += [f"TorchRec parts: {report['torchrec_parts']}.", ""]
    bench = report["benchmarks"]
    if "matmul_peak" in bench:
        p = bench["matmul_peak"]
        lines += [f"Measured matmul peak: bf16 {p['bf16_tflops']:.0f} TFLOP/s, fp32 {p['fp32_tflops']:.1f} TFLOP/s (8192³).", ""]
    for name in ("user_encoder", "losses"):
        rows = [r for r in bench.get(name, {}).get("rows", [])]
        if rows:
            keys = [k for k in rows[0] if not isinstance(rows[0][k], dict)]
            lines += [f"## {name}", "", "| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
            lines += ["| " + " | ".join(_fmt(r.get(k, "")) for k in keys) + " |" for r in rows] + [""]
    for name in ("train_bf16", "evaluator"):
        if name in bench:
            lines += [f"## {name}", ""] + [f"- {k}: {_fmt(v)}" for k, v in bench[name].items() if not isinstance(v, dict)] + [""]
    return "\n".join(lines)


def write(report: dict[str, Any], out: Path) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / "gpu_check.json", out / "gpu_check.md"
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    md_path.write_text(markdown(report))
    return json_path, md_path


def main(argv: list[str] | None = None) -> int:
    global SIZES
    parser = argparse.ArgumentParser(prog="gpu_check", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=OUT, help="results folder (default benchmarks/results/gpu)")
    parser.add_argument("--budget-s", type=float, default=420.0, help="wall-time budget of the steps, seconds (startup adds ~20)")
    parser.add_argument("--only", default="", help="comma-separated steps to run (default: all)")
    parser.add_argument("--smoke-cpu", action="store_true", help="run the steps on the CPU at tiny sizes (checks this script; --out required)")
    args = parser.parse_args(argv)
    report = base_report()
    if args.smoke_cpu:
        if args.out == OUT:
            parser.error("--smoke-cpu measures nothing: give it an --out folder other than the results")
        SIZES = SMOKE
        report.update(device="cpu (smoke run: tiny sizes, no figure is meaningful)")
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # tiny tensors: more threads only spin on a shared CPU
        try:
            return _run_steps(report, args)
        finally:
            torch.set_num_threads(threads)
            SIZES = FULL
    elif not torch.cuda.is_available():
        built = f"built with CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
        report["reason"] = f"torch.cuda.is_available() is False (torch {torch.__version__}, {built})"
        report["skipped"] = {step: "no GPU" for step in STEPS}
        json_path, md_path = write(report, args.out)
        print(f"gpu-check: no GPU is present ({report['reason']}); nothing was run. Wrote {json_path} and {md_path}.")
        return 0
    else:
        SIZES = FULL
        props = torch.cuda.get_device_properties(0)
        report.update(device=torch.cuda.get_device_name(0), device_memory_gib=props.total_memory / 2**30, capability=f"{props.major}.{props.minor}")
        return _run_steps(report, args)


def _run_steps(report: dict[str, Any], args: argparse.Namespace) -> int:
    """Run the steps asked for within the budget, write the report; 1 when a test or a step failed."""
    start = time.monotonic()
    deadline = start + args.budget_s
    ctx: dict[str, Any] = {"left": lambda: deadline - time.monotonic(), "peak_bf16": float("nan"), "peak_fp32": float("nan")}
    wanted = [s for s in STEPS if not args.only or s in args.only.split(",")]
    for step in STEPS:
        if step not in wanted:
            report["skipped"][step] = "not asked for (--only)"
            continue
        if ctx["left"]() < MIN_SECONDS[step]:
            report["skipped"][step] = f"time budget: {ctx['left']():.0f} s left of {args.budget_s:.0f}"
            continue
        print(f"gpu-check: {step} ({ctx['left']():.0f} s left)", flush=True)
        try:
            report["benchmarks"][step] = STEP_FUNCTIONS[step](ctx)
            report["ran"].append(step)
        except _Skip as e:
            report["skipped"][step] = str(e)
        except Exception:  # noqa: BLE001 - a failed step is reported, the others still run
            report["failed"][step] = "".join(traceback.format_exc().splitlines(keepends=True)[-12:])
            _free()
    report["tests_passed"], report["tests_failed"] = ctx.get("tests_passed", 0), ctx.get("tests_failed", 0)
    report["seconds"] = time.monotonic() - start
    json_path, md_path = write(report, args.out)
    print(markdown(report))
    print(f"gpu-check: wrote {json_path} and {md_path}")
    return 1 if report["failed"] or report["tests_failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
