"""Split a timm classifier into a frozen *trunk* and a trainable *tail*.

Why: on a CPU, most of EfficientNet's training cost sits in the early high-resolution blocks,
and those are the layers that change least when fine-tuning on a small collection. We run the
trunk once per image view (inference, no gradients), keep its activations, and train only the
tail (the last stages, the final 1x1 conv and the classifier) from them. Measured here on
EfficientNet-Lite0 at 224 px, batch 8: a full training step 1.02 s, a step of the tail from
stage 5 on 0.43 s fp32 / 0.17 s bf16 (AVX512_BF16).

For models without a known split point the trunk only normalises pixels and the tail is the
whole network (an ordinary full fine-tune on the cached pixels).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from sortsight.models import is_side_by_side_model

__all__ = ["Split", "split_model"]


class _Normalize(nn.Module):
    """uint8 ``(B, 3, H, W)`` → normalised float, the model's mean/std (the same arithmetic as
    :func:`sortsight.geometry.normalize`, so training sees exactly what predict feeds)."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.float() / 255.0 - self.mean) / self.std


class _EfficientNetTrunk(nn.Module):
    def __init__(self, model: Any, start: int, normalize: _Normalize) -> None:
        super().__init__()
        self.normalize = normalize
        self.stem = nn.Sequential(model.conv_stem, model.bn1)
        self.blocks = nn.Sequential(*model.blocks[:start])

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) uint8 -> (B, C, h, w)
        return self.blocks(self.stem(self.normalize(x)))


class _EfficientNetTail(nn.Module):
    def __init__(self, model: Any, start: int) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*model.blocks[start:])
        self.conv_head = model.conv_head
        self.bn2 = model.bn2
        self.global_pool = model.global_pool
        self.classifier = model.classifier

    def features(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, h, w) -> (B, F)
        x = self.bn2(self.conv_head(self.blocks(x)))
        return self.global_pool(x).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, h, w) -> (B, classes)
        return self.classifier(self.features(x))

    def param_groups(self) -> list[list[nn.Parameter]]:
        """Layer groups from early to late, for discriminative learning rates."""
        groups = [list(b.parameters()) for b in self.blocks]
        groups.append([*self.conv_head.parameters(), *self.bn2.parameters()])
        groups.append(list(self.classifier.parameters()))
        return [g for g in groups if g]


class _WholeTail(nn.Module):
    """Any timm model: the tail is the whole network (full fine-tune)."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_head(self.model.forward_features(x), pre_logits=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.get_classifier()(self.features(x))

    def param_groups(self) -> list[list[nn.Parameter]]:
        head = list(self.model.get_classifier().parameters())
        head_ids = {id(p) for p in head}
        body = [p for p in self.model.parameters() if id(p) not in head_ids]
        return [g for g in (body, head) if g]


class _HFTail(nn.Module):
    """A transformers image-classification model (ViT, ConvNeXt, ...): the whole network is trained.

    Its pooled features are whatever enters its final ``nn.Linear`` classifier (caught with a
    forward pre-hook), so the logistic-regression head can be folded into that layer.
    """

    def __init__(self, hf_model: Any, classifier: nn.Linear) -> None:
        super().__init__()
        self.model = hf_model
        self.linear = classifier

    def features(self, x: torch.Tensor) -> torch.Tensor:
        caught: list[torch.Tensor] = []
        hook = self.linear.register_forward_pre_hook(lambda _m, args: caught.append(args[0]))
        try:
            self.model(pixel_values=x)
        finally:
            hook.remove()
        return caught[-1].flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=x).logits  # type: ignore[no-any-return]

    def param_groups(self) -> list[list[nn.Parameter]]:
        head_ids = {id(p) for p in self.linear.parameters()}
        body = [p for p in self.model.parameters() if id(p) not in head_ids]
        return [g for g in (body, list(self.linear.parameters())) if g]


class _FeaturesTrunk(nn.Module):
    """Backbones side by side: the frozen trunk is everything up to the concatenated features."""

    def __init__(self, model: Any, normalize: _Normalize) -> None:
        super().__init__()
        self.normalize = normalize
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) uint8 -> (B, F)
        return self.model.forward_features(self.normalize(x))  # type: ignore[no-any-return]


class _LinearTail(nn.Module):
    """Only the final linear layer (kind ``"linear"``: the head is the whole model to train)."""

    def __init__(self, classifier: nn.Linear) -> None:
        super().__init__()
        self.classifier = classifier

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return x.float()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))

    def param_groups(self) -> list[list[nn.Parameter]]:
        return [list(self.classifier.parameters())]


def _hf_classifier(hf_model: Any) -> nn.Linear | None:
    """The final ``nn.Linear`` of a transformers classification model's ``classifier``, if any."""
    head = getattr(hf_model, "classifier", None)
    if isinstance(head, nn.Linear):
        return head
    if isinstance(head, nn.Module):
        linears = [m for m in head.modules() if isinstance(m, nn.Linear)]
        return linears[-1] if linears else None
    return None


