"""Device placement on a GPU, proven on this CPU-only machine: every dense part of every model
family trains and evaluates "on the GPU" with no tensor left on the CPU, every collective takes
its tensors on the process group's device, and the user encoder's forward makes no host sync.

How. A CPU build of PyTorch cannot run CUDA, and ``FakeTensorMode`` does not get far enough here:
autograd aborts the process on a fake ``cuda`` leaf (its gradient accumulator needs a CUDA device
guard), and fake tensors have no values, so every data-dependent step (``.item()``, boolean
masks, ``torch.unique``, the ranking's tiles) raises. So the checks run the real code on real
values through a dispatch-mode audit:

- PyTorch's extension device (``privateuseone``) is registered from Python as ``fakegpu`` with a
  no-op device guard (``torch.utils.backend_registration``); autograd then treats it as an
  accelerator. That registration is process-wide (``torch.accelerator`` reports it), so the audit
  runs in child processes of this test module, never in the pytest process.
- :class:`OnGpu` is a tensor that *says* it lives on ``fakegpu:0`` and keeps its values in a CPU
  tensor inside; :class:`DeviceAudit` (a ``TorchDispatchMode``) sees every ATen op: it creates
  ``fakegpu`` factory outputs (``torch.zeros(..., device=x.device)``) as :class:`OnGpu`, runs each
  op on the CPU values and raises :class:`DeviceMismatch` on an op whose tensors sit on two
  devices, with CUDA's rules: a CPU 0-d tensor goes with anything; index tensors of ``x[idx]`` /
  ``x[idx] = v`` may stay on the CPU; copies (``.to``, ``copy_``) cross devices. It also counts the
  host syncs (``.item()``, ``bool(t)``, ``.tolist()``, ``torch.equal``, ``nonzero``, copies back to
  the CPU) of ``fakegpu`` tensors and which ops ran on the CPU.
- Collectives: a process-group backend ``fakenccl`` registered for the ``fakegpu`` device only,
  like NCCL for CUDA. Its groups refuse a tensor that is not on ``fakegpu`` (NCCL has no CPU
  backend) and, under two real processes, hand the CPU values to a gloo group inside, so the
  2-rank evaluation computes the real thing and is compared with one rank's.

What is checked (one child process for the single-rank checks, two for the 2-rank evaluation):
forward + backward + a fused AdamW step of the user encoder (both paths), the projector, the
fusion, a tiny random-init text and vision encoder, every recipe's task (next-item with full and
sampled softmax and BCE, TransRec's CPC, PMMRec's four terms, UniM2Rec's two) over item vectors
from precomputed features, the id table's ``EmbeddingCollection`` (unsharded) read through the
catalogue encoding of full softmax, the batch hand-off (``SequenceBatch.to(device,
non_blocking=True)``), and the evaluation: catalogue encoding, ranking with history masks,
exclusions and top-k, the metrics' reduction, one rank and two ranks (catalogue split).

What remains unchecked without a GPU (docs/gpu.md says it too):

- TorchRec's *sharded* modules: ``DistributedModelParallel``, the sharded
  ``EmbeddingCollection`` (its input distribution all-to-all, the fbgemm TBE kernels and their
  fused optimizers) and the planner's plan on real GPUs. Their inputs are checked instead: the
  catalogue KJT is built on the model's device, and the same lookup runs unsharded here.
- CUDA streams and ``non_blocking`` overlap (pinned memory is wired and tested as configuration,
  its effect is measured by ``make gpu-check``), bf16 autocast kernels, NCCL itself.
- The trainer's loop around DMP (``Trainer.step`` moves the batch with ``non_blocking=True`` and
  its one collective takes ``env.device``), checkpoint I/O, extraction's encoders on real weights.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import traceback
from pathlib import Path
from typing import Any, Callable

import pytest

HERE = Path(__file__).resolve()
NUM_ITEMS, FEATURE_DIM, DIM = 23, 12, 16
# six sequences in three batches: one rank evaluates them all; of two ranks, rank 0 takes the first
# two batches and rank 1 the last (so rank 1 runs out first and joins with placeholder batches)
EVAL_BATCHES = [
    ([0, 1], [[1, 2, 3], [4, 5]], [[6], [7]]),
    ([2, 3], [[8, 9, 10, 11], [12]], [[13], [22]]),
    ([4, 5], [[14, 15], [16, 17, 18, 19, 20]], [[21], [3]]),
]
RANK_BATCHES = {0: [0, 1], 1: [2]}


# ================================================================================ the pytest side


def _child(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(HERE), *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.fixture(scope="module")
def audit(tmp_path_factory) -> dict[str, Any]:
    """Run the checks in child processes; ``{check: "ok" or the error}`` plus the evaluation records."""
    out = tmp_path_factory.mktemp("device_audit")
    logs, children = [], []
    try:
        children.append(_child(["single", str(out)]))
        logs.append(children[-1].communicate(timeout=600)[0])
        children += [_child(["eval2", str(out), str(rank)]) for rank in (0, 1)]
        logs += [p.communicate(timeout=300)[0] for p in children[1:]]
    finally:
        for child in children:  # a child left waiting (its peer died) is ended, not left behind
            if child.poll() is None:
                child.kill()
                child.wait()
    results: dict[str, Any] = {}
    for name in ("single.json", "eval2_rank0.json", "eval2_rank1.json"):
        path = out / name
        assert path.exists(), f"the audit child wrote no {name}:\n" + "\n".join(log[-4000:] for log in logs)
        results.update(json.loads(path.read_text()))
    return results


def _ok(audit: dict[str, Any], *checks: str) -> None:
    failed = {c: audit.get(c, "did not run") for c in checks if audit.get(c) != "ok"}
    assert not failed, "\n\n".join(f"{c}:\n{e}" for c, e in failed.items())


def test_user_encoder_on_gpu_without_host_syncs(audit):
    """Forward + backward + a fused AdamW step of the user encoder (jagged and padded paths, causal
    and bidirectional, with domains) on the GPU; with the batch's max length given, the forward reads
    nothing back from the device, without it once. Catches a CPU tensor in the forward (positions,
    masks) and ``.item()`` on the lengths in the hot path (three syncs per forward before)."""
    _ok(audit, "user_encoder", "user_encoder_syncs")


def test_item_side_modules_on_gpu(audit):
    """The projector (whitening + MoE), the fusion, a tiny random-init text encoder (BERT) and vision
    encoder (ResNet), forward + backward on the GPU."""
    _ok(audit, "projector", "fusion", "text_encoder", "vision_encoder")


def test_every_recipe_task_trains_on_gpu(audit):
    """Each model family's task, forward + backward + fused AdamW step, over item vectors from
    precomputed features on the GPU, with a batch moved by ``SequenceBatch.to(device, non_blocking=True)``:
    next-item (full softmax, sampled softmax with logQ, BCE), TransRec CPC, PMMRec (next item,
    NICL, NID, RCL), UniM2Rec (sequence-item and sequence-sequence)."""
    _ok(audit, "batch_to_device", "next_item_full_softmax", "next_item_sampled_softmax", "next_item_bce", "cpc", "pmmrec", "unim2rec")


def test_catalogue_is_looked_up_on_the_model_device(audit):
    """Full softmax over the id table (TorchRec ``EmbeddingCollection``, unsharded, on the GPU):
    the catalogue's ids must be built on the model's device. Catches the catalogue KJT built on the
    CPU (the embedding lookup then mixes a GPU table with CPU ids)."""
    _ok(audit, "id_table_full_softmax")


def test_evaluation_ranks_on_the_model_device(audit):
    """One rank: the catalogue and the users stay on the device, the ranking's matrix products and
    comparisons run there, and the catalogue never comes back to the host. Catches ranking on the
    CPU and ``items.cpu()`` per batch."""
    _ok(audit, "evaluation_one_rank", "ranking_topk_exclude")
    record = audit["evaluation_one_rank_record"]
    assert not record["cpu_ops"], f"ops of the evaluation ran on the CPU: {record['cpu_ops']}"
    assert record["largest_copy_to_host"] < NUM_ITEMS * DIM, record


def test_evaluation_collectives_on_the_group_device(audit):
    """Two ranks under a group whose backend exists for the GPU only (as NCCL): every collective
    of the evaluation (lockstep flag, users, catalogue-split ranking, metric sums, breakdown labels)
    takes tensors on the group's device, and the metrics equal one rank's. Catches the all-reduce of
    a CPU tensor that crashed the first validation with world size > 1."""
    _ok(audit, "evaluation_two_ranks_0", "evaluation_two_ranks_1")
    for rank in (0, 1):
        calls = audit[f"evaluation_two_ranks_{rank}_collectives"]
        assert {"allreduce", "allgather"} <= set(calls), calls
    one = audit["evaluation_one_rank_record"]["metrics"]
    for rank in (0, 1):
        two = audit[f"evaluation_two_ranks_{rank}_metrics"]
        assert two == pytest.approx(one, abs=1e-12), (rank, two, one)


# ------------------------------------------------ what is configuration, checked in this process


def _env(device: str, world_size: int = 1, local_world_size: int = 1):
    import torch

    from industrial.distributed.env import DistEnv

    backend = "nccl" if device.startswith("cuda") else "gloo"
    return DistEnv(0, world_size, 0, torch.device(device), backend, local_world_size)


def test_pin_memory_is_on_by_default_with_cuda():
    """``data.pin_memory``: None (default) pins on CUDA, ``false`` turns it off, nothing pins without
    CUDA; the loader then ends in torchdata's PinMemory node. Catches a loader that never pins."""
    from industrial.recipes.experiment import ExperimentConfig
    from industrial.recipes.loaders import loader_config

    cfg = ExperimentConfig()
    assert cfg.data.pin_memory is None
    assert loader_config(cfg, _env("cuda:0")).pin_memory is True
    assert loader_config(cfg, _env("cpu")).pin_memory is False
    cfg.data.pin_memory = False
    assert loader_config(cfg, _env("cuda:0")).pin_memory is False
    cfg.data.pin_memory = True
    assert loader_config(cfg, _env("cpu")).pin_memory is False  # no CUDA: nothing to pin into


