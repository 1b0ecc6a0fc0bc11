"""Labelling a pile with the model's help: name classes, label a few images, let a head suggest the rest.

A :class:`LabelSession` works over an index (:mod:`sortsight.index`). Every few labels it
refits a logistic-regression head on the frozen features of the labelled images (tens of
milliseconds for hundreds of labels), then offers the most informative images next:

- ``mode="uncertain"`` (uncertainty sampling): the unlabelled images whose two best classes are
  closest (smallest margin). Before two classes have labels, a diverse spread of the pile
  (k-means++ seeds) is shown instead.
- ``mode="likely"``: the unlabelled images most likely to be one class, for confirming or
  rejecting in bulk ("most likely *postcard*"). A rejected image is not offered for that class again.

State lives in a folder and survives restarts: ``session.json`` (index, classes, rejections,
history) and ``labels.csv`` (``image,label`` with absolute paths — the labels file format
``sortsight train`` reads, see :mod:`sortsight.labelfile`), both written atomically after every
change. :meth:`LabelSession.export` writes the labels elsewhere; :meth:`LabelSession.sort_into`
copies or moves the labelled images into class folders, logged in ``sortsight-moves.jsonl`` so
``sortsight undo`` puts them back.
"""

from __future__ import annotations

import csv
import io
import json
import os
import time
import unicodedata
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sortsight.errors import DataError
from sortsight.fileops import ActionLog, atomic_write_text, place_file
from sortsight.index import EmbeddingIndex, load_index

__all__ = ["MODES", "LabelSession", "Suggestion"]

MODES = ("uncertain", "likely")
_STATE, _LABELS = "session.json", "labels.csv"


@dataclass(frozen=True)
class Suggestion:
    """An image to look at next, the head's best guess for it, and that guess's probability."""

    position: int
    path: Path
    guess: str
    score: float

    def to_dict(self, root: Path) -> dict[str, Any]:
        return {
            "position": self.position,
            "path": str(self.path),
            "rel": self.path.relative_to(root).as_posix(),
            "guess": self.guess,
            "score": round(self.score, 4),
        }


def _clean_class(name: str) -> str:
    label = unicodedata.normalize("NFC", str(name)).strip()
    if not label or len(label) > 100 or any(c in label for c in '/\\\n\r\t:*?"<>|') or label in (".", ".."):
        raise DataError(
            f"'{name}' cannot be a class name: use 1 to 100 characters without / \\ : * ? \" < > |."
        )
    return label


