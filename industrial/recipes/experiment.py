"""The experiment config: one typed dataclass per section, loaded from YAML (see ``configs/``).

Every key is documented where it is declared. ``industrial train --config X.yaml --set a.b=c``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from industrial.data.augment import AugmentConfig
from industrial.distributed.sharding import OptimConfig, ShardingConfig
from industrial.modules.multimodal import MultiModalConfig
from industrial.modules.projector import ProjectorConfig
from industrial.modules.text import TextEncoderConfig
from industrial.modules.user_encoder import UserEncoderConfig
from industrial.objectives.sequence_contrastive import SequencePretrainConfig
from industrial.recipes.pmmrec import PMMRecSettings
from industrial.recipes.transrec import CPCSettings


@dataclass
class DataConfig:
    path: str = ""  # prepared dataset folder (written by `industrial prepare` or `industrial synth`)
    max_seq_len: int = 50  # keep the last N items of every sequence
    batch_size: int = 256  # sequences per batch per rank
    eval_batch_size: int = 512  # sequences per evaluation batch per rank
    num_negatives: int = 0  # sampled negatives per target (BCE, sampled softmax); 0 = none
    negative_sampling: Literal["uniform", "popularity"] = "uniform"  # p_i = 1/N, or p_i ∝ count_i
    exclude_own_items: bool = False  # negatives avoid every item of the user's sequence
    shuffle_buffer: int = 16384  # rows per shuffle window (memory grows with it)
    length_buckets: int = 0  # sort rows by length within runs of this many batches of a shuffle window, then shuffle the batches (less padding); 0 = off
    equalize: Literal["drop", "pad", "none"] = "drop"  # same batch count on every rank (see industrial/data/stream.py)
    augment: AugmentConfig = field(default_factory=AugmentConfig)  # fills the batch's "augmented" key
    # pin batches in page-locked host memory so the trainer's non_blocking copies to the GPU overlap
    # compute; None (default): on when the device is CUDA; without CUDA there is nothing to pin (off)
    pin_memory: bool | None = None

    def validate(self) -> None:
        if not self.path:
            raise ValueError("path: the prepared dataset folder must be set (data.path)")
        if self.batch_size < 1 or self.eval_batch_size < 1 or self.max_seq_len < 2:
            raise ValueError("batch sizes must be >= 1 and max_seq_len >= 2")
        if self.num_negatives < 0 or self.length_buckets < 0 or self.shuffle_buffer < 1:
            raise ValueError("num_negatives and length_buckets must be >= 0, shuffle_buffer >= 1")


@dataclass
class ItemConfig:
    # id: a trainable id table (IDRec); cached: frozen content features + projector;
    # cached+id: both, summed (transductive); text: a text encoder trained end to end;
    # multimodal: text and vision encoders trained end to end, fused (PMMRec) or mixed (TransRec)
    kind: Literal["id", "cached", "cached+id", "text", "multimodal"] = "id"
    features: str = ""  # features file written by `industrial extract` (kind cached*)
    feature_parts: list[str] = field(default_factory=list)  # parts of a two-part features folder to use, e.g. [text] or [image]; empty = every part
    # standardise each feature dimension over the items that have the feature (zero mean, unit
    # variance) before it enters the table: sentence encoders emit unit-norm vectors, ~20x smaller
    # than the BERT CLS features the whitening layer's N(0, 0.02) init was made for
    standardize: bool = True
    # kind cached*: whitening + MoE over the features (experts, dropout, noise, dropout_mask;
    # in_dim / out_dim are set by the build); see industrial/modules/projector.py
    projector: ProjectorConfig = field(default_factory=ProjectorConfig)
    # kind text: the encoder (out_dim is set to model.user.dim); see industrial/modules/text.py
    text: TextEncoderConfig = field(default_factory=lambda: TextEncoderConfig(trainable_top_layers=1, max_length=64))
    # kind multimodal: encoders, fusion / mixture, image size; see industrial/modules/multimodal.py
    multimodal: MultiModalConfig = field(default_factory=MultiModalConfig)

    def validate(self) -> None:
        if self.kind.startswith("cached") and not self.features:
            raise ValueError("features: kind=cached needs a features file from `industrial extract`")
        if self.kind == "multimodal":
            self.multimodal.validate()
            self.multimodal.vision.require_source()


@dataclass
class ModelConfig:
    item: ItemConfig = field(default_factory=ItemConfig)
    user: UserEncoderConfig = field(default_factory=UserEncoderConfig)
    domain_embedding: bool = False  # add a learned embedding of each item's domain


@dataclass
class LossConfig:
    # full_softmax / sampled_softmax / bce: next-item prediction at every position;
    # cpc: TransRec stage 2 (one user vector vs its next items); pmmrec: PMMRec pre-training;
    # unim2rec: UniM2Rec / UniSRec pre-training (sequence-item + sequence-sequence contrastive)
    kind: Literal["full_softmax", "sampled_softmax", "bce", "cpc", "pmmrec", "unim2rec"] = "full_softmax"
    temperature: float = 1.0  # logits are similarity / temperature
    normalize: bool = False  # cosine similarity instead of a dot product
    logq_correction: bool = True  # sampled_softmax (and pmmrec's next_item): subtract log popularity of in-batch candidates
    cpc: CPCSettings = field(default_factory=CPCSettings)  # kind cpc; see industrial/recipes/transrec.py
    pmmrec: PMMRecSettings = field(default_factory=PMMRecSettings)  # kind pmmrec; see industrial/recipes/pmmrec.py
    unim2rec: SequencePretrainConfig = field(default_factory=SequencePretrainConfig)  # kind unim2rec; see industrial/recipes/unim2rec.py

    def validate(self) -> None:
        if not self.temperature > 0:
            raise ValueError(f"temperature={self.temperature}: must be > 0")


@dataclass
class TrainConfig:
    out_dir: str = "runs/default"  # run folder: config, log, TensorBoard, checkpoints, metrics
    epochs: int = 20
    max_steps: int = 0  # stop after this many steps in total; 0 = no limit
    log_every: int = 20  # steps between log lines / TensorBoard points
    eval_every: int = 0  # steps between validations; 0 = at the end of every epoch
    checkpoint_every: int = 0  # steps between checkpoints; 0 = at the end of every epoch
    keep_checkpoints: int = 2  # most recent checkpoints kept (plus the best)
    metric: str = "ndcg@10"  # validation metric for early stopping and the best checkpoint
    patience: int = 5  # validations without improvement before stopping; 0 = never stop early
    seed: int = 0
    amp: Literal["off", "bf16"] = "off"  # bf16 autocast (GPUs with bf16; slow on most CPUs)
    resume: bool = True  # continue from out_dir/checkpoints/latest when it exists
    test_at_end: bool = True  # evaluate the best checkpoint on the test split when training ends
    progress: bool = True  # progress bar on rank 0
    batch_log: bool = False  # write every step's user ids to out_dir/batches/rank{R}.jsonl (industrial/train/batch_log.py)

    def validate(self) -> None:
        if not self.out_dir:
            raise ValueError("out_dir: the run folder must be set (train.out_dir)")
        positive = {"epochs": self.epochs, "log_every": self.log_every, "keep_checkpoints": self.keep_checkpoints}
        for key, value in positive.items():
            if value < 1:
                raise ValueError(f"{key}={value}: must be >= 1")
        counts = {"max_steps": self.max_steps, "eval_every": self.eval_every, "checkpoint_every": self.checkpoint_every, "patience": self.patience}
        for key, value in counts.items():
            if value < 0:
                raise ValueError(f"{key}={value}: must be >= 0 (0 = {'off' if key != 'eval_every' else 'every epoch'})")
        _, _, k = self.metric.partition("@")
        if not k.isascii() or not k.isdigit() or int(k) < 1:
            raise ValueError(f"metric={self.metric!r}: expected NAME@K with K a cutoff in eval.ks, e.g. ndcg@10")


@dataclass
class EvalConfig:
    ks: list[int] = field(default_factory=lambda: [5, 10, 20, 50])  # cut-offs of every metric
    item_chunk: int = 65536  # items scored at once (bounds memory)

    def validate(self) -> None:
        if not self.ks or min(self.ks) < 1:
            raise ValueError(f"ks={self.ks}: give at least one cut-off, each >= 1")
        if self.item_chunk < 1:
            raise ValueError(f"item_chunk={self.item_chunk}: must be >= 1")


@dataclass
class ExperimentConfig:
    recipe: str = "idrec"  # a name for the run's model family (idrec, unim2rec, ...)
    data: DataConfig = field(default_factory=lambda: DataConfig(path="data/prepared/scientific"))
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    sharding: ShardingConfig = field(default_factory=ShardingConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def validate(self) -> None:
        if self.train.metric.partition("@")[2].isdigit() and int(self.train.metric.partition("@")[2]) not in self.eval.ks:
            raise ValueError(f"train.metric={self.train.metric!r}: its cut-off is not in eval.ks={self.eval.ks}")
        if self.model.user.max_len < self.data.max_seq_len:
            raise ValueError(
                f"model.user.max_len={self.model.user.max_len} is shorter than data.max_seq_len={self.data.max_seq_len}"
            )
        if self.model.item.kind in ("text", "multimodal") and self.loss.kind == "full_softmax":
            raise ValueError(
                "loss.kind=full_softmax encodes the whole catalogue at every step; with an end-to-end "
                f"encoder (model.item.kind={self.model.item.kind}) use sampled_softmax or bce"
            )
        if self.loss.kind in ("bce", "cpc") and self.data.num_negatives < 1:
            raise ValueError(f"loss.kind={self.loss.kind} needs data.num_negatives >= 1")
        pmmrec = self.loss.pmmrec
        if self.loss.kind == "pmmrec" and pmmrec.nicl > 0 and self.model.item.kind != "multimodal":
            raise ValueError("loss.pmmrec.nicl > 0 needs text and image vectors: model.item.kind=multimodal")
        every_position = self.loss.kind in ("full_softmax", "sampled_softmax", "bce", "unim2rec") or (
            self.loss.kind == "pmmrec" and pmmrec.next_item > 0
        )
        if not self.model.user.causal and every_position:
            raise ValueError(
                f"model.user.causal=false lets every position see the items after it, so loss.kind={self.loss.kind} "
                "(next-item prediction at every position) would read its own targets; use loss.kind=cpc "
                "(TransRec stage 2: the user vector reads only the history before its positives)"
            )
