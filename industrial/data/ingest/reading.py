"""Line-numbered readers for the raw file kinds (CSV, TSV, JSON lines) and small field parsers.

Each reader yields ``(Origin, record)`` so that every later message names the file and line. A
malformed row goes to :meth:`Problems.bad_row` (an error, or skipped and counted). Nothing here
executes data: Python-literal lists are parsed with :func:`ast.literal_eval`, JSON with :mod:`json`.
"""

from __future__ import annotations

import ast
import csv
import json
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from industrial.data.ingest.problems import Origin, Problems
from industrial.data.schema import DatasetError

Record = dict[str, str]


def _decoded_lines(path: Path, problems: Problems) -> Iterator[str]:
    """The file's lines as text (UTF-8, BOM tolerated); an undecodable line is a bad row."""
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as e:
                problems.bad_row("malformed_row", Origin(str(path), number), f"not valid UTF-8 ({e.reason})")
                line = raw.decode("utf-8", errors="replace")
            yield line


def require_columns(path: Path, header: Sequence[str], required: Sequence[str]) -> None:
    """Raise naming the file when a required column is missing from its header."""
    missing = [c for c in required if c not in header]
    if missing:
        raise DatasetError(f"{path}:1: missing column(s) {missing}; the header has {list(header)}")


def read_csv(
    path: Path, problems: Problems, required: Sequence[str] = (), delimiter: str = ","
) -> Iterator[tuple[Origin, Record]]:
    """Rows of a CSV file with a header, as dicts; the origin is the row's first line."""
    if not path.is_file():
        raise DatasetError(f"{path}: file not found")
    lines = _decoded_lines(path, problems)
    reader = csv.reader(lines, delimiter=delimiter, strict=True)
    try:
        header = next(reader)
    except StopIteration:
        raise DatasetError(f"{path}: empty file, expected a header") from None
    except csv.Error as e:
        raise DatasetError(f"{path}:1: malformed header ({e})") from None
    header = [h.strip() for h in header]
    require_columns(path, header, required)
    last_line = reader.line_num
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            problems.bad_row("malformed_row", Origin(str(path), last_line + 1), f"malformed CSV ({e})")
            last_line = reader.line_num
            continue
        origin = Origin(str(path), last_line + 1)
        last_line = reader.line_num
        if not fields or (len(fields) == 1 and not fields[0].strip()):
            continue
        if len(fields) != len(header):
            message = f"expected {len(header)} fields ({', '.join(header)}), got {len(fields)}"
            problems.bad_row("malformed_row", origin, message)
            continue
        yield origin, dict(zip(header, fields))


def read_atomic(path: Path, problems: Problems, required: Sequence[str] = ()) -> Iterator[tuple[Origin, Record]]:
    """Rows of a RecBole atomic file: tab-separated, header ``name:type``, no quoting."""
    if not path.is_file():
        raise DatasetError(f"{path}: file not found")
    lines = _decoded_lines(path, problems)
    try:
        header = [h.split(":", 1)[0].strip() for h in next(lines).rstrip("\r\n").split("\t")]
    except StopIteration:
        raise DatasetError(f"{path}: empty file, expected a header") from None
    require_columns(path, header, required)
    for number, line in enumerate(lines, start=2):
        line = line.rstrip("\r\n")
        if not line.strip():
            continue
        fields = line.split("\t", len(header) - 1)
        if len(fields) != len(header):
            message = f"expected {len(header)} tab-separated fields ({', '.join(header)}), got {len(fields)}"
            problems.bad_row("malformed_row", Origin(str(path), number), message)
            continue
        yield Origin(str(path), number), dict(zip(header, fields))


def read_whitespace_lines(path: Path, problems: Problems) -> Iterator[tuple[Origin, list[str]]]:
    """Non-empty lines split on whitespace (no header)."""
    if not path.is_file():
        raise DatasetError(f"{path}: file not found")
    for number, line in enumerate(_decoded_lines(path, problems), start=1):
        tokens = line.split()
        if tokens:
            yield Origin(str(path), number), tokens


def read_jsonl(path: Path, problems: Problems, required: Sequence[str] = ()) -> Iterator[tuple[Origin, Record]]:
    """Records of a JSON-lines file; values become strings (null stays None)."""
    if not path.is_file():
        raise DatasetError(f"{path}: file not found")
    for number, line in enumerate(_decoded_lines(path, problems), start=1):
        if not line.strip():
            continue
        origin = Origin(str(path), number)
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            problems.bad_row("malformed_row", origin, f"not valid JSON ({e.msg} at column {e.colno})")
            continue
        if not isinstance(obj, dict):
            problems.bad_row("malformed_row", origin, f"expected a JSON object, got {type(obj).__name__}")
            continue
        missing = [c for c in required if c not in obj]
        if missing:
            problems.bad_row("malformed_row", origin, f"missing field(s) {missing}")
            continue
        yield origin, {key: _as_text(value) for key, value in obj.items()}