def test_loader_pins_batches_when_asked(tiny_cached, monkeypatch):
    """The loader's graph gets the PinMemory node (built here with a stand-in current device: this
    machine has no CUDA to pin with), and a batch knows its longest history on the host."""
    import torch
    from torchdata.nodes import PinMemory

    from industrial.data.stream import LoaderConfig, build_loader

    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    pinned = build_loader(tiny_cached["data"], "train", LoaderConfig(batch_size=8, pin_memory=True), rank=0, world_size=1)
    assert isinstance(pinned._root.source, PinMemory)
    plain = build_loader(tiny_cached["data"], "valid", LoaderConfig(batch_size=8, shuffle=False), rank=0, world_size=1)
    assert not isinstance(plain._root.source, PinMemory)
    batch = next(iter(plain))
    assert batch.max_history_length == int(batch.lengths("history").max())


def test_planner_sees_hosts_and_gpu_memory(monkeypatch):
    """The planner's topology: ranks per host from ``LOCAL_WORLD_SIZE`` and the GPU's own memory.
    Catches 16 ranks on 2 hosts planned as one host and TorchRec's 32 GiB default HBM."""
    import types

    import torch

    from industrial.distributed.sharding import planner_topology

    memory = 80 * 2**30
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda index: types.SimpleNamespace(total_memory=memory))
    topology = planner_topology(_env("cuda:0", world_size=16, local_world_size=8))
    assert topology.local_world_size == 8 and topology.world_size == 16
    assert all(device.storage.hbm == memory for device in topology.devices)
    cpu = planner_topology(_env("cpu", world_size=2, local_world_size=2))
    assert cpu.local_world_size == 2 and all(device.storage.hbm == 0 for device in cpu.devices)


