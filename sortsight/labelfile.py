"""Read a labels file: CSV, TSV, JSONL (or a JSON list) of image paths and labels.

Columns are found by name: the image column is ``image`` (AutoTrain), ``file`` (fastai's
``from_csv``), ``filename``, ``file_name`` (Hugging Face imagefolder) or ``path``; the label
column ``target`` (AutoTrain), ``label``, ``labels``, ``class`` or ``category``. Either can be
named explicitly. Paths are relative to the labels file's folder (absolute paths work too).
An optional ``split`` column (train/validation/test) or fastai's ``is_valid`` column keeps a
given split.

Example:
    >>> root, rows, skipped = read_labels_file("labels.csv")   # doctest: +SKIP
"""

from __future__ import annotations

import csv
import io
import json
import os
import unicodedata
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sortsight import images
from sortsight.errors import DataError, closest
from sortsight.fileops import atomic_write_text

__all__ = [
    "IMAGE_COLUMNS",
    "MixedSeparatorsError",
    "SPLITS",
    "SPLIT_ALIASES",
    "TAG_COLUMNS",
    "TARGET_COLUMNS",
    "check_tags",
    "pick_column",
    "read_labels_file",
    "read_tags_file",
    "separator_of",
    "split_cell",
    "tag_problem",
    "write_tags_file",
]

IMAGE_COLUMNS: tuple[str, ...] = ("image", "file", "filename", "file_name", "path", "image_path", "img")
TARGET_COLUMNS: tuple[str, ...] = ("target", "label", "labels", "class", "category")
_SUFFIXES = (".csv", ".tsv", ".txt", ".jsonl", ".ndjson", ".json")
_TRUE = {"1", "true", "yes", "y", "t"}

#: Split names, in display order.
SPLITS: tuple[str, ...] = ("train", "validation", "test")
#: Folder / column values accepted for each split.
SPLIT_ALIASES: dict[str, str] = {
    "train": "train",
    "training": "train",
    "validation": "validation",
    "valid": "validation",
    "val": "validation",
    "dev": "validation",
    "test": "test",
    "testing": "test",
}


def pick_column(
    columns: list[str], requested: str | None, defaults: tuple[str, ...], what: str, where: str, flag: str
) -> str:
    """The column to use: ``requested`` if it exists, else the first default present.

    Raises:
        DataError: the requested column does not exist (closest name suggested), or none of the
            defaults does.
    """
    if requested is not None:
        if requested in columns:
            return requested
        hint = closest(requested, columns)
        suggestion = f" Did you mean '{hint}'?" if hint else ""
        raise DataError(
            f"Column '{requested}' not found in {where} (columns: {', '.join(columns)}).{suggestion}"
        )
    lowered = {c.lower(): c for c in columns}
    for name in defaults:
        if name in lowered:
            return lowered[name]
    raise DataError(
        f"No {what} column in {where} (columns: {', '.join(columns)}); name it '{defaults[0]}' "
        f"or pass {flag} NAME."
    )


