"""Every objective of ``industrial.objectives`` at NON-default settings, against values computed
here by hand (explicit Python loops over anchors and candidates, float64 numpy).

The existing objective tests mostly run at the defaults (τ = 1 for NICL / RCL, unit weights, no
masks), where a temperature applied twice, a weight ignored or a mask dropped is invisible. Here
every test uses τ ∉ {1} (0.07 and 2.0: one sharpens, one flattens), weights ≠ 1 and masks on
(duplicate masking, validity masks, missing modalities). Only the public names of
``industrial.objectives`` are imported, so the tests survive module moves.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from industrial.objectives import (
    CombinedLoss,
    ContrastiveConfig,
    CorruptionConfig,
    CPCConfig,
    CPCLoss,
    FullSoftmaxLoss,
    InfoNCELoss,
    LossOutput,
    NICLConfig,
    NICLLoss,
    NIDConfig,
    NoisedItemDetectionLoss,
    RobustnessContrastiveLoss,
    SampledBCELoss,
    SampledSoftmaxLoss,
    ScoringInputs,
    SequenceItemContrastiveLoss,
    SequencePretrainConfig,
    SequencePretrainLoss,
    SequenceSequenceContrastiveLoss,
    TwoViewConfig,
    TwoViewInfoNCELoss,
    corrupt_sequences,
    duplicate_mask,
    history_with_last_target,
    multi_positive_info_nce,
    next_item_layout,
    rcl_config,
)

TAUS = [0.07, 2.0]
DT = torch.float64


# --------------------------------------------------------------------------- hand-computation helpers


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _t(x) -> torch.Tensor:
    return torch.tensor(np.asarray(x), dtype=DT)


def sim(a: np.ndarray, b: np.ndarray, tau: float, normalize: bool) -> float:
    """s(a, b) = <a, b> / τ, cosine / τ when normalised: one pair, by hand."""
    dot = float(sum(x * y for x, y in zip(a, b)))
    if normalize:
        dot /= math.sqrt(float(sum(x * x for x in a))) * math.sqrt(float(sum(y * y for y in b)))
    return dot / tau


def nll(positives: list[float], others: list[float]) -> float:
    """−log( Σ exp(positives) / (Σ exp(positives) + Σ exp(others)) ), stably."""
    everything = positives + others
    m = max(everything)
    num = sum(math.exp(x - m) for x in positives)
    den = sum(math.exp(x - m) for x in everything)
    return -math.log(num / den)


def log_sigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x)) if x >= 0 else x - math.log1p(math.exp(x))


def close(got: torch.Tensor | float, expected: float, rel: float = 1e-9, abs_: float = 1e-10) -> None:
    value = float(got.detach()) if isinstance(got, torch.Tensor) else float(got)
    assert math.isfinite(value)
    assert value == pytest.approx(expected, rel=rel, abs=abs_), f"got {value!r}, hand-computed {expected!r}"


# --------------------------------------------------------------------------- next-item softmax


@pytest.mark.parametrize("tau", TAUS)
@pytest.mark.parametrize("normalize", [False, True])
def test_full_softmax_temperature_and_cosine(tau, normalize):
    g = _rng(1)
    queries, catalogue = g.normal(size=(5, 4)), g.normal(size=(7, 4))
    targets = np.array([3, 0, 6, 3, 2])
    inputs = ScoringInputs(queries=_t(queries), target_ids=torch.tensor(targets), target_vectors=_t(catalogue[targets]),
                           catalogue_vectors=_t(catalogue))
    out = FullSoftmaxLoss(temperature=tau, normalize=normalize)(inputs)
    expected = 0.0
    for p in range(5):
        logits = [sim(queries[p], catalogue[j], tau, normalize) for j in range(7)]
        expected += nll([logits[targets[p]]], [x for j, x in enumerate(logits) if j != targets[p]])
    close(out.loss, expected / 5)
    close(out.logs["softmax_loss"], expected / 5)


def _sampled_softmax_reference(queries, targets, target_vectors, log_q, negatives, negative_ids, tau, normalize, logq):
    """Candidates of p: every in-batch target j with j == p or id_j != id_p (logit s − log q_j when
    corrected), plus p's own negatives whose id != id_p (logit s, never corrected)."""
    total = 0.0
    P = len(targets)
    for p in range(P):
        def batch_logit(j):
            s = sim(queries[p], target_vectors[j], tau, normalize)
            return s - log_q[j] if logq else s

        others = [batch_logit(j) for j in range(P) if j != p and targets[j] != targets[p]]
        if negatives is not None:
            others += [sim(queries[p], negatives[p, k], tau, normalize)
                       for k in range(negatives.shape[1]) if negative_ids[p, k] != targets[p]]
        total += nll([batch_logit(p)], others)
    return total / P


