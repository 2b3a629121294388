"""Typed configuration files: a TOML file read into dataclasses, every key and type checked.

A run is described by its config file (train/configs/, experiments/configs/); command-line
flags only override. A table maps onto a dataclass field by field, nested tables onto
nested dataclasses. TOML has no null: a field that may be None is None by leaving its key
out (its default), so configs state what they set.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path

from anonynoise.errors import AnonyNoiseError

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser, from PyPI (setup.cfg)
    import tomli as tomllib


class ConfigError(AnonyNoiseError):
    """A config file that is missing, not TOML, or does not fit its dataclass (one line)."""


def read_toml(path: str | Path) -> dict:
    """The tables of a TOML file; ConfigError for a missing or malformed file."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a config file") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML ({e})") from None


def merged(base: dict, over: dict) -> dict:
    """`over` on top of `base`, tables merged key by key (a copy; neither is changed)."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out


def from_table(cls, table: dict, where: str, fixed: dict | None = None):
    """An instance of dataclass `cls` from a TOML table: unknown keys and wrong types are a
    ConfigError naming `where`.key. `fixed` maps a dataclass to field names a file may not
    set (set by the code from elsewhere, e.g. every net's seed from the recipe's)."""
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: expected a table, got {_kind(table)}")
    fixed = fixed or {}
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)
             if f.init and f.name not in fixed.get(cls, ())]
    for key in table:
        if key not in names:
            raise ConfigError(f"{where}: unknown key {key!r} (keys: {', '.join(names)})")
    return cls(**{k: _value(hints[k], v, f"{where}.{k}", fixed) for k, v in table.items()})


def _kind(value) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
            list: "a list", dict: "a table"}.get(type(value), type(value).__name__)


def _value(tp, value, where: str, fixed: dict):
    """`value` checked against the type hint `tp` (and converted: lists to tuples, integers
    to floats where a float is asked)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        if len(options) != 1:
            raise TypeError(f"{where}: unsupported type {tp}")
        return _value(options[0], value, where, fixed)
    if dataclasses.is_dataclass(tp):
        return from_table(tp, value, where, fixed)
    if origin in (tuple, list):
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {_kind(value)}")
        item = args[0] if args else typing.Any
        items = [_value(item, v, f"{where}[{i}]", fixed) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if tp is typing.Any:
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    # bool is an int to Python, not to a config: `epochs = true` is a mistake
    if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
        raise ConfigError(f"{where}: expected {_kind(tp())}, got {_kind(value)} ({value!r})")
    return value


def to_table(instance, fixed: dict | None = None) -> dict:
    """The TOML table of a dataclass instance (the inverse of from_table): None fields and
    `fixed` ones left out, tuples as lists."""
    fixed = fixed or {}
    out = {}
    for f in dataclasses.fields(instance):
        if f.name in fixed.get(type(instance), ()):
            continue
        value = getattr(instance, f.name)
        if value is None:
            continue
        if dataclasses.is_dataclass(value):
            value = to_table(value, fixed)
        elif isinstance(value, tuple):
            value = list(value)
        out[f.name] = value
    return out