def _one_thread() -> Any:
    """One BLAS thread: on a busy 2-core laptop, threads made the head's small fit ten times slower."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)  # type: ignore[no-any-return]


def _reducer(features: np.ndarray, dims: int = 128) -> Any:
    """PCA on the first ``dims`` principal axes of L2-normalised features (a faster head), or None."""
    from sklearn.decomposition import PCA

    x = _unit(features)
    k = min(dims, x.shape[0], x.shape[1])
    if k < 2:
        return None
    rng = np.random.default_rng(0)
    sample = x if len(x) <= 20_000 else x[rng.choice(len(x), 20_000, replace=False)]
    return PCA(n_components=k, random_state=0).fit(sample)


class LabelSession:
    """Labels for the images of an index, and a head refitted on them.

    Example:
        >>> s = LabelSession("pile.labelling", index="pile.index")   # doctest: +SKIP
        >>> s.add_class("postcard"); s.add_class("letter")           # doctest: +SKIP
        >>> s.label(s.next(5)[0].position, "letter")                 # doctest: +SKIP
    """

    def __init__(
        self, folder: str | os.PathLike, *, index: str | os.PathLike | None = None, refit_every: int = 3
    ):
        self.folder = Path(folder).expanduser().absolute()
        self.refit_every = max(1, int(refit_every))
        state = self._read_state()
        if index is not None and state.get("index") and Path(state["index"]) != Path(index).absolute():
            raise DataError(
                f"The labelling folder '{self.folder}' belongs to the index '{state['index']}'; "
                "use another folder for another index."
            )
        where = index if index is not None else state.get("index")
        if where is None:
            raise DataError(f"'{self.folder}' holds no labelling session yet; give the index to label.")
        self.index: EmbeddingIndex = load_index(where)
        if state.get("backbone") and state["backbone"] != self.index.backbone_id:
            raise DataError(
                f"This labelling session was made with backbone {state['backbone']}, but the index now holds "
                f"{self.index.backbone_id}; start a new session folder."
            )
        self.classes: list[str] = list(state.get("classes", []))
        self.rejected: dict[str, set[int]] = {}
        self.history: list[dict[str, Any]] = list(state.get("history", []))
        self.labels: dict[int, str] = {}
        self._load_labels(state.get("rejected", {}))
        vectors = self.index.vectors()  # (N, D)
        self._pca = _reducer(vectors)
        self.features = self._project(vectors)  # (N, <=128)
        self._head: Any = None
        self.probs: np.ndarray | None = None  # (N, C) in ``self.fitted_classes`` order
        self.fitted_classes: list[str] = []
        self.fit_seconds = 0.0
        self._since_fit = 0
        self.refit()
        self._save()

    def _project(self, vectors: np.ndarray) -> np.ndarray:
        x = _unit(np.asarray(vectors, dtype=np.float32))
        return (self._pca.transform(x) if self._pca is not None else x).astype(np.float32)  # type: ignore[no-any-return]

    # ------------------------------------------------------------------------- state
    def _read_state(self) -> dict[str, Any]:
        try:
            data = json.loads((self.folder / _STATE).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, json.JSONDecodeError) as exc:
            raise DataError(f"'{self.folder / _STATE}' is damaged; move it away to start again.") from exc
        return data if isinstance(data, dict) else {}

    def _load_labels(self, rejected: dict[str, list[str]]) -> None:
        labels_file = self.folder / _LABELS
        if labels_file.is_file():
            with open(labels_file, encoding="utf-8", newline="") as fh:
                for row in csv.DictReader(fh):
                    pos = self.index.position(row.get("image", ""))
                    if pos is not None and row.get("label"):
                        self.labels[pos] = row["label"]
                        if row["label"] not in self.classes:
                            self.classes.append(row["label"])
        for label, paths in rejected.items():
            found = {self.index.position(p) for p in paths}
            self.rejected[label] = {p for p in found if p is not None}

    def _labels_csv(self) -> str:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["image", "label"])
        for pos in sorted(self.labels):
            writer.writerow([str(self.index.paths[pos]), self.labels[pos]])
        return buffer.getvalue()

    def _save(self) -> None:
        paths = self.index.relative_paths
        state = {
            "index": str(self.index.folder),
            "backbone": self.index.backbone_id,
            "classes": self.classes,
            "rejected": {k: [paths[p] for p in sorted(v)] for k, v in self.rejected.items() if v},
            "history": self.history[-1000:],
            "updated": time.time(),
        }
        atomic_write_text(self.folder / _LABELS, self._labels_csv())
        atomic_write_text(self.folder / _STATE, json.dumps(state, indent=1, ensure_ascii=False))

    # ------------------------------------------------------------------------- labelling
    def add_class(self, name: str) -> str:
        """Add a class name (kept in the order given); adding an existing one does nothing."""
        label = _clean_class(name)
        if label not in self.classes:
            self.classes.append(label)
            self._save()
        return label

    def _position(self, item: int | str | os.PathLike) -> int:
        pos = item if isinstance(item, int) else self.index.position(item)
        if pos is None or not 0 <= pos < len(self.index):
            raise DataError(f"'{item}' is not an image of this index. Pick an image of the pile.")
        return pos

    def label(self, items: int | str | os.PathLike | list[Any], label: str) -> int:
        """Give ``label`` to one image or several (positions or paths); return how many changed.

        Each label also records whether the head's guess was right, so :meth:`stats` can tell
        how good the suggestions have become.
        """
        name = self.add_class(label)
        changed = 0
        for item in items if isinstance(items, list) else [items]:
            pos = self._position(item)
            guess = self.guess(pos)
            if self.labels.get(pos) != name:
                self.labels[pos] = name
                changed += 1
                self.history.append({"t": time.time(), "guess": guess, "label": name, "n": len(self.labels)})
        self._since_fit += changed
        if self._since_fit >= self.refit_every:
            self.refit()
        self._save()
        return changed

    def unlabel(self, item: int | str | os.PathLike) -> None:
        """Forget the label of one image (it becomes a candidate again)."""
        self.labels.pop(self._position(item), None)
        self._save()

    def reject(self, item: int | str | os.PathLike, label: str) -> None:
        """Say an image is *not* ``label`` (it is no longer offered as "most likely ``label``")."""
        pos = self._position(item)
        name = _clean_class(label)
        self.rejected.setdefault(name, set()).add(pos)
        self.history.append(
            {"t": time.time(), "guess": self.guess(pos), "label": f"not {name}", "n": len(self.labels)}
        )
        self._save()

    # ------------------------------------------------------------------------- the head
    def refit(self) -> float:
        """Fit the head on the labelled images' features; return the seconds it took (0 with < 2 classes)."""
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.linear_model import LogisticRegression

        self._since_fit = 0
        used = sorted({self.labels[p] for p in self.labels}, key=self.classes.index)
        if len(used) < 2:
            self.probs, self._head, self.fitted_classes = None, None, []
            return 0.0
        start = time.perf_counter()
        positions = np.fromiter(self.labels, dtype=np.int64)
        targets = np.array([used.index(self.labels[p]) for p in positions])
        head = LogisticRegression(C=10.0, max_iter=100, class_weight="balanced")
        with _one_thread(), warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # a rough head is enough to rank
            head.fit(self.features[positions], targets)
            self.probs = head.predict_proba(self.features)  # (N, C)
        self._head, self.fitted_classes = head, used
        self.fit_seconds = time.perf_counter() - start
        return self.fit_seconds

    def classify(self, vectors: np.ndarray) -> list[str]:
        """The head's class for backbone vectors ``(M, D)`` of other images (e.g. a held-out set).

        Raises:
            DataError: the head is not fitted yet (fewer than two classes labelled).
        """
        if self._head is None:
            raise DataError("Label images of at least two classes first.")
        with _one_thread():
            best = self._head.predict(self._project(vectors))
        return [self.fitted_classes[int(i)] for i in best]

    def guess(self, pos: int) -> str:
        """The head's best class for an image ("" before it can guess)."""
        if self.probs is None:
            return ""
        return self.fitted_classes[int(np.argmax(self.probs[pos]))]

    def _candidates(self) -> np.ndarray:
        mask = np.ones(len(self.index), dtype=bool)
        if self.labels:
            mask[np.fromiter(self.labels, dtype=np.int64)] = False
        return np.flatnonzero(mask)

    def _spread(self, candidates: np.ndarray, n: int) -> np.ndarray:
        """``n`` diverse images: each the farthest (of a sample) from the labelled ones and those picked."""
        rng = np.random.default_rng(0)
        pool = candidates if len(candidates) <= 5000 else rng.choice(candidates, 5000, replace=False)
        x = self.features[pool]  # (P, d)
        sq = (x**2).sum(axis=1)
        picked: list[int] = []
        if self.labels:
            done = self.features[np.fromiter(self.labels, dtype=np.int64)]  # (L, d)
            near = np.min(sq[:, None] + (done**2).sum(axis=1)[None, :] - 2 * x @ done.T, axis=1)
        else:  # start with the image nearest the centre of the pile
            picked.append(int(np.argmin(((x - x.mean(axis=0)) ** 2).sum(axis=1))))
            near = ((x - x[picked[0]]) ** 2).sum(axis=1)
        while len(picked) < min(n, len(pool)):
            i = int(np.argmax(near))
            picked.append(i)
            near = np.minimum(near, ((x - x[i]) ** 2).sum(axis=1))
        return pool[np.array(picked, dtype=np.int64)]  # type: ignore[no-any-return]

    def next(self, n: int = 12, *, mode: str = "uncertain", target: str | None = None) -> list[Suggestion]:
        """The ``n`` images to label next (see the module docstring for the modes).

        Raises:
            DataError: unknown mode, or ``likely`` without a fitted head or with an unknown class.
        """
        if mode not in MODES:
            raise DataError(f"Unknown mode '{mode}'; choose one of: {', '.join(MODES)}.")
        candidates = self._candidates()
        if not len(candidates):
            return []
        if mode == "likely":
            if self.probs is None or target not in self.fitted_classes:
                raise DataError(
                    f"'Most likely {target}' needs labelled images of '{target}' and of another class first."
                )
            assert target is not None
            skip = self.rejected.get(target, set())
            candidates = np.array([c for c in candidates if int(c) not in skip], dtype=np.int64)
            if not len(candidates):
                return []
            score = self.probs[candidates, self.fitted_classes.index(target)]
            picked = candidates[np.argsort(-score, kind="stable")[:n]]
        elif self.probs is None:
            picked = self._spread(candidates, n)
        else:
            top2 = np.sort(self.probs[candidates], axis=1)[:, -2:]
            margin = top2[:, 1] - top2[:, 0]
            picked = candidates[np.argsort(margin, kind="stable")[:n]]
        return [self._suggestion(int(p)) for p in picked]

    def _suggestion(self, pos: int) -> Suggestion:
        path = self.index.paths[pos]
        if self.probs is None:
            return Suggestion(pos, path, "", 0.0)
        best = int(np.argmax(self.probs[pos]))
        return Suggestion(pos, path, self.fitted_classes[best], float(self.probs[pos, best]))

    def predictions(self) -> list[str]:
        """The head's class for every image of the index ("" before it can guess)."""
        if self.probs is None:
            return [""] * len(self.index)
        best = np.argmax(self.probs, axis=1)
        return [self.fitted_classes[int(i)] for i in best]

    def stats(self) -> dict[str, Any]:
        """Counts per class, and how often the head's guess was right over the last 10 labels."""
        counts = {c: 0 for c in self.classes}
        for label in self.labels.values():
            counts[label] = counts.get(label, 0) + 1
        guessed = [h for h in self.history if h.get("guess") and not str(h["label"]).startswith("not ")]
        recent = guessed[-10:]
        hits = sum(1 for h in recent if h["guess"] == h["label"])
        return {
            "labelled": len(self.labels),
            "total": len(self.index),
            "counts": counts,
            "recent_guesses": len(recent),
            "recent_hits": hits,
            "recent_accuracy": hits / len(recent) if recent else None,
            "fit_seconds": round(self.fit_seconds, 4),
            "classes": self.classes,
        }

    # ------------------------------------------------------------------------- output
    @property
    def labels_file(self) -> Path:
        """The session's own labels file (``image,label``), always up to date."""
        return self.folder / _LABELS

    def export(self, out: str | os.PathLike) -> Path:
        """Write the labels as a labels file (``image,label``, absolute paths) that ``sortsight train`` reads.

        Raises:
            DataError: nothing is labelled yet.
        """
        if not self.labels:
            raise DataError("No image is labelled yet. Label a few images first.")
        target = Path(out)
        atomic_write_text(target, self._labels_csv())
        return target

    def sort_into(
        self,
        dest: str | os.PathLike,
        *,
        move: bool = False,
        dry_run: bool = False,
        log: str | os.PathLike | None = None,
    ) -> Path:
        """Copy (or move) every labelled image into ``dest/<label>/``; return the moves log.

        Nothing is overwritten (a clash gets a suffix); every action is recorded in
        ``dest/sortsight-moves.jsonl``, so ``sortsight undo dest/sortsight-moves.jsonl`` reverts it.
        ``dest`` is then a class-folder dataset: ``sortsight train dest`` trains on it. ``log``
        names another log file.
        """
        if not self.labels:
            raise DataError("No image is labelled yet. Label a few images first.")
        root = Path(dest).expanduser().absolute()
        journal = ActionLog(Path(log) if log is not None else root / "sortsight-moves.jsonl")
        for pos in sorted(self.labels):
            src = self.index.paths[pos]
            if not src.is_file():
                continue
            placed = place_file(src, root / self.labels[pos], move=move, dry_run=dry_run)
            if not dry_run and placed.action != "identical":
                journal.record(placed.action, src, placed.destination, placed.sha256, label=self.labels[pos])
        return journal.path
