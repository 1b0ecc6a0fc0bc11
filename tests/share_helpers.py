"""A tiny run folder for the share tests (app, Space, hub), built once per test process.

Not a test module: test_app.py, test_space.py, test_hub.py and test_demo_browser.py import it.
The model is the bundled EfficientNet-Lite0 with a fresh 2-class head at 64 px (no training:
the tests check plumbing and parity, not accuracy).
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

from conftest import write_class_folder

LABELS = ("circle", "square")
CARD = """---
license: mit
library_name: transformers
tags:
- image-classification
---

# Shapes sorter

Tells drawn circles from squares: a toy model for the share tests.

## Limitations

Trained on nothing at all; its answers mean nothing.
"""

_cache: dict[str, Path] = {}


def tiny_run(root: Path) -> Path:
    """``root/run`` with ``model/`` (HF folder + card), ``sortsight.json`` split lists and the data."""
    if "run" in _cache:
        return _cache["run"]
    import torch

    from sortsight.model_folder import save_model_folder
    from sortsight.models import create_model

    torch.manual_seed(0)
    data = write_class_folder(root / "data", LABELS, per_class=4, size=48)
    run = root / "run"
    model, data_config = create_model("efficientnet_lite0", list(LABELS), input_size=64)
    save_model_folder(model, list(LABELS), data_config, run / "model", name="efficientnet_lite0", card=CARD)
    relative = [p.relative_to(data).as_posix() for p in sorted(data.glob("*/*.png"))]
    held_out = ("_002.png", "_003.png")
    splits = {  # the layout of sortsight.json written by training (data.splits, relative paths)
        "train": [r for r in relative if not r.endswith(held_out)],
        "validation": [r for r in relative if r.endswith(held_out)],
        "test": [],
    }
    info = {"data": {"path": str(data), "classes": list(LABELS), "splits": splits}}
    (run / "sortsight.json").write_text(json.dumps(info), encoding="utf-8")
    _cache["run"] = run
    return run


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tree_digest(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (relative path -> content), to prove a folder was not changed."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
