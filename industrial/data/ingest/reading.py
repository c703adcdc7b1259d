"""Line-numbered readers for the raw file kinds (CSV, TSV, JSON lines) and small field parsers.

Each reader yields ``(Origin, record)`` so that every later message names the file and line. A
malformed row goes to :meth:`Problems.bad_row` (an error, or skipped and counted). Nothing here
executes data: Python-literal lists are parsed with :func:`ast.literal_eval`, JSON with :mod:`json`.
"""

from __future__ import annotations

import ast
import csv
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from industrial.data.ingest.problems import Origin, Problems
from industrial.data.schema import DatasetError

Record = dict[str, str]


#: An integer as the files write it: ASCII digits only (``int()`` would also take ``"٣"``), optional sign.
_INTEGER = re.compile(r"[+-]?[0-9]+")
#: An id that the format defines as a non-negative integer.
_ID_DIGITS = re.compile(r"[0-9]+")
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def _decoded_lines(path: Path, problems: Problems, header: bool = False) -> Iterator[str]:
    """The file's lines as text (UTF-8, BOM tolerated).

    An undecodable line is a bad row: an error, or (``skip``) counted and replaced by an empty line,
    which every reader skips, so the row is gone and the line numbers of the others stay right. An
    undecodable header (``header=True``) is always an error.
    """
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as e:
                if header and number == 1:
                    raise DatasetError(f"{path}:1: the header is not valid UTF-8 ({e.reason}); save the file as UTF-8") from None
                problems.bad_row("malformed_row", Origin(str(path), number), f"not valid UTF-8 ({e.reason})")
                line = "\n"  # skipped: the row is gone, not kept with U+FFFD
            yield line


def require_columns(path: Path, header: Sequence[str], required: Sequence[str]) -> None:
    """Raise naming the file when a required column is missing from its header, or a column is repeated."""
    repeated = sorted({h for h in header if header.count(h) > 1})
    if repeated:
        raise DatasetError(f"{path}:1: column(s) {repeated} appear more than once in the header; keep one of each")
    missing = [c for c in required if c not in header]
    if missing:
        hint = ""
        if len(header) == 1:
            other = next((d for d in (";", "\t", ",", "|") if d in header[0]), None)
            if other is not None:
                expected = "commas" if path.suffix.lower() == ".csv" else "tabs"
                hint = f" (the fields seem separated by {other!r}: this file must use {expected})"
        raise DatasetError(f"{path}:1: missing column(s) {missing}; the header has {list(header)}{hint}")


def read_csv(
    path: Path, problems: Problems, required: Sequence[str] = (), delimiter: str = ","
) -> Iterator[tuple[Origin, Record]]:
    """Rows of a CSV file with a header, as dicts; the origin is the row's first line."""
    if not path.is_file():
        raise DatasetError(f"{path}: file not found")
    lines = _decoded_lines(path, problems, header=True)
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
    lines = _decoded_lines(path, problems, header=True)
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


def load_json(path: Path, repeated_keys: list[str] | None = None) -> Any:
    """A whole JSON document; a syntax error names the file and line.

    A key repeated in one object keeps its first value (``json`` would keep the last, silently): a
    repeated key of the top-level object is appended to ``repeated_keys`` for the caller to count;
    anywhere else (or without ``repeated_keys``) it is an error naming the key.
    """
    if not path.is_file():
        raise DatasetError(f"{path}: file not found")
    repeats: list[tuple[dict, str]] = []

    def first_wins(pairs: list[tuple[str, Any]]) -> dict:
        obj: dict = {}
        for key, value in pairs:
            if key in obj:
                repeats.append((obj, key))
            else:
                obj[key] = value
        return obj

    try:
        document = json.loads(path.read_text(encoding="utf-8"), object_pairs_hook=first_wins)
    except json.JSONDecodeError as e:
        raise DatasetError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
    except UnicodeDecodeError as e:
        raise DatasetError(f"{path}: not valid UTF-8 ({e.reason})") from None
    except RecursionError:
        raise DatasetError(f"{path}: JSON nested too deeply") from None
    for obj, key in repeats:
        if obj is document and repeated_keys is not None:
            repeated_keys.append(key)
        else:
            raise DatasetError(f"{path}: the key {key!r} appears twice in one object; keep one of them")
    return document


