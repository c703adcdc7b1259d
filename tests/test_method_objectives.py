"""The seed methods' objectives (NICL, NID, RCL, sequence contrastive, CPC) against hand-computed cases."""

import math

import pytest
import torch
import torch.nn.functional as F

from industrial.objectives import (
    CombinedLoss,
    ContrastiveConfig,
    CorruptionConfig,
    CPCConfig,
    CPCLoss,
    InfoNCELoss,
    LossOutput,
    NICLConfig,
    NICLLoss,
    NIDConfig,
    NoisedItemDetectionLoss,
    RobustnessContrastiveLoss,
    SampledBCELoss,
    ScoringInputs,
    SequenceItemContrastiveLoss,
    SequencePretrainConfig,
    SequencePretrainLoss,
    SequenceSequenceContrastiveLoss,
    corrupt_sequences,
    history_with_last_target,
    multi_positive_info_nce,
    next_item_layout,
)
from industrial.objectives.nid import CLEAN, REPLACED, SHUFFLED
from industrial.objectives.sequence_contrastive import sequence_sequence_config

E = math.exp


def cos(a, b):
    return sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


def nll(pos: list[float], rest: list[float]) -> float:
    """-log(sum exp(pos) / (sum exp(pos) + sum exp(rest)))."""
    p = sum(E(x) for x in pos)
    return -math.log(p / (p + sum(E(x) for x in rest)))


# --------------------------------------------------------------------------- InfoNCE core


def test_multi_positive_core_hand_computed_and_empty_rows():
    logits = torch.tensor([[1.0, 2.0, 3.0], [0.5, 0.0, -1.0]], requires_grad=True)
    positives = torch.tensor([[True, False, True], [False, False, False]])
    loss, valid = multi_positive_info_nce(logits, positives)
    assert valid.tolist() == [True, False]
    assert math.isclose(loss[0].item(), nll([1.0, 3.0], [2.0]), rel_tol=1e-6)
    assert loss[1].item() == 0.0
    loss.sum().backward()
    assert torch.isfinite(logits.grad).all() and logits.grad[1].abs().sum() == 0


def test_multi_positive_core_candidates_exclude_entries():
    logits = torch.tensor([[1.0, 2.0, 3.0]])
    positives, candidates = torch.tensor([[True, False, False]]), torch.tensor([[False, False, True]])
    loss, _ = multi_positive_info_nce(logits, positives, candidates)
    # the positive is always a candidate; the masked middle entry is gone
    assert math.isclose(loss.item(), nll([1.0], [3.0]), rel_tol=1e-6)


# --------------------------------------------------------------------------- sequence-item (UniSRec / UniM2Rec)

QUERIES = [[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]]
TARGETS = [[3.0, 0.0], [0.0, 1.0], [1.0, 2.0]]


def test_sequence_item_hand_computed_with_same_target_masking():
    tau = 0.5
    loss = SequenceItemContrastiveLoss(ContrastiveConfig(temperature=tau))(
        torch.tensor(QUERIES), torch.tensor(TARGETS), torch.tensor([5, 7, 5])
    ).loss
    s = [[cos(q, k) / tau for k in TARGETS] for q in QUERIES]
    expected = [
        nll([s[0][0]], [s[0][1]]),  # key 2 has the same target id 5: masked
        nll([s[1][1]], [s[1][0], s[1][2]]),
        nll([s[2][2]], [s[2][1]]),  # key 0: same id, masked
    ]
    assert math.isclose(loss.item(), sum(expected) / 3, rel_tol=1e-6)


def test_sequence_item_without_ids_uses_every_target():
    tau = 0.07
    loss = SequenceItemContrastiveLoss()(torch.tensor(QUERIES), torch.tensor(TARGETS)).loss
    s = [[cos(q, k) / tau for k in TARGETS] for q in QUERIES]
    expected = sum(nll([s[i][i]], [s[i][j] for j in range(3) if j != i]) for i in range(3)) / 3
    assert math.isclose(loss.item(), expected, rel_tol=1e-5)


