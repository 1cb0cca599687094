"""JSON-lines files: atomic writes (temporary name + rename) and reads whose errors name file and line.

The one implementation for agents/, trainers/ and loop/ (loop/store.py builds the run directory on it),
with the one row check every data file goes through (`read_jsonl`).
"""

from __future__ import annotations

import codecs
import json
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path


@contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside `target`; on success it replaces `target` in one rename.

    On failure `target` is as it was (an old version or absent), never half-written; an OSError that names no
    file (a write on a full disk) is raised again naming `target`.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, target)
    except OSError as err:
        if err.filename is None:
            raise OSError(err.errno, err.strerror, str(target)) from err
        raise
    finally:
        tmp_path.unlink(missing_ok=True)


def write_jsonl(path: str | os.PathLike[str], rows: Iterable[Mapping[str, object]]) -> int:
    """Write rows as JSON lines atomically; returns the count."""
    n = 0
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    return n


def write_json(path: str | os.PathLike[str], data: Mapping[str, object]) -> None:
    """Write one JSON document atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2))


def iter_jsonl(path: str | os.PathLike[str]) -> Iterator[tuple[int, object | None, str | None]]:
    """(line number, parsed value or None, problem or None) for every non-blank line.

    UTF-8, with or without a byte-order mark; LF or CRLF line ends. A line that is not UTF-8 is a problem of
    that line, not an error of the whole file.
    """
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            if lineno == 1 and raw.startswith(codecs.BOM_UTF8):
                raw = raw[len(codecs.BOM_UTF8) :]  # written by some Windows editors
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                yield lineno, None, f"not valid UTF-8 (byte 0x{raw[err.start]:02x} at byte {err.start + 1} of the line)"
                continue
            if not line.strip():
                continue
            try:
                yield lineno, json.loads(line), None
            except json.JSONDecodeError as err:
                yield lineno, None, f"not valid JSON ({err.msg} at column {err.colno})"


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write a text file atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


class DataFileError(ValueError):
    """A malformed row in a data file; the message names the file and the line."""


@dataclass
class ReadReport:
    """Rows read from a data file, and the malformed ones skipped (line number, reason)."""

    rows: list[dict[str, object]]
    skipped: list[tuple[int, str]] = field(default_factory=list)


def read_jsonl(
    path: str | os.PathLike[str],
    required: Sequence[str] = (),
    non_empty: Sequence[str] = (),
    skip_malformed: bool = False,
) -> ReadReport:
    """Read JSON lines; a bad line (not JSON, not an object, missing or empty field) is an error naming
    file and line, or with `skip_malformed` is skipped and listed in the report."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"data file not found: {path}")
    report = ReadReport(rows=[])
    for lineno, row, problem in iter_jsonl(path):
        if problem is None and not isinstance(row, dict):
            problem = f"expected a JSON object, got {type(row).__name__}"
        if problem is None:
            missing = [k for k in required if k not in row]
            empty = [k for k in non_empty if k in row and not str(row[k]).strip()]
            if missing:
                problem = f"missing field(s) {', '.join(missing)}"
            elif empty:
                problem = f"empty field(s) {', '.join(empty)}"
        if problem is None:
            report.rows.append(row)
        elif skip_malformed:
            report.skipped.append((lineno, problem))
        else:
            raise DataFileError(f"{path}:{lineno}: {problem}")
    return report