@pytest.mark.parametrize("tau", TAUS)
@pytest.mark.parametrize("normalize,logq", [(False, True), (True, True), (True, False)])
def test_sampled_softmax_duplicates_logq_and_colliding_negatives(tau, normalize, logq):
    g = _rng(2)
    P, D = 6, 4
    queries = g.normal(size=(P, D))
    targets = np.array([5, 2, 5, 9, 2, 5])  # duplicates: masked out of each other's denominators
    item_vectors = {i: g.normal(size=D) for i in range(12)}
    target_vectors = np.stack([item_vectors[i] for i in targets])
    log_q = np.log(g.uniform(0.01, 0.5, size=P))
    negative_ids = np.array([[5, 1, 3], [0, 2, 2], [7, 8, 5], [9, 9, 4], [1, 3, 6], [0, 11, 10]])  # some collide with the target
    negatives = np.stack([[item_vectors[i] for i in row] for row in negative_ids])
    inputs = ScoringInputs(queries=_t(queries), target_ids=torch.tensor(targets), target_vectors=_t(target_vectors),
                           negative_ids=torch.tensor(negative_ids), negative_vectors=_t(negatives), target_log_q=_t(log_q))
    got = SampledSoftmaxLoss(temperature=tau, normalize=normalize, logq_correction=logq)(inputs).loss
    close(got, _sampled_softmax_reference(queries, targets, target_vectors, log_q, negatives, negative_ids, tau, normalize, logq))
    # in-batch only (no sampled negatives)
    inputs.negative_ids = inputs.negative_vectors = None
    got = SampledSoftmaxLoss(temperature=tau, normalize=normalize, logq_correction=logq)(inputs).loss
    close(got, _sampled_softmax_reference(queries, targets, target_vectors, log_q, None, None, tau, normalize, logq))


def test_sampled_bce_hand_computed_with_several_negatives():
    g = _rng(3)
    P, K, D = 4, 3, 5
    queries, pos, neg = g.normal(size=(P, D)), g.normal(size=(P, D)), g.normal(size=(P, K, D))
    inputs = ScoringInputs(queries=_t(queries), target_ids=torch.arange(P), target_vectors=_t(pos),
                           negative_ids=torch.zeros(P, K, dtype=torch.long), negative_vectors=_t(neg))
    expected = 0.0
    for p in range(P):
        expected -= log_sigmoid(float(queries[p] @ pos[p]))
        expected -= sum(log_sigmoid(-float(queries[p] @ neg[p, k])) for k in range(K)) / K
    close(SampledBCELoss()(inputs).loss, expected / P)


# --------------------------------------------------------------------------- InfoNCE core


def test_multi_positive_core_and_duplicate_mask_by_hand():
    g = _rng(4)
    logits = g.normal(size=(4, 5)) * 3
    positives = np.array([[1, 0, 1, 0, 0], [0, 0, 0, 0, 0], [0, 1, 0, 0, 1], [0, 0, 0, 1, 0]], bool)
    candidates = np.array([[1, 1, 0, 0, 1], [1, 1, 1, 1, 1], [0, 0, 0, 1, 0], [1, 0, 1, 0, 1]], bool)
    loss, valid = multi_positive_info_nce(_t(logits), torch.tensor(positives), torch.tensor(candidates))
    assert valid.tolist() == [True, False, True, True]
    for a in range(4):
        if not positives[a].any():
            assert float(loss[a]) == 0.0
            continue
        pos = [logits[a, c] for c in range(5) if positives[a, c]]
        rest = [logits[a, c] for c in range(5) if candidates[a, c] and not positives[a, c]]  # candidates ∪ positives
        close(loss[a], nll(pos, rest))
    ids = torch.tensor([3, 1, 3, 3, 2])
    expected = [[ids[a] == ids[c] and a != c for c in range(5)] for a in range(5)]
    assert duplicate_mask(ids).tolist() == expected
    keys = torch.tensor([1, 3, 9])
    assert duplicate_mask(ids, keys).tolist() == [[bool(ids[a] == keys[c]) for c in range(3)] for a in range(5)]