def test_info_nce_invariant_to_scaling_and_permutation():
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(6, 4, generator=g), torch.randn(6, 4, generator=g)
    ids = torch.tensor([1, 2, 1, 3, 4, 2])
    loss_fn = SequenceItemContrastiveLoss()
    base = loss_fn(q, k, ids).loss
    scale = torch.rand(6, 1, generator=g) * 5 + 0.1
    assert torch.allclose(loss_fn(q * scale, k * scale.flip(0), ids).loss, base, rtol=1e-5)
    perm = torch.randperm(6, generator=g)
    assert torch.allclose(loss_fn(q[perm], k[perm], ids[perm]).loss, base, rtol=1e-5)


def test_info_nce_gradients_reach_both_sides():
    g = torch.Generator().manual_seed(1)
    q = torch.randn(4, 3, generator=g, requires_grad=True)
    k = torch.randn(4, 3, generator=g, requires_grad=True)
    SequenceItemContrastiveLoss()(q, k, torch.tensor([0, 1, 2, 3])).loss.backward()
    assert q.grad.abs().sum() > 0 and k.grad.abs().sum() > 0


def test_info_nce_masks_and_explicit_positive_index():
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    k = torch.tensor([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    fn = InfoNCELoss(ContrastiveConfig(temperature=1.0))
    out = fn(q, k, positive_index=torch.tensor([1, 0]), key_mask=torch.tensor([True, True, False]),
             query_mask=torch.tensor([True, False])).loss
    assert math.isclose(out.item(), nll([1.0], [0.0]), rel_tol=1e-6)


def test_info_nce_shape_errors():
    fn = InfoNCELoss()
    with pytest.raises(ValueError, match="positive_index"):
        fn(torch.zeros(2, 3), torch.zeros(3, 3))
    with pytest.raises(ValueError, match="dim"):
        fn(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="exclude"):
        fn(torch.zeros(2, 3), torch.zeros(2, 3), exclude=torch.zeros(3, 3, dtype=torch.bool))


# --------------------------------------------------------------------------- sequence-sequence and pre-training sum

ORIG = [[1.0, 0.0], [0.0, 1.0], [1.0, -1.0]]
AUG = [[2.0, 1.0], [1.0, 1.0], [0.0, -1.0]]


def test_sequence_sequence_hand_computed_one_direction_other_view():
    tau = 0.5
    loss = SequenceSequenceContrastiveLoss(sequence_sequence_config(tau))(
        torch.tensor(ORIG), torch.tensor(AUG), torch.tensor([4, 4, 9])
    ).loss
    s = [[cos(a, b) / tau for b in AUG] for a in ORIG]
    expected = [nll([s[0][0]], [s[0][2]]), nll([s[1][1]], [s[1][2]]), nll([s[2][2]], [s[2][0], s[2][1]])]
    assert math.isclose(loss.item(), sum(expected) / 3, rel_tol=1e-6)


def test_pretrain_loss_is_seq_item_plus_lambda_seq_seq():
    g = torch.Generator().manual_seed(2)
    seq, tgt, aug = (torch.randn(5, 4, generator=g) for _ in range(3))
    ids = torch.tensor([0, 1, 0, 2, 3])
    out = SequencePretrainLoss(SequencePretrainConfig(seq_seq_weight=0.5))(seq, tgt, ids, aug)
    si = SequenceItemContrastiveLoss()(seq, tgt, ids).loss
    ss = SequenceSequenceContrastiveLoss()(seq, aug, ids).loss
    assert torch.allclose(out.loss, si + 0.5 * ss)
    assert set(out.logs) == {"seq_item_loss", "seq_seq_loss", "pretrain_loss"}
    only_si = SequencePretrainLoss()(seq, tgt, ids)
    assert torch.allclose(only_si.loss, si)


# --------------------------------------------------------------------------- RCL


def test_rcl_hand_computed_symmetric_nt_xent():
    tau = 1.0
    a, b = ORIG[:2], AUG[:2]
    loss = RobustnessContrastiveLoss()(torch.tensor(a), torch.tensor(b)).loss
    terms = []
    for x, y in ((a, b), (b, a)):
        for i in range(2):
            j = 1 - i
            terms.append(nll([cos(x[i], y[i]) / tau], [cos(x[i], y[j]) / tau, cos(x[i], x[j]) / tau]))
    assert math.isclose(loss.item(), sum(terms) / 4, rel_tol=1e-6)


def test_rcl_mask_drops_a_sequence_and_gradients_flow():
    g = torch.Generator().manual_seed(3)
    a = torch.randn(3, 4, generator=g, requires_grad=True)
    b = torch.randn(3, 4, generator=g, requires_grad=True)
    fn = RobustnessContrastiveLoss()
    masked = fn(a, b, mask=torch.tensor([True, True, False])).loss
    assert torch.allclose(masked, fn(a[:2], b[:2]).loss)
    fn(a, b).loss.backward()
    assert a.grad.abs().sum() > 0 and b.grad.abs().sum() > 0
    scale = torch.tensor([[2.0], [0.5], [3.0]])
    assert torch.allclose(fn(a * scale, b).loss, fn(a, b).loss, rtol=1e-5)


# --------------------------------------------------------------------------- NICL

# two sequences: (item 0, item 1) and (item 2); unit vectors so cos = dot
T = [[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]]
V = [[0.8, 0.6], [0.0, -1.0], [-0.6, 0.8]]
SEQ = torch.tensor([0, 0, 1])
NXT = torch.tensor([1, -1, -1])


def dot(a, b):
    return a[0] * b[0] + a[1] * b[1]


def test_nicl_hand_computed():
    loss = NICLLoss()(torch.tensor(T), torch.tensor(V), SEQ, NXT).loss
    d = dot
    terms = [
        # text anchors: positives v_l, v_{l+1}, t_{l+1}; negatives both modalities of other sequences
        nll([d(T[0], V[0]), d(T[0], V[1]), d(T[0], T[1])], [d(T[0], V[2]), d(T[0], T[2])]),
        nll([d(T[1], V[1])], [d(T[1], V[2]), d(T[1], T[2])]),
        nll([d(T[2], V[2])], [d(T[2], V[0]), d(T[2], V[1]), d(T[2], T[0]), d(T[2], T[1])]),
        # image anchors
        nll([d(V[0], T[0]), d(V[0], T[1]), d(V[0], V[1])], [d(V[0], T[2]), d(V[0], V[2])]),
        nll([d(V[1], T[1])], [d(V[1], T[2]), d(V[1], V[2])]),
        nll([d(V[2], T[2])], [d(V[2], T[0]), d(V[2], T[1]), d(V[2], V[0]), d(V[2], V[1])]),
    ]
    assert math.isclose(loss.item(), sum(terms) / 6, rel_tol=1e-6)


def test_nicl_missing_image_is_dropped_from_both_sides():
    image_mask = torch.tensor([True, False, True])
    out = NICLLoss()(torch.tensor(T), torch.tensor(V), SEQ, NXT, image_mask=image_mask)
    d = dot
    terms = [
        nll([d(T[0], V[0]), d(T[0], T[1])], [d(T[0], V[2]), d(T[0], T[2])]),
        # t_1: no image, no next item -> no positive -> skipped
        nll([d(T[2], V[2])], [d(T[2], V[0]), d(T[2], T[0]), d(T[2], T[1])]),
        nll([d(V[0], T[0]), d(V[0], T[1])], [d(V[0], T[2]), d(V[0], V[2])]),
        # v_1 is absent: not an anchor
        nll([d(V[2], T[2])], [d(V[2], T[0]), d(V[2], T[1]), d(V[2], V[0])]),
    ]
    assert math.isclose(out.loss.item(), sum(terms) / 4, rel_tol=1e-6)
    assert out.logs["nicl_anchors"].item() == 4


def test_nicl_no_usable_anchor_is_zero_not_nan():
    text = torch.randn(3, 2, requires_grad=True)
    image = torch.randn(3, 2, requires_grad=True)
    out = NICLLoss()(text, image, SEQ, torch.full((3,), -1), image_mask=torch.zeros(3, dtype=torch.bool))
    assert out.loss.item() == 0.0
    out.loss.backward()
    assert torch.isfinite(text.grad).all() and text.grad.abs().sum() == 0


def test_nicl_ablation_switches_and_false_negatives():
    d = dot
    plain = NICLLoss(NICLConfig(next_item_positives=False, intra_modality_negatives=False))
    text, image = torch.tensor(T[:1] + T[2:]), torch.tensor(V[:1] + V[2:])
    seq, no_next = torch.tensor([0, 1]), torch.tensor([-1, -1])
    loss = plain(text, image, seq, no_next).loss
    expected = (nll([d(T[0], V[0])], [d(T[0], V[2])]) + nll([d(T[2], V[2])], [d(T[2], V[0])])
                + nll([d(V[0], T[0])], [d(V[0], T[2])]) + nll([d(V[2], T[2])], [d(V[2], T[0])])) / 4
    assert math.isclose(loss.item(), expected, rel_tol=1e-6)
    # item 2 is the same item as item 0 (another user's copy): no longer a negative of item 0
    out = plain(text, image, seq, no_next, item_ids=torch.tensor([10, 10])).loss
    assert out.item() == pytest.approx(0.0, abs=1e-7)  # only the positive is left
    # full NICL, item 2 a copy of item 1 (the next item of item 0): t_0 loses v_2, t_2 as negatives
    full = NICLLoss()(torch.tensor(T), torch.tensor(V), SEQ, NXT, item_ids=torch.tensor([10, 11, 11])).loss
    terms = [
        nll([d(T[0], V[0]), d(T[0], V[1]), d(T[0], T[1])], []),
        nll([d(T[1], V[1])], []),
        nll([d(T[2], V[2])], [d(T[2], V[0]), d(T[2], T[0])]),
        nll([d(V[0], T[0]), d(V[0], T[1]), d(V[0], V[1])], []),
        nll([d(V[1], T[1])], []),
        nll([d(V[2], T[2])], [d(V[2], T[0]), d(V[2], V[0])]),
    ]
    assert math.isclose(full.item(), sum(terms) / 6, rel_tol=1e-6, abs_tol=1e-7)


def test_nicl_gradients_scaling_and_errors():
    g = torch.Generator().manual_seed(4)
    lengths = torch.tensor([3, 2, 4])
    seq, nxt = next_item_layout(lengths)
    text = torch.randn(9, 5, generator=g, requires_grad=True)
    image = torch.randn(9, 5, generator=g, requires_grad=True)
    fn = NICLLoss()
    loss = fn(text, image, seq, nxt).loss
    loss.backward()
    assert text.grad.abs().sum() > 0 and image.grad.abs().sum() > 0
    scale = torch.rand(9, 1, generator=g) + 0.5
    assert torch.allclose(fn(text * scale, image, seq, nxt).loss, loss, rtol=1e-5)
    with pytest.raises(ValueError, match="next_index"):
        fn(text, image, seq, nxt[:-1])
    with pytest.raises(ValueError, match="must both be"):
        fn(text, image[:, :4], seq, nxt)


def test_layout_helpers():
    seq, nxt = next_item_layout(torch.tensor([2, 1, 3]))
    assert seq.tolist() == [0, 0, 1, 2, 2, 2]
    assert nxt.tolist() == [1, -1, -1, 4, 5, -1]
    history = torch.tensor([10, 11, 20, 30, 31, 32])
    target = torch.tensor([11, 12, 21, 31, 32, 33])
    index, lengths = history_with_last_target(torch.tensor([2, 1, 3]))
    assert torch.cat([history, target])[index].tolist() == [10, 11, 12, 20, 21, 30, 31, 32, 33]
    assert lengths.tolist() == [3, 2, 4]


# --------------------------------------------------------------------------- NID


def test_nid_hand_computed_with_padding_mask():
    fn = NoisedItemDetectionLoss(NIDConfig(dim=2))
    with torch.no_grad():
        fn.classifier.weight.copy_(torch.tensor([[1.0, -1.0]]))
        fn.classifier.bias.fill_(0.5)
    states = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 1.0], [9.0, 9.0]])  # logits 1.5, -1.5, 2.5, (pad)
    labels = torch.tensor([SHUFFLED, CLEAN, CLEAN, REPLACED])
    out = fn(states, labels, mask=torch.tensor([True, True, True, False]))
    sig = lambda x: 1 / (1 + E(-x))
    expected = -(math.log(sig(1.5)) + math.log(1 - sig(-1.5)) + math.log(1 - sig(2.5))) / 3
    assert math.isclose(out.loss.item(), expected, rel_tol=1e-6)
    assert math.isclose(out.logs["nid_accuracy"].item(), 2 / 3, rel_tol=1e-6)


