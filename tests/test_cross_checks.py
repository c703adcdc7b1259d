"""Cross-checks against INDEPENDENT references, where the existing tests compare two paths of the
same code (2 processes vs 1, jagged vs padded, distributed vs single evaluation), so a mistake
shared by both paths passes them.

- The evaluator's metrics of a trained run (``industrial evaluate RUN --export DIR``) recomputed by
  brute force from what the export holds: item vectors, and the user encoder's weights run through
  a Transformer written out here (float64, explicit masks; no code of ``industrial`` involved),
  then every example ranked against the whole catalogue in NumPy. One process and two processes.
- The user encoder (both of its paths) against the same hand-written Transformer
  (``tests/reference_model.py``).
- The next-item task (which state scores which target) and the in-process evaluator against
  losses and ranks summed by hand.
- ``industrial prepare``'s split against the raw files it reads (Amazon Scientific, UniSRec format):
  the source split, and leave-one-out by time after truncation, rebuilt from the raw rows.

Real data: ``data/amazon_scientific_unisrec``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
import yaml

from reference_model import KS, brute_force_metrics, exported_user_vectors, reference_states

REPO = Path(__file__).resolve().parents[1]


def _env() -> dict[str, str]:
    return {**os.environ, "INDUSTRIAL_DEVICE": "cpu", "OMP_NUM_THREADS": "1"}


def _cli(*args: str, nproc: int = 1) -> subprocess.CompletedProcess:
    launcher = [sys.executable]
    if nproc > 1:
        launcher += ["-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--rdzv_backend", "c10d", "--rdzv_endpoint", "localhost:0"]
    proc = subprocess.run(launcher + ["-m", "industrial.cli", *args], env=_env(), cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, f"industrial {' '.join(args)} failed:\n{proc.stderr[-3000:]}"
    return proc


# --------------------------------------------------------------------------- the user encoder alone


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("jagged", [True, False])
def test_user_encoder_equals_a_hand_written_transformer(causal, norm_first, jagged):
    from industrial.modules.user_encoder import UserEncoder, UserEncoderConfig

    torch.manual_seed(0)
    cfg = UserEncoderConfig(dim=16, layers=2, heads=4, inner_dim=24, dropout=0.3, max_len=12, causal=causal,
                            num_domains=3, norm_first=norm_first, jagged=jagged)
    encoder = UserEncoder(cfg)
    with torch.no_grad():  # every weight non-trivial: biases, LayerNorm gains, positions
        for name, p in encoder.named_parameters():
            gain = "norm" in name and name.endswith("weight")
            p.copy_(torch.randn_like(p) * (0.3 if gain else 0.4) + (1.0 if gain else 0.0))
    encoder.eval()
    lengths = [5, 1, 12, 3, 5]
    g = np.random.default_rng(1)
    sequences = [g.normal(size=(n, 16)) for n in lengths]
    domains = [g.integers(0, 3, n) for n in lengths]
    with torch.no_grad():
        states = encoder(torch.tensor(np.concatenate(sequences), dtype=torch.float32), torch.tensor(lengths),
                         torch.tensor(np.concatenate(domains)))
        last = encoder.last(states, torch.tensor(lengths))
    ref = reference_states(sequences, encoder.state_dict(), {"dim": 16, "heads": 4, "layers": 2, "causal": causal,
                                                             "norm_first": norm_first}, domains)
    np.testing.assert_allclose(states.numpy(), np.concatenate(ref), atol=2e-5, rtol=1e-4)
    np.testing.assert_allclose(last.numpy(), np.stack([r[-1] for r in ref]), atol=2e-5, rtol=1e-4)


# --------------------------------------------------------------------------- the next-item task and the evaluator, in process


def _tiny_model(num_items: int = 30, dim: int = 8, seed: int = 0):
    """A Recommender over a plain embedding item encoder (no TorchRec table: runs in process)."""
    from industrial.modules.item_encoder import ItemEncoderInterface
    from industrial.modules.recommender import Recommender
    from industrial.modules.user_encoder import UserEncoder, UserEncoderConfig

    class EmbeddingItems(ItemEncoderInterface):
        def __init__(self) -> None:
            super().__init__()
            self.dim, self.num_items = dim, num_items
            self.table = torch.nn.Embedding(num_items, dim)

        def encode(self, ids: torch.Tensor) -> torch.Tensor:
            return self.table(ids)

    torch.manual_seed(seed)
    # dropout on: whatever computes in training mode by mistake differs from the references below
    model = Recommender(EmbeddingItems(), UserEncoder(UserEncoderConfig(dim=dim, layers=1, heads=2, inner_dim=16, dropout=0.3, max_len=10)))
    with torch.no_grad():
        model.item_encoder.table.weight.normal_(0, 1.0)
    return model.double().eval()


SEQUENCES = [[3, 7, 7, 1, 20], [5, 2], [9, 4, 11, 3], [1, 29, 0, 14, 2, 6, 8]]


def _training_batch(num_negatives: int = 0):
    from industrial.data.batch import make_batch

    g = np.random.default_rng(3)
    histories = [s[:-1] for s in SEQUENCES]
    targets = [s[1:] for s in SEQUENCES]
    negatives = [g.integers(0, 30, num_negatives * len(t)).tolist() for t in targets] if num_negatives else None
    return make_batch(list(range(len(SEQUENCES))), histories, targets, negatives)


@pytest.mark.parametrize("tau", [0.25, 3.0])
def test_next_item_task_full_softmax_scores_each_state_against_its_next_item(tau):
    """Position t of sequence b (its state after reading items 0..t) predicts item t + 1, over the
    whole catalogue: the task's loss equals that, summed by hand from the states."""
    from industrial.objectives import FullSoftmaxLoss
    from industrial.recipes.next_item import NextItemTask

    model = _tiny_model()
    task = NextItemTask(model, FullSoftmaxLoss(temperature=tau))
    loss, _ = task(_training_batch())
    items = model.item_encoder.table.weight.detach().numpy()
    total, count = 0.0, 0
    for seq in SEQUENCES:
        history = torch.tensor(seq[:-1])
        with torch.no_grad():
            states = model.user_encoder(model.item_encoder.table(history), torch.tensor([len(history)])).numpy()
        for t in range(len(history)):
            logits = items @ states[t] / tau
            total += float(np.logaddexp.reduce(logits) - logits[seq[t + 1]])
            count += 1
    assert float(loss.detach()) == pytest.approx(total / count, rel=1e-9)


