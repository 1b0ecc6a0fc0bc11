"""The machinery under every frozen config: build one from a dict or a file, validate its
fields against their metadata (choices, ranges), and describe them for the CLI and the studio.

Each option is declared once, as a dataclass field of a config in :mod:`sortsight.config`
(``TrainConfig``, ``PredictConfig``, ``IndexConfig``, ...) with ``help``, ``choices``,
``min``/``max`` in its metadata; the CLI options and the studio's form are generated from
:func:`describe_fields`.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from sortsight.errors import ConfigError, closest, first_line

__all__ = [
    "config_from_dict",
    "config_to_dict",
    "describe_fields",
    "read_config_file",
    "validate_fields",
]

C = TypeVar("C")


def config_from_dict(cls: type[C], values: dict[str, Any], *, what: str = "option") -> C:
    """Build the frozen dataclass ``cls`` from ``values``; unknown keys are a ``ConfigError``.

    Example:
        >>> from dataclasses import dataclass
        >>> @dataclass(frozen=True)
        ... class Demo:
        ...     lr: float = 0.1
        >>> config_from_dict(Demo, {"lr": 0.5}).lr
        0.5
    """
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    names = [f.name for f in dataclasses.fields(cls)]
    for key in values:
        if key not in names:
            hint = closest(key, names)
            suggestion = f" Did you mean '{hint}'?" if hint else f" Valid {what}s: {', '.join(names)}."
            raise ConfigError(f"Unknown {what} '{key}'.{suggestion}")
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"Invalid {what}: {exc}") from exc


def config_to_dict(config: Any) -> dict[str, Any]:
    """A JSON-ready dict of a config dataclass (paths become strings, tuples lists)."""

    def plain(value: Any) -> Any:
        if isinstance(value, Path):
            return str(value)
        if isinstance(value, (tuple, list)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return {f.name: plain(getattr(config, f.name)) for f in dataclasses.fields(config)}


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML or JSON config file into a dict, with a clear error when it is unreadable."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"Config file '{path}' not found. Give the path to a .yml, .yaml or .json file.")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as exc:  # yaml and json raise many kinds
        first = first_line(exc)
        raise ConfigError(f"Config file '{path}' could not be parsed: {first}. Fix its syntax.") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"Config file '{path}' must hold a mapping of option: value at the top level.")
    return data


# --------------------------------------------------------------------------------------------
# Field metadata: every option is declared once, as ``field(default=..., metadata={"help": ...,
# "min": ..., "max": ..., "choices": ...})``; validation, CLI options and the studio's form read it.
# --------------------------------------------------------------------------------------------

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


@functools.cache
def _field_types(cls: type) -> dict[str, tuple[tuple[type, ...], bool]]:
    """Per field: the value types its annotation allows (without None) and whether None is allowed."""
    result = {}
    for name, hint in typing.get_type_hints(cls).items():
        args = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
        kinds = tuple(typing.get_origin(a) or a for a in args if a is not type(None))
        result[name] = (kinds, type(None) in args)
    return result


def _coerce(name: str, value: Any, kinds: tuple[type, ...], what: str) -> Any:
    """``value`` as the field's type (YAML, forms and flags give strings), or a one-line ConfigError."""
    def bad(expected: str) -> ConfigError:
        return ConfigError(f"Invalid {what}: {name} must be {expected}, got '{value}'.")

    if bool in kinds:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE + _FALSE:
            return text in _TRUE
        raise bad("true or false")
    if isinstance(value, bool) and (int in kinds or float in kinds):
        raise bad("a number")
    if int in kinds:
        if isinstance(value, float) and value.is_integer():
            return int(value)
        try:
            return int(str(value).strip())
        except ValueError:
            raise bad("a whole number") from None
    if float in kinds:
        try:
            number = float(value)
        except (TypeError, ValueError):
            if str in kinds and isinstance(value, str):
                return value
            raise bad("a number") from None
        if not math.isfinite(number):
            raise bad("a finite number")
        return number
    if str in kinds:
        return str(value)
    return value


