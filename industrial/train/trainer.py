"""One trainer for every recipe: it knows the task's loss and nothing else about the model.

The loop, per step (:meth:`Trainer.step`): batch -> device -> (bf16 autocast) -> ``loss, logs =
dmp(batch)`` -> backward (the sparse optimizer runs fused inside it) -> clip dense gradients ->
dense step. Around it: periodic validation with early stopping on ``train.metric`` and a ``best``
checkpoint, atomic checkpoints holding sharded model + optimizer state, each rank's loader
position and RNG, so that a resumed run continues with exactly the batch that would have come
next; a progress bar, a plain-text log and TensorBoard scalars on rank 0: every
``train.log_every`` steps the loss and every term the task logs (``train/<term>``, e.g.
``train/nicl_loss``), averaged over those steps (:class:`LossTerms`).

Why not ``TrainPipelineSparseDist``: it overlaps the next batch's input all-to-all with the
current step by fx-tracing the model's sparse inputs, which requires every sharded lookup to read
the batch directly. Full-softmax objectives and evaluation also look the whole catalogue up
through the same tables in the same step, which that pipeline does not support; on CPU the overlap
buys nothing either. The loop below is the plain ``TrainPipelineBase`` order.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.distributed as dist
from torch.utils.tensorboard import SummaryWriter
from torchrec.optim.optimizers import in_backward_optimizer_filter

from industrial.config import dump
from industrial.data.batch import SequenceBatch
from industrial.data.info import DatasetInfo
from industrial.distributed.env import DistEnv
from industrial.distributed.sharding import materialize_optimizer_state
from industrial.distributed import checkpoint as ckpt
from industrial.train.batch_log import BatchLog
from industrial.recipes.experiment import ExperimentConfig
from industrial.recipes.run_dataset import dataset_meta

log = logging.getLogger("industrial.train")


class StatefulLoader(Protocol):
    """What the trainer needs of a loader: iterate one epoch per ``iter()``, save and restore.

    A loader may also offer ``epoch_ended(state) -> stats | None`` (the stats of the epoch that
    position ``state`` is at the very end of; :meth:`industrial.data.stream.SequenceLoader.epoch_ended`),
    with which a run resumed from a checkpoint taken on an epoch's last batch ends that epoch
    before the next one (:meth:`Trainer._epoch_ended`).
    """

    def __iter__(self): ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...

    @property
    def epoch_stats(self) -> list[Any]: ...  # per completed epoch (train.batch_log records them)


class EvaluationResult(Protocol):
    """What the trainer reads of an evaluation: its whole-split metrics (``ndcg@10``: value)."""

    metrics: dict[str, float]


class Evaluate(Protocol):
    """Full-ranking evaluation of the current model on a split (every rank calls it)."""

    def __call__(self, split: str) -> EvaluationResult: ...


class ReportTest(Protocol):
    """Writes the test evaluation of the best checkpoint into the run folder (rank 0 calls it)."""

    def __call__(self, evaluation: EvaluationResult, meta: dict[str, Any]) -> None: ...


@dataclass
class TrainState:
    step: int = 0
    epoch: int = 0  # epochs completed
    best_metric: float = -math.inf
    best_checkpoint: str = ""
    evals_without_improvement: int = 0
    stopped_early: bool = False


def setup_run_folder(cfg: ExperimentConfig, env: DistEnv) -> Path:
    """Create the run folder, save the resolved config, log to ``train.log`` (rank 0)."""
    out = Path(cfg.train.out_dir)
    if env.is_main:
        out.mkdir(parents=True, exist_ok=True)
        dump(cfg, out / "config.yaml")
        handler = logging.FileHandler(out / "train.log")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        logging.getLogger("industrial").addHandler(handler)
    # rank 0 reports; the other ranks only warn, so a run's output is not repeated per process
    logging.getLogger("industrial").setLevel(logging.INFO if env.is_main else logging.WARNING)
    if dist.is_initialized():
        dist.barrier()
    return out


class Trainer:
    """Runs the loop for a sharded task (``dmp``) with its combined optimizer."""

    def __init__(
        self,
        cfg: ExperimentConfig,
        env: DistEnv,
        dmp: torch.nn.Module,
        optimizer: Any,
        train_loader: StatefulLoader,
        evaluate: Evaluate,
        info: DatasetInfo,
        report_test: ReportTest | None = None,
    ) -> None:
        self.cfg = cfg
        self.env = env
        self.dmp = dmp
        self.optimizer = optimizer
        self.loader = train_loader
        self.evaluate = evaluate
        self.report_test = report_test
        self.info = info
        self.out = Path(cfg.train.out_dir)
        self.checkpoints = self.out / "checkpoints"
        self.state = TrainState()
        # restored from a checkpoint taken on an epoch's last batch: the loader's stats of that
        # epoch, whose end the next _run_epoch completes without a batch (see restore)
        self._ended: Any | None = None
        self.writer = SummaryWriter(str(self.out / "tensorboard")) if env.is_main else None
        self.batch_log = BatchLog(self.out, env.rank) if cfg.train.batch_log else None
        self.loss_terms = LossTerms()  # the current logging window's loss terms
        # clipped parameters: every trainable one whose optimizer is not fused into the backward
        self.dense_params = [p for _, p in in_backward_optimizer_filter(dmp.named_parameters(), include=False) if p.requires_grad]

    # ------------------------------------------------------------------ checkpoints
    def _sharded_state(self) -> dict[str, Any]:
        return {"model": self.dmp.state_dict(), "optimizer": self.optimizer.state_dict()}

    def save(self) -> Path:
        if self.batch_log is not None:
            self.batch_log.flush()  # the log holds at least what the checkpoint's weights saw
        rank_state = {"loader": self.loader.state_dict(), "rng": ckpt.rng_state()}
        trainer_state = {**self.state.__dict__, "config": _plain(self.cfg)}
        path = ckpt.save_checkpoint(
            self.checkpoints,
            self.state.step,
            self._sharded_state(),
            rank_state,
            trainer_state,
            keep_last=self.cfg.train.keep_checkpoints,
        )
        log.info("checkpoint %s", path)
        return path

    def restore(self, path: Path, verified: bool = False) -> None:
        """Continue from checkpoint ``path`` (``verified``: its manifest was just checked)."""
        materialize_optimizer_state(self.optimizer)
        sharded = self._sharded_state()
        rank_state, trainer_state = ckpt.load_checkpoint(path, sharded, verify=not verified)
        self.dmp.load_state_dict(sharded["model"])
        self.optimizer.load_state_dict(sharded["optimizer"])
        self.loader.load_state_dict(rank_state["loader"])
        ckpt.set_rng_state(rank_state["rng"])
        for key in TrainState.__dataclass_fields__:
            setattr(self.state, key, trainer_state[key])
        self._ended = self._epoch_ended(rank_state["loader"])
        if self.batch_log is not None:
            # the killed run's steps after the checkpoint are redone, and so is the end of an
            # epoch that the checkpoint had not seen end
            self.batch_log.truncate(self.state.step, self.state.epoch)
        if self.state.best_checkpoint:
            # the state is the truth: a crash between writing a checkpoint and moving the `best`
            # pointer to it leaves the pointer one validation behind
            ckpt.mark(self.checkpoints, ckpt.BEST, self.state.best_checkpoint)
        log.info("resumed from %s at step %d (epoch %d)", path, self.state.step, self.state.epoch)
        if self._ended is not None:
            log.info("the checkpoint was taken on the last batch of an epoch: ending it first (%d epochs completed)", self.state.epoch + 1)

    def _epoch_ended(self, loader_state: dict[str, Any]) -> Any | None:
        """The loader's stats of the epoch the checkpoint's last batch ended, when the checkpoint
        was taken inside ``_run_epoch`` on that batch (every rank takes the same decision).

        A checkpoint inside an epoch (``eval_every`` / ``checkpoint_every``) holds the loader
        position after its batch and ``state.epoch`` of the epoch being trained: the loader's epoch.
        On the epoch's last batch the trainer had not seen the end yet (the loader says so only
        when asked for the next batch), while the restored loader goes on with the next epoch's
        batches; the end of that epoch (batch log record, ``state.epoch``, end-of-epoch validation
        or checkpoint) is then due before them, as in the uninterrupted run. A checkpoint written
        at the epoch end holds ``state.epoch`` one ahead of the loader's epoch and needs nothing.
        """
        probe = getattr(self.loader, "epoch_ended", None)
        ended = None
        if probe is not None and isinstance(loader_state, dict) and loader_state.get("epoch") == self.state.epoch:
            ended = probe(loader_state)
        if dist.is_initialized() and dist.get_world_size() > 1:
            # the end-of-epoch validation is collective: a rank that disagrees would hang the others
            flag = int(ended is not None)
            votes = torch.tensor([flag, -flag], device=self.env.device)
            dist.all_reduce(votes, op=dist.ReduceOp.MAX)
            if int(votes[0]) != -int(votes[1]):
                raise RuntimeError(
                    f"rank {self.env.rank}: the ranks disagree whether the checkpoint at step {self.state.step} ends "
                    f"epoch {self.state.epoch + 1} (their loaders yield different batch counts per epoch: use "
                    "data.equalize=drop or pad with several processes)"
                )
        return ended

    def maybe_resume(self) -> None:
        """Resume from ``latest``, or from the newest checkpoint that verifies when it is damaged.

        A run folder whose checkpoints all fail verification is refused (CheckpointError) rather
        than trained again from scratch over them.
        """
        if not self.cfg.train.resume:
            return
        path, warnings = ckpt.resume_point(self.checkpoints)
        for warning in warnings if self.env.is_main else []:  # the same on every rank: said once
            log.warning("%s", warning)
        if path is not None:
            self.restore(path, verified=True)

    # ------------------------------------------------------------------ loop
    def step(self, batch: SequenceBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """One optimisation step on ``batch``: ``(loss, logs)``, detached and left on the device.

        ``batch`` -> device -> (bf16 autocast) -> ``loss, logs = dmp(batch)`` -> backward (the
        sparse optimizer runs fused inside it) -> clip dense gradients -> dense step. ``logs`` are
        the task's terms (e.g. ``nicl_loss``, ``seq_seq_loss``); nothing here syncs with the host.
        """
        batch = batch.to(self.env.device, non_blocking=True)
        with torch.autocast(self.env.device.type, dtype=torch.bfloat16, enabled=self.cfg.train.amp == "bf16"):
            loss, logs = self.dmp(batch)
        loss.backward()
        if self.cfg.optim.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.dense_params, self.cfg.optim.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss.detach(), {name: value.detach() for name, value in logs.items()}

    def _validate(self) -> bool:
        """Validate, update best / patience, checkpoint; return True to stop early.

        The trainer state is updated before the checkpoint is written, so a run resumed from it
        continues with the same best metric and patience count.
        """
        tc = self.cfg.train
        self.dmp.eval()
        metrics = self.evaluate("valid").metrics
        self.dmp.train()
        if tc.metric not in metrics:
            raise KeyError(f"train.metric={tc.metric!r} is not computed (metrics: {', '.join(metrics)})")
        value = float(metrics[tc.metric])
        self._scalars({f"valid/{k}": v for k, v in metrics.items()})
        log.info("step %d valid %s", self.state.step, _fmt(metrics))
        improved = value > self.state.best_metric
        if improved:
            self.state.best_metric = value
            self.state.best_checkpoint = ckpt.checkpoint_name(self.state.step)
            self.state.evals_without_improvement = 0
        else:
            self.state.evals_without_improvement += 1
        stop = tc.patience > 0 and self.state.evals_without_improvement >= tc.patience
        self.state.stopped_early = self.state.stopped_early or stop
        path = self.save()
        if improved:
            ckpt.mark(self.checkpoints, ckpt.BEST, path)
        return stop

    def _scalars(self, values: dict[str, float]) -> None:
        if self.writer is not None:
            for key, value in values.items():
                self.writer.add_scalar(key, value, self.state.step)

    def fit(self) -> dict[str, Any]:
        """Train until ``train.epochs``, ``train.max_steps`` or early stopping; then test."""
        tc = self.cfg.train
        self.maybe_resume()
        self.dmp.train()
        while self.state.epoch < tc.epochs and not self.state.stopped_early and not self._out_of_steps():
            if self._run_epoch():
                self.state.epoch += 1
                if tc.eval_every == 0:
                    self._validate()
                elif tc.checkpoint_every == 0:
                    self.save()
        if not self.state.best_checkpoint:
            self._validate()  # stopped by max_steps before any validation
        result = self.finish()
        if self.writer is not None:
            self.writer.close()
        if self.batch_log is not None:
            self.batch_log.close()
        return result

    def _out_of_steps(self) -> bool:
        return bool(self.cfg.train.max_steps) and self.state.step >= self.cfg.train.max_steps

    def _run_epoch(self) -> bool:
        """One pass over the loader (or what is left of it after a resume). True if it completed."""
        tc = self.cfg.train
        if self._ended is not None:
            # restored on the epoch's last batch: nothing of it is left, its end is (see restore)
            stats, self._ended = self._ended, None
            if self.batch_log is not None:
                self.batch_log.end_epoch(self.state.step, self.state.epoch, stats)
            return True
        progress = _progress(self.env.is_main and tc.progress, f"epoch {self.state.epoch + 1}/{tc.epochs}")
        window_start, window_samples, window_events = time.perf_counter(), 0, 0
        try:
            for batch in self.loader:
                loss, logs = self.step(batch)
                self.loss_terms.add(loss, logs)
                self.state.step += 1
                if self.batch_log is not None:
                    self.batch_log.step(self.state.step, self.state.epoch, batch)
                window_samples += batch.batch_size
                window_events += int(batch.lengths("target").sum())
                progress.update(1)
                if self.state.step % tc.log_every == 0:
                    elapsed = max(time.perf_counter() - window_start, 1e-9)
                    world = self.env.world_size
                    means = self.loss_terms.means()  # "loss" first, then every term of the task
                    values = {
                        **{f"train/{name}": value for name, value in means.items()},
                        "train/samples_per_s": window_samples * world / elapsed,
                        "train/interactions_per_s": window_events * world / elapsed,
                        "train/lr": self.cfg.optim.lr,
                    }
                    self._scalars(values)
                    progress.set_postfix(loss=f"{means['loss']:.4f}")
                    log.info("step %d %s samples/s %.0f", self.state.step, _fmt(means), values["train/samples_per_s"])
                    window_start, window_samples, window_events = time.perf_counter(), 0, 0
                if tc.eval_every and self.state.step % tc.eval_every == 0:
                    if self._validate():
                        return False
                elif tc.checkpoint_every and self.state.step % tc.checkpoint_every == 0:
                    self.save()
                if self._out_of_steps():
                    return False
        finally:
            progress.close()
        if self.batch_log is not None:
            self.batch_log.end_epoch(self.state.step, self.state.epoch, self.loader.epoch_stats[-1])
        return True

    def finish(self) -> dict[str, Any]:
        """Evaluate the best checkpoint (or the current model) on the test split, write metrics.json."""
        result: dict[str, Any] = {
            "steps": self.state.step,
            "epochs": self.state.epoch,
            "stopped_early": self.state.stopped_early,
            "best_valid": {self.cfg.train.metric: self.state.best_metric},
        }
        if self.cfg.train.test_at_end:
            best = self.checkpoints / self.state.best_checkpoint if self.state.best_checkpoint else None
            if best is not None:
                sharded = self._sharded_state()
                ckpt.load_checkpoint(best, sharded)
                self.dmp.load_state_dict(sharded["model"])
                result["checkpoint"] = best.name
            self.dmp.eval()
            result["valid"] = self.evaluate("valid").metrics
            test = self.evaluate("test")
            result["test"] = test.metrics
            if self.env.is_main and self.report_test is not None:
                meta = {"split": "test", "checkpoint": result.get("checkpoint"), "recipe": self.cfg.recipe, **dataset_meta(self.cfg.data.path)}
                self.report_test(test, meta)
            self._scalars({f"test/{k}": v for k, v in test.metrics.items()})
            log.info("test %s", _fmt(test.metrics))
        if self.env.is_main:
            (self.out / "result.json").write_text(json.dumps(result, indent=2))
        return result


class LossTerms:
    """The loss and every logged term of the steps of one logging window, averaged.

    ``add(loss, logs)`` after each step keeps running sums on the device (no host sync per step);
    ``means()`` returns ``{"loss": ..., term: ...}`` averaged over the steps that logged each term
    (a term a step did not compute, e.g. the sequence-sequence loss of a batch without augmented
    copies, is averaged over the others), and starts a new window. The values are this rank's.
    """

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, int] = {}

    def add(self, loss: torch.Tensor, logs: dict[str, torch.Tensor]) -> None:
        # the returned loss is the total that trained; a task's own "loss" log is the same value
        for name, value in {"loss": loss, **{k: v for k, v in logs.items() if k != "loss"}}.items():
            value = value.detach().float().mean()
            self.sums[name] = self.sums[name] + value if name in self.sums else value
            self.counts[name] = self.counts.get(name, 0) + 1

    def means(self) -> dict[str, float]:
        names = list(self.sums)
        totals = torch.stack([self.sums[n] for n in names]).tolist() if names else []
        out = {name: total / self.counts[name] for name, total in zip(names, totals)}
        self.sums, self.counts = {}, {}
        return out


class _NoProgress:
    def update(self, n: int) -> None: ...

    def set_postfix(self, **kwargs: Any) -> None: ...

    def close(self) -> None: ...


def _progress(enabled: bool, desc: str):
    if not enabled:
        return _NoProgress()
    from tqdm import tqdm

    return tqdm(desc=desc, unit="batch", dynamic_ncols=True)


def _fmt(metrics: dict[str, Any]) -> str:
    return " ".join(f"{k}={v:.4f}" for k, v in metrics.items() if isinstance(v, float))


def _plain(cfg: ExperimentConfig) -> dict[str, Any]:
    from industrial.config import to_dict

    return to_dict(cfg)