def test_next_item_task_sampled_softmax_with_negatives_and_log_q():
    from industrial.objectives import SampledSoftmaxLoss
    from industrial.recipes.next_item import NextItemTask

    model = _tiny_model()
    log_q = torch.log(torch.linspace(0.01, 0.2, 30, dtype=torch.float64))
    batch = _training_batch(num_negatives=2)
    loss, _ = NextItemTask(model, SampledSoftmaxLoss(temperature=0.5, normalize=True), item_log_q=log_q)(batch)
    items = model.item_encoder.table.weight.detach().numpy()
    states = []
    for seq in SEQUENCES:
        with torch.no_grad():
            states += list(model.user_encoder(model.item_encoder.table(torch.tensor(seq[:-1])), torch.tensor([len(seq) - 1])).numpy())
    targets = [y for seq in SEQUENCES for y in seq[1:]]
    negatives = batch.values("negative").view(-1, 2).numpy()

    def s(u, v):
        return float(u @ v / np.linalg.norm(u) / np.linalg.norm(v) / 0.5)

    total = 0.0
    for p, (u, y) in enumerate(zip(states, targets)):
        own = s(u, items[y]) - float(log_q[y])
        others = [s(u, items[targets[j]]) - float(log_q[targets[j]]) for j in range(len(targets)) if j != p and targets[j] != y]
        others += [s(u, items[n]) for n in negatives[p] if n != y]
        total += float(np.logaddexp.reduce([own] + others) - own)
    assert float(loss.detach()) == pytest.approx(total / len(targets), rel=1e-9)


def test_model_evaluation_equals_brute_force_in_process():
    """evaluate_model (catalogue encoding, last state per user, masked full ranking, metrics) on
    evaluation batches against numpy ranks of the same vectors."""
    from industrial.data.batch import make_batch
    from industrial.evaluate.model_eval import evaluate_model

    model = _tiny_model()
    g = np.random.default_rng(5)
    histories = [g.integers(0, 30, g.integers(1, 8)).tolist() for _ in range(60)]
    targets = g.integers(0, 30, 60)
    for u in range(0, 60, 7):  # the target inside the history keeps its score
        histories[u].append(int(targets[u]))
    batches = [make_batch(list(range(i, i + 16)), histories[i:i + 16], [[int(t)] for t in targets[i:i + 16]]) for i in range(0, 60, 16)]
    got = evaluate_model(model, batches, torch.device("cpu"), list(KS)).metrics
    items = model.item_encoder.table.weight.detach().numpy()
    with torch.no_grad():
        users = np.stack([model.user_encoder(model.item_encoder.table(torch.tensor(h)), torch.tensor([len(h)]))[-1].numpy() for h in histories])
    expected = brute_force_metrics(users, items, histories, targets)
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, abs=1e-12), key