def _number(value: float) -> str:
    """``5``, ``0.2``, ``3e-04``: a bound or value as a user would write it."""
    return str(value) if isinstance(value, int) else f"{value:g}"


def _bounds(meta: Mapping[str, Any]) -> str:
    low, high = meta.get("min"), meta.get("max")
    if low is not None and high is not None:
        return f"at least {_number(low)} and at most {_number(high)}"
    return f"at least {_number(low)}" if low is not None else f"at most {_number(high or 0)}"


def validate_fields(config: Any, *, what: str = "option") -> None:
    """Check and normalise every field of a frozen config dataclass against its metadata.

    Values are converted to the annotated type (``"2e-5"`` → ``2e-05``), then checked against
    ``choices`` and the inclusive ``min``/``max``; infinities and NaN are refused. A bad value
    is a one-line :class:`ConfigError` naming the option, what it must be and what was given.
    Called from each config's ``__post_init__``.
    """
    declared = _field_types(config.__class__)
    for f in dataclasses.fields(config):
        kinds, nullable = declared[f.name]
        value = getattr(config, f.name)
        if value is None:
            if nullable:
                continue
            raise ConfigError(f"Invalid {what}: {f.name} must be given.")
        value = _coerce(f.name, value, kinds, what)
        object.__setattr__(config, f.name, value)
        meta = f.metadata
        choices = meta.get("choices")
        if choices and value not in choices:
            hint = closest(str(value), tuple(choices))
            extra = f" Did you mean '{hint}'?" if hint else ""
            raise ConfigError(f"Unknown {f.name} '{value}'.{extra} Choose one of: {', '.join(choices)}.")
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        low, high = meta.get("min"), meta.get("max")
        if number and ((low is not None and value < low) or (high is not None and value > high)):
            raise ConfigError(f"Invalid {what}: {f.name} must be {_bounds(meta)}, got {_number(value)}.")


def _type_name(kind: type) -> str:
    return {bool: "bool", int: "int", float: "float", str: "str", tuple: "list"}.get(kind, kind.__name__)


def describe_fields(cls: type) -> list[dict[str, Any]]:
    """The declaration of every option of ``cls`` (``TrainConfig``, ``PredictConfig``), in field
    order, for building forms and command-line options from one source.

    Each dict has ``name``, ``flag`` (``--batch-size``), ``type`` (``"int"``, ``"float"``,
    ``"str"``, ``"bool"``, ``"list"`` or ``"duration"``: the first one the field takes, or
    ``metadata["parse"]`` for text the config parses), ``types`` (all of them),
    ``nullable``, ``default``, ``default_text`` (the default as shown to a user), ``help``,
    ``min``, ``max`` and ``choices`` (None when not declared).

    Example:
        >>> [d for d in describe_fields(TrainConfig) if d["name"] == "epochs"][0]["max"]
        1000
    """
    described = []
    for f in dataclasses.fields(cls):
        kinds, nullable = _field_types(cls)[f.name]
        meta = f.metadata
        default = f.default if f.default is not dataclasses.MISSING else None
        described.append(
            {
                "name": f.name,
                "flag": "--" + f.name.replace("_", "-"),
                "type": meta.get("parse") or _type_name(kinds[0]),
                "types": [_type_name(k) for k in kinds],
                "nullable": nullable,
                "default": default,
                "default_text": meta.get("default_text") or _default_text(default),
                "help": meta.get("help", ""),
                "min": meta.get("min"),
                "max": meta.get("max"),
                "choices": tuple(meta["choices"]) if meta.get("choices") else None,
            }
        )
    return described


def _default_text(default: Any) -> str:
    if default is None or default == () or default == "":
        return "none"
    if isinstance(default, bool):
        return "on" if default else "off"
    if isinstance(default, (int, float)):
        return _number(default)
    return str(default)
