"""The dense parts import and run where TorchRec, fbgemm-gpu and torchdata are absent.

The lent GPU machines have PyTorch with CUDA but none of those three (the fbgemm-gpu CUDA wheel is
~560 MB, more than a call carries), and ``make gpu-check`` runs there. So the user encoder, the
projector, the text / vision / fusion encoders, the item-encoder interface and the recommender,
every objective, the next-item and pre-training tasks, the evaluator (ranking, metrics, breakdowns,
the model evaluation) and ``benchmarks.gpu_check`` must import without them: TorchRec is imported
only by what needs it (the tables, sharding, ``make_batch``, the loader, the trainer).

A child interpreter refuses the three packages (a ``sys.meta_path`` finder raising ImportError),
imports those modules and runs a tiny forward / backward and a ranking.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

BLOCKED = ("torchrec", "fbgemm_gpu", "torchdata")

DENSE_MODULES = [
    "industrial.modules.user_encoder",
    "industrial.modules.projector",
    "industrial.modules.text",
    "industrial.modules.vision",
    "industrial.modules.fusion",
    "industrial.modules.multimodal",
    "industrial.modules.text_items",
    "industrial.modules.item_encoder",
    "industrial.modules.recommender",
    "industrial.objectives",
    "industrial.data.batch",
    "industrial.recipes.next_item",
    "industrial.recipes.transrec",
    "industrial.recipes.pmmrec",
    "industrial.recipes.unim2rec",
    "industrial.evaluate.ranking",
    "industrial.evaluate.metrics",
    "industrial.evaluate.breakdown",
    "industrial.evaluate.model_eval",
    "industrial.distributed.env",
    "benchmarks.gpu_check",
]

CHILD = r"""
import importlib, importlib.abc, sys

BLOCKED = {blocked!r}


class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{{name}} is refused: this interpreter runs without TorchRec, fbgemm-gpu and torchdata")
        return None


sys.meta_path.insert(0, Refuse())
for name in {modules!r}:
    importlib.import_module(name)

import torch

from industrial.evaluate.breakdown import evaluate_ranks
from industrial.evaluate.ranking import History, rank_targets
from industrial.modules.item_encoder import ItemEncoderInterface
from industrial.modules.projector import MoEAdaptor, ProjectorConfig
from industrial.modules.recommender import Recommender
from industrial.modules.user_encoder import UserEncoder, UserEncoderConfig
from industrial.objectives import FullSoftmaxLoss, SampledSoftmaxLoss
from industrial.objectives.base import ScoringInputs


class Features(ItemEncoderInterface):
    def __init__(self):
        super().__init__()
        self.dim, self.num_items = 16, 30
        self.register_buffer("features", torch.randn(30, 12))
        self.projector = MoEAdaptor(ProjectorConfig(in_dim=12, out_dim=16, experts=2))

    def encode(self, ids):
        return self.projector(self.features[ids])


torch.manual_seed(0)
model = Recommender(Features(), UserEncoder(UserEncoderConfig(dim=16, layers=1, heads=2, inner_dim=32, max_len=8)))
catalogue = model.encode_item_range()
ids, lengths = torch.tensor([1, 2, 3, 4, 5, 6]), torch.tensor([4, 2])
with torch.autocast("cpu", dtype=torch.bfloat16):
    states = model.user_encoder(catalogue[ids], lengths, None, 4)
    inputs = ScoringInputs(states, ids + 1, catalogue[ids + 1], catalogue_vectors=catalogue)
    loss = FullSoftmaxLoss()(inputs).loss + SampledSoftmaxLoss()(inputs).loss
loss.backward()
users = model.user_encoder.last(states, lengths).float().detach()
ranks = rank_targets(users, catalogue.detach(), [7, 3], History.from_lists([[1, 2, 3, 4], [5, 6]])).ranks
assert evaluate_ranks(ranks, cutoffs=[5]).count == 2
try:
    from industrial.data.batch import make_batch

    make_batch([0], [[1]], [[2]])
except ImportError as e:
    assert "refused" in str(e), e
else:
    raise AssertionError("make_batch ran without TorchRec")
loaded = sorted({{m.split(".")[0] for m in sys.modules}} & set(BLOCKED))
assert not loaded, loaded
print("dense parts ran without", ", ".join(BLOCKED))
"""


def test_dense_parts_import_and_run_without_torchrec():
    code = CHILD.format(blocked=BLOCKED, modules=DENSE_MODULES)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert "dense parts ran without" in proc.stdout