# --------------------------------------------------------------------------- a trained run, brute force


@pytest.fixture(scope="module")
def scientific(tmp_path_factory, repo_data) -> Path:
    out = tmp_path_factory.mktemp("cross") / "scientific"
    _cli("prepare", "--format", "unisrec", "--source", str(repo_data("amazon_scientific_unisrec")), "--out", str(out), "--quiet")
    return out


def _train(dataset: Path, run: Path, item: dict, nproc: int = 1, **train) -> Path:
    cfg = {
        "recipe": "crosscheck",
        "data": {"path": str(dataset), "max_seq_len": 8, "batch_size": 128, "eval_batch_size": 1024},
        "model": {"item": item, "user": {"dim": 16, "layers": 2, "heads": 2, "inner_dim": 32, "dropout": 0.2, "max_len": 8}},
        "optim": {"lr": 0.003, "sparse_lr": 0.05},
        "train": {"out_dir": str(run), "epochs": 1, "progress": False, "patience": 0, "eval_every": 1_000_000,
                  "test_at_end": False, **train},
    }
    path = run.parent / f"{run.name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    _cli("train", "--config", str(path), nproc=nproc)
    return run


@pytest.fixture(scope="module")
def sample(scientific) -> Path:
    """A 30 % user sample of Scientific (valid and test stay whole)."""
    out = scientific.parent / "users0.3"
    _cli("prepare", "sample", "--input", str(scientific), "--users", "0.3", "--out", str(out))
    return out


@pytest.fixture(scope="module")
def idrec_run(sample) -> Path:
    return _train(sample, sample.parent / "idrec", {"kind": "id"})


def _check_against_brute_force(run: Path, export: Path, metrics_file: Path) -> dict[str, float]:
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    dataset, max_seq_len = Path(cfg["data"]["path"]), cfg["data"]["max_seq_len"]
    table = pq.read_table(dataset / "test.parquet", columns=["history", "target"])
    histories = [h[-max_seq_len:] for h in table.column("history").to_pylist()]  # what the model reads and masks
    targets = table.column("target").to_numpy()
    users, items = exported_user_vectors(export, histories)
    expected = brute_force_metrics(users, items, histories, targets)
    got = json.loads(metrics_file.read_text())
    assert got["count"] == len(targets)
    # float32 model vs float64 reference: a near-tie may flip; allow 3 examples' worth
    tolerance = 3.0 / len(targets)
    for key, value in expected.items():
        assert abs(got[key] - value) <= tolerance, f"{key}: evaluator {got[key]:.6f}, brute force {value:.6f}"
    return expected


@pytest.mark.slow
def test_evaluator_metrics_equal_brute_force_from_the_export(idrec_run, tmp_path):
    export = tmp_path / "export"
    _cli("evaluate", str(idrec_run), "--split", "test", "--export", str(export), "--out", str(tmp_path / "eval"))
    expected = _check_against_brute_force(idrec_run, export, tmp_path / "eval" / "metrics.json")
    assert expected["recall@50"] > 0.05  # a trained model, not a degenerate one


@pytest.mark.slow
@pytest.mark.distributed
def test_two_process_run_and_evaluation_equal_brute_force(sample, tmp_path):
    """A run trained by 2 processes (sharded tables), evaluated by 2 processes (catalogue encoded in
    parts, users split, counts reduced), against the same brute force: not only against the
    1-process evaluator. (A checkpoint loads only with the world size that wrote it.)"""
    run = _train(sample, tmp_path / "idrec2", {"kind": "id"}, nproc=2)
    export = tmp_path / "export"
    _cli("evaluate", str(run), "--split", "test", "--export", str(export), "--out", str(tmp_path / "eval"), nproc=2)
    expected = _check_against_brute_force(run, export, tmp_path / "eval" / "metrics.json")
    assert expected["recall@50"] > 0.05