@pytest.mark.parametrize("tau", TAUS)
@pytest.mark.parametrize("normalize", [False, True])
def test_info_nce_positive_index_exclusions_and_masks(tau, normalize):
    g = _rng(5)
    A, C, D = 5, 6, 3
    q, k = g.normal(size=(A, D)), g.normal(size=(C, D))
    positive = np.array([2, 0, 5, 3, 1])
    exclude = np.zeros((A, C), bool)
    exclude[0, [1, 4]] = True
    exclude[2, 0] = True
    exclude[3, 3] = True  # its own positive: never excluded (InfoNCE puts positives back)
    query_mask = np.array([1, 1, 1, 1, 0], bool)
    key_mask = np.array([1, 1, 1, 1, 1, 0], bool)  # query 2's positive key is masked: query 2 drops out
    out = InfoNCELoss(ContrastiveConfig(temperature=tau, normalize=normalize), "x")(
        _t(q), _t(k), torch.tensor(positive), torch.tensor(exclude), torch.tensor(query_mask), torch.tensor(key_mask))
    terms = []
    for a in range(A):
        if not query_mask[a] or not key_mask[positive[a]]:
            continue
        rest = [sim(q[a], k[c], tau, normalize) for c in range(C) if c != positive[a] and key_mask[c] and not exclude[a, c]]
        terms.append(nll([sim(q[a], k[positive[a]], tau, normalize)], rest))
    assert len(terms) == 3
    close(out.loss, sum(terms) / len(terms))
    close(out.logs["x"], sum(terms) / len(terms))


def _two_view_direction(a, b, exclude, mask, tau, normalize, both_views):
    terms = []
    B = len(a)
    for i in range(B):
        if not mask[i]:
            continue
        rest = [sim(a[i], b[j], tau, normalize) for j in range(B) if j != i and mask[j] and not exclude[i, j]]
        if both_views:
            rest += [sim(a[i], a[j], tau, normalize) for j in range(B) if j != i and mask[j] and not exclude[i, j]]
        terms.append(nll([sim(a[i], b[i], tau, normalize)], rest))
    return sum(terms) / len(terms)


@pytest.mark.parametrize("tau", TAUS)
@pytest.mark.parametrize("symmetric,negatives", [(False, "other_view"), (True, "other_view"), (True, "both_views"), (False, "both_views")])
def test_two_view_info_nce_directions_negatives_and_masks(tau, symmetric, negatives):
    g = _rng(6)
    B, D = 5, 4
    a, b = g.normal(size=(B, D)), g.normal(size=(B, D))
    exclude = np.zeros((B, B), bool)
    exclude[0, 2] = exclude[3, 1] = exclude[1, 1] = True  # the diagonal entry is ignored
    mask = np.array([1, 1, 0, 1, 1], bool)
    cfg = TwoViewConfig(temperature=tau, normalize=True, symmetric=symmetric, negatives=negatives)
    got = TwoViewInfoNCELoss(cfg)(_t(a), _t(b), torch.tensor(exclude), torch.tensor(mask)).loss
    both = negatives == "both_views"
    expected = _two_view_direction(a, b, exclude, mask, tau, True, both)
    if symmetric:
        expected = 0.5 * (expected + _two_view_direction(b, a, exclude.T, mask, tau, True, both))
    close(got, expected)


# --------------------------------------------------------------------------- NICL


