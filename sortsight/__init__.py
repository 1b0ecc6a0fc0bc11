"""sortsight: a good image classifier from a folder of labelled images, on a laptop CPU.

The public API is re-exported here lazily (nothing heavy is imported until used)::

    import sortsight
    ds = sortsight.load_dataset("photos/")            # check and split the data
    result = sortsight.train(sortsight.TrainConfig(data_path="photos/"))
    clf = sortsight.Classifier.load(result.model_dir)  # predict / sort new images
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it. Keep in sync with __all__ (a test checks both).
_EXPORTS: dict[str, str] = {
    # errors
    "SortsightError": "sortsight.errors",
    "ConfigError": "sortsight.errors",
    "DataError": "sortsight.errors",
    "ImageError": "sortsight.errors",
    "ModelError": "sortsight.errors",
    "TrainError": "sortsight.errors",
    "PredictError": "sortsight.errors",
    "ExportError": "sortsight.errors",
    # progress
    "ProgressEvent": "sortsight.progress",
    # images and data
    "open_image": "sortsight.images",
    "ImageDataset": "sortsight.data",
    "Item": "sortsight.data",
    "scan": "sortsight.data",
    "split_dataset": "sortsight.data",
    "load_dataset": "sortsight.data",
    "summarize": "sortsight.data",
    # data doctor, fixes, dataset building
    "doctor": "sortsight.doctor",
    "DoctorReport": "sortsight.doctor",
    "apply_decisions": "sortsight.fix",
    "undo": "sortsight.fix",
    "fetch": "sortsight.fetch",
    # config
    "TrainConfig": "sortsight.config",
    "load_train_config": "sortsight.autotrain",
    # training
    "train": "sortsight.train",
    "TrainResult": "sortsight.train",
    "compare_pretrained": "sortsight.compare",
    "PredictConfig": "sortsight.config",
    # predict, sort, evaluate
    "Classifier": "sortsight.predict",
    "sort_into": "sortsight.sort",
    "evaluate": "sortsight.evaluate",
    "Evaluation": "sortsight.evaluate",
    # share (the Gradio demo stays in sortsight.demo, out of the top-level namespace)
    "export_space": "sortsight.space",
    "push_to_hub": "sortsight.hub",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'sortsight' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