def test_local_world_size_comes_from_the_environment(monkeypatch):
    import torch.distributed as dist

    from industrial.distributed.env import init_distributed

    monkeypatch.setenv("LOCAL_WORLD_SIZE", "8")
    monkeypatch.setenv("INDUSTRIAL_DEVICE", "cpu")
    fresh = not dist.is_initialized()
    try:
        assert init_distributed().local_world_size == 8
    finally:
        if fresh and dist.is_initialized():
            dist.destroy_process_group()


def test_dense_adamw_is_fused_on_cuda():
    """The dense optimizer uses AdamW's fused kernel on CUDA (one launch for all parameters)."""
    import torch

    from industrial.distributed.sharding import OptimConfig, dense_optimizer

    params = [torch.nn.Parameter(torch.zeros(3))]
    assert dense_optimizer(params, OptimConfig(), torch.device("cuda", 0)).defaults["fused"] is True
    assert not dense_optimizer(params, OptimConfig(), torch.device("cpu")).defaults["fused"]


def test_features_are_memory_mapped_and_read_by_rows(tmp_path):
    """Every rank maps the features file instead of reading the whole matrix; a slice of
    :class:`FeatureRows` reads its rows and equals the same rows of the standardised table."""
    import json

    import numpy as np
    import torch

    from industrial.data.features import load_part

    rng = np.random.default_rng(0)
    features = rng.normal(2.0, 3.0, (50, 6)).astype(np.float32)
    present = np.arange(50) % 5 != 0
    features[~present] = 0
    np.save(tmp_path / "features.npy", features)
    np.save(tmp_path / "present.npy", present)
    info = {"format": "industrial.features/1", "modality": "text", "dim": 6, "n_items": 50,
            "files": {"features": "features.npy", "present": "present.npy"}}  # fmt: skip
    (tmp_path / "info.json").write_text(json.dumps(info))
    mapped, _, _ = load_part(tmp_path)
    assert isinstance(mapped, np.memmap)
    from industrial.data.features import FeatureRows

    rows = FeatureRows([tmp_path], standardize=True, chunk_rows=7)  # several chunks: the streamed moments
    kept = torch.from_numpy(features[present]).double()
    expected = torch.zeros(50, 6, dtype=torch.float64)
    expected[torch.from_numpy(present)] = (kept - kept.mean(0)) / kept.std(0)
    assert torch.allclose(rows[:, :].double(), expected, atol=1e-5)
    assert torch.allclose(rows[10:20, 2:5].double(), expected[10:20, 2:5], atol=1e-5)


# ================================================================================ the audit (children)

FAKE = "fakegpu"


