"""Input resolution: do Lite0's frozen features transfer better when the images arrive larger?

Networks trained at one input side often score higher when tested a little above it (Touvron et
al., NeurIPS 2019, "FixRes"), and the benchmark images are small (28-120 px) and upscaled anyway.
For each benchmark set of :mod:`sets`, the frozen pooled Lite0 features of the training and test
images are computed through sortsight's own frozen pass at 224 px (the default), 256 and 288
px, and the probe and sortsight's head of ``concat_features.py`` are fitted on each. It
prints test accuracy (only ``fashion`` is in-distribution) and each size's feature time, so a gain
can be set against its cost (about (side / 224)² of the frozen pass).

Usage::

    python benchmarks/resolution.py --work bench-work --json resolution.json
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from concat_features import scores, timed_features
from head_levers import over_sets, print_seconds

SIZES = (224, 256, 288)


def main() -> None:
    def row_of(root: Path) -> dict[str, Any]:
        row: dict[str, Any] = {}
        for size in SIZES:
            f = timed_features(row, f"{size}_features_s", root, "efficientnet_lite0", size)
            row.update(scores(f, f"{size} px"))
        return row

    results = over_sets(__doc__ or "", row_of)
    print_seconds(results["sets"], [f"{size}_features_s" for size in SIZES])


if __name__ == "__main__":
    main()