def test_nid_gradients_reach_states_and_classifier():
    fn = NoisedItemDetectionLoss(NIDConfig(dim=3, pos_weight=4.0))
    states = torch.randn(5, 3, requires_grad=True)
    fn(states, torch.tensor([0, 1, 0, 2, 0])).loss.backward()
    assert states.grad.abs().sum() > 0 and fn.classifier.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="states"):
        fn(torch.zeros(5, 4), torch.zeros(5))


def test_corruption_labels_and_determinism():
    lengths = torch.tensor([5, 1, 7, 3] * 50)
    values = torch.randint(0, 1000, (int(lengths.sum()),), generator=torch.Generator().manual_seed(0))
    original = values.clone()
    cfg = CorruptionConfig(shuffle_ratio=0.3, replace_ratio=0.2)
    out, labels = corrupt_sequences(values, lengths, 1000, torch.Generator().manual_seed(7), cfg)
    again, labels_again = corrupt_sequences(values, lengths, 1000, torch.Generator().manual_seed(7), cfg)
    assert torch.equal(values, original)  # pure
    assert torch.equal(out, again) and torch.equal(labels, labels_again)
    assert torch.equal(out[labels == CLEAN], values[labels == CLEAN])
    assert bool((out[labels != CLEAN] != values[labels != CLEAN]).all())
    assert bool(((out >= 0) & (out < 1000)).all())
    # shuffling permutes within a sequence: each row keeps its multiset of non-replaced items
    start = 0
    for length in lengths.tolist():
        row = slice(start, start + length)
        kept = labels[row] != REPLACED
        assert sorted(out[row][kept].tolist()) == sorted(values[row][kept].tolist())
        start += length
    n = values.numel()
    assert 0.1 * n < int((labels == REPLACED).sum()) < 0.3 * n
    assert int((labels == SHUFFLED).sum()) > 0.1 * n


