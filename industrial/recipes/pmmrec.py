"""PMMRec pre-training: NICL + NID + RCL (+ next-item prediction), one encoder pass.

Paper: *Multi-Modality is All You Need for Transferable Recommender Systems* (PMMRec,
arXiv:2312.09602).

``loss.kind: pmmrec``. Per training batch (``B`` sequences, history ``h`` and next items ``y`` at
every position, ``P`` positions):

1. corrupt the histories (:func:`~industrial.objectives.nid.corrupt_sequences`: ``shuffle_ratio``
   of the positions shuffled within their sequence, ``replace_ratio`` replaced by random items);
2. encode every distinct item of ``h``, ``y``, the sampled negatives and the corrupted ``h̃`` once
   (per-modality vectors included);
3. user encoder over ``h`` (states ``s``) and over ``h̃`` (states ``s̃``);
4. the objectives, weighted by :class:`~industrial.objectives.combined.CombinedLoss`::

       L = w_next L_next(s, y) + w_nicl L_NICL(text, image of each sequence h + last y)
           + w_nid L_NID(s̃, noise labels) + w_rcl L_RCL(s_last, s̃_last)

   ``L_next`` is the in-batch softmax with logQ correction (``SampledSoftmaxLoss``, PMMRec's
   fine-tuning loss); NICL's positives are the same item in the other modality and the next item
   in both; NID classifies every corrupted position; RCL pulls each sequence's last state towards
   its corrupted copy's. Formulas: ``docs/objectives.md``.

Choices (the paper's method section is not in its released code): the next-item term is part of
pre-training here (weight ``next_item``; 0 gives the literal NICL + NID + RCL, whose user encoder
is then never trained to score items); equal weights; 10 % + 10 % corruption. A component of
weight 0 is not computed at all (its head does not exist), so DDP's static graph sees only
parameters that are used. The NID classifier belongs to the task, not to the model: it never
transfers. Corruption draws from torch's default generator, whose state every checkpoint saves.

Fine-tuning (PMMRec's transfer stage) is ``loss.kind: sampled_softmax`` with ``logq_correction``
on the same model (:class:`~industrial.recipes.next_item.NextItemTask`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from industrial.data.batch import SequenceBatch
from industrial.modules.recommender import Recommender
from industrial.objectives import (
    CombinedLoss,
    CorruptionConfig,
    NICLConfig,
    NICLLoss,
    NIDConfig,
    NoisedItemDetectionLoss,
    RobustnessContrastiveLoss,
    ScoringObjective,
    corrupt_sequences,
    history_with_last_target,
    next_item_layout,
    rcl_config,
)
from industrial.recipes.common import encode_item_ids, split_groups, training_lengths, user_states
from industrial.recipes.next_item import next_item_inputs

COMPONENTS = ("next_item", "nicl", "nid", "rcl")


@dataclass
class PMMRecSettings:
    """``loss.pmmrec``: weights of the pre-training objectives and their settings."""

    next_item: float = 1.0  # weight of the in-batch softmax next-item loss (loss.temperature / normalize / logq_correction)
    nicl: float = 1.0  # weight of next-item enhanced cross-modal contrastive learning
    nid: float = 1.0  # weight of noised item detection
    rcl: float = 1.0  # weight of robustness-aware contrastive learning
    nicl_temperature: float = 1.0  # NICL: cosine / tau (the paper's delta has no temperature)
    next_item_positives: bool = True  # NICL: next items are positives (false: plain cross-modal CL)
    intra_modality_negatives: bool = True  # NICL: same-modality negatives too
    shuffle_ratio: float = 0.1  # NID / RCL corruption: share of positions shuffled within the sequence
    replace_ratio: float = 0.1  # NID / RCL corruption: share of positions replaced by random items
    nid_pos_weight: float | None = None  # NID: weight of the noised positions in the BCE (None: unweighted)
    rcl_temperature: float = 1.0  # RCL: cosine / tau

    def weights(self) -> dict[str, float]:
        """The components that are computed: weight > 0."""
        return {name: getattr(self, name) for name in COMPONENTS if getattr(self, name) > 0}

    def validate(self) -> None:
        for name in COMPONENTS:
            if getattr(self, name) < 0:
                raise ValueError(f"weight {name} must be >= 0, got {getattr(self, name)}")
        if not self.weights():
            raise ValueError(f"at least one of {', '.join(COMPONENTS)} needs a positive weight")
        if self.nicl_temperature <= 0 or self.rcl_temperature <= 0:
            raise ValueError("nicl_temperature and rcl_temperature must be positive")
        CorruptionConfig(self.shuffle_ratio, self.replace_ratio).validate()


class PMMRecPretrainTask(nn.Module):
    """PMMRec's pre-training objectives over a :class:`Recommender` (module docstring).

    ``forward(batch) -> (loss, logs)``; ``next_item_loss`` is the in-batch softmax module used
    for the ``next_item`` component; ``item_log_q`` ``[N]`` feeds its logQ correction.
    """

    def __init__(
        self,
        model: Recommender,
        settings: PMMRecSettings,
        next_item_loss: ScoringObjective | None = None,
        item_log_q: Tensor | None = None,
    ) -> None:
        super().__init__()
        settings.validate()
        self.model = model
        self.settings = settings
        weights = settings.weights()
        self.combined = CombinedLoss(weights)
        if "next_item" in weights and next_item_loss is None:
            raise ValueError("the next_item component needs its loss module")
        self.next_item = next_item_loss if "next_item" in weights else None
        self.nicl = (
            NICLLoss(NICLConfig(settings.nicl_temperature, True, settings.next_item_positives, settings.intra_modality_negatives))
            if "nicl" in weights
            else None
        )
        dim = model.user_encoder.config.dim
        self.nid = NoisedItemDetectionLoss(NIDConfig(dim, settings.nid_pos_weight)) if "nid" in weights else None
        self.rcl = RobustnessContrastiveLoss(rcl_config(settings.rcl_temperature)) if "rcl" in weights else None
        self.corruption = CorruptionConfig(settings.shuffle_ratio, settings.replace_ratio)
        self.register_buffer("item_log_q", item_log_q if item_log_q is not None else torch.zeros(0))

    def forward(self, batch: SequenceBatch) -> tuple[Tensor, dict[str, Tensor]]:
        model = self.model
        lengths = training_lengths(batch)
        history, target, negative = batch.values("history"), batch.values("target"), batch.values("negative")
        groups = [history, target, negative]
        corrupt = self.nid is not None or self.rcl is not None
        if corrupt:
            corrupted, labels = corrupt_sequences(history, lengths, model.num_items, torch.default_generator, self.corruption)
            groups.append(corrupted)
        encoded = encode_item_ids(model.item_encoder, torch.cat(groups), modalities=self.nicl is not None)
        vectors = encoded.vectors if self.nicl is not None else encoded
        parts = split_groups(vectors, groups)
        states = user_states(model, parts[0], history, lengths, batch.max_history_length)
        outputs = {}
        if self.next_item is not None:
            outputs["next_item"] = self.next_item(next_item_inputs(batch, states, parts[1], parts[2], self.item_log_q))
        if self.nicl is not None:
            # each sequence's items: its history, then its last target (rows of cat([history, target]))
            index, sequence_lengths = history_with_last_target(lengths)
            items = encoded[index]
            sequence_ids, next_index = next_item_layout(sequence_lengths)
            item_ids = torch.cat([history, target])[index]
            outputs["nicl"] = self.nicl(items.text, items.image, sequence_ids, next_index, items.has_text, items.has_image, item_ids)
        if corrupt:
            corrupted_states = user_states(model, parts[3], corrupted, lengths, batch.max_history_length)
            if self.nid is not None:
                outputs["nid"] = self.nid(corrupted_states, labels)
            if self.rcl is not None:
                last = model.user_encoder.last
                outputs["rcl"] = self.rcl(last(states, lengths), last(corrupted_states, lengths))
        out = self.combined(outputs)
        return out.loss, out.logs
