"""``industrial extract``: frozen item features (text / image) into a features folder.

    industrial extract --dataset data/prepared/scientific --out data/prepared/scientific/features/minilm \
        --modality text --encoder minilm --max-length 64

This module reads the command line and reports what was written; the job (chunked, resumable,
``--reuse``) is :mod:`industrial.commands.extract_job`, the features folder it writes (and every
reader reads) is :mod:`industrial.data.features`.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from industrial.commands.extract_job import ExtractConfig, extract_features
from industrial.data.features import INDEX_FILE, ExtractError, is_complete
from industrial.data.images import ImageError
from industrial.data.schema import DatasetError
from industrial.modules.pretrained import EncoderLoadError
from industrial.modules.text import TextEncoderConfig
from industrial.modules.vision import VisionEncoderConfig

# --------------------------------------------------------------------------------------------------
# CLI


def _json_arg(value: str | None) -> dict[str, Any] | None:
    if value is None:
        return None
    text = value if value.lstrip().startswith("{") else Path(value).read_text()
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ExtractError(f"encoder config {value!r}: expected a JSON object")
    return data


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="industrial extract",
        description="Compute frozen item content vectors (text / image) for every item of a prepared dataset. "
        "Resumable: run the same command again after an interruption.",
    )
    p.add_argument("--dataset", required=True, help="prepared dataset folder (items.parquet, meta.json)")
    p.add_argument("--out", required=True, help="output folder (features.json, <modality>/features.npy, present.npy)")
    p.add_argument("--modality", choices=["text", "image", "both"], default="text")
    p.add_argument(
        "--encoder",
        help="encoder of the modality (text for text/both, image for image): 'minilm' (installed all-MiniLM-L6-v2, "
        "the text default), a local checkpoint folder, or a hub name",
    )
    p.add_argument("--encoder-config", help="transformers config (JSON file or inline JSON): build the encoder with RANDOM init")
    p.add_argument("--image-encoder", help="image encoder with --modality both: efficientnet-lite0, a local ResNet/ViT/CLIP folder or hub name")
    p.add_argument("--image-encoder-config", help="image encoder config (JSON) with --modality both: RANDOM init")
    p.add_argument("--tokenizer", help="tokenizer source (default: the text encoder's own; 'minilm' for a config)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--max-length", type=int, default=128, help="tokens per text; longer texts are truncated")
    p.add_argument("--pooling", help="pooling of --encoder: text cls|mean (default mean), image pooled|mean (default pooled)")
    p.add_argument("--image-pooling", default="pooled", choices=["pooled", "mean"], help="pooling of --image-encoder")
    p.add_argument("--no-normalize", action="store_true", help="keep raw vectors (default: L2-normalised)")
    p.add_argument("--chunk-size", type=int, default=1024, help="items per resumable chunk")
    p.add_argument("--device", default="auto")
    p.add_argument("--on-image-error", choices=["raise", "missing"], default="raise")
    p.add_argument("--workers", type=int, default=0, help="image decoding processes")
    p.add_argument("--seed", type=int, default=0, help="seed of a random-init encoder")
    p.add_argument("--max-chunks", type=int, help="stop after N new chunks (resume later)")
    p.add_argument("--reuse", metavar="FEATURES", help="an earlier extraction (same encoders): copy the vectors of items whose content is unchanged")
    p.add_argument("--overwrite", action="store_true", help="discard output made with other settings")
    p.add_argument("--no-progress", action="store_true")
    return p


def config_from_args(args: argparse.Namespace) -> ExtractConfig:
    text = TextEncoderConfig(max_length=args.max_length, tokenizer=args.tokenizer)
    image = VisionEncoderConfig(pooling=args.image_pooling)
    main_cfg = _json_arg(args.encoder_config)
    if args.modality == "image":
        image.encoder, image.model_config = args.encoder, main_cfg
        image.pooling = args.pooling or "pooled"  # type: ignore[assignment]
    else:
        text.encoder = args.encoder or text.encoder
        text.model_config = main_cfg
        text.pooling = args.pooling or "mean"  # type: ignore[assignment]
        if args.modality == "both":
            image.encoder, image.model_config = args.image_encoder, _json_arg(args.image_encoder_config)
    if args.modality == "image" and image.encoder is None and image.model_config is None:
        raise ExtractError("--modality image needs --encoder (efficientnet-lite0, a local ResNet/ViT/CLIP folder or hub name) or --encoder-config")
    if args.modality == "both" and image.encoder is None and image.model_config is None:
        raise ExtractError("--modality both needs --image-encoder (efficientnet-lite0, a local ResNet/ViT/CLIP folder or hub name) or --image-encoder-config")
    return ExtractConfig(
        dataset=args.dataset,
        out=args.out,
        modality=args.modality,
        text=text,
        image=image,
        normalize=not args.no_normalize,
        batch_size=args.batch_size,
        chunk_size=args.chunk_size,
        device=args.device,
        on_image_error=args.on_image_error,
        workers=args.workers,
        seed=args.seed,
        max_chunks=args.max_chunks,
        reuse=args.reuse,
        overwrite=args.overwrite,
        progress=not args.no_progress,
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``industrial extract``; 0 when done (or stopped by --max-chunks), 2 on an error."""
    args = build_parser().parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        out = extract_features(config_from_args(args))
    except (ExtractError, EncoderLoadError, DatasetError, ImageError, ValueError, OSError) as e:
        print(f"industrial extract: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    if not is_complete(out):
        print(f"stopped early (--max-chunks); run the same command again to resume: {out}")
    else:
        print(f"features: {out / INDEX_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
