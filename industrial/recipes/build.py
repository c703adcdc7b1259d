"""Build the task (model + objective) an experiment config describes, and initialise its tables.

The model is built on the ``meta`` device for its tables; :func:`initialise_tables` fills the
shards after DMP has placed them (id tables N(0, 0.02), identical for any world size; feature
tables from the ``industrial extract`` file).
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from industrial.data.info import DatasetInfo, load_info
from industrial.distributed.env import DistEnv
from industrial.distributed.sharding import fill_table, init_table_normal, shard_model
from industrial.modules.item_tables import ITEM_FEATURE_TABLE, ITEM_ID_TABLE, CachedFeatureTable, ItemIdTable
from industrial.modules.item_encoder import CachedFeatureItemEncoder, IdItemEncoder, ItemEncoderInterface
from industrial.modules.recommender import Recommender
from industrial.modules.user_encoder import UserEncoder
from industrial.objectives import FullSoftmaxLoss, SampledBCELoss, SampledSoftmaxLoss, ScoringObjective
from industrial.recipes.experiment import ExperimentConfig, LossConfig
from industrial.recipes.next_item import NextItemTask

log = logging.getLogger("industrial.recipes")


def build_loss(cfg: LossConfig) -> ScoringObjective:
    if cfg.kind == "full_softmax":
        return FullSoftmaxLoss(cfg.temperature, cfg.normalize)
    if cfg.kind == "sampled_softmax":
        return SampledSoftmaxLoss(cfg.temperature, cfg.normalize, cfg.logq_correction)
    return SampledBCELoss()


def feature_rows(cfg: ExperimentConfig, info: DatasetInfo):
    """The feature table's rows, memory-mapped (:class:`~industrial.data.features.FeatureRows`): the
    chosen parts of the features folder side by side, each standardised over the items that have it
    (an item without an image keeps a zero image part). Slicing reads only the rows sliced, so a
    rank filling its shard of the table reads its own rows."""
    from industrial.data.features import FeatureRows, part_dirs

    item = cfg.model.item
    dirs = [d for part in _feature_parts(cfg) for d in part_dirs(item.features, part)]
    rows = FeatureRows(dirs, standardize=item.standardize)
    if rows.shape[0] != info.num_items:
        raise ValueError(f"model.item.features={item.features}: {rows.shape[0]} rows for {info.num_items} items")
    return rows


def load_feature_table(cfg: ExperimentConfig, info: DatasetInfo) -> torch.Tensor:
    """The whole feature table ``[N, D]`` in memory (:func:`feature_rows`, every row)."""
    return feature_rows(cfg, info)[:, :]


def build_item_encoder(cfg: ExperimentConfig, info: DatasetInfo) -> ItemEncoderInterface:
    dim = cfg.model.user.dim
    kind = cfg.model.item.kind
    if kind == "id":
        return IdItemEncoder(ItemIdTable(info.num_items, dim))
    if kind == "text":
        return build_text_items(cfg, info)
    if kind == "multimodal":
        from industrial.data.images import ItemImages
        from industrial.data.items import read_item_texts
        from industrial.modules.multimodal import build_multimodal_items

        multimodal = cfg.model.item.multimodal
        texts = read_item_texts(info.path, info.num_items)
        images = ItemImages.from_dataset(info.path, on_error=multimodal.on_image_error)
        if len(images) != info.num_items:
            raise ValueError(f"{info.path}: {len(images)} item rows for {info.num_items} items")
        return build_multimodal_items(multimodal, dim, texts, images)
    from dataclasses import replace

    from industrial.modules.projector import MoEAdaptor

    feature_dim = feature_table_dim(cfg)
    projector = MoEAdaptor(replace(cfg.model.item.projector, in_dim=feature_dim, out_dim=dim))
    id_table = ItemIdTable(info.num_items, dim) if kind == "cached+id" else None
    return CachedFeatureItemEncoder(CachedFeatureTable(info.num_items, feature_dim), projector, dim, id_table)


def build_text_items(cfg: ExperimentConfig, info: DatasetInfo) -> ItemEncoderInterface:
    """An end-to-end text item encoder over the catalogue's texts, tokenized once."""
    from dataclasses import replace

    from industrial.data.items import read_item_texts
    from industrial.modules.text import TextEncoder, tokenize_texts
    from industrial.modules.text_items import TextItemEncoder

    encoder = TextEncoder(replace(cfg.model.item.text, out_dim=cfg.model.user.dim))
    texts = read_item_texts(info.path, info.num_items)
    tokens = tokenize_texts(texts, encoder.tokenizer, cfg.model.item.text.max_length)
    return TextItemEncoder(encoder, tokens, cfg.model.user.dim)


