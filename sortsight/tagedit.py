"""Edit the tags of one image in a CSV/TSV labels file, keeping everything else of the file.

The studio's tag editor, ``sortsight fix`` on a tagger's decisions and ``sortsight undo`` of a
retag use these; reading a whole labels file is :mod:`sortsight.labelfile`'s.

Example:
    >>> before = set_tags("labels.csv", "images/a.jpg", ["people", "text"])   # doctest: +SKIP
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from pathlib import Path

from sortsight.errors import DataError
from sortsight.fileops import atomic_write_text
from sortsight.labelfile import IMAGE_COLUMNS, TAG_COLUMNS, check_tags, pick_column, separator_of, split_cell

__all__ = ["row_of", "set_tags", "tags_of"]


def _edit_table(path: Path) -> tuple[str, list[list[str]], int, int, str]:
    """A CSV/TSV labels file as ``(delimiter, rows with header, image column, tag column, separator)``."""
    if path.suffix.lower() not in (".csv", ".tsv", ".txt"):
        raise DataError(
            f"Tags can be edited in a CSV or TSV labels file, not in '{path.name}'; convert it to CSV first."
        )
    text = path.read_bytes().decode("utf-8-sig")
    first = text.splitlines()[0] if text.strip() else ""
    delimiter = "\t" if path.suffix.lower() == ".tsv" or first.count("\t") > first.count(",") else ","
    if delimiter == "," and first.count(";") > first.count(",") and first.count(";") > 0:
        delimiter = ";"
    table = list(csv.reader(io.StringIO(text), delimiter=delimiter))
    if not table:
        raise DataError(f"Labels file '{path}' is empty; it needs a header and one row per image.")
    header = [h.strip() for h in table[0]]
    where = f"'{path.name}'"
    image_col = header.index(pick_column(header, None, IMAGE_COLUMNS, "image", where, "--image-column"))
    lowered = [h.lower() for h in header]
    tag_col = next((lowered.index(c) for c in TAG_COLUMNS if c in lowered), None)
    if tag_col is None:
        raise DataError(
            f"{where} has no 'labels' column (its tags are 0/1 columns); tags can be edited only in a "
            "file with a 'labels' column, tags separated by '|'."
        )
    cells = [row[tag_col] for row in table[1:] if len(row) > tag_col]
    separator = separator_of(cells, "auto", header[tag_col]) or "|"
    return delimiter, table, image_col, tag_col, separator


def _row_of(path: Path, table: list[list[str]], image_col: int, image: Path) -> int | None:
    target = image.resolve()
    found = [
        n
        for n, row in enumerate(table[1:], start=1)
        if len(row) > image_col
        and row[image_col].strip()
        and (path.parent / row[image_col].strip().replace("\\", "/")).resolve() == target
    ]
    if len(found) > 1:
        raise DataError(
            f"'{image.name}' is on {len(found)} rows of '{path.name}'; "
            "keep one row per image to edit its tags."
        )
    return found[0] if found else None


def tags_of(path: str | os.PathLike, image: str | os.PathLike) -> list[str] | None:
    """The tags a CSV/TSV labels file gives ``image`` (a path), or None when no row names it."""
    labels = Path(path)
    _, table, image_col, tag_col, separator = _edit_table(labels)
    n = _row_of(labels, table, image_col, Path(image))
    if n is None:
        return None
    row = table[n]
    return split_cell(row[tag_col] if len(row) > tag_col else "", separator)


def row_of(path: str | os.PathLike, image: str | os.PathLike) -> dict[str, str] | None:
    """The whole row a CSV/TSV labels file has for ``image`` (column → cell), or None."""
    labels = Path(path)
    _, table, image_col, _, _ = _edit_table(labels)
    n = _row_of(labels, table, image_col, Path(image))
    if n is None:
        return None
    return {h: (table[n][i] if i < len(table[n]) else "") for i, h in enumerate(table[0])}


def set_tags(
    path: str | os.PathLike,
    image: str | os.PathLike,
    tags: Sequence[str] | None,
    *,
    fields: dict[str, str] | None = None,
) -> list[str] | None:
    """Give ``image`` exactly ``tags`` in a CSV/TSV labels file; return the tags it had before.

    ``tags=None`` removes the image's row; an image with no row gets one (path relative to the
    file; its other cells from ``fields``, column → value, as :func:`row_of` gave them). Other
    columns, rows and the file's delimiter and tag separator are kept; the file is replaced
    atomically.

    Raises:
        DataError: not a CSV/TSV file with a ``labels`` column, the image on several rows, or a
            tag that cannot be written.
    """
    labels = Path(path)
    delimiter, table, image_col, tag_col, separator = _edit_table(labels)
    clean = None if tags is None else split_cell(list(tags), "|")
    check_tags(clean or [], f"Cannot tag '{Path(image).name}': ")
    n = _row_of(labels, table, image_col, Path(image))
    before = None
    if n is not None:
        row = table[n]
        before = split_cell(row[tag_col] if len(row) > tag_col else "", separator)
        if clean is None:
            del table[n]
        else:
            row += [""] * (len(table[0]) - len(row))
            row[tag_col] = separator.join(clean)
    elif clean is not None:
        row = [(fields or {}).get(h, "") for h in table[0]]
        row[image_col] = Path(os.path.relpath(Path(image).resolve(), labels.parent.resolve())).as_posix()
        row[tag_col] = separator.join(clean)
        table.append(row)
    out = io.StringIO()
    csv.writer(out, delimiter=delimiter, lineterminator="\n").writerows(table)
    atomic_write_text(labels, out.getvalue())
    return before