def _setup() -> Any:
    """Register the ``fakegpu`` device and the ``fakenccl`` backend (process-wide: children only)."""
    import torch
    import torch.distributed as dist
    import torch.utils.backend_registration as registration

    class Backend:  # the device module: what torch asks of an accelerator (autocast is left out)
        is_initialized = staticmethod(lambda: True)
        is_available = staticmethod(lambda: True)
        current_device = staticmethod(lambda: 0)
        _is_in_bad_fork = staticmethod(lambda: False)
        manual_seed_all = staticmethod(lambda seed: None)
        device_count = staticmethod(lambda: 1)

    registration._setup_privateuseone_for_python_backend(FAKE, backend_module=Backend())
    gpu = torch.device(FAKE, 0)
    torch.set_num_threads(1)  # tiny tensors: more threads only spin on a shared CPU

    class Work(dist._Work):
        def __init__(self, inner: Any = None):
            super().__init__()
            self.inner = inner

        def wait(self, timeout: Any = None) -> bool:
            if self.inner is not None:
                self.inner.wait()
            return True

        def is_completed(self) -> bool:
            return True

    class FakeNccl(dist.ProcessGroup):
        """A group whose backend exists for ``fakegpu`` only; the values travel through gloo."""

        calls: list[str] = []

        def __init__(self, store: Any, rank: int, size: int, timeout: Any):
            super().__init__(rank, size)
            self.inner = dist.ProcessGroupGloo(dist.PrefixStore("inner", store), rank, size, timeout)

        @property
        def _device_types(self) -> list[torch.device]:
            return [gpu]

        def _values(self, name: str, tensors: list) -> list:
            FakeNccl.calls.append(name)
            for t in tensors:
                if t.device.type != FAKE:
                    raise RuntimeError(f"{name}: a tensor on {t.device}; this group's backend exists for {FAKE} only (as NCCL for CUDA)")
            return [t.inner for t in tensors]

        def allreduce(self, tensors, opts=None):
            return Work(self.inner.allreduce(self._values("allreduce", tensors), opts or dist.AllreduceOptions()))

        def allgather(self, outputs, inputs, opts=None):
            outs = [self._values("allgather", list(o)) for o in outputs]
            return Work(self.inner.allgather(outs, self._values("allgather", inputs)))

        def broadcast(self, tensors, opts=None):
            return Work(self.inner.broadcast(self._values("broadcast", tensors), opts or dist.BroadcastOptions()))

        def barrier(self, opts=None):
            return Work(self.inner.barrier())

        def getBackendName(self) -> str:
            return "fakenccl"

    dist.Backend.register_backend("fakenccl", lambda store, rank, size, timeout: FakeNccl(store, rank, size, timeout), devices=[FAKE])
    return FakeNccl


