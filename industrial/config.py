"""Typed dataclass configs: YAML in, ``--set key=value`` overrides, strict validation.

Every config in the project is a (nested) dataclass. :func:`load` reads a YAML file into one,
:func:`apply_overrides` applies ``section.key=value`` strings, and both refuse an unknown key or a
value of the wrong type with a :class:`ConfigError` that names the key (and the file)::

    cfg = load(ExperimentConfig, "configs/idrec_scientific.yaml", ["train.epochs=3"])

YAML values are parsed with ``yaml.safe_load`` (no object construction). A float key also takes
the exponent forms YAML 1.1 reads as strings (``lr: 1e-3``).
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from pathlib import Path
from typing import Any, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

from industrial.errors import UserError

T = TypeVar("T")

#: A number written without a dot (``1e-3``), which YAML 1.1 reads as a string.
_FLOAT_TEXT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


class ConfigError(UserError, ValueError):
    """A config file or override is wrong; the message names the key."""


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _convert(value: Any, tp: Any, key: str) -> Any:
    """Check/convert ``value`` to the annotated type ``tp``; raise naming ``key``."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{key}: invalid value {value!r}")
    if origin is typing.Literal:
        if value not in get_args(tp):
            raise ConfigError(f"{key}: {value!r} is not one of {list(get_args(tp))}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        (item_tp,) = get_args(tp)[:1] or (Any,)
        converted = [_convert(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
        return converted if origin is list else tuple(converted)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        k_tp, v_tp = get_args(tp) or (Any, Any)
        return {_convert(k, k_tp, key): _convert(v, v_tp, f"{key}.{k}") for k, v in value.items()}
    if _is_dataclass_type(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping for section {tp.__name__}, got {value!r}")
        return from_dict(tp, value, prefix=key)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str) and _FLOAT_TEXT.fullmatch(value.strip()):
            return float(value)
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    return value


def from_dict(cls: type[T], data: dict[str, Any], prefix: str = "") -> T:
    """Build dataclass ``cls`` from a mapping; unknown keys and wrong types are errors."""
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        where = f"{prefix}." if prefix else ""
        raise ConfigError(
            f"unknown config key {where}{unknown[0]!r}"
            f" (known keys{' of ' + prefix if prefix else ''}: {', '.join(sorted(fields))})"
        )
    kwargs = {}
    for name, value in data.items():
        key = f"{prefix}.{name}" if prefix else name
        kwargs[name] = _convert(value, hints[name], key)
    obj = cls(**kwargs)
    validate = getattr(obj, "validate", None)
    if callable(validate):
        try:
            validate()
        except ConfigError:
            raise
        except ValueError as e:
            if prefix and re.match(r"\w+[=:]", str(e)):  # "epochs=0: ..." -> "train.epochs=0: ..."
                raise ConfigError(f"{prefix}.{e}") from e
            raise ConfigError(f"{prefix or cls.__name__}: {e}") from e
    return obj


def to_dict(cfg: Any) -> dict[str, Any]:
    """The config as plain data (for YAML dumps and checkpoints)."""
    return dataclasses.asdict(cfg)


def _set_path(data: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {dotted}: {part!r} is not a section")
    node[parts[-1]] = value


def add_override_argument(parser: Any, help: str = "override a config key, e.g. train.epochs=3") -> None:
    """``--set KEY=VALUE [KEY=VALUE ...]`` (repeatable) on an ``argparse`` parser, into ``overrides``.

    Several pairs may follow one ``--set``: TorchX refuses a component's script arguments that
    repeat a flag (``torchx run ... -- --set a=1 --set b=2`` fails), ``-- --set a=1 b=2`` passes."""
    parser.add_argument("--set", dest="overrides", action="extend", nargs="+", default=[], metavar="KEY=VALUE", help=help)


def parse_override(text: str) -> tuple[str, Any]:
    """Split ``key=value``; the value is parsed as YAML (``3`` is an int, ``[1,2]`` a list)."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected key=value")
    key, raw = text.split("=", 1)
    if not key.strip():
        raise ConfigError(f"--set {text!r}: the key is empty")
    try:
        return key.strip(), yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as e:
        raise ConfigError(f"--set {text!r}: the value is not valid YAML ({getattr(e, 'problem', None) or e})") from None


def apply_overrides(data: dict[str, Any], overrides: list[str] | None) -> dict[str, Any]:
    """Apply ``key=value`` overrides to a plain mapping (before it becomes a dataclass)."""
    for text in overrides or []:
        key, value = parse_override(text)
        _set_path(data, key, value)
    return data


def read_yaml(path: str | Path) -> Any:
    """``yaml.safe_load`` of a file; a missing, unreadable or malformed file is a ConfigError naming it."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist" if not path.exists() else f"config file {path} is not a file")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.start})") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{path}:{where}: malformed YAML: {problem}") from None


def load(cls: type[T], path: str | Path | None = None, overrides: list[str] | None = None) -> T:
    """Load a YAML file (or the defaults when ``path`` is None) into ``cls`` with overrides."""
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        loaded = read_yaml(path) or {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: expected a mapping at the top level")
        data = loaded
    data = apply_overrides(data, overrides)
    try:
        return from_dict(cls, data)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}" if path is not None else str(e)) from None


def dump(cfg: Any, path: str | Path) -> None:
    """Write the resolved config as YAML."""
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
