"""Statistics of a prepared dataset: what ``stats.json`` holds and the table ``prepare`` prints.

:func:`compute_stats` takes the canonical tables (in memory, or read back with
:func:`stats_of_dataset`) and the fallback counters; :func:`format_stats` renders it for a terminal::

    stats = stats_of_dataset("out/scientific")
    print(format_stats(stats))
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from industrial.data.schema import EVENTS_FILE, ITEMS_FILE, SPLIT_FILES, STATS_FILE, read_table


def _distribution(values: np.ndarray) -> dict[str, float | int]:
    """min / mean / median / p90 / max of a non-empty integer array (zeros when empty)."""
    if values.size == 0:
        return {"min": 0, "mean": 0.0, "median": 0.0, "p90": 0.0, "max": 0}
    return {
        "min": int(values.min()),
        "mean": round(float(values.mean()), 3),
        "median": float(np.median(values)),
        "p90": float(np.percentile(values, 90)),
        "max": int(values.max()),
    }


def _content_counts(items: pa.Table) -> dict[str, int]:
    """How many items have text, image, both, neither."""
    has_text = pc.is_valid(items["text"]).to_numpy(zero_copy_only=False)
    has_image = (
        pc.or_(pc.is_valid(items["image_path"]), pc.is_valid(items["image_bytes"])).to_numpy(zero_copy_only=False)
        if items.num_rows
        else np.zeros(0, bool)
    )
    return content_counts(has_text, has_image)


def content_counts(has_text: np.ndarray, has_image: np.ndarray) -> dict[str, int]:
    """How many items have text, image, both, one of them or neither (boolean arrays per item)."""
    return {
        "items_with_text": int(has_text.sum()),
        "items_with_image": int(has_image.sum()),
        "items_with_text_and_image": int((has_text & has_image).sum()),
        "items_text_only": int((has_text & ~has_image).sum()),
        "items_image_only": int((~has_text & has_image).sum()),
        "items_id_only": int((~has_text & ~has_image).sum()),
        "items_without_text": int((~has_text).sum()),
        "items_without_image": int((~has_image).sum()),
    }


def _eval_rows_by_domain(table: pa.Table, item_domain: np.ndarray, domain: str) -> dict[str, int]:
    """Rows and users of a valid/test table whose target is an item of ``domain``."""
    if table.num_rows == 0:
        return {"rows": 0, "users": 0}
    in_domain = item_domain[table["target"].to_numpy()] == domain
    return {"rows": int(in_domain.sum()), "users": int(np.unique(table["user_id"].to_numpy()[in_domain]).size)}


def _list_lengths(table: pa.Table, column: str) -> np.ndarray:
    if table.num_rows == 0:
        return np.zeros(0, np.int64)
    return pc.list_value_length(table[column]).to_numpy(zero_copy_only=False)


def _split_stats(train: pa.Table, valid: pa.Table, test: pa.Table) -> dict[str, Any]:
    train_lengths = _list_lengths(train, "item_ids")
    out: dict[str, Any] = {
        "train": {
            "rows": train.num_rows,
            "events": int(train_lengths.sum()),
            "sequence_length": _distribution(train_lengths),
        }
    }
    for name, table in (("valid", valid), ("test", test)):
        history = _list_lengths(table, "history")
        users = table["user_id"].to_numpy()
        out[name] = {
            "rows": table.num_rows,
            "users": int(np.unique(users).size),
            "history_length": _distribution(history),
        }
    return out


def compute_stats(
    items: pa.Table,
    events: pa.Table,
    train: pa.Table,
    valid: pa.Table,
    test: pa.Table,
    fallbacks: dict[str, int] | None = None,
    examples: dict[str, list[str]] | None = None,
    name: str = "",
) -> dict[str, Any]:
    """The statistics of ``stats.json`` (see the module docstring)."""
    users = events["user_id"].to_numpy()
    per_user = np.bincount(users) if users.size else np.zeros(0, np.int64)
    per_user = per_user[per_user > 0]
    stats: dict[str, Any] = {
        "name": name,
        "users": int(per_user.size),
        "items": items.num_rows,
        "events": events.num_rows,
        "sequence_length": _distribution(per_user),
        **_content_counts(items),
        "domains": {},
        "splits": _split_stats(train, valid, test),
    }
    event_domain = events["domain"].to_numpy(zero_copy_only=False).astype(str) if events.num_rows else np.zeros(0, str)
    item_domain = items["domain"].to_numpy(zero_copy_only=False).astype(str) if items.num_rows else np.zeros(0, str)
    for domain in dict.fromkeys([*item_domain.tolist(), *event_domain.tolist()]):  # catalogue order
        in_domain = event_domain == domain
        domain_users = users[in_domain]
        per_domain_user = np.bincount(domain_users) if domain_users.size else np.zeros(0, np.int64)
        per_domain_user = per_domain_user[per_domain_user > 0]
        domain_items = items.filter(pa.array(item_domain == domain))
        stats["domains"][domain] = {
            "users": int(per_domain_user.size),
            "items": domain_items.num_rows,
            "events": int(in_domain.sum()),
            "sequence_length": _distribution(per_domain_user),
            **_content_counts(domain_items),
            "valid": _eval_rows_by_domain(valid, item_domain, domain),
            "test": _eval_rows_by_domain(test, item_domain, domain),
        }
    stats["fallbacks"] = dict(sorted((fallbacks or {}).items()))
    stats["examples"] = dict(sorted((examples or {}).items()))
    return stats


def stats_of_dataset(root: str | os.PathLike) -> dict[str, Any]:
    """Recompute the statistics of a prepared dataset from its files (fallbacks from stats.json)."""
    root = Path(root)
    splits = {name: read_table(root, file) for name, file in SPLIT_FILES.items()}
    saved: dict[str, Any] = {}
    if (root / STATS_FILE).exists():
        saved = json.loads((root / STATS_FILE).read_text())
    return compute_stats(
        read_table(root, ITEMS_FILE, columns=["item_id", "domain", "text", "image_path", "image_bytes"]),
        read_table(root, EVENTS_FILE),
        splits["train"],
        splits["valid"],
        splits["test"],
        saved.get("fallbacks"),
        saved.get("examples"),
        name=saved.get("name", root.name),
    )


#: Longest example message shown in the printed table (stats.json keeps them whole).
_EXAMPLE_WIDTH = 110


def _row(cells: list[str], widths: list[int], left: set[int]) -> str:
    cells = [c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))]
    return "  ".join(cells).rstrip()


def _table(header: list[str], rows: list[list[str]], left: set[int] = frozenset({0})) -> list[str]:
    """Aligned columns: ``left`` columns left-justified, the others (numbers) right-justified."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return [
        _row(header, widths, left),
        _row(["-" * w for w in widths], widths, left),
        *(_row(r, widths, left) for r in rows),
    ]


