"""Training objectives: each a small module with its formula in the docstring."""

from industrial.objectives.base import LossOutput, ScoringInputs, ScoringObjective
from industrial.objectives.bce import SampledBCELoss
from industrial.objectives.combined import CombinedLoss
from industrial.objectives.contrastive import (
    ContrastiveConfig,
    InfoNCELoss,
    TwoViewConfig,
    TwoViewInfoNCELoss,
    duplicate_mask,
    multi_positive_info_nce,
)
from industrial.objectives.cpc import CPCConfig, CPCLoss
from industrial.objectives.nicl import NICLConfig, NICLLoss, history_with_last_target, next_item_layout
from industrial.objectives.nid import CorruptionConfig, NIDConfig, NoisedItemDetectionLoss, corrupt_sequences
from industrial.objectives.rcl import RobustnessContrastiveLoss, rcl_config
from industrial.objectives.sequence_contrastive import (
    SequenceItemContrastiveLoss,
    SequencePretrainConfig,
    SequencePretrainLoss,
    SequenceSequenceContrastiveLoss,
)
from industrial.objectives.softmax import FullSoftmaxLoss, SampledSoftmaxLoss

__all__ = [
    "LossOutput",
    "ScoringInputs",
    "ScoringObjective",
    "FullSoftmaxLoss",
    "SampledSoftmaxLoss",
    "SampledBCELoss",
    "CombinedLoss",
    "ContrastiveConfig",
    "InfoNCELoss",
    "TwoViewConfig",
    "TwoViewInfoNCELoss",
    "duplicate_mask",
    "multi_positive_info_nce",
    "CPCConfig",
    "CPCLoss",
    "NICLConfig",
    "NICLLoss",
    "history_with_last_target",
    "next_item_layout",
    "CorruptionConfig",
    "NIDConfig",
    "NoisedItemDetectionLoss",
    "corrupt_sequences",
    "RobustnessContrastiveLoss",
    "rcl_config",
    "SequenceItemContrastiveLoss",
    "SequencePretrainConfig",
    "SequencePretrainLoss",
    "SequenceSequenceContrastiveLoss",
]