def _audit_classes() -> tuple[Any, Any, Any, Any]:
    import torch
    from torch.overrides import TorchFunctionMode
    from torch.utils import _pytree as pytree
    from torch.utils._python_dispatch import TorchDispatchMode, return_and_correct_aliasing

    gpu, cpu = torch.device(FAKE, 0), torch.device("cpu")
    aten = torch.ops.aten

    class DeviceMismatch(RuntimeError):
        pass

    class OnGpu(torch.Tensor):
        """A tensor on ``fakegpu:0`` whose values are the CPU tensor ``inner``."""

        inner: torch.Tensor

        @staticmethod
        def __new__(cls, inner: torch.Tensor, requires_grad: bool = False):
            out = torch.Tensor._make_wrapper_subclass(
                cls, inner.size(), strides=inner.stride(), storage_offset=inner.storage_offset(),
                dtype=inner.dtype, layout=inner.layout, device=gpu, requires_grad=requires_grad,
            )  # fmt: skip
            out.inner = inner
            return out

        def __repr__(self) -> str:
            return f"OnGpu({self.inner!r})"

        def __tensor_flatten__(self):
            return ["inner"], None

        @staticmethod
        def __tensor_unflatten__(inner_tensors, meta, outer_size, outer_stride):
            return OnGpu(inner_tensors["inner"])

        @classmethod
        def __torch_dispatch__(cls, func, types, args=(), kwargs=None):
            raise RuntimeError(f"{func} on an OnGpu tensor outside DeviceAudit")

    copies = {aten._to_copy.default, aten.copy_.default}
    index_ops = {aten.index.Tensor, aten.index_put_.default, aten.index_put.default, aten._index_put_impl_.default}
    syncs = {
        aten._local_scalar_dense.default, aten.is_nonzero.default, aten.equal.default, aten.nonzero.default,
        aten.masked_select.default, aten._unique2.default, aten.unique_dim.default, aten.unique_consecutive.default,
    }  # fmt: skip

    def device_of(t: torch.Tensor) -> torch.device:
        return gpu if isinstance(t, OnGpu) else t.device

    class DeviceAudit(TorchDispatchMode):
        """Runs every op on the CPU values, as CUDA would place it (module docstring)."""

        def __init__(self) -> None:
            super().__init__()
            self.reset()

        def reset(self) -> None:
            self.syncs: list[str] = []
            self.cpu_ops: dict[str, int] = {}
            self.largest_copy_to_host = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            tensors = [t for t in pytree.tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
            on_gpu = any(isinstance(t, OnGpu) for t in tensors)
            if on_gpu and (func in syncs or (func in index_ops and any(t.dtype == torch.bool for t in tensors[1:]))):
                self.syncs.append(str(func))
            if func not in copies:
                checked = tensors
                if func in index_ops:  # CUDA takes CPU index tensors (and a CPU 0-d value)
                    checked = [args[0]] + ([args[2]] if len(args) > 2 and isinstance(args[2], torch.Tensor) else [])
                devices = {device_of(t) for t in checked if isinstance(t, OnGpu) or t.dim() > 0}
                if len(devices) > 1:
                    raise DeviceMismatch(f"{func}: tensors on {sorted(map(str, devices))}")
                if tensors and not on_gpu and any(t.numel() > 1 for t in tensors):
                    self.cpu_ops[str(func)] = self.cpu_ops.get(str(func), 0) + 1
            to_gpu = on_gpu
            if kwargs.get("device") is not None:
                to_gpu = torch.device(kwargs["device"]).type == FAKE
                kwargs = {**kwargs, "device": cpu}
            if func is aten.copy_.default:
                to_gpu = isinstance(args[0], OnGpu)
                if isinstance(args[1], OnGpu) and not to_gpu:
                    self.syncs.append("copy to host")
                    self.largest_copy_to_host = max(self.largest_copy_to_host, args[1].numel())
            elif func is aten._to_copy.default and on_gpu and not to_gpu:
                self.syncs.append("copy to host")
                self.largest_copy_to_host = max(self.largest_copy_to_host, args[0].numel())
            values = pytree.tree_map(lambda t: t.inner if isinstance(t, OnGpu) else t, (args, kwargs))
            out = func(*values[0], **values[1])
            if to_gpu:
                out = pytree.tree_map(lambda t: OnGpu(t) if isinstance(t, torch.Tensor) and not isinstance(t, OnGpu) else t, out)
            return return_and_correct_aliasing(func, args, kwargs, out)

    class Factories(TorchFunctionMode):
        """What happens above dispatch: ``torch.tensor`` / ``as_tensor`` build their CPU tensor first
        (moved after), ``Tensor.tolist`` reads a subclass's values directly (a host sync)."""

        def __init__(self, audit: DeviceAudit) -> None:
            super().__init__()
            self.audit = audit

        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            if func in (torch.tensor, torch.as_tensor) and kwargs.get("device") is not None:
                if torch.device(kwargs["device"]).type == FAKE:
                    return func(*args, **{**kwargs, "device": cpu}).to(gpu)
            if func is torch.Tensor.tolist and isinstance(args[0], OnGpu):
                self.audit.syncs.append("tolist")
                self.audit.largest_copy_to_host = max(self.audit.largest_copy_to_host, args[0].numel())
                return args[0].inner.tolist()
            return func(*args, **kwargs)

    return OnGpu, DeviceAudit, Factories, DeviceMismatch


class _Harness:
    """What the checks share: the audit modes, tiny models built on the CPU and moved to ``fakegpu``."""

    def __init__(self) -> None:
        import torch

        self.torch = torch
        self.OnGpu, DeviceAudit, Factories, self.DeviceMismatch = _audit_classes()
        self.gpu = torch.device(FAKE, 0)
        self.audit = DeviceAudit()
        self.factories = Factories(self.audit)

    def __enter__(self) -> "_Harness":
        self.factories.__enter__()
        self.audit.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.audit.__exit__(*exc)
        self.factories.__exit__(*exc)

    def to_gpu(self, module: Any) -> Any:
        """Every parameter and buffer of ``module`` as an :class:`OnGpu` tensor (its values kept)."""
        OnGpu = self.OnGpu
        module._apply(lambda t: t if isinstance(t, OnGpu) else OnGpu(t.detach().clone()))
        return module

    def features(self) -> Any:
        torch = self.torch
        return torch.randn(NUM_ITEMS, FEATURE_DIM, generator=torch.Generator().manual_seed(1))

    def item_encoder(self, modalities: bool = False) -> Any:
        """Item vectors from precomputed features: ``MoE projector(features[ids])`` (a frozen table)."""
        torch = self.torch
        from industrial.modules.item_encoder import ItemEncoderInterface, ItemVectors
        from industrial.modules.projector import MoEAdaptor, ProjectorConfig

        class PrecomputedItems(ItemEncoderInterface):
            has_modalities = modalities

            def __init__(self, features: Any) -> None:
                super().__init__()
                self.dim, self.num_items = DIM, features.shape[0]
                self.register_buffer("features", features)
                self.register_buffer("has_image", torch.arange(features.shape[0]) % 3 != 0)
                self.text = MoEAdaptor(ProjectorConfig(in_dim=features.shape[1], out_dim=DIM, experts=2))
                self.image = MoEAdaptor(ProjectorConfig(in_dim=features.shape[1], out_dim=DIM, experts=2))

            def encode(self, ids: Any) -> Any:
                return self.encode_modalities(ids).vectors

            def encode_modalities(self, ids: Any) -> Any:
                rows = self.features[ids]
                text, image = self.text(rows), self.image(rows.flip(1))
                has_image = self.has_image[ids]
                has_text = torch.ones_like(has_image)
                return ItemVectors(text + image * has_image[:, None], text, image, has_text, has_image)

        torch.manual_seed(0)
        return PrecomputedItems(self.features())

    def recommender(self, item_encoder: Any = None, causal: bool = True) -> Any:
        torch = self.torch
        from industrial.modules.recommender import Recommender
        from industrial.modules.user_encoder import UserEncoder, UserEncoderConfig

        torch.manual_seed(0)
        user = UserEncoder(UserEncoderConfig(dim=DIM, layers=2, heads=2, inner_dim=32, dropout=0.1, max_len=8, causal=causal))
        return Recommender(item_encoder if item_encoder is not None else self.item_encoder(), user)

    def train_step(self, task: Any, batch: Any) -> None:
        """Forward, backward and a fused AdamW step of ``task`` on ``batch`` (host), all on the GPU."""
        torch = self.torch
        with self:
            self.to_gpu(task)
            task.train()
            loss, logs = task(batch.to(self.gpu, non_blocking=True))
            assert loss.device == self.gpu, loss.device
            loss.backward()
            params = [p for p in task.parameters() if p.requires_grad]
            grads = [p.grad for p in params if p.grad is not None]
            assert grads and all(g.device == self.gpu for g in grads)
            torch.optim.AdamW(params, lr=1e-3, fused=True).step()
            assert torch.isfinite(loss.detach().cpu()), float(loss.detach().cpu())


def _train_batch(negatives: int = 0, augmented: bool = False) -> Any:
    from industrial.data.batch import make_batch

    histories = [[1, 2, 3, 4], [5, 6], [7, 8, 9], [10]]
    targets = [[2, 3, 4, 11], [6, 12], [8, 9, 13], [14]]
    negs = [[(3 * i + 1) % NUM_ITEMS for i in range(len(t) * negatives)] for t in targets] if negatives else None
    aug = [h[::-1][:3] for h in histories] if augmented else None
    return make_batch([0, 1, 2, 3], histories, targets, negatives=negs, augmented=aug)


# ------------------------------------------------------------------ the single-rank checks


def check_user_encoder(h: _Harness) -> None:
    torch = h.torch
    from industrial.modules.user_encoder import UserEncoder, UserEncoderConfig

    lengths_host = torch.tensor([3, 1, 4, 2])
    for jagged in (True, False):
        for causal in (True, False):
            encoder = UserEncoder(UserEncoderConfig(dim=DIM, layers=2, heads=2, inner_dim=32, dropout=0.1, max_len=6, causal=causal, num_domains=2, jagged=jagged))
            vectors = torch.randn(int(lengths_host.sum()), DIM)
            with h:
                h.to_gpu(encoder).train()
                lengths = lengths_host.to(h.gpu)
                x = vectors.to(h.gpu).requires_grad_()
                domains = (torch.arange(10, device=h.gpu) % 2)
                states = encoder(x, lengths, domains, 4)
                users = encoder.last(states, lengths)
                (states.square().mean() + users.sum()).backward()
                assert x.grad.device == h.gpu and states.device == h.gpu
                torch.optim.AdamW(encoder.parameters(), lr=1e-3, fused=True).step()


def check_user_encoder_syncs(h: _Harness) -> None:
    torch = h.torch
    from industrial.modules.user_encoder import UserEncoder, UserEncoderConfig

    encoder = UserEncoder(UserEncoderConfig(dim=DIM, layers=2, heads=2, inner_dim=32, dropout=0.1, max_len=6))
    lengths_host = torch.tensor([3, 1, 4, 2])
    with h:
        h.to_gpu(encoder).train()
        lengths, x = lengths_host.to(h.gpu), torch.randn(10, DIM).to(h.gpu)
        h.audit.reset()
        encoder(x, lengths)
        assert len(h.audit.syncs) <= 1, f"the forward without max_length synced more than once: {h.audit.syncs}"
        h.audit.reset()
        encoder(x, lengths, None, int(lengths_host.max()))
        assert h.audit.syncs == [], f"the forward with max_length synced with the host: {h.audit.syncs}"


def check_projector(h: _Harness) -> None:
    torch = h.torch
    from industrial.modules.projector import MoEAdaptor, ProjectorConfig

    for mask in ("shared", "per_expert"):
        moe = MoEAdaptor(ProjectorConfig(in_dim=FEATURE_DIM, out_dim=DIM, experts=3, dropout=0.2, dropout_mask=mask))
        with h:
            h.to_gpu(moe).train()
            out = moe(torch.randn(5, FEATURE_DIM).to(h.gpu))
            out.sum().backward()
            assert out.device == h.gpu


def check_fusion(h: _Harness) -> None:
    torch = h.torch
    from industrial.modules.fusion import FusionConfig, MergeAttentionFusion, image_only, text_only

    fusion = MergeAttentionFusion(FusionConfig(dim=DIM, num_heads=2, num_layers=2, dropout=0.1))
    with h:
        h.to_gpu(fusion).train()
        text = torch.randn(3, 4, DIM).to(h.gpu).requires_grad_()
        image = torch.randn(3, 5, DIM).to(h.gpu)
        text_mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0]]).to(h.gpu)
        image_mask = torch.tensor([[1] * 5, [0] * 5, [1] * 5]).to(h.gpu)
        out = fusion(text, text_mask, image, image_mask) + text_only(text, text_mask) + image_only(image, image_mask)
        out.sum().backward()
        assert out.device == h.gpu and text.grad.device == h.gpu