def test_corruption_edge_cases():
    g = torch.Generator().manual_seed(0)
    values = torch.tensor([3, 4, 5])
    out, labels = corrupt_sequences(values, torch.tensor([3]), 10, g, CorruptionConfig(0.0, 0.0))
    assert torch.equal(out, values) and labels.sum() == 0
    out, labels = corrupt_sequences(values, torch.tensor([1, 1, 1]), 10, g, CorruptionConfig(1.0, 0.0))
    assert torch.equal(out, values) and labels.sum() == 0  # one item per sequence: nothing to shuffle
    out, labels = corrupt_sequences(values, torch.tensor([3]), 2, g, CorruptionConfig(0.0, 1.0))
    assert bool((labels == REPLACED).all()) and bool((out != values).all())
    with pytest.raises(ValueError, match="lengths"):
        corrupt_sequences(values, torch.tensor([2]), 10, g)
    with pytest.raises(ValueError, match="exceed"):
        CorruptionConfig(0.6, 0.6).validate()


# --------------------------------------------------------------------------- CPC (TransRec stage 2)


def test_cpc_hand_computed_mean_and_sum():
    users = torch.tensor([[1.0, 2.0]])
    positives = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])  # scores 1, 2
    negatives = torch.tensor([[[-1.0, 0.0], [0.0, -1.0]]])  # scores -1, -2
    sig = lambda x: 1 / (1 + E(-x))
    pos = [-math.log(sig(1.0)), -math.log(sig(2.0))]
    neg = [-math.log(1 - sig(-1.0)), -math.log(1 - sig(-2.0))]
    mean = CPCLoss()(users, positives, negatives).loss
    assert math.isclose(mean.item(), sum(pos) / 2 + sum(neg) / 2, rel_tol=1e-6)
    total = CPCLoss(CPCConfig(reduction="sum"))(users, positives, negatives).loss
    assert math.isclose(total.item(), sum(pos) + sum(neg), rel_tol=1e-6)
    masked = CPCLoss()(users, positives, negatives, positive_mask=torch.tensor([[True, False]])).loss
    assert math.isclose(masked.item(), pos[0] + sum(neg) / 2, rel_tol=1e-6)


