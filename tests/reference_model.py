"""Independent references shared by the learning and cross-check tests (not a test module).

- :func:`reference_states`: the user encoder's function written out by hand from its weights
  (float64, explicit masks): learned positions (+ domain vectors), LayerNorm, Transformer blocks
  (post-LN or pre-LN, GELU feed-forward), causal or bidirectional. Nothing of ``industrial`` is used,
  only the state-dict names of ``nn.TransformerEncoderLayer`` (``blocks.layers.N.*``).
- :func:`brute_force_metrics`: full ranking in NumPy (history masked, target never masked, ties
  count against the target) and recall / NDCG / MRR / HR at every cutoff.
- :func:`exported_user_vectors`: the last state of each history, from an ``industrial evaluate
  --export`` folder (item vectors + user encoder weights and config).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch

KS = (5, 10, 20, 50)


def _layer_norm(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * w + b


def reference_states(sequences: list[np.ndarray], weights: dict[str, torch.Tensor], cfg: dict,
                     domains: list[np.ndarray] | None = None) -> list[np.ndarray]:
    """Every state of each sequence of item vectors (``[L, D]`` each): learned positions (+ domain
    vectors), LayerNorm, then ``cfg["layers"]`` Transformer blocks (post-LN, or pre-LN with
    ``norm_first``; GELU feed-forward), causal or bidirectional. float64, one length at a time."""
    D, H = cfg["dim"], cfg["heads"]
    d = D // H
    W = {k: v.detach().double() for k, v in weights.items()}
    out: list[np.ndarray | None] = [None] * len(sequences)
    by_length: dict[int, list[int]] = {}
    for n, s in enumerate(sequences):
        by_length.setdefault(len(s), []).append(n)
    for L, rows in by_length.items():
        B = len(rows)
        x = torch.stack([torch.as_tensor(sequences[n], dtype=torch.float64) for n in rows]) + W["positions.weight"][:L]
        if domains is not None:
            x = x + W["domains.weight"][torch.stack([torch.as_tensor(domains[n]) for n in rows])]
        x = _layer_norm(x, W["norm.weight"], W["norm.bias"])
        allowed = torch.ones(L, L, dtype=torch.bool)
        if cfg["causal"]:
            allowed = torch.tril(allowed)  # position i sees 0..i
        for layer in range(cfg["layers"]):
            p = f"blocks.layers.{layer}."

            def attention(z: torch.Tensor) -> torch.Tensor:
                qkv = z @ W[p + "self_attn.in_proj_weight"].T + W[p + "self_attn.in_proj_bias"]
                q, k, v = (qkv[..., i * D:(i + 1) * D].reshape(B, L, H, d).transpose(1, 2) for i in range(3))
                scores = (q @ k.transpose(-1, -2) / math.sqrt(d)).masked_fill(~allowed, float("-inf"))
                o = (torch.softmax(scores, -1) @ v).transpose(1, 2).reshape(B, L, D)
                return o @ W[p + "self_attn.out_proj.weight"].T + W[p + "self_attn.out_proj.bias"]

            def feed_forward(z: torch.Tensor) -> torch.Tensor:
                hidden = torch.nn.functional.gelu(z @ W[p + "linear1.weight"].T + W[p + "linear1.bias"])
                return hidden @ W[p + "linear2.weight"].T + W[p + "linear2.bias"]

            def norm(z: torch.Tensor, i: int) -> torch.Tensor:
                return _layer_norm(z, W[p + f"norm{i}.weight"], W[p + f"norm{i}.bias"])

            if cfg.get("norm_first"):
                x = x + attention(norm(x, 1))
                x = x + feed_forward(norm(x, 2))
            else:
                x = norm(x + attention(x), 1)
                x = norm(x + feed_forward(x), 2)
        for j, n in enumerate(rows):
            out[n] = x[j].numpy()
    return out  # type: ignore[return-value]


def brute_force_metrics(users: np.ndarray, items: np.ndarray, histories: list[list[int]], targets: np.ndarray) -> dict[str, float]:
    """rank = 1 + #{j not in history, j != target: s_j >= s_target}; metrics from the ranks."""
    scores = users @ items.T
    ranks = np.empty(len(targets), dtype=np.int64)
    for u, (history, target) in enumerate(zip(histories, targets)):
        candidate = np.ones(items.shape[0], dtype=bool)
        candidate[history] = False
        candidate[target] = False
        ranks[u] = 1 + int(np.count_nonzero(scores[u][candidate] >= scores[u, target]))
    out = {}
    for k in KS:
        hit = ranks <= k
        out[f"recall@{k}"] = out[f"hr@{k}"] = float(hit.mean())
        out[f"ndcg@{k}"] = float(np.where(hit, 1.0 / np.log2(ranks + 1.0), 0.0).mean())
        out[f"mrr@{k}"] = float(np.where(hit, 1.0 / ranks, 0.0).mean())
    return out


def exported_user_vectors(export: Path, histories: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """``(user vectors [U, D], item vectors [N, D])`` from an export folder, float64."""
    from safetensors.torch import load_file

    items = np.load(Path(export) / "item_vectors.npy").astype(np.float64)
    assert np.load(Path(export) / "item_vectors_ids.npy").tolist() == list(range(items.shape[0]))
    cfg = json.loads((Path(export) / "user_encoder.json").read_text())
    states = reference_states([items[h] for h in histories], load_file(str(Path(export) / "user_encoder.safetensors")), cfg)
    return np.stack([s[-1] for s in states]), items