def _clip(text: str, width: int = _EXAMPLE_WIDTH) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def _n(value: int | float) -> str:
    return f"{value:,}" if isinstance(value, int) else f"{value:,.2f}"


def format_stats(stats: dict[str, Any]) -> str:
    """A readable multi-table summary of :func:`compute_stats`' result."""
    lines = [f"dataset {stats.get('name', '')}".rstrip()]
    header = ["", "users", "items", "events", "text", "image", "both", "id only"]
    header += ["seq min", "mean", "median", "p90", "max"]

    def content_row(label: str, s: dict[str, Any]) -> list[str]:
        d = s["sequence_length"]
        return [
            label,
            _n(s["users"]),
            _n(s["items"]),
            _n(s["events"]),
            _n(s["items_with_text"]),
            _n(s["items_with_image"]),
            _n(s["items_with_text_and_image"]),
            _n(s["items_id_only"]),
            _n(d["min"]),
            _n(d["mean"]),
            _n(d["median"]),
            _n(d["p90"]),
            _n(d["max"]),
        ]

    domains = stats["domains"]
    rows = [content_row(domain, s) for domain, s in domains.items()]
    if len(rows) != 1:
        rows.append(content_row("all", stats))
    lines += _table(header, rows)
    splits = stats["splits"]
    train = splits["train"]
    lines.append("")
    split_rows = [["train", "all", _n(train["rows"]), _n(train["rows"]), f"{_n(train['events'])} events"]]
    for name in ("valid", "test"):
        mean_history = f"history mean {_n(splits[name]['history_length']['mean'])}"
        split_rows.append([name, "all", _n(splits[name]["rows"]), _n(splits[name]["users"]), mean_history])
        for domain, s in domains.items() if len(domains) > 1 else ():
            if name in s:
                split_rows.append([name, domain, _n(s[name]["rows"]), _n(s[name]["users"]), ""])
    lines += _table(["split", "domain", "rows", "users", ""], split_rows, left={0, 1, 4})
    fallbacks = stats.get("fallbacks") or {}
    if fallbacks:
        lines.append("")
        examples = stats.get("examples") or {}
        lines += _table(
            ["fallback / drop", "count", "first example"],
            [[k, _n(v), _clip((examples.get(k) or [""])[0])] for k, v in fallbacks.items()],
            left={0, 2},
        )
    return "\n".join(lines)