def int_or_none(value: str | None) -> int | None:
    """``value`` as an int64 when it is an integer written in ASCII digits (``"٣"``, ``"²"``, ``"1e9"``,
    ``"1.0"`` are not), else None."""
    text = "" if value is None else str(value).strip()
    if not _INTEGER.fullmatch(text):
        return None
    number = int(text)
    return number if INT64_MIN <= number <= INT64_MAX else None


def _not_an_integer(value: Any) -> str:
    text = str(value).strip() if value is not None else ""
    if _INTEGER.fullmatch(text):
        return "is out of range (beyond a 64-bit integer)"
    if text and any(ch.isdigit() for ch in text) and not text.isascii():
        return "is not an integer (only the ASCII digits 0-9 are read as digits)"
    return "is not an integer"


def parse_int(value: str | None, what: str, origin: Origin, problems: Problems) -> int | None:
    """``value`` as an int64 (ASCII digits); otherwise a bad row naming ``what`` (None when skipped)."""
    number = int_or_none(value)
    if number is None:
        problems.bad_row("malformed_row", origin, f"{what} {value!r} {_not_an_integer(value)}")
    return number


def canonical_id(value: str | None) -> str | None:
    """An id that a format defines as a non-negative integer, written canonically (``"007"`` -> ``"7"``), so
    that ``01`` and ``1`` are one id; None when it is not such an integer (ASCII digits, within int64)."""
    text = (value or "").strip()
    if not _ID_DIGITS.fullmatch(text):
        return None
    number = int(text)
    return str(number) if number <= INT64_MAX else None


def parse_id(value: str | None, what: str, origin: Origin, problems: Problems) -> str | None:
    """:func:`canonical_id`, or a bad row naming ``what`` (None when skipped)."""
    canonical = canonical_id(value)
    if canonical is None:
        text = (value or "").strip()
        reason = "is empty" if not text else _not_an_integer(text).replace("an integer", "a non-negative integer id")
        problems.bad_row("malformed_row", origin, f"{what} {value!r} {reason}")
    return canonical


def require_value(value: str | None, what: str, origin: Origin, problems: Problems) -> str | None:
    """``value`` stripped; an empty (or missing) one is a bad row naming ``what`` (None when skipped)."""
    text = (value or "").strip()
    if not text:
        problems.bad_row("malformed_row", origin, f"empty {what}")
        return None
    return text


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
    if _INTEGER.fullmatch(text):
        number = int(text)
        if INT64_MIN <= number <= INT64_MAX:
            return number
        problems.bad_row("malformed_row", origin, f"timestamp {value!r} is out of range (beyond a 64-bit integer)")
        return None
    seconds = _iso_seconds(text)
    if seconds is None:
        problems.bad_row("malformed_row", origin, f"timestamp {value!r} is neither an integer nor an ISO 8601 date")
    return seconds


def parse_date(value: str | None, what: str, origin: Origin, problems: Problems) -> int | None:
    """Seconds since the epoch of an ISO 8601 date (``YYYY-MM-DD``, midnight UTC) or date-time (UTC
    when no zone). Unlike :func:`parse_timestamp`, a bare integer is not taken for seconds."""
    seconds = _iso_seconds((value or "").strip())
    if seconds is None:
        problems.bad_row(
            "malformed_row",
            origin,
            f"timestamp {value!r} is neither a YYYY-MM-DD date nor an ISO 8601 date-time (column {what})",
        )
    return seconds


def _iso_seconds(text: str) -> int | None:
    """Seconds since the epoch of an ASCII ISO 8601 date or date-time (UTC when no zone), else None."""
    if not text.isascii():
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
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