def _nicl_reference(text, image, seq, nxt, has_text, has_image, ids, tau, next_positives=True, intra_negatives=True):
    """Both directions, every anchor by hand: positives are the other modality of the same item and
    (switch on) both modalities of the next item; negatives every vector of another sequence (only
    the other modality when intra_negatives is off), minus copies of the anchor's item or of its
    next item (ids given); absent vectors are dropped everywhere; anchors without positive skipped."""
    n = len(seq)
    vec = {(0, i): text[i] for i in range(n)} | {(1, i): image[i] for i in range(n)}
    present = {(0, i): has_text[i] for i in range(n)} | {(1, i): has_image[i] for i in range(n)}
    terms = []
    for m in (0, 1):
        for i in range(n):
            if not present[(m, i)]:
                continue
            anchor = vec[(m, i)]
            pos = {(1 - m, i)}
            if next_positives and nxt[i] >= 0:
                pos |= {(0, nxt[i]), (1, nxt[i])}
            pos = {key for key in pos if present[key]}
            if not pos:
                continue
            neg = set()
            for mm in (0, 1):
                if mm == m and not intra_negatives:
                    continue
                for j in range(n):
                    if seq[j] == seq[i] or not present[(mm, j)]:
                        continue
                    if ids is not None and (ids[j] == ids[i] or (nxt[i] >= 0 and ids[j] == ids[nxt[i]])):
                        continue
                    neg.add((mm, j))
            neg -= pos
            terms.append(nll([sim(anchor, vec[k], tau, True) for k in sorted(pos)],
                             [sim(anchor, vec[k], tau, True) for k in sorted(neg)]))
    return sum(terms) / len(terms), len(terms)


@pytest.mark.parametrize("tau", TAUS)
def test_nicl_temperature_hand_computed(tau):
    """The planted bug "temperature applied twice" changes this value whenever τ ≠ 1."""
    g = _rng(7)
    lengths = torch.tensor([3, 2, 3])
    seq, nxt = next_item_layout(lengths)
    n = int(lengths.sum())
    text, image = g.normal(size=(n, 4)), g.normal(size=(n, 4))
    ones = np.ones(n, bool)
    out = NICLLoss(NICLConfig(temperature=tau))(_t(text), _t(image), seq, nxt)
    expected, anchors = _nicl_reference(text, image, seq.tolist(), nxt.tolist(), ones, ones, None, tau)
    close(out.loss, expected)
    assert int(out.logs["nicl_anchors"]) == anchors == 2 * n


@pytest.mark.parametrize("tau", TAUS)
@pytest.mark.parametrize("next_positives,intra_negatives", [(True, True), (False, True), (True, False)])
def test_nicl_masks_false_negatives_and_switches(tau, next_positives, intra_negatives):
    g = _rng(8)
    lengths = torch.tensor([3, 1, 4, 2])
    seq, nxt = next_item_layout(lengths)
    n = int(lengths.sum())
    text, image = g.normal(size=(n, 5)), g.normal(size=(n, 5))
    has_text = np.array([1, 1, 0, 1, 1, 1, 1, 0, 1, 1], bool)
    has_image = np.array([1, 0, 1, 0, 1, 1, 0, 1, 1, 1], bool)
    ids = np.array([10, 11, 12, 20, 11, 13, 10, 14, 12, 15])  # copies across sequences: false negatives
    cfg = NICLConfig(temperature=tau, next_item_positives=next_positives, intra_modality_negatives=intra_negatives)
    out = NICLLoss(cfg)(_t(text), _t(image), seq, nxt, torch.tensor(has_text), torch.tensor(has_image), torch.tensor(ids))
    expected, anchors = _nicl_reference(text, image, seq.tolist(), nxt.tolist(), has_text, has_image, ids, tau,
                                        next_positives, intra_negatives)
    close(out.loss, expected)
    assert int(out.logs["nicl_anchors"]) == anchors
    # the literal formula (item_ids=None) keeps the copies as negatives: a different value
    literal, _ = _nicl_reference(text, image, seq.tolist(), nxt.tolist(), has_text, has_image, None, tau,
                                 next_positives, intra_negatives)
    close(NICLLoss(cfg)(_t(text), _t(image), seq, nxt, torch.tensor(has_text), torch.tensor(has_image)).loss, literal)
    assert abs(literal - expected) > 1e-6