def read_rows(path: Path) -> tuple[list[str], list[dict[str, Any]]]:
    """The columns and rows of a table: CSV (``,`` or a spreadsheet's ``;``/tab), TSV, JSON Lines or
    a JSON list, UTF-8 or Excel's cp1252. Labels files, tags files and any other table of images
    (a ``predictions.csv`` too) are read here.

    Raises:
        DataError: the file is not text or not valid JSON.
    """
    suffix = path.suffix.lower()
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        try:  # Excel on Windows saves "CSV (Comma delimited)" as cp1252
            text = raw.decode("cp1252")
        except UnicodeDecodeError as exc:
            raise DataError(f"Labels file '{path}' is not UTF-8 text; save it as 'CSV UTF-8'.") from exc
    if suffix in (".jsonl", ".ndjson", ".json"):
        try:
            if suffix == ".json":
                loaded = json.loads(text)
                rows = loaded if isinstance(loaded, list) else []
            else:
                rows = [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError as exc:
            raise DataError(
                f"Labels file '{path}' is not valid JSON ({exc.msg}, line {exc.lineno})."
            ) from exc
        rows = [r for r in rows if isinstance(r, dict)]
        columns: list[str] = []
        for row in rows:
            columns += [k for k in row if k not in columns]
        return columns, rows
    delimiter = "\t" if suffix == ".tsv" else ","
    first = text.splitlines()[0] if text.strip() else ""
    if suffix != ".tsv" and first.count(";") > first.count(",") and first.count(";") > 0:
        delimiter = ";"  # spreadsheets in many locales export ';'
    elif suffix != ".tsv" and first.count("\t") > first.count(","):
        delimiter = "\t"
    reader = csv.DictReader(text.splitlines(), delimiter=delimiter)
    fieldnames = [f.strip() for f in (reader.fieldnames or [])]
    rows = [{(k or "").strip(): v for k, v in row.items()} for row in reader]
    return fieldnames, rows


def _split_of(row: dict[str, Any], split_col: str | None, valid_col: str | None) -> str:

    if split_col is not None:
        value = str(row.get(split_col) or "").strip().lower()
        if value and value not in SPLIT_ALIASES:
            raise DataError(
                f"Unknown split '{value}' in column '{split_col}'; use train, validation or test."
            )
        return SPLIT_ALIASES.get(value, "")
    if valid_col is not None:
        return "validation" if str(row.get(valid_col, "")).strip().lower() in _TRUE else "train"
    return ""


def _resolve(root: Path, name: str) -> Path | None:
    """The file a row names (relative to ``root`` or absolute; Windows separators accepted)."""
    for candidate in (name, name.replace("\\", "/")):
        file = Path(candidate).expanduser()
        file = file if file.is_absolute() else root / file
        if file.is_file():
            return file
    return None


def read_labels_file(
    path: str | os.PathLike, *, image_column: str | None = None, target_column: str | None = None
) -> tuple[Path, list[tuple[Path, str, str]], list[tuple[Path, str]]]:
    """Read ``(root, [(image path, label, split)], [(path, skip reason)])`` from a labels file.

    Raises:
        DataError: unknown file type, unknown column, no rows, or rows naming files that do not
            exist (the first few are shown).
    """
    path = Path(path)
    if path.suffix.lower() in (".zip", ".tar", ".gz", ".tgz", ".7z"):
        raise DataError(f"'{path}' is an archive; unpack it first and check the folder it holds.")
    if path.suffix.lower() not in _SUFFIXES:
        raise DataError(
            f"'{path}' is a file but not a labels file (.csv, .tsv, .jsonl) or parquet file; give a "
            "folder of class subfolders or a labels file."
        )
    columns, rows = read_rows(path)
    if not rows:
        raise DataError(f"Labels file '{path}' has no rows; it needs a header and one row per image.")
    where = f"'{path.name}'"
    image_col = pick_column(columns, image_column, IMAGE_COLUMNS, "image", where, "--image-column")
    target_col = pick_column(columns, target_column, TARGET_COLUMNS, "label", where, "--target-column")
    lowered = {c.lower(): c for c in columns}
    split_col = lowered.get("split")
    valid_col = lowered.get("is_valid") if split_col is None else None
    root = path.parent
    found: list[tuple[Path, str, str]] = []
    skipped: list[tuple[Path, str]] = []
    missing: list[str] = []
    labels_of: dict[Path, set[str]] = {}
    for row in rows:
        name = str(row.get(image_col) or "").strip()
        if not name:
            continue
        file = _resolve(root, name)
        value = row.get(target_col)
        if isinstance(value, (list, dict)):
            raise DataError(
                f"Column '{target_col}' of {where} holds several labels per image; train a tagger with "
                "--task multi_label, or give a column with one label per image (--target-column)."
            )
        label = unicodedata.normalize("NFC", str(value if value is not None else "").strip())
        if file is None:
            missing.append(name)
            continue
        if images.is_junk(file):
            continue
        if not label:
            skipped.append((file, "no label"))
            continue
        if file in labels_of:  # the same image twice would leak between splits
            labels_of[file].add(label)
            continue
        labels_of[file] = {label}
        found.append((file, label, _split_of(row, split_col, valid_col)))
    conflicts = {f: sorted(ls) for f, ls in labels_of.items() if len(ls) > 1}
    if conflicts:
        found = [row for row in found if row[0] not in conflicts]
        skipped += [(f, f"listed with different labels ({', '.join(ls)})") for f, ls in conflicts.items()]
    if missing:
        shown = ", ".join(missing[:3]) + (", …" if len(missing) > 3 else "")
        if all(m.lower().startswith(("http://", "https://")) for m in missing[:3]):
            raise DataError(
                f"{where} lists image URLs ({shown}), not files; download them first with "
                f"'sortsight fetch {path} --out DIR' (it reads columns 'url' and 'label'), then check DIR."
            )
        raise DataError(
            f"{where} names {len(missing)} file(s) that do not exist ({shown}); paths are read relative "
            f"to '{root}' — fix them or remove those rows."
        )
    return root, found, skipped


# --------------------------------------------------------------------------- multi-label

TAG_COLUMNS: tuple[str, ...] = ("labels", "tags", *TARGET_COLUMNS)
_BOOL = {"0": False, "1": True, "true": True, "false": False, "yes": True, "no": False, "": False}
_NOT_TAGS = {"split", "is_valid", "url", "id", "width", "height", "notes", "comment", "caption"}


def _nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text.strip())