def test_cpc_equals_sampled_bce_on_tiled_inputs_and_has_gradients():
    g = torch.Generator().manual_seed(5)
    users = torch.randn(3, 4, generator=g, requires_grad=True)
    positives = torch.randn(3, 5, 4, generator=g, requires_grad=True)
    negatives = torch.randn(3, 5, 4, generator=g, requires_grad=True)
    loss = CPCLoss()(users, positives, negatives).loss
    tiled = ScoringInputs(
        queries=users.repeat_interleave(5, 0),
        target_ids=torch.zeros(15, dtype=torch.long),
        target_vectors=positives.reshape(15, 4),
        negative_ids=torch.ones(15, 5, dtype=torch.long),
        negative_vectors=negatives.repeat_interleave(5, 0),
    )
    assert torch.allclose(loss, SampledBCELoss()(tiled).loss, rtol=1e-5)
    loss.backward()
    assert all(t.grad.abs().sum() > 0 for t in (users, positives, negatives))
    with pytest.raises(ValueError, match="positives"):
        CPCLoss()(users, positives[:, :, :3], negatives)
    with pytest.raises(ValueError, match="reduction"):
        CPCLoss(CPCConfig(reduction="max"))


# --------------------------------------------------------------------------- combined


def test_combined_loss_weighs_and_logs_every_component():
    a = LossOutput(torch.tensor(2.0, requires_grad=True), {"nicl_loss": torch.tensor(2.0)})
    nid_logs = {"nid_loss": torch.tensor(3.0), "nid_accuracy": torch.tensor(0.5)}
    b = LossOutput(torch.tensor(3.0, requires_grad=True), nid_logs)
    c = LossOutput(torch.tensor(7.0, requires_grad=True))
    out = CombinedLoss({"nicl": 1.0, "nid": 0.1, "rcl": 0.0})({"nicl": a, "nid": b, "rcl": c})
    assert math.isclose(out.loss.item(), 2.3, rel_tol=1e-6)
    assert {"loss", "nicl", "nid", "rcl", "nicl_loss", "nid_loss", "nid_accuracy"} <= set(out.logs)
    assert out.logs["rcl"].item() == 7.0
    out.loss.backward()
    assert a.loss.grad.item() == 1.0 and math.isclose(b.loss.grad.item(), 0.1, rel_tol=1e-6)
    with pytest.raises(ValueError, match="missing"):
        CombinedLoss({"nicl": 1.0, "nid": 1.0})({"nicl": a})
    with pytest.raises(ValueError, match="non-negative"):
        CombinedLoss({"nicl": -1.0})


def test_zero_vectors_give_finite_losses():
    # F.normalize keeps a zero vector at zero: the cosine is 0, never NaN
    zeros = torch.zeros(4, 3)
    out = SequenceItemContrastiveLoss()(zeros, zeros, torch.arange(4)).loss
    assert torch.isfinite(out)
    out = RobustnessContrastiveLoss()(zeros, F.normalize(torch.ones(4, 3), dim=-1)).loss
    assert torch.isfinite(out)