def test_nicl_on_a_training_batch_layout():
    """history + last target per sequence (the PMMRec task's layout) at τ = 0.5."""
    history = torch.tensor([4, 7, 1, 9, 9, 3])
    target = torch.tensor([7, 1, 2, 9, 3, 5])
    lengths = torch.tensor([3, 1, 2])
    index, seq_lengths = history_with_last_target(lengths)
    items = torch.cat([history, target])[index]
    assert items.tolist() == [4, 7, 1, 2, 9, 9, 9, 3, 5] and seq_lengths.tolist() == [4, 2, 3]
    seq, nxt = next_item_layout(seq_lengths)
    g = _rng(9)
    table_t, table_v = g.normal(size=(10, 3)), g.normal(size=(10, 3))
    text, image = table_t[items.numpy()], table_v[items.numpy()]
    ones = np.ones(len(items), bool)
    out = NICLLoss(NICLConfig(temperature=0.5))(_t(text), _t(image), seq, nxt, item_ids=items)
    expected, _ = _nicl_reference(text, image, seq.tolist(), nxt.tolist(), ones, ones, items.numpy(), 0.5)
    close(out.loss, expected)


# --------------------------------------------------------------------------- NID + corruption


@pytest.mark.parametrize("pos_weight", [None, 3.0])
def test_nid_pos_weight_and_padding_mask(pos_weight):
    torch.manual_seed(0)
    P, D = 7, 4
    loss_fn = NoisedItemDetectionLoss(NIDConfig(D, pos_weight)).double()
    with torch.no_grad():
        loss_fn.classifier.weight.copy_(torch.tensor([[0.5, -1.0, 2.0, 0.25]]))
        loss_fn.classifier.bias.fill_(-0.3)
    g = _rng(10)
    states = g.normal(size=(P, D))
    labels = np.array([0, 1, 2, 0, 0, 2, 1])  # SHUFFLED and REPLACED are both noise
    mask = np.array([1, 1, 1, 0, 1, 1, 0], bool)
    out = loss_fn(_t(states), torch.tensor(labels), torch.tensor(mask))
    w = np.array([0.5, -1.0, 2.0, 0.25])
    total, correct = 0.0, 0
    for p in range(P):
        if not mask[p]:
            continue
        x = float(states[p] @ w) - 0.3
        z = 1.0 if labels[p] > 0 else 0.0
        weight = pos_weight if pos_weight is not None else 1.0
        total -= weight * z * log_sigmoid(x) + (1 - z) * log_sigmoid(-x)
        correct += int((x > 0) == (z == 1.0))
    close(out.loss, total / mask.sum())
    close(out.logs["nid_accuracy"], correct / mask.sum())


@pytest.mark.parametrize("shuffle_ratio,replace_ratio", [(0.3, 0.25), (0.0, 0.6), (0.5, 0.0)])
def test_corruption_at_other_ratios(shuffle_ratio, replace_ratio):
    g = torch.Generator().manual_seed(11)
    lengths = torch.randint(1, 30, (400,), generator=g)
    n = int(lengths.sum())
    num_items = 50
    values = torch.randint(0, num_items, (n,), generator=g)
    cfg = CorruptionConfig(shuffle_ratio, replace_ratio)
    out, labels = corrupt_sequences(values, lengths, num_items, torch.Generator().manual_seed(3), cfg)
    again, labels_again = corrupt_sequences(values, lengths, num_items, torch.Generator().manual_seed(3), cfg)
    assert torch.equal(out, again) and torch.equal(labels, labels_again)  # every draw from the generator
    replaced = labels == 2
    # replacement: another id, in range, at about replace_ratio of the positions
    assert bool((out[replaced] != values[replaced]).all()) and int(out.min()) >= 0 and int(out.max()) < num_items
    assert abs(float(replaced.double().mean()) - replace_ratio) < 0.02
    # clean positions are untouched; shuffled ones moved
    assert torch.equal(out[labels == 0], values[labels == 0])
    assert bool((out[labels == 1] != values[labels == 1]).all())
    # the shuffle permutes within each sequence: per sequence, the non-replaced multiset is kept
    rows = torch.repeat_interleave(torch.arange(len(lengths)), lengths)
    for b in range(len(lengths)):
        keep = (rows == b) & ~replaced
        assert sorted(out[keep].tolist()) == sorted(values[keep].tolist())
    # the share of shuffled positions: at most the shuffle ratio (fixed points count as clean), near it
    shuffled = float((labels == 1).double().mean())
    assert shuffled <= shuffle_ratio + 0.02 and (shuffle_ratio == 0 or shuffled > 0.6 * shuffle_ratio)


