"""Readers for the user's --data file: TSV, CSV, JSONL, or plain text.

Files are read whole before anything is written, so a bad file fails before any output
exists. Bytes that are not valid UTF-8 are replaced, not fatal (real exports have them);
a file that is not text at all (a zip, parquet or xlsx renamed .csv) is refused, because
its "rows" would be evaluated as if they were data. A .tsv is read as the GLUE files are
written: tab-separated with no quoting, so a text that starts with `"` is one text.
"""

from __future__ import annotations

import csv
import io
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from edgeify.errors import UsageError

TEXT_COLUMN_DEFAULTS = ("sentence", "text", "content", "review", "tweet")
LABEL_COLUMN_DEFAULTS = ("label", "labels", "sentiment", "class")
TABLE_SUFFIXES = {".csv": ",", ".tsv": "\t"}
# csv's quote handling per table: a TSV has none (GLUE, spreadsheets' "tab-delimited text")
TABLE_QUOTING = {".csv": csv.QUOTE_MINIMAL, ".tsv": csv.QUOTE_NONE}
JSONL_SUFFIXES = (".jsonl", ".json")
TEXT_SUFFIXES = (".txt", ".raw", ".text")


@dataclass(frozen=True)
class Example:
    text: str
    label: str | None = None  # raw label as written in the file; mapped to ids later