def check_text_encoder(h: _Harness) -> None:
    torch = h.torch
    from industrial.modules.text import TextEncoder, TextEncoderConfig, tokenize_texts

    tiny = dict(model_type="bert", hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32)
    for pooling in ("cls", "mean", "attention"):
        torch.manual_seed(0)
        encoder = TextEncoder(TextEncoderConfig(model_config=tiny, max_length=12, pooling=pooling, out_dim=DIM, trainable_top_layers=1))
        tokens = tokenize_texts(["red pen", "a box of twelve sharpened pencils", "ink"], encoder.tokenizer, max_length=12)
        ids, mask = tokens.batch([0, 1, 2])
        with h:
            h.to_gpu(encoder).train()
            out = encoder(ids.to(h.gpu), mask.to(h.gpu))
            out.sum().backward()
            assert out.device == h.gpu


def check_vision_encoder(h: _Harness) -> None:
    torch = h.torch
    from industrial.modules.vision import VisionEncoder, VisionEncoderConfig

    tiny = dict(model_type="resnet", embedding_size=8, hidden_sizes=[8, 8, 16, 16], depths=[1, 1, 1, 1], layer_type="basic")
    torch.manual_seed(0)
    encoder = VisionEncoder(VisionEncoderConfig(model_config=tiny, out_dim=DIM, trainable_top_layers=2))
    with h:
        h.to_gpu(encoder).train()
        out = encoder(torch.randn(2, 3, 32, 32).to(h.gpu))
        out.sum().backward()
        assert out.device == h.gpu


