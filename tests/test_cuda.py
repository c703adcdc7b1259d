"""Checks on a real CUDA GPU (marker ``cuda``; skipped without one; ``make gpu-check`` runs them).

They need the dense parts only, so they run where TorchRec, fbgemm-gpu and torchdata are absent
(the lent GPU machines); the few that need TorchRec skip there, saying so. On a CPU machine every
test here is skipped: the placement itself is proven without a GPU by
``tests/test_device_placement.py``.
"""

from __future__ import annotations

import pytest
import torch

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device (torch.cuda.is_available() is False)"),
]

DIM = 32


def _encoder(**kw):
    from industrial.modules.user_encoder import UserEncoder, UserEncoderConfig

    torch.manual_seed(0)
    return UserEncoder(UserEncoderConfig(dim=DIM, layers=2, heads=4, inner_dim=64, dropout=0.0, max_len=20, **kw))


def _jagged(lengths: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(1)
    return torch.randn(sum(lengths), DIM), torch.tensor(lengths)


@pytest.mark.parametrize("jagged", [True, False])
def test_user_encoder_on_cuda_matches_cpu(jagged):
    cpu = _encoder(jagged=jagged).eval()
    gpu = _encoder(jagged=jagged).eval().cuda()
    x, lengths = _jagged([3, 1, 7, 20, 5])
    expected = cpu(x, lengths)
    got = gpu(x.cuda(), lengths.cuda(), None, 20)
    assert got.device.type == "cuda"
    assert torch.allclose(got.cpu(), expected, atol=1e-4, rtol=1e-4)


def test_user_encoder_forward_makes_no_host_sync():
    """With the batch's max length given, the user encoder's training forward never waits for the
    GPU (CUDA's sync debug mode raises on any synchronising call); its backward then runs."""
    encoder = _encoder(num_domains=2).train().cuda()
    x, lengths = _jagged([3, 1, 7, 20, 5])
    x, lengths = x.cuda().requires_grad_(), lengths.cuda()
    domains = torch.arange(x.shape[0], device="cuda") % 2
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        states = encoder(x, lengths, domains, 20)
        loss = states.square().mean() + encoder.last(states, lengths).sum()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    loss.backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_bf16_autocast_step_of_user_encoder_and_losses():
    from industrial.objectives import FullSoftmaxLoss, SampledSoftmaxLoss
    from industrial.objectives.base import ScoringInputs

    encoder = _encoder().train().cuda()
    catalogue = torch.nn.Parameter(torch.randn(100, DIM, device="cuda") * 0.1)
    x, lengths = _jagged([4, 9, 2])
    ids = torch.randint(0, 100, (x.shape[0],), device="cuda")
    optimizer = torch.optim.AdamW([*encoder.parameters(), catalogue], lr=1e-3, fused=True)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        states = encoder(catalogue[ids], lengths.cuda(), None, 9)
        inputs = ScoringInputs(states, ids, catalogue[ids], catalogue_vectors=catalogue)
        loss = FullSoftmaxLoss()(inputs).loss + SampledSoftmaxLoss()(inputs).loss
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss) and all(torch.isfinite(p).all() for p in encoder.parameters())


def test_ranking_on_cuda_equals_cpu():
    from industrial.evaluate.ranking import History, rank_targets

    g = torch.Generator().manual_seed(0)
    # small integer vectors: every score is exact in float32 on both devices, ties included
    users = torch.randint(-3, 4, (300, 16), generator=g).float()
    items = torch.randint(-3, 4, (5000, 16), generator=g).float()
    targets = torch.randint(0, 5000, (300,), generator=g)
    history = History.from_lists([[int(t) - 1, int(t) + 7] if 8 < int(t) < 4990 else [] for t in targets])
    kwargs = dict(chunk_size=1024, user_batch_size=128, topk=10, exclude=[1, 2, 3])
    cpu = rank_targets(users, items, targets, history, **kwargs)
    gpu = rank_targets(users.cuda(), items.cuda(), targets, history, **kwargs)
    assert gpu.ranks.device.type == "cuda"
    assert torch.equal(gpu.ranks.cpu(), cpu.ranks)
    assert torch.equal(gpu.topk_scores.cpu(), cpu.topk_scores)


def test_nccl_collectives_take_the_gpu():
    """Under NCCL (a group of one) the evaluation's collectives get CUDA tensors and work."""
    import torch.distributed as dist

    from industrial.distributed.env import collective_device
    from industrial.evaluate.breakdown import evaluate_ranks
    from industrial.evaluate.model_eval import _gather_users

    if not dist.is_nccl_available():
        pytest.skip("this PyTorch build has no NCCL")
    fresh = not dist.is_initialized()
    if fresh:
        dist.init_process_group("nccl", store=dist.HashStore(), rank=0, world_size=1, device_id=torch.device("cuda", 0))
    try:
        assert collective_device().type == "cuda"
        users = torch.randn(3, DIM, device="cuda")
        vectors, targets, history, first = _gather_users(users, torch.tensor([4, 5, 6]), torch.tensor([1, 2, 3]), torch.tensor([2, 0, 1]), 0, 1)
        assert torch.equal(vectors, users) and targets.tolist() == [4, 5, 6] and first == 0
        assert history.lengths().tolist() == [2, 0, 1]
        evaluation = evaluate_ranks(torch.tensor([1, 3, 20]), {"d": ["a", "b", "a"]}, [1, 10], process_group=dist.group.WORLD)
        assert evaluation.count == 3 and evaluation.metrics["recall@10"] == pytest.approx(2 / 3)
    finally:
        if fresh:
            dist.destroy_process_group()


def test_dense_optimizer_is_fused_on_cuda():
    pytest.importorskip("torchrec", reason="industrial.distributed.sharding needs TorchRec")
    from industrial.distributed.sharding import OptimConfig, dense_optimizer

    params = [torch.nn.Parameter(torch.randn(8, device="cuda"))]
    optimizer = dense_optimizer(params, OptimConfig(), torch.device("cuda", 0))
    params[0].grad = torch.ones_like(params[0])
    optimizer.step()
    assert optimizer.defaults["fused"] is True


def test_pinned_batch_copies_without_blocking():
    pytest.importorskip("torchrec", reason="a SequenceBatch holds a TorchRec KeyedJaggedTensor")
    from industrial.data.batch import make_batch

    batch = make_batch([0, 1], [[1, 2, 3], [4]], [[2, 3, 5], [6]]).pin_memory()
    assert batch.user_ids.is_pinned() and batch.values("history").is_pinned()
    moved = batch.to(torch.device("cuda"), non_blocking=True)
    torch.cuda.synchronize()
    assert moved.values("history").device.type == "cuda" and moved.max_history_length == 3
    assert moved.values("history").tolist() == [1, 2, 3, 4]
