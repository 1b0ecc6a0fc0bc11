"""AutoTrain-style training configs: an AutoTrain image-classification YAML (or flat sortsight
keys in YAML/JSON) read into a :class:`~sortsight.config.TrainConfig`.

Example:
    >>> # autotrain.yml: task: image_classification / data: {path: photos} / params: {epochs: 3}
    >>> # load_train_config("autotrain.yml").epochs  -> 3
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sortsight.config import DEFAULT_VALID_SPLIT, TrainConfig, config_from_dict, read_config_file
from sortsight.errors import ConfigError, closest

__all__ = ["load_train_config"]

_AUTOTRAIN_TOP = ("task", "base_model", "project_name", "log", "backend", "data", "params", "hub")


def _autotrain_to_flat(raw: dict[str, Any]) -> dict[str, Any]:
    """Map an AutoTrain image-classification YAML onto TrainConfig's flat names."""
    task = str(raw.get("task", "image_classification")).replace("-", "_")
    if task not in ("image_classification", "image_multi_class_classification"):
        raise ConfigError(f"AutoTrain task '{task}' is not supported; sortsight trains image_classification.")
    for key in raw:
        if key not in _AUTOTRAIN_TOP:
            hint = closest(key, _AUTOTRAIN_TOP)
            extra = f" Did you mean '{hint}'?" if hint else ""
            raise ConfigError(f"Unknown AutoTrain section '{key}'.{extra}")
    flat: dict[str, Any] = {}
    if raw.get("base_model"):
        flat["model"] = raw["base_model"]
    if raw.get("project_name"):
        flat["project_name"] = raw["project_name"]
    if raw.get("log") is not None:
        flat["log"] = raw["log"]
    data = raw.get("data") or {}
    if not isinstance(data, dict):
        raise ConfigError(
            "AutoTrain 'data' must be a mapping with path, train_split, valid_split, column_mapping."
        )
    if data.get("path") is not None:
        flat["data_path"] = data["path"]
    if data.get("train_split"):
        flat["train_split"] = data["train_split"]
    if "valid_split" in data:
        flat["valid_split"] = data["valid_split"] if data["valid_split"] is not None else DEFAULT_VALID_SPLIT
    mapping = data.get("column_mapping") or {}
    for key in ("image_column", "target_column"):
        if mapping.get(key):
            flat[key] = mapping[key]
    params = raw.get("params") or {}
    if not isinstance(params, dict):
        raise ConfigError("AutoTrain 'params' must be a mapping of parameter: value.")
    flat.update(params)
    return flat


def load_train_config(path: str | Path, **overrides: Any) -> TrainConfig:
    """Read a training config file: an AutoTrain image-classification YAML or flat sortsight keys.

    ``overrides`` (e.g. from CLI flags) win over the file. Unknown keys raise a ``ConfigError``
    naming the closest valid one.

    Example:
        >>> # autotrain.yml: task: image_classification / data: {path: photos} / params: {epochs: 3}
        >>> # load_train_config("autotrain.yml").epochs  -> 3
    """
    raw = read_config_file(path)
    is_autotrain = any(k in raw for k in ("task", "base_model", "params", "data", "hub", "backend"))
    flat = _autotrain_to_flat(raw) if is_autotrain else dict(raw)
    flat.update({k: v for k, v in overrides.items() if v is not None})
    if flat.get("data_path") is not None:
        data_path = Path(str(flat["data_path"])).expanduser()
        if not data_path.is_absolute() and not data_path.exists():
            beside = Path(path).parent / data_path
            if beside.exists():
                data_path = beside
        flat["data_path"] = str(data_path)
    return config_from_dict(TrainConfig, flat, what="training option")