def split_cell(value: Any, separator: str) -> list[str]:
    """The tags of one cell: a JSON list as it is, text split on ``separator`` (empty → none).

    Example:
        >>> split_cell("people| text |", "|")
        ['people', 'text']
    """
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        parts = [str(v) for v in value if v is not None]
    else:
        text = str(value)
        parts = text.split() if separator == " " else text.split(separator) if separator else [text]
    return list(dict.fromkeys(t for t in (_nfc(p) for p in parts) if t))


class MixedSeparatorsError(DataError):
    """A tag column whose cells use both '|' and ';': several tags per image, but which separator?"""


def separator_of(cells: Sequence[Any], separator: str, column: str) -> str:
    """The tag separator of a column's cells: ``separator`` unless it is ``auto``, else '|' or ';'."""
    if separator != "auto":
        return separator
    text = [str(c) for c in cells if isinstance(c, str)]
    uses = {s: sum(1 for c in text if s in c) for s in ("|", ";")}
    if uses["|"] and uses[";"]:
        raise MixedSeparatorsError(
            f"Column '{column}' mixes tag separators ({uses['|']} cells use '|', {uses[';']} use ';'); "
            "use one of them everywhere, or name the one to use with --tag-separator."
        )
    return "|" if uses["|"] else ";" if uses[";"] else ""


def _binary_columns(columns: list[str], rows: list[dict[str, Any]], skip: set[str]) -> list[str]:
    """Columns whose every value is 0/1 (true/false, yes/no or empty): one column per tag."""
    out = []
    for col in columns:
        if col in skip or col.lower() in _NOT_TAGS:
            continue
        values = {str(r.get(col) if r.get(col) is not None else "").strip().lower() for r in rows}
        if values <= set(_BOOL) and values & {"1", "true", "yes"}:
            out.append(col)
    return out


