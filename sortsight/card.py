"""The model card: ``model/README.md`` with Hugging Face YAML metadata and a plain-language body.

A curator who receives a model folder should learn from this page what it sorts, from which
images it learnt, how well it did on held-out images, how it was trained, and where it is likely
to be wrong.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["model_card", "tag_model_card"]


def _yaml_str(value: str) -> str:
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _pct(value: Any) -> str:
    return f"{100 * float(value):.1f} %" if isinstance(value, (int, float)) else "n/a"



def _front_matter(
    *,
    tags: list[str],
    name: str,
    task: str,
    fingerprint: str,
    metrics: Mapping[str, float],
    shown: tuple[tuple[str, str, str], ...],
) -> list[str]:
    """The card's YAML header (the Hub's model-index); ``shown``: (metric key, type, name) rows."""
    yaml = ["---", "library_name: transformers", "pipeline_tag: image-classification", "tags:"]
    yaml += [f"- {t}" for t in tags]
    yaml += ["metrics:", *dict.fromkeys(f"- {kind}" for _, kind, _ in shown)]
    yaml += [
        "model-index:",
        f"- name: {_yaml_str(name)}",
        "  results:",
        "  - task:",
        "      type: image-classification",
        f"      name: {task}",
        "    dataset:",
        f"      name: {_yaml_str('local collection ' + fingerprint)}",
        "      type: imagefolder",
        "      split: validation",
        "    metrics:",
    ]
    for key, kind, label in shown:
        if metrics.get(key) is not None:
            yaml += [f"    - type: {kind}", f"      value: {float(metrics[key]):.4f}", f"      name: {label}"]
    yaml.append("---")
    return yaml

def model_card(
    *,
    model_name: str,
    labels: Sequence[str],
    counts: Mapping[str, Mapping[str, int]],
    metrics: Mapping[str, float],
    head_metrics: Mapping[str, float] | None = None,
    chosen: str = "finetune",
    parameters: Mapping[str, Any] | None = None,
    image_size: int = 224,
    dataset_fingerprint: str = "",
    version: str = "",
    refit: Mapping[str, Any] | None = None,
    test_metrics: Mapping[str, float] | None = None,
    pretrained: bool = True,
) -> str:
    """Render the model card text.

    Args:
        model_name: the base model (e.g. ``efficientnet_lite0``).
        labels: class names in output order.
        counts: ``{class: {split: n}}`` images per class and split.
        metrics: validation metrics of the kept model (``accuracy``, ``f1_macro``, ``loss``).
        head_metrics: validation metrics of the logistic-regression head, for comparison.
        chosen: ``"head"`` or ``"finetune"``: which of the two was kept.
        parameters: the training options worth showing (lr, epochs, batch_size, ...).
        image_size: the input side in pixels.
        dataset_fingerprint: the dataset's hash (``ImageDataset.fingerprint()``).
        version: sortsight's version.
        refit: ``{"applied": bool, "items": n, "what": ...}`` when the final head was fitted again
            on train + validation (then the validation figures are from before that refit).
        test_metrics: metrics on the held-out test split, when there is one (the headline).
        pretrained: False when the network was trained from random weights (``--no-pretrained``).

    Returns:
        Markdown with a YAML front-matter block (``library_name``, ``tags``, ``metrics``, ``model-index``).

    Example:
        >>> card = model_card(model_name="efficientnet_lite0", labels=["a", "b"], counts={},
        ...                   metrics={"accuracy": 1.0})
        >>> card.startswith("---")
        True
    """
    parameters = dict(parameters or {})
    acc, f1 = metrics.get("accuracy"), metrics.get("f1_macro")
    yaml = _front_matter(
        tags=["image-classification", "timm", "sortsight", model_name.replace("/", "-")],
        name=model_name + "-sortsight",
        task="Image Classification",
        fingerprint=dataset_fingerprint,
        metrics=metrics,
        shown=(("accuracy", "accuracy", "Accuracy"), ("f1_macro", "f1", "F1 (macro)")),
    )

    splits = sorted(
        {s for row in counts.values() for s in row},
        key=lambda s: ["train", "validation", "test"].index(s) if s in ("train", "validation", "test") else 9,
    )
    table = ["| label | " + " | ".join(splits or ["images"]) + " |", "|---|" + "---|" * max(1, len(splits))]
    for label in labels:
        row = counts.get(label, {})
        table.append(f"| {label} | " + " | ".join(str(row.get(s, 0)) for s in splits) + " |")
    params = "\n".join(f"- `{k}`: {v}" for k, v in parameters.items())
    how = {
        "finetune": "the last stages of the network were fine-tuned on top of a logistic-regression "
        "head, and scored better on the validation images than that head alone",
        "wise": "the last stages were fine-tuned on top of a logistic-regression head, and the kept "
        "weights are a mix of the two (WiSE-FT), the mix that scored best on the validation images",
    }.get(
        chosen,
        "a logistic-regression head on the frozen pretrained network's features scored best on the "
        "validation images, so the pretrained layers were kept unchanged",
    )
    if not pretrained:
        how = "the whole network was trained from random weights (no pretraining, `pretrained: false`), " + (
            "and the trained weights scored best on the validation images"
            if chosen in ("finetune", "wise")
            else "but a logistic-regression head on its untrained features scored better on the "
            "validation images than any trained epoch"
        )
    side_by_side = "+" in model_name
    if side_by_side:
        how = (
            "the backbones ran side by side, each at its own input size, and a logistic-regression head "
            "on their concatenated features is the model (the pretrained layers are unchanged)"
        )
    start = "the pretrained" if pretrained else "a randomly initialised"
    refit_line = ""
    if refit and refit.get("applied"):
        how += (
            f"; the final head was then fitted again on all {refit.get('items')} training and validation "
            "images with the settings chosen on validation"
        )
        refit_line = (
            "\nThese validation figures were measured before that refit (on images it then learnt from).\n"
        )
    test_section = ""
    if test_metrics:
        test_section = (
            "\n## Test results\n\nOn the held-out test images (never used to train or choose settings):\n\n"
            f"| metric | value |\n|---|---|\n| accuracy | {_pct(test_metrics.get('accuracy'))} |\n"
            f"| macro F1 | {_pct(test_metrics.get('f1_macro'))} |\n"
        )
    head_line = ""
    if head_metrics:
        head_line = (
            "\nFor comparison, the logistic-regression head alone: "
            f"accuracy {_pct(head_metrics.get('accuracy'))}, "
            f"macro F1 {_pct(head_metrics.get('f1_macro'))}.\n"
        )
    remote, remote_note = "", ""
    if side_by_side:
        remote = ", trust_remote_code=True"
        remote_note = (
            "\nThe two backbones side by side are defined in `side_by_side.py`, in this folder (timm and "
            "torch only); `trust_remote_code=True` lets transformers run that file. Read it first if the "
            "folder came from someone else.\n"
        )
    body = f"""