# --------------------------------------------------------------------------- RCL, CPC


@pytest.mark.parametrize("tau", TAUS)
def test_rcl_temperature_and_mask(tau):
    g = _rng(12)
    B, D = 6, 4
    h, hc = g.normal(size=(B, D)), g.normal(size=(B, D))
    mask = np.array([1, 0, 1, 1, 1, 1], bool)
    got = RobustnessContrastiveLoss(rcl_config(tau))(_t(h), _t(hc), torch.tensor(mask)).loss
    none = np.zeros((B, B), bool)
    expected = 0.5 * (_two_view_direction(h, hc, none, mask, tau, True, True) + _two_view_direction(hc, h, none, mask, tau, True, True))
    close(got, expected)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_cpc_masks_and_reductions(reduction):
    g = _rng(13)
    B, L, J, D = 3, 4, 5, 3
    users, pos, neg = g.normal(size=(B, D)), g.normal(size=(B, L, D)), g.normal(size=(B, J, D))
    pmask = np.array([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]], bool)
    nmask = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [0, 1, 0, 0, 0]], bool)
    got = CPCLoss(CPCConfig(reduction))(_t(users), _t(pos), _t(neg), torch.tensor(pmask), torch.tensor(nmask)).loss
    pos_terms = [-log_sigmoid(float(users[b] @ pos[b, t])) for b in range(B) for t in range(L) if pmask[b, t]]
    neg_terms = [-log_sigmoid(-float(users[b] @ neg[b, k])) for b in range(B) for k in range(J) if nmask[b, k]]
    if reduction == "mean":
        expected = sum(pos_terms) / len(pos_terms) + sum(neg_terms) / len(neg_terms)
    else:
        expected = (sum(pos_terms) + sum(neg_terms)) / B
    close(got, expected)


# --------------------------------------------------------------------------- sequence contrastive (UniM2Rec / UniSRec)


def _seq_item_reference(s, v, ids, tau):
    P = len(s)
    terms = []
    for p in range(P):
        rest = [sim(s[p], v[q], tau, True) for q in range(P) if q != p and (ids is None or ids[q] != ids[p])]
        terms.append(nll([sim(s[p], v[p], tau, True)], rest))
    return sum(terms) / P


def _seq_seq_reference(s, aug, ids, mask, tau):
    B = len(s)
    terms = []
    for i in range(B):
        if mask is not None and not mask[i]:
            continue
        rest = [sim(s[i], aug[j], tau, True) for j in range(B)
                if j != i and (mask is None or mask[j]) and (ids is None or ids[j] != ids[i])]
        terms.append(nll([sim(s[i], aug[i], tau, True)], rest))
    return sum(terms) / len(terms)


@pytest.mark.parametrize("tau", [0.2, 2.0])
def test_sequence_item_with_same_target_masking(tau):
    g = _rng(14)
    P, D = 6, 4
    s, v = g.normal(size=(P, D)), g.normal(size=(P, D))
    ids = np.array([4, 8, 4, 1, 8, 4])
    loss = SequenceItemContrastiveLoss(ContrastiveConfig(temperature=tau))
    close(loss(_t(s), _t(v), torch.tensor(ids)).loss, _seq_item_reference(s, v, ids, tau))
    close(loss(_t(s), _t(v), None).loss, _seq_item_reference(s, v, None, tau))