def feature_table_dim(cfg: ExperimentConfig) -> int:
    from industrial.data.features import read_features_info

    return sum(int(read_features_info(cfg.model.item.features, part)["dim"]) for part in _feature_parts(cfg))


def _feature_parts(cfg: ExperimentConfig) -> list[str | None]:
    """``model.item.feature_parts``, else every part of the features folder (None: a one-part folder)."""
    from industrial.data.features import read_features_info

    item = cfg.model.item
    if item.feature_parts:
        return list(item.feature_parts)
    return list(read_features_info(item.features).get("parts") or [None])


def build_task(cfg: ExperimentConfig, info: DatasetInfo) -> nn.Module:
    """The model and its objective (``task(batch) -> (loss, logs)``), tables still on ``meta``.

    ``loss.kind`` picks the task: next-item prediction (:class:`NextItemTask`), TransRec's CPC
    (:mod:`industrial.recipes.transrec`), PMMRec's pre-training (:mod:`industrial.recipes.pmmrec`)
    or UniM2Rec's (:mod:`industrial.recipes.unim2rec`).
    """
    user_cfg = cfg.model.user
    if cfg.model.domain_embedding:
        user_cfg.num_domains = len(info.domains)
    model = Recommender(
        build_item_encoder(cfg, info),
        UserEncoder(user_cfg),
        item_domains=info.item_domains if cfg.model.domain_embedding else None,
    )
    if cfg.loss.kind == "cpc":
        from industrial.recipes.transrec import CPCTask

        return CPCTask(model, cfg.loss.cpc)
    if cfg.loss.kind == "unim2rec":
        from industrial.recipes.unim2rec import UniM2RecPretrainTask

        return UniM2RecPretrainTask(model, cfg.loss.unim2rec)
    if cfg.loss.kind == "pmmrec":
        from industrial.recipes.pmmrec import PMMRecPretrainTask

        next_item = SampledSoftmaxLoss(cfg.loss.temperature, cfg.loss.normalize, cfg.loss.logq_correction)
        return PMMRecPretrainTask(model, cfg.loss.pmmrec, next_item, item_log_q=info.item_log_q)
    return NextItemTask(model, build_loss(cfg.loss), item_log_q=info.item_log_q)


def load_content_tables(dmp: nn.Module, cfg: ExperimentConfig, info: DatasetInfo) -> None:
    """Refill the cached-feature table from ``model.item.features`` (e.g. after a checkpoint load,
    to evaluate a trained model on other item content). Other item kinds read their content
    (texts, images) from ``data.path`` when they are built, and hold no content in checkpoints."""
    if cfg.model.item.kind.startswith("cached"):
        fill_table(dmp, ITEM_FEATURE_TABLE, feature_rows(cfg, info))


def initialise_tables(dmp: nn.Module, cfg: ExperimentConfig, info: DatasetInfo) -> None:
    """Fill the sharded tables: ids N(0, 0.02) seeded by ``train.seed``; features from the file."""
    kind = cfg.model.item.kind
    if kind in ("id", "cached+id"):
        init_table_normal(dmp, ITEM_ID_TABLE, std=0.02, seed=cfg.train.seed)
    load_content_tables(dmp, cfg, info)


def build_sharded(cfg: ExperimentConfig, env: DistEnv) -> tuple[nn.Module, Any, DatasetInfo]:
    """The sharded task (DMP), its combined optimizer and the dataset description, tables filled."""
    torch.manual_seed(cfg.train.seed)
    info = load_info(cfg.data.path)
    task = build_task(cfg, info)
    dmp, optimizer, plan = shard_model(task, env, cfg.sharding, cfg.optim)
    initialise_tables(dmp, cfg, info)
    if env.is_main:
        log.info("sharding plan:\n%s", plan)
    return dmp, optimizer, info
