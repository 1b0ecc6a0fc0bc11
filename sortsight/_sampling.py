"""Deterministic sampling helpers: fair shares, proportional shares, seeded shuffles, spread picks.

Everything here is pure: the same items and seed give the same answer on every OS (items are
sorted by their normalised path before any shuffle; string seeds hash the same everywhere).
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Protocol, TypeVar

from sortsight import images
from sortsight.errors import ConfigError


class _Labelled(Protocol):
    """What sampling needs of an item (:class:`sortsight.data.Item` has it)."""

    @property
    def path(self) -> Path: ...
    @property
    def label(self) -> str: ...
    @property
    def split(self) -> str: ...


Item = TypeVar("Item", bound=_Labelled)

__all__ = ["balanced_sample", "fair_share", "proportional", "shuffled", "spread_first"]


def fair_share(sizes: Mapping[str, int], total: int) -> dict[str, int]:
    """Split ``total`` as evenly as possible over groups no bigger than ``sizes`` (water-filling)."""
    alloc: dict[str, int] = {}
    remaining = total
    order = sorted(sizes, key=lambda k: (sizes[k], k))
    for i, key in enumerate(order):
        share = remaining // (len(order) - i)
        alloc[key] = min(sizes[key], share)
        remaining -= alloc[key]
    return alloc


def proportional(sizes: Mapping[str, int], total: int) -> dict[str, int]:
    """Split ``total`` over groups in proportion to ``sizes`` (largest remainder, ties by name)."""
    whole = sum(sizes.values())
    if whole == 0:
        return dict.fromkeys(sizes, 0)
    exact = {k: total * n / whole for k, n in sizes.items()}
    alloc = {k: int(v) for k, v in exact.items()}
    left = total - sum(alloc.values())
    for key in sorted(sizes, key=lambda k: (-(exact[k] - alloc[k]), k))[:left]:
        alloc[key] += 1
    return alloc


def shuffled(items: Iterable[Item], rng: random.Random) -> list[Item]:
    ordered = sorted(items, key=lambda it: images.sort_key(it.path))
    rng.shuffle(ordered)
    return ordered


def balanced_sample(items: Sequence[Item], max_samples: int, seed: int) -> list[Item]:
    by_class: dict[str, list[Item]] = defaultdict(list)
    for item in items:
        by_class[item.label].append(item)
    if max_samples < len(by_class):
        raise ConfigError(
            f"max_samples={max_samples} is less than the number of classes ({len(by_class)}); "
            f"use at least {len(by_class)}."
        )
    quota = fair_share({k: len(v) for k, v in by_class.items()}, max_samples)
    chosen: list[Item] = []
    for label in sorted(by_class):
        groups: dict[str, list[Item]] = defaultdict(list)
        for item in by_class[label]:
            groups[item.split].append(item)
        per_split = proportional({s: len(g) for s, g in groups.items()}, quota[label])
        for split in sorted(groups):
            rng = random.Random(f"{seed}:sample:{label}:{split}")
            chosen += shuffled(groups[split], rng)[: per_split[split]]
    return chosen


def spread_first(n: int, k: int) -> list[int]:
    """An order of ``range(n)`` whose first ``k`` are spread over it, the rest following in order.
    A dataset's images come grouped by class: its first few would hold one class, on which the
    head cannot be fitted (nor its time measured)."""
    first = sorted({i * n // k for i in range(min(n, k))})
    chosen = set(first)
    return first + [i for i in range(n) if i not in chosen]
