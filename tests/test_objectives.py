"""Each objective against a hand-computed case."""

import math

import torch

from industrial.objectives import FullSoftmaxLoss, SampledBCELoss, SampledSoftmaxLoss, ScoringInputs


def test_full_softmax_hand_computed():
    # one query (1, 0); items (1, 0), (0, 1), (-1, 0); target item 0; tau = 0.5
    queries = torch.tensor([[1.0, 0.0]])
    items = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    inputs = ScoringInputs(queries, torch.tensor([0]), items[[0]], catalogue_vectors=items)
    loss = FullSoftmaxLoss(temperature=0.5)(inputs).loss
    logits = [2.0, 0.0, -2.0]
    expected = -(logits[0] - math.log(sum(math.exp(v) for v in logits)))
    assert math.isclose(loss.item(), expected, rel_tol=1e-6)


def test_sampled_softmax_masks_duplicates_and_corrects_logq():
    queries = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    target_ids = torch.tensor([5, 7, 5])  # points 0 and 2 share their target
    targets = torch.tensor([[2.0, 0.0], [0.0, 3.0], [2.0, 0.0]])
    log_q = torch.log(torch.tensor([0.5, 0.25, 0.5]))
    loss = SampledSoftmaxLoss(logq_correction=True)(ScoringInputs(queries, target_ids, targets, target_log_q=log_q)).loss
    logits = queries @ targets.T - log_q[None, :]
    per_point = []
    for p in range(3):
        allowed = [j for j in range(3) if j == p or target_ids[j] != target_ids[p]]
        denom = sum(math.exp(logits[p, j].item()) for j in allowed)
        per_point.append(-(logits[p, p].item() - math.log(denom)))
    assert math.isclose(loss.item(), sum(per_point) / 3, rel_tol=1e-6)


def test_sampled_softmax_with_negatives_ignores_collisions():
    queries = torch.tensor([[1.0, 0.0]])
    target = torch.tensor([[1.0, 0.0]])
    negatives = torch.tensor([[[0.0, 1.0], [1.0, 0.0]]])  # second negative is the target itself
    inputs = ScoringInputs(queries, torch.tensor([3]), target, negative_ids=torch.tensor([[4, 3]]), negative_vectors=negatives)
    loss = SampledSoftmaxLoss(logq_correction=False)(inputs).loss
    expected = -(1.0 - math.log(math.exp(1.0) + math.exp(0.0)))
    assert math.isclose(loss.item(), expected, rel_tol=1e-6)


def test_bce_hand_computed():
    queries = torch.tensor([[1.0, 2.0]])
    target = torch.tensor([[1.0, 0.0]])  # score 1
    negatives = torch.tensor([[[0.0, 1.0], [-1.0, 0.0]]])  # scores 2, -1
    inputs = ScoringInputs(queries, torch.tensor([0]), target, negative_ids=torch.tensor([[1, 2]]), negative_vectors=negatives)
    loss = SampledBCELoss()(inputs).loss
    sig = lambda x: 1 / (1 + math.exp(-x))
    expected = -math.log(sig(1.0)) - (math.log(1 - sig(2.0)) + math.log(1 - sig(-1.0))) / 2
    assert math.isclose(loss.item(), expected, rel_tol=1e-6)
