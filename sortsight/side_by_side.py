"""Two timm backbones side by side: their pooled features concatenated, then one linear layer.

Why: on the four benchmark sets (``benchmarks/concat_features.py``), sortsight's head on Lite0 +
Lite2 features scored +3.5 / −0.3 / +5.3 / +6.3 points over the Lite0 probe, more than any
fine-tuning recipe measured, for about 2.8× Lite0's feature time. Each part sees the image at its
own input side (the input is resized inside the network), so the features are those each
backbone was pretrained for.

This file is self-contained (torch, timm, transformers only): a model folder holding such a
network carries a copy of it, written by ``save_pretrained`` through transformers' custom-code
mechanism, so ``pipeline("image-classification", model=folder, trust_remote_code=True)`` loads the
folder offline with no sortsight installed. sortsight itself loads it with these same classes.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import ImageClassifierOutput

MODEL_TYPE = "sortsight_side_by_side"


class SideBySide(nn.Module):
    """Normalised ``(B, 3, S, S)`` images → ``(B, num_classes)`` logits from the parts' features."""

    def __init__(self, parts: list[nn.Module], sizes: list[int], num_classes: int) -> None:
        super().__init__()
        self.parts = nn.ModuleList(parts)
        self.sizes = [int(s) for s in sizes]
        self.num_features: int = sum(int(getattr(p, "num_features")) for p in parts)  # noqa: B009
        self.classifier = nn.Linear(self.num_features, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, S, S) -> (B, F)
        feats = []
        for part, size in zip(self.parts, self.sizes, strict=True):
            if tuple(x.shape[-2:]) != (size, size):
                y = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
            else:
                y = x
            feats.append(part(y))  # each part was built with num_classes=0: pooled features
        return torch.cat(feats, 1)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return x if pre_logits else self.classifier(x)

    def get_classifier(self) -> nn.Linear:
        return self.classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.forward_features(x))


def build_side_by_side(archs: list[str], sizes: list[int], num_classes: int) -> SideBySide:
    """The network with untrained weights (timm architectures, no download)."""
    import timm

    return SideBySide(
        [timm.create_model(a, pretrained=False, num_classes=0) for a in archs], sizes, num_classes
    )


class SideBySideConfig(PretrainedConfig):  # type: ignore[misc]
    """``parts``: the timm architectures; ``sizes``: the input side each part sees."""

    model_type = MODEL_TYPE

    def __init__(self, parts: list[str] | None = None, sizes: list[int] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.parts = list(parts or [])
        self.sizes = [int(s) for s in (sizes or [])]


class SideBySideForImageClassification(PreTrainedModel):  # type: ignore[misc]
    """The transformers face of :class:`SideBySide` (``pixel_values`` → ``logits``)."""

    config_class = SideBySideConfig
    main_input_name = "pixel_values"
    base_model_prefix = "model"

    def __init__(self, config: SideBySideConfig) -> None:
        super().__init__(config)
        self.model = build_side_by_side(config.parts, config.sizes, int(config.num_labels or 0))
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        """The weights come from the folder; nothing to initialise."""

    def forward(self, pixel_values: torch.Tensor, labels: Any = None, **kwargs: Any) -> ImageClassifierOutput:
        return ImageClassifierOutput(logits=self.model(pixel_values))