@pytest.mark.slow
def test_exported_content_vectors_are_the_evaluated_ones(scientific, tmp_path):
    n_items = pq.read_metadata(scientific / "items.parquet").num_rows
    features = tmp_path / "features"  # random vectors: mechanics only (this checks the export, not learning)
    features.mkdir()
    np.save(features / "features.npy", np.random.default_rng(0).standard_normal((n_items, 24)).astype(np.float32))
    np.save(features / "present.npy", np.ones(n_items, dtype=bool))
    (features / "info.json").write_text(json.dumps({"format": "industrial.features/1", "modality": "text", "dim": 24, "n_items": n_items,
                                                    "files": {"features": "features.npy", "present": "present.npy"}}))
    run = _train(scientific, tmp_path / "cached", {"kind": "cached", "features": str(features), "projector": {"experts": 2, "dropout": 0.2}},
                 max_steps=10)
    export = tmp_path / "export"
    _cli("evaluate", str(run), "--split", "test", "--export", str(export), "--out", str(tmp_path / "eval"))
    _check_against_brute_force(run, export, tmp_path / "eval" / "metrics.json")


# --------------------------------------------------------------------------- the split against the raw files


#: UniSRec's rows keep at most 50 history items: a longer sequence is known only by its suffix
RAW_HISTORY_CAP = 50


def _raw_scientific(source: Path) -> dict[str, list[str]]:
    """Each user's sequence (item ids of the source) from the raw test rows: history + target
    (the whole sequence unless the history is at the 50-item cap)."""
    def index(path: Path) -> dict[str, str]:
        return dict(line.split("\t")[::-1] for line in path.read_text().splitlines() if line.strip())

    users = index(source / "Scientific.user2index")  # index -> source user id
    items = index(source / "Scientific.item2index")  # index -> ASIN
    sequences = {}
    for line in (source / "Scientific.test.inter").read_text().splitlines()[1:]:
        user, history, target = line.split("\t")
        sequences[users[user]] = [items[i] for i in history.split()] + [items[target]]
    return sequences


def _prepared(dataset: Path):
    users = dict(zip(*pq.read_table(dataset / "users.parquet").to_pydict().values()))
    item_table = pq.read_table(dataset / "items.parquet", columns=["item_id", "source_id"])
    items = dict(zip(item_table.column("item_id").to_pylist(), item_table.column("source_id").to_pylist()))
    train = pq.read_table(dataset / "train.parquet", columns=["user_id", "item_ids"]).to_pydict()
    train = {users[u]: [items[i] for i in seq] for u, seq in zip(train["user_id"], train["item_ids"])}
    splits = {}
    for split in ("valid", "test"):
        t = pq.read_table(dataset / f"{split}.parquet").to_pydict()
        splits[split] = {users[u]: ([items[i] for i in h], items[y]) for u, h, y in zip(t["user_id"], t["history"], t["target"])}
        assert len(splits[split]) == len(t["user_id"]), f"{split}: a user has two rows"
    return train, splits["valid"], splits["test"]


@pytest.mark.parametrize("options,keep", [([], None), (["--split", "leave-one-out", "--max-seq-len", "6"], 6),
                                          (["--split", "leave-one-out", "--max-seq-len", "2"], 2)])
def test_split_equals_the_raw_sequences_split_by_hand(repo_data, tmp_path, options, keep):
    source = repo_data("amazon_scientific_unisrec")
    out = tmp_path / "prepared"
    _cli("prepare", "--format", "unisrec", "--source", str(source), "--out", str(out), "--quiet", *options)
    sequences = _raw_scientific(source)
    train, valid, test = _prepared(out)
    capped = {u for u, seq in sequences.items() if len(seq) > RAW_HISTORY_CAP}
    assert len(capped) < 10 and train.keys() == sequences.keys()
    if keep is None:  # the raw rows show only the last 51 items of these users: compare what they show
        for user in capped:
            seq = sequences[user]
            assert test[user][1] == seq[-1] and test[user][0][-RAW_HISTORY_CAP:] == seq[:-1]
            assert valid[user] == (test[user][0][:-1], seq[-2]) and train[user] == valid[user][0]
        sequences = {u: s for u, s in sequences.items() if u not in capped}
        train, valid, test = ({u: v for u, v in d.items() if u not in capped} for d in (train, valid, test))
    expected_train, expected_valid, expected_test = {}, {}, {}
    for user, seq in sequences.items():
        seq = seq if keep is None else seq[-keep:]
        if len(seq) >= 3:  # leave-one-out: last = test, second last = valid, the rest trains
            expected_train[user] = seq[:-2]
            expected_valid[user] = (seq[:-2], seq[-2])
            expected_test[user] = (seq[:-1], seq[-1])
        else:  # too short to evaluate: every event trains
            expected_train[user] = seq
    assert train == expected_train
    assert valid == expected_valid
    assert test == expected_test
    if keep is not None:
        events = pq.read_table(out / "events.parquet", columns=["user_id"]).num_rows
        assert events == sum(min(len(s), keep) for s in _raw_scientific(source).values())
