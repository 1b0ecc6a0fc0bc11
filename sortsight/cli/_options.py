"""Command-line options generated from a config's field metadata (each option declared once).

``TrainConfig`` and ``PredictConfig`` declare every option as ``field(default=..., metadata={"help":
..., "min": ..., "max": ..., "choices": ...})``; :func:`config_options` turns those declarations into
click options whose help shows the default and the range, so ``--help``, the API and the studio
form cannot drift apart. Values are checked by the config (one place), not by click.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any, TypeVar

import click

from sortsight.config import describe_fields

__all__ = ["config_options", "given"]

F = TypeVar("F", bound=Callable[..., Any])

_TYPES: dict[str, Any] = {"int": click.INT, "float": click.FLOAT}


def _range(low: float | None, high: float | None) -> str:
    def show(x: float) -> str:
        return str(x) if isinstance(x, int) else f"{x:g}"

    if low is not None and high is not None:
        return f"{show(low)}–{show(high)}"
    if low is not None:
        return f">= {show(low)}"
    return f"<= {show(high)}" if high is not None else ""


def config_options(
    cls: type,
    *,
    only: Collection[str] | None = None,
    skip: Collection[str] = (),
    names: Mapping[str, tuple[str, ...]] | None = None,
) -> Callable[[F], F]:
    """Decorator adding one click option per field of ``cls`` (in field order, before the
    command's own options).

    Options default to None, so a command passes on only what was typed (``given``) and the
    config supplies the default (a ``--config`` file or a stored run can then fill the rest).
    Fields that already have an option on the command (written by hand) are left alone, so
    place this decorator directly under ``@click.command``; placed directly above the function
    instead, its options are listed after the hand-written ones (which it then cannot see).

    Args:
        cls: the config dataclass (``TrainConfig``, ``PredictConfig``).
        only: the fields to offer (default: all).
        skip: fields not offered (e.g. those taken as arguments).
        names: option names per field instead of ``--field-name`` (e.g. ``("--workers",)``).
    """
    names = names or {}

    def decorate(command: F) -> F:
        taken = {p.name for p in getattr(command, "__click_params__", [])}
        fields = [
            d for d in describe_fields(cls)
            if d["name"] not in taken and d["name"] not in skip and (only is None or d["name"] in only)
        ]
        for d in reversed(fields):  # click lists options in the reverse order they are added
            shown = "; ".join(x for x in (d["default_text"], _range(d["min"], d["max"])) if x)
            # the default is the config's (None here means "not typed"), so it is shown as text
            kwargs: dict[str, Any] = {"default": None, "help": f"{d['help']}  [default: {shown}]"}
            if d["type"] == "bool":
                kwargs["is_flag"] = True
            elif d["choices"]:
                kwargs["type"] = click.Choice(d["choices"])
            elif len(d["types"]) == 1:
                kwargs["type"] = _TYPES.get(d["type"], click.STRING)
            decls = names.get(d["name"], (d["flag"],))
            if d["type"] == "bool" and d["default"] is True:  # on by default: offer the way to turn it off
                decls = tuple(f"{x}/--no-{x[2:]}" for x in decls if x.startswith("--"))
            click.option(*decls, d["name"], **kwargs)(command)
        return command

    return decorate


def given(options: Mapping[str, Any]) -> dict[str, Any]:
    """The options the user typed: those not left at None."""
    return {k: v for k, v in options.items() if v is not None}