def shown(text: str) -> str:
    """`text` for a one-line message: control characters escaped, never written raw."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))


def _pick_column(columns: list[str], wanted: str | None, defaults: tuple[str, ...],
                 what: str, path: Path) -> str:
    if wanted is not None:
        if wanted not in columns:
            raise UsageError(f"{path}: no {what} column {wanted!r}; columns are: {', '.join(map(shown, columns))}")
        return wanted
    for name in defaults:
        if name in columns:
            return name
    flag = "--text-column" if what == "text" else "--label-column"
    raise UsageError(
        f"{path}: cannot find a {what} column (tried {', '.join(defaults)}); "
        f"columns are: {', '.join(map(shown, columns))}; choose one with {flag}"
    )


# what a binary file most likely is, by its first bytes: named in the refusal
MAGIC = ((b"PK\x03\x04", "a zip archive (an .xlsx workbook is one)"), (b"PAR1", "a Parquet file"),
         (b"\x1f\x8b", "a gzip file"), (b"%PDF", "a PDF"), (b"SQLite format 3", "an SQLite database"),
         (b"\xd0\xcf\x11\xe0", "an old Excel (.xls) workbook"), (b"\x89PNG", "a PNG image"))
BINARY_SAMPLE = 65536  # characters looked at for control bytes
BINARY_SHARE = 0.10    # more control characters than this, and more than BINARY_FLOOR, is not text
BINARY_FLOOR = 32


def _binary_reason(raw: bytes, text: str) -> str | None:
    """Why `raw` is not a text file, or None. NUL never occurs in text; a few control
    characters do (form feeds in scraped text), a large share of them does not."""
    kind = next((name for magic, name in MAGIC if raw.startswith(magic)), None)
    if kind:
        return f"it is {kind}"
    head = raw[:BINARY_SAMPLE]
    half = len(head) // 2
    if (not raw.startswith((b"\xff\xfe", b"\xfe\xff")) and half >= 2
            and max(head[1::2].count(0), head[0::2].count(0)) > 0.9 * half):
        return "it looks like UTF-16 without a byte-order mark; save it as UTF-8"
    if "\x00" in text:
        return "it holds NUL bytes"
    sample = text[:BINARY_SAMPLE]
    bad = sum(1 for c in sample if (c < " " and c not in "\t\n\r\x0b\x0c") or c in "\x7f\ufffd")
    if bad > BINARY_FLOOR and bad > BINARY_SHARE * len(sample):
        return f"{bad} of its first {len(sample)} characters are control bytes or not UTF-8"
    return None


def _decode(path: Path) -> str:
    """UTF-8 with an optional byte-order mark (Excel's "CSV UTF-8"), or UTF-16 with one
    (Excel's "Unicode text"); bad bytes replaced. Binary files are refused (see above)."""
    raw = path.read_bytes()
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        text = raw.decode("utf-16", errors="replace")
    else:
        text = raw.decode("utf-8-sig", errors="replace")
    reason = _binary_reason(raw, text)
    if reason:
        raise UsageError(f"{path}: not a text data file ({reason}); give a UTF-8 CSV, TSV, JSONL or text file")
    return text


def _lift_field_limit() -> int:
    """csv refuses fields over 128 KiB by default; the file is already in memory, so any
    field that fits there is fine (a scraped page in one cell is real data). sys.maxsize
    overflows the C long on some platforms (Windows): halve until it is taken.
    Returns the previous limit, to put back: the limit is global to the process."""
    limit = sys.maxsize
    while True:
        try:
            return csv.field_size_limit(limit)
        except OverflowError:
            limit //= 2


def _read_table(path: Path, raw: str, suffix: str) -> list[dict]:
    """Rows of a CSV/TSV; a malformed file is the user's to fix, so csv's own error
    (which names neither file nor line) becomes a UsageError naming both."""
    # newline="" keeps line breaks inside quoted fields (tweets have them)
    reader = csv.DictReader(io.StringIO(raw, newline=""), delimiter=TABLE_SUFFIXES[suffix],
                            quoting=TABLE_QUOTING[suffix])
    previous = _lift_field_limit()
    try:
        if not reader.fieldnames:
            raise UsageError(f"{path}: empty data file (no header row)")
        return [dict(r) for r in reader]
    except csv.Error as e:  # the inner reader's line_num: DictReader's lags a row behind
        raise UsageError(f"{path}:{reader.reader.line_num}: not a valid {path.suffix[1:].upper()} file ({e})") from None
    finally:
        csv.field_size_limit(previous)


def _read_rows(path: Path) -> list[dict]:
    suffix = path.suffix.lower()
    raw = _decode(path)
    if suffix in TABLE_SUFFIXES:
        return _read_table(path, raw, suffix)
    rows = []
    # split on "\n" only: U+2028 and friends are valid inside JSON strings
    for n, line in enumerate(raw.split("\n"), 1):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise UsageError(f"{path}:{n}: not valid JSON lines ({e.msg})") from None
        if not isinstance(obj, dict):
            raise UsageError(f"{path}:{n}: each JSON line must be an object")
        rows.append(obj)
    return rows


def read_examples(path: str | Path, *, needs_labels: bool, text_column: str | None = None,
                  label_column: str | None = None) -> list[Example]:
    """Read examples; labelled tasks need a table (CSV/TSV/JSONL), LM tasks accept text."""
    path = Path(path)
    if not path.exists():
        raise UsageError(f"data file not found: {path}")
    if path.is_dir():
        raise UsageError(f"--data must be a file, got a directory: {path}")
    suffix = path.suffix.lower()
    accepted = sorted([*TABLE_SUFFIXES, *JSONL_SUFFIXES, *TEXT_SUFFIXES])
    if suffix not in accepted:
        raise UsageError(f"{path}: unsupported data format {suffix!r}; accepted: {', '.join(accepted)}")
    if suffix in TEXT_SUFFIXES:
        if needs_labels:
            raise UsageError(
                f"{path}: plain text has no labels; a classification model needs "
                "a CSV, TSV or JSONL file with text and label columns"
            )
        lines = [ln.strip() for ln in _decode(path).splitlines() if ln.strip()]
        if not lines:
            raise UsageError(f"{path}: empty data file")
        return [Example(ln) for ln in lines]

    rows = _read_rows(path)
    if not rows:
        raise UsageError(f"{path}: empty data file (no rows)")
    columns = list(rows[0].keys())
    tcol = _pick_column(columns, text_column, TEXT_COLUMN_DEFAULTS, "text", path)
    lcol = _pick_column(columns, label_column, LABEL_COLUMN_DEFAULTS, "label", path) if needs_labels else None
    out = []
    for n, row in enumerate(rows, 1):
        text = row.get(tcol)
        if text is None or not str(text).strip():
            continue  # blank rows carry nothing to classify
        label = None
        if lcol is not None:
            value = row.get(lcol)
            if value is None or str(value).strip() == "":
                raise UsageError(f"{path}: row {n} has no value in label column {lcol!r}")
            label = str(value).strip()
        out.append(Example(str(text).strip(), label))
    if not out:
        raise UsageError(f"{path}: no non-empty text in column {tcol!r}")
    return out


def map_labels(examples: list[Example], id2label: dict[int, str], path: str) -> list[int]:
    """Map raw labels to the model's ids: by name (case-insensitive), else by integer id.

    Refuses data whose labels the model does not have, listing both sides, because a
    silent mismatch would report a meaningless accuracy.
    """
    by_name = {str(name).lower(): int(i) for i, name in id2label.items()}
    ids, unknown = [], set()
    for ex in examples:
        key = ex.label.lower()
        if key in by_name:
            ids.append(by_name[key])
        elif re.fullmatch(r"-?[0-9]+", key) and int(key) in id2label:
            ids.append(int(key))
        else:
            unknown.add(ex.label)
            ids.append(-1)
    if unknown:
        listed = ", ".join(shown(u) for u in sorted(unknown)[:10])
        have = ", ".join(f"{i}={n}" for i, n in sorted(id2label.items()))
        raise UsageError(f"{path}: labels the model does not have: {listed}; the model's labels: {have}")
    return ids