@pytest.mark.parametrize("tau", [0.2, 2.0])
def test_sequence_sequence_one_direction_masking_and_mask(tau):
    from industrial.objectives.sequence_contrastive import sequence_sequence_config

    g = _rng(15)
    B, D = 6, 4
    s, aug = g.normal(size=(B, D)), g.normal(size=(B, D))
    ids = np.array([1, 2, 1, 3, 2, 5])
    mask = np.array([1, 1, 1, 0, 1, 1], bool)
    loss = SequenceSequenceContrastiveLoss(sequence_sequence_config(tau))
    close(loss(_t(s), _t(aug), torch.tensor(ids), torch.tensor(mask)).loss, _seq_seq_reference(s, aug, ids, mask, tau))


@pytest.mark.parametrize("masking", [True, False])
def test_sequence_pretrain_weight_temperature_and_masking(masking):
    g = _rng(16)
    B, D, tau, lam = 5, 3, 0.5, 0.3
    s, v, aug = g.normal(size=(B, D)), g.normal(size=(B, D)), g.normal(size=(B, D))
    ids = np.array([7, 7, 2, 9, 2])
    mask = np.array([1, 1, 1, 1, 0], bool)
    fn = SequencePretrainLoss(SequencePretrainConfig(temperature=tau, seq_seq_weight=lam, same_target_masking=masking))
    out = fn(_t(s), _t(v), torch.tensor(ids), _t(aug), torch.tensor(mask))
    masking_ids = ids if masking else None
    si = _seq_item_reference(s, v, masking_ids, tau)
    ss = _seq_seq_reference(s, aug, masking_ids, mask, tau)
    close(out.loss, si + lam * ss)
    close(out.logs["seq_item_loss"], si)
    close(out.logs["seq_seq_loss"], ss)
    close(out.logs["pretrain_loss"], si + lam * ss)
    close(fn(_t(s), _t(v), torch.tensor(ids)).loss, si)  # no augmented view: L_SI alone


def test_sequence_pretrain_over_every_position_with_lengths():
    """Jagged input (every position of B sequences): L_SI over all P positions, L_SS between each
    sequence's LAST state (and last target id) and its augmented copy."""
    g = _rng(17)
    lengths = [3, 1, 4, 2]
    P, B, D, tau, lam = sum(lengths), len(lengths), 4, 0.3, 0.5
    s, v, aug = g.normal(size=(P, D)), g.normal(size=(P, D)), g.normal(size=(B, D))
    ids = np.array([1, 2, 3, 9, 4, 2, 3, 5, 6, 3])  # last ids per sequence: 3, 9, 5, 3 -> sequences 0 and 3 collide
    mask = np.array([1, 1, 0, 1], bool)
    fn = SequencePretrainLoss(SequencePretrainConfig(temperature=tau, seq_seq_weight=lam))
    out = fn(_t(s), _t(v), torch.tensor(ids), _t(aug), torch.tensor(mask), torch.tensor(lengths))
    last = np.cumsum(lengths) - 1
    si = _seq_item_reference(s, v, ids, tau)
    ss = _seq_seq_reference(s[last], aug, ids[last], mask, tau)
    close(out.logs["seq_item_loss"], si)
    close(out.logs["seq_seq_loss"], ss)
    close(out.loss, si + lam * ss)


# --------------------------------------------------------------------------- combining


def test_combined_loss_non_unit_and_zero_weights():
    a, b, c = (torch.tensor(x, dtype=DT, requires_grad=True) for x in (1.5, 0.25, 4.0))
    outputs = {"a": LossOutput(a * 1.0, {"a_inner": a.detach()}), "b": LossOutput(b * 1.0), "c": LossOutput(c * 1.0)}
    out = CombinedLoss({"a": 0.3, "b": 2.5, "c": 0.0})(outputs)
    close(out.loss, 0.3 * 1.5 + 2.5 * 0.25)
    close(out.logs["loss"], 0.3 * 1.5 + 2.5 * 0.25)
    assert {k: float(v) for k, v in out.logs.items()} == {"a_inner": 1.5, "a": 1.5, "b": 0.25, "c": 4.0, "loss": pytest.approx(1.075)}
    out.loss.backward()
    close(a.grad, 0.3)
    close(b.grad, 2.5)
    assert c.grad is None  # weight 0: not in the graph