class Split:
    """A model cut in two: ``tail(trunk(uint8 pixels))`` gives the model's logits.

    Attributes:
        trunk: frozen, eval-mode; its outputs are cached.
        tail: trained; has ``features(acts)`` (pooled, pre-logits) and ``param_groups()``.
        classifier: the final ``nn.Linear`` (initialised from the logistic-regression head).
        kind: ``"partial"`` (last stages trained), ``"full"`` (everything trained),
            ``"scratch"`` (everything trained from random weights: BatchNorm learns its statistics)
            or ``"linear"`` (backbones side by side: only the final layer, no fine-tuning).
    """

    trunk: Any
    tail: Any

    def __init__(self, trunk: nn.Module, tail: nn.Module, classifier: nn.Linear, kind: str) -> None:
        self.trunk = trunk.eval().requires_grad_(False)
        self.tail = tail
        self.classifier = classifier
        self.kind = kind

    @property
    def fine_tunes(self) -> bool:
        """False for backbones side by side: their head is the whole model."""
        return self.kind != "linear"


def split_model(
    model: Any,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    *,
    tune_stages: int = 2,
    scratch: bool = False,
) -> Split:
    """Cut ``model`` so that only its last ``tune_stages`` stages (+ head) are trained.

    With ``scratch`` (random weights: nothing worth freezing) the whole network is the tail, of
    kind ``"scratch"``.

    Raises:
        TypeError: the model lacks timm's ``forward_features``/``forward_head``/``get_classifier``.
    """
    normalize = _Normalize(mean, std)
    if is_side_by_side_model(model):
        if scratch:
            raise TypeError("backbones side by side are only used with their pretrained weights")
        return Split(
            _FeaturesTrunk(model, normalize), _LinearTail(model.classifier), model.classifier, "linear"
        )
    if scratch:
        whole = split_model(model, mean, std, tune_stages=len(getattr(model, "blocks", ())) + 1)
        return Split(whole.trunk, whole.tail, whole.classifier, "scratch")
    is_effnet = all(
        hasattr(model, a) for a in ("conv_stem", "bn1", "blocks", "conv_head", "bn2", "classifier")
    )
    if is_effnet and isinstance(model.classifier, nn.Linear) and len(model.blocks) > tune_stages:
        start = len(model.blocks) - tune_stages
        return Split(
            _EfficientNetTrunk(model, start, normalize),
            _EfficientNetTail(model, start),
            model.classifier,
            "partial",
        )
    inner = getattr(model, "inner", None)  # a transformers model wrapped by models.create_model
    if inner is not None and hasattr(inner, "save_pretrained"):
        linear = _hf_classifier(inner)
        if linear is None:
            raise TypeError("the transformers model has no nn.Linear classifier")
        return Split(normalize, _HFTail(inner, linear), linear, "full")
    for attr in ("forward_features", "forward_head", "get_classifier"):
        if not hasattr(model, attr):
            raise TypeError(f"model has no {attr}()")
    classifier = model.get_classifier()
    if not isinstance(classifier, nn.Linear):
        raise TypeError("model's classifier is not a single nn.Linear")
    return Split(normalize, _WholeTail(model), classifier, "full")