def _as_text(value: Any) -> str | None:
    """A JSON value as the string a CSV cell would hold (null stays None, lists/objects as JSON)."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)


def read_records(path: Path, problems: Problems, required: Sequence[str] = ()) -> Iterator[tuple[Origin, Record]]:
    """CSV (``.csv``), TSV (``.tsv``) or JSON lines (``.jsonl``/``.json``), chosen by suffix."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return read_csv(path, problems, required)
    if suffix == ".tsv":
        return read_csv(path, problems, required, delimiter="\t")
    if suffix in (".jsonl", ".json", ".ndjson"):
        return read_jsonl(path, problems, required)
    raise DatasetError(f"{path}: unsupported file type {suffix!r} (expected .csv, .tsv or .jsonl)")


def load_json(path: Path) -> Any:
    """A whole JSON document; a syntax error names the file and line."""
    if not path.is_file():
        raise DatasetError(f"{path}: file not found")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DatasetError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
    except UnicodeDecodeError as e:
        raise DatasetError(f"{path}: not valid UTF-8 ({e.reason})") from None


def parse_int(value: str | None, what: str, origin: Origin, problems: Problems) -> int | None:
    """``value`` as an integer; otherwise a bad row naming ``what`` (None when skipped)."""
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        problems.bad_row("malformed_row", origin, f"{what} {value!r} is not an integer")
        return None


def parse_literal_list(value: str, what: str, origin: Origin, problems: Problems) -> list[Any] | None:
    """A list written as a Python or JSON literal (``[1, 2]``, ``['a']``), never evaluated as code."""
    try:
        parsed = ast.literal_eval(value.strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        parsed = None
    if not isinstance(parsed, (list, tuple)):
        problems.bad_row("malformed_row", origin, f"{what} {_short(value)} is not a list literal")
        return None
    return list(parsed)


def parse_timestamp(value: str | None, origin: Origin, problems: Problems) -> int | None:
    """Seconds since the epoch from an integer or an ISO 8601 date/time (UTC when no zone is given)."""
    text = (value or "").strip()
    try:
        return int(text)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        problems.bad_row("malformed_row", origin, f"timestamp {value!r} is neither an integer nor an ISO 8601 date")
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return int(when.timestamp())


def _text_value(value: Any) -> str:
    """A field's text: a list literal (``"['a', 'b']"``) becomes its items joined by spaces."""
    if value is None:
        return ""
    text = str(value).strip()
    if len(text) >= 2 and text[0] == "[" and text[-1] == "]":
        try:
            parsed = ast.literal_eval(text)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            return text
        if isinstance(parsed, (list, tuple)):
            return " ".join(str(p).strip() for p in parsed if str(p).strip())
    return text


def compose_text(record: Mapping[str, Any], fields: Sequence[str]) -> str:
    """The item text: the non-empty ``fields`` of ``record`` joined by ``". "``; empty when none."""
    parts = []
    for name in fields:
        text = _text_value(record.get(name)).rstrip(". ").strip()
        if text:
            parts.append(text)
    return ". ".join(parts) + ("." if parts else "")


def _short(value: str, limit: int = 60) -> str:
    value = repr(value)
    return value if len(value) <= limit else value[: limit - 3] + "..."


def json_object_key_lines(path: Path) -> dict[str, int]:
    """For a pretty-printed JSON object of objects, the line where each top-level key opens.

    Used only to name lines in messages; keys not found simply have no line.
    """
    lines: dict[str, int] = {}
    depth = 0
    with open(path, encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, start=1):
            stripped = line.strip()
            if depth == 1 and stripped.startswith('"'):
                key, _, rest = stripped[1:].partition('"')
                if rest.lstrip().startswith(":"):
                    lines.setdefault(key, number)
            depth += _depth_change(stripped)
    return lines


def _depth_change(line: str) -> int:
    """Braces outside JSON strings on one line."""
    change, in_string, escaped = 0, False, False
    for ch in line:
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = in_string
        elif ch == '"':
            in_string = not in_string
        elif not in_string:
            change += (ch == "{") - (ch == "}")
    return change