def read_tags_file(
    path: Path, image_column: str | None, target_column: str | None, separator: str = "auto"
) -> tuple[Path, list[tuple[Path, tuple[str, ...], str]], list[tuple[Path, str]], bool]:
    """``(root, [(path, tags, split)], skipped, evidently multi-label)`` of a multi-label labels file.

    The tag column is ``labels``, ``tags`` or a label column (or ``target_column``), split on
    ``separator`` (``"auto"``: ``|`` or ``;``; mixing both is an error); JSONL may hold a list.
    Without such a column, the 0/1 columns are the tags. An image on several rows gets the union
    of their tags. "Evidently multi-label": a separator, a list, 0/1 columns or a repeated image.

    Raises:
        DataError: no tag column, mixed separators, or rows naming files that do not exist.
    """
    columns, rows = read_rows(path)
    if not rows:
        raise DataError(f"Labels file '{path}' has no rows; it needs a header and one row per image.")
    where = f"'{path.name}'"
    image_col = pick_column(columns, image_column, IMAGE_COLUMNS, "image", where, "--image-column")
    lowered = {c.lower(): c for c in columns}
    split_col = lowered.get("split")
    valid_col = lowered.get("is_valid") if split_col is None else None
    tag_col = (
        None
        if target_column is None and not any(c in lowered for c in TAG_COLUMNS)
        else (pick_column(columns, target_column, TAG_COLUMNS, "labels", where, "--target-column"))
    )
    onehot = (
        [] if tag_col else _binary_columns(columns, rows, {image_col, *filter(None, (split_col, valid_col))})
    )
    if tag_col is None and not onehot:
        raise DataError(
            f"No tag column in {where} (columns: {', '.join(columns)}); name it 'labels' (tags "
            f"separated by '|'), or give one 0/1 column per tag."
        )
    sep = separator_of([r.get(tag_col) for r in rows], separator, tag_col) if tag_col else ""
    evident = bool(onehot) or sep != "" or any(isinstance(r.get(tag_col or ""), list) for r in rows)
    root = path.parent
    tags_of: dict[Path, list[str]] = {}
    split_of: dict[Path, str] = {}
    missing: list[str] = []
    for row in rows:
        name = str(row.get(image_col) or "").strip()
        file = _resolve(root, name) if name else None
        if file is None:
            if name:
                missing.append(name)
            continue
        if images.is_junk(file):
            continue
        if tag_col:
            tags = split_cell(row.get(tag_col), sep)
        else:
            tags = [_nfc(c) for c in onehot if _BOOL.get(str(row.get(c) or "").strip().lower(), False)]
        if file in tags_of:  # the same image on several rows: the union of its tags
            evident = evident or tags != tags_of[file]
            tags_of[file] += [t for t in tags if t not in tags_of[file]]
            continue
        tags_of[file] = tags
        split_of[file] = _split_of(row, split_col, valid_col)
    if missing:
        shown = ", ".join(missing[:3]) + (", …" if len(missing) > 3 else "")
        raise DataError(
            f"{where} names {len(missing)} file(s) that do not exist ({shown}); paths are read relative "
            f"to '{root}' — fix them or remove those rows."
        )
    found = [(f, tuple(t), split_of[f]) for f, t in tags_of.items()]
    return root, found, [], evident


# --------------------------------------------------------------------------- editing tags

#: Characters a tag name cannot hold when tags are written to a labels file (they separate tags).
TAG_FORBIDDEN = ("|", ";", "\n", "\r", "\t")


def tag_problem(tag: str) -> str | None:
    """Why ``tag`` cannot be written to a labels file, or None.

    Example:
        >>> tag_problem("people"), tag_problem("a|b")
        (None, "tag 'a|b' holds '|', which separates tags")
    """
    if not tag.strip():
        return "a tag cannot be empty"
    for char in TAG_FORBIDDEN:
        if char in tag:
            shown = {"\n": "a line break", "\r": "a line break", "\t": "a tab"}.get(char, f"'{char}'")
            return f"tag '{tag}' holds {shown}, which separates tags"
    if len(tag) > 120:
        return f"tag '{tag[:20]}…' is longer than 120 characters"
    return None


def check_tags(tags: Sequence[str], where: str = "") -> None:
    """Raise a DataError naming the first tag that cannot be written (:func:`tag_problem`),
    ``where`` in front of the reason (``"Cannot tag 'a.jpg': "``); nothing when all are fine."""
    for tag in tags:
        problem = tag_problem(tag)
        if problem:
            raise DataError(f"{where}{problem}." if where else f"{problem[:1].upper()}{problem[1:]}.")


def write_tags_file(path: str | os.PathLike, rows: Sequence[tuple[str, Sequence[str], str]]) -> Path:
    """Write ``[(image path relative to the file, tags, split)]`` as a labels CSV.

    The layout :func:`read_tags_file` reads: ``image,labels`` with tags ``|``-joined (and a
    ``split`` column when any row has one); written atomically, never half a file.

    Raises:
        DataError: a tag that cannot be written (see :func:`tag_problem`).
    """
    with_split = any(split for _, _, split in rows)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["image", "labels", "split"] if with_split else ["image", "labels"])
    for name, tags, split in rows:
        check_tags(tags, f"Cannot write the tags of '{name}': ")
        writer.writerow([name, "|".join(tags), split] if with_split else [name, "|".join(tags)])
    target = Path(path)
    atomic_write_text(target, out.getvalue())
    return target