def check_batch_to_device(h: _Harness) -> None:
    batch = _train_batch(negatives=2, augmented=True)
    with h:
        moved = batch.to(h.gpu, non_blocking=True)
        for key in ("history", "target", "negative", "augmented"):
            assert moved.values(key).device == h.gpu and moved.lengths(key).device == h.gpu, key
        assert moved.user_ids.device == h.gpu and moved.timestamps.device == h.gpu
        assert moved.max_history_length == batch.max_history_length == 4


def _next_item(h: _Harness, loss: Any, negatives: int) -> None:
    torch = h.torch
    from industrial.recipes.next_item import NextItemTask

    log_q = torch.log_softmax(torch.randn(NUM_ITEMS), 0)
    h.train_step(NextItemTask(h.recommender(), loss, item_log_q=log_q), _train_batch(negatives))


def check_next_item_full_softmax(h: _Harness) -> None:
    from industrial.objectives import FullSoftmaxLoss

    _next_item(h, FullSoftmaxLoss(), 0)


def check_next_item_sampled_softmax(h: _Harness) -> None:
    from industrial.objectives import SampledSoftmaxLoss

    _next_item(h, SampledSoftmaxLoss(temperature=0.5, normalize=True, logq_correction=True), 2)


def check_next_item_bce(h: _Harness) -> None:
    from industrial.objectives import SampledBCELoss

    _next_item(h, SampledBCELoss(), 3)


def check_cpc(h: _Harness) -> None:
    from industrial.recipes.transrec import CPCSettings, CPCTask

    h.train_step(CPCTask(h.recommender(causal=False), CPCSettings(positives=2)), _train_batch(negatives=2))


def check_pmmrec(h: _Harness) -> None:
    from industrial.objectives import SampledSoftmaxLoss
    from industrial.recipes.pmmrec import PMMRecPretrainTask, PMMRecSettings

    task = PMMRecPretrainTask(h.recommender(h.item_encoder(modalities=True)), PMMRecSettings(shuffle_ratio=0.3, replace_ratio=0.3), SampledSoftmaxLoss())
    h.train_step(task, _train_batch())


def check_unim2rec(h: _Harness) -> None:
    from industrial.objectives.sequence_contrastive import SequencePretrainConfig
    from industrial.recipes.unim2rec import UniM2RecPretrainTask

    h.train_step(UniM2RecPretrainTask(h.recommender(), SequencePretrainConfig()), _train_batch(augmented=True))


def check_id_table_full_softmax(h: _Harness) -> None:
    torch = h.torch
    from industrial.modules.item_encoder import IdItemEncoder
    from industrial.modules.item_tables import ItemIdTable
    from industrial.objectives import FullSoftmaxLoss
    from industrial.recipes.next_item import NextItemTask

    table = ItemIdTable(NUM_ITEMS, DIM, device=torch.device("cpu"))
    torch.nn.init.normal_(table.collection.embeddings["item_id"].weight, std=0.02)
    h.train_step(NextItemTask(h.recommender(IdItemEncoder(table)), FullSoftmaxLoss()), _train_batch())


def _eval_batches() -> list:
    from industrial.data.batch import make_batch

    return [make_batch(*b) for b in EVAL_BATCHES]


