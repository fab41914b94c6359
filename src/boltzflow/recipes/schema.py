"""Typed configs from TOML tables, strictly: every key known, every value of its field's type.

:func:`build` turns a nested dict (from ``tomllib``) into a dataclass, recursing into nested dataclasses, lists
of dataclasses and optional fields, and raises :class:`ConfigError` with the dotted key and the file on the
first unknown key or wrongly typed value. :func:`to_table` goes back (for ``--print-config``), and
:func:`merge` lays a partial table (a scale preset, ``--set`` overrides) over a full one.

Written here rather than taken from a library (pydantic, cattrs, dacite) because the rules are few and
specific (ints may stand for floats, a table may replace ``None``, TOML has no null, messages must name the key
and the file in one line) and a dependency for ~100 lines is not worth it.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from typing import Any, Union


class ConfigError(ValueError):
    """A config key or value is wrong; the message names the key and where it came from."""


def _type_name(tp: Any) -> str:
    if isinstance(tp, type):
        return {"float": "number", "int": "integer", "str": "string", "bool": "boolean"}.get(tp.__name__, tp.__name__)
    return str(tp).replace("typing.", "")


def _is_optional(tp: Any) -> tuple[bool, Any]:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return True, args[0]
    return False, tp


def _convert(tp: Any, value: Any, key: str, where: str) -> Any:
    optional, inner = _is_optional(tp)
    if optional:
        if value is None or (isinstance(value, str) and value.lower() == "none"):
            return None
        tp = inner
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: {key} must be a table, got {value!r}")
        return build(tp, value, where, key)
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: {key} must be a list, got {value!r}")
        args = typing.get_args(tp)
        item = args[0] if args else Any
        items = [_convert(item, v, f"{key}[{i}]", where) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin in (dict, Mapping) or tp in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: {key} must be a table, got {value!r}")
        return dict(value)
    if tp is Any:
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: {key} must be a number, got {value!r}")
        if not math.isfinite(float(value)):
            raise ConfigError(f"{where}: {key} must be finite, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: {key} must be an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: {key} must be true or false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: {key} must be a string, got {value!r}")
        return value
    raise ConfigError(f"{where}: {key} has an unsupported type {_type_name(tp)}")


def build(cls: type, table: Mapping[str, Any], where: str = "config", prefix: str = "") -> Any:
    """Dataclass ``cls`` from ``table``; missing keys keep their defaults.

    Args:
        cls: the dataclass.
        table: the TOML table.
        where: the file (or "--set") named in error messages.
        prefix: dotted path of ``table`` inside the whole config, for messages.

    Raises:
        ConfigError: an unknown key, a wrongly typed value, or a value the dataclass itself rejects.
    """
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(table) - set(fields))
    if unknown:
        key = f"{prefix}.{unknown[0]}" if prefix else unknown[0]
        raise ConfigError(f"{where}: unknown key {key!r}; valid keys{' in ' + prefix if prefix else ''}: "
                          f"{', '.join(sorted(fields))}")
    kwargs = {}
    for name, value in table.items():
        key = f"{prefix}.{name}" if prefix else name
        kwargs[name] = _convert(hints[name], value, key, where)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:
        if isinstance(err, ConfigError):
            raise
        raise ConfigError(f"{where}: {prefix or cls.__name__}: {err}") from None


def to_table(obj: Any) -> Any:
    """A dataclass (recursively) as a TOML-ready table.

    TOML has no null: a ``None`` field whose default is ``None`` is left out, and one whose default is not
    (``grad_clip = "none"``: no clipping) is written as the string ``"none"``, which :func:`build` reads back as
    ``None``, so the table rebuilds the same dataclass.
    """
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out = {}
        for f in dataclasses.fields(obj):
            value = to_table(getattr(obj, f.name))
            if value is not None:
                out[f.name] = value
            elif _default(f) is not None:
                out[f.name] = "none"
        return out
    if isinstance(obj, list | tuple):
        return [to_table(v) for v in obj]
    if isinstance(obj, Mapping):
        return {k: to_table(v) for k, v in obj.items() if v is not None}
    return obj


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return "required"


def merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``update`` laid over it, tables merged key by key, everything else replaced."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out