# {model_name} {"fine-tuned" if chosen in ("finetune", "wise") else "trained"} with sortsight

An image classifier that sorts images into {len(labels)} classes: {", ".join(f"`{x}`" for x in labels)}.
It was trained with [sortsight](https://github.com/sortsight/sortsight) {version} from
{start} `{model_name}` at {image_size}×{image_size} pixels; {how}.

## Use

```python
from transformers import pipeline
classify = pipeline("image-classification", model="path/to/this/folder"{remote})
classify("image.jpg")
```
{remote_note}
or `sortsight predict path/to/this/folder images/ --sort-into sorted/`.

## Validation results

| metric | value |
|---|---|
| accuracy | {_pct(acc)} |
| macro F1 | {_pct(f1)} |
| loss | {metrics.get("loss", float("nan")):.4f} |
{refit_line}{head_line}{test_section}
## Training data

Images per label and split (dataset fingerprint `{dataset_fingerprint}`):

{chr(10).join(table)}

## Training parameters

{params}

## Intended use

Sorting, triaging and tagging images of a collection like the one it was trained on, with a person
checking the uncertain cases (use a score threshold and review what falls below it).

## Limitations

- It only knows the labels above: every image gets one of them, even when none fits.
- Scores are measured on a held-out part of the same collection; images from another source,
  scanner, period or photographer may be classified worse. Re-check on a sample before relying on it.
- Small classes (a few dozen images) give unstable results; the validation figures above come
  from a small number of images and carry a wide margin of error.

## Bias

Collections reflect who and what was collected, photographed and catalogued, and the labels reflect
past cataloguing decisions. The model learns those patterns, including gaps and historical bias in
what was kept and how it was described. Do not use it to make decisions about people, and review
its output where errors would misrepresent a community or an item.
"""
    return "\n".join(yaml) + "\n" + body


def tag_model_card(
    *,
    model_name: str,
    tags: Sequence[str],
    counts: Mapping[str, Mapping[str, int]],
    metrics: Mapping[str, float],
    per_tag: Sequence[Mapping[str, Any]],
    parameters: Mapping[str, Any] | None = None,
    image_size: int = 224,
    dataset_fingerprint: str = "",
    excluded: Sequence[str] = (),
    version: str = "",
) -> str:
    """The model card of a multi-label tagger: tags, their thresholds and per-tag validation metrics.

    Example:
        >>> card = tag_model_card(model_name="efficientnet_lite0", tags=["a", "b"], counts={},
        ...                       metrics={"f1_micro": 0.9}, per_tag=[])
        >>> "multi_label_classification" in card
        True
    """
    yaml = _front_matter(
        tags=["image-classification", "multi-label-classification", "timm", "sortsight"],
        name=model_name + "-sortsight-tags",
        task="Multi-label image classification",
        fingerprint=dataset_fingerprint,
        metrics=metrics,
        shown=(("f1_micro", "f1", "F1 (micro)"), ("map", "map", "mAP")),
    )
    rows = [
        "| tag | threshold | precision | recall | F1 | AP | validation images | training images |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in per_tag:
        ap = "n/a" if r.get("ap") is None else f"{float(r['ap']):.3f}"
        n_train = counts.get(str(r["tag"]), {}).get("train", 0)
        rows.append(
            f"| {r['tag']} | {float(r['threshold']):.3f} | {float(r['precision']):.3f} "
            f"| {float(r['recall']):.3f} | {float(r['f1']):.3f} | {ap} | {r['support']} | {n_train} |"
        )
    params = "\n".join(f"- `{k}`: {v}" for k, v in (parameters or {}).items())
    left_out = f"\nLeft out of training: {', '.join(excluded)}.\n" if excluded else ""
    body = f"""
# {model_name} tagger made with sortsight

A multi-label image tagger: each image gets every tag whose score reaches that tag's threshold,
from {len(tags)} tags: {", ".join(f"`{t}`" for t in tags)}. It was trained with
[sortsight](https://github.com/sortsight/sortsight) {version} from the pretrained `{model_name}` at
{image_size}×{image_size} pixels: a logistic regression per tag on the frozen network's features
(one sigmoid output per tag; `config.json` has `problem_type: multi_label_classification`).
{left_out}
## Use

```python
from transformers import pipeline
tag = pipeline("image-classification", model="path/to/this/folder", function_to_apply="sigmoid", top_k=None)
scores = tag("image.jpg")            # every tag with its score
```

A tag applies when its score reaches its threshold (table below; also in `sortsight_model.json`).
`sortsight predict path/to/this/folder images/` applies them and writes a `tags` column.

## Validation results

| metric | value |
|---|---|
| micro F1 | {_pct(metrics.get("f1_micro"))} |
| macro F1 | {_pct(metrics.get("f1_macro"))} |
| samples F1 | {_pct(metrics.get("f1_samples"))} |
| mAP | {_pct(metrics.get("map"))} |
| Hamming loss | {float(metrics.get("hamming_loss", float("nan"))):.4f} |
| all tags right | {_pct(metrics.get("subset_accuracy"))} |

## Tags, thresholds and per-tag results

{chr(10).join(rows)}

## Training parameters

{params}

## Limitations

- It only knows the tags above; a missing tag means "score below threshold", not "certainly absent".
- Rare tags (a few dozen images) have unstable thresholds and scores; the validation figures come
  from a small number of images. Re-check on a sample of your own before relying on it.

## Bias

Tags reflect past cataloguing decisions, including their gaps and historical bias. Do not use the
model to make decisions about people; review its output where errors would misrepresent anyone.
"""
    return "\n".join(yaml) + "\n" + body