def _evaluate(h: _Harness, batches: list) -> Any:
    torch = h.torch
    from industrial.evaluate.breakdown import ItemInfo
    from industrial.evaluate.model_eval import evaluate_model

    import numpy as np

    model = h.recommender()
    info = ItemInfo(
        domains=np.array(["a" if i % 2 else "b" for i in range(NUM_ITEMS)], dtype=object),
        has_text=np.ones(NUM_ITEMS, dtype=bool),
        has_image=np.arange(NUM_ITEMS) % 3 != 0,
        train_counts=np.arange(NUM_ITEMS, dtype=np.int64) % 4,
    )
    with h:
        h.to_gpu(model)
        with torch.no_grad():
            model.encode_item_range(0, 1)  # warm: what follows is the evaluation alone
        h.audit.reset()
        evaluation = evaluate_model(model, batches, h.gpu, [1, 3, 10], item_chunk=8, item_info=info)
    return evaluation


def check_evaluation_one_rank(h: _Harness) -> dict[str, Any]:
    evaluation = _evaluate(h, _eval_batches())
    assert evaluation.count == sum(len(b[0]) for b in EVAL_BATCHES)
    flat = evaluation.scalars()
    record = {"metrics": flat, "cpu_ops": {k: v for k, v in h.audit.cpu_ops.items() if _ranking_op(k)}, "largest_copy_to_host": h.audit.largest_copy_to_host}
    return {"evaluation_one_rank_record": record}


def _ranking_op(name: str) -> bool:
    """The ops of the ranking's tiles: matrix products, comparisons, row sums."""
    return any(name.startswith(f"aten.{op}") for op in ("mm", "addmm", "bmm", "ge.Tensor", "topk", "index_put", "index_fill"))


def check_ranking_topk_exclude(h: _Harness) -> None:
    torch = h.torch
    from industrial.evaluate.ranking import History, rank_targets

    users, items = torch.randn(7, DIM), torch.randn(NUM_ITEMS, DIM)
    history = History.from_lists([[1, 2], [], [3], [4, 5, 6], [0], [7], [8, 9]])
    reference = rank_targets(users, items, list(range(10, 17)), history, chunk_size=8, user_batch_size=4, topk=5, exclude=[20, 21])
    with h:
        result = rank_targets(users.to(h.gpu), items.to(h.gpu), list(range(10, 17)), history, chunk_size=8, user_batch_size=4, topk=5, exclude=[20, 21])
        assert result.ranks.device == h.gpu and result.topk_items.device == h.gpu
        assert torch.equal(result.ranks.cpu(), reference.ranks) and torch.equal(result.topk_items.cpu(), reference.topk_items)


SINGLE_CHECKS: dict[str, Callable[[_Harness], Any]] = {
    "user_encoder": check_user_encoder,
    "user_encoder_syncs": check_user_encoder_syncs,
    "projector": check_projector,
    "fusion": check_fusion,
    "text_encoder": check_text_encoder,
    "vision_encoder": check_vision_encoder,
    "batch_to_device": check_batch_to_device,
    "next_item_full_softmax": check_next_item_full_softmax,
    "next_item_sampled_softmax": check_next_item_sampled_softmax,
    "next_item_bce": check_next_item_bce,
    "cpc": check_cpc,
    "pmmrec": check_pmmrec,
    "unim2rec": check_unim2rec,
    "id_table_full_softmax": check_id_table_full_softmax,
    "evaluation_one_rank": check_evaluation_one_rank,
    "ranking_topk_exclude": check_ranking_topk_exclude,
}


def _error() -> str:
    return "".join(traceback.format_exc().splitlines(keepends=True)[-25:])


def run_single(out: Path) -> None:
    _setup()
    h = _Harness()
    results: dict[str, Any] = {}
    for name, check in SINGLE_CHECKS.items():
        try:
            extra = check(h)
            results[name] = "ok"
            results.update(extra or {})
        except BaseException:  # noqa: BLE001 - report every check, whatever it raised
            results[name] = _error()
    (out / "single.json").write_text(json.dumps(results))


def run_eval2(out: Path, rank: int) -> None:
    import datetime

    import torch.distributed as dist

    FakeNccl = _setup()
    h = _Harness()
    results: dict[str, Any] = {}
    name = f"evaluation_two_ranks_{rank}"
    try:
        store = dist.FileStore(str(out / "store"), 2)
        dist.init_process_group("fakenccl", store=store, rank=rank, world_size=2, timeout=datetime.timedelta(seconds=120))
        batches = _eval_batches()
        evaluation = _evaluate(h, [batches[i] for i in RANK_BATCHES[rank]])
        results[name] = "ok"
        results[f"{name}_metrics"] = evaluation.scalars()
    except BaseException:  # noqa: BLE001
        results[name] = _error()
    results[f"{name}_collectives"] = sorted(set(FakeNccl.calls))
    (out / f"eval2_rank{rank}.json").write_text(json.dumps(results))
    if dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    what, folder = sys.argv[1], Path(sys.argv[2])
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if what == "single":
        run_single(folder)
    else:
        run_eval2(folder, int(sys.argv[3]))
