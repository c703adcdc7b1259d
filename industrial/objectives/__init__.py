"""Training objectives: each a small module with its formula in the docstring."""

from industrial.objectives.base import LossOutput, ScoringInputs
from industrial.objectives.bce import SampledBCELoss
from industrial.objectives.softmax import FullSoftmaxLoss, SampledSoftmaxLoss

__all__ = ["LossOutput", "ScoringInputs", "FullSoftmaxLoss", "SampledSoftmaxLoss", "SampledBCELoss"]
