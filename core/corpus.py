"""A corpus of unlabelled texts (instruction back-translation writes instructions for them).

    a folder             every *.txt and *.md file in it (sorted by name, recursively) is one document
    a .txt or .md file   one document per block, blocks separated by a blank line
    a .jsonl file        one document per row, the text in `field` (e.g. GSM8K's `answer`)

Documents are stripped, kept in their order, and those outside [min_chars, max_chars] or repeated are left
out (Humpback's reimplementation keeps 1000-2200 characters of web text; a corpus of worked answers is
shorter). Reading fails with an error naming the file (and line) that cannot be used.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from core.jsonl import DataFileError, read_jsonl

TEXT_SUFFIXES = (".txt", ".md")


def read_corpus(path: str | Path, field: str = "text", min_chars: int = 1, max_chars: int | None = None) -> list[str]:
    """The documents of a corpus (see the module's docstring); an empty result is an error."""
    root = Path(path).expanduser()
    if root.is_dir():
        files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES)
        if not files:
            raise DataFileError(f"corpus {root}: no .txt or .md file in the folder")
        texts = [_read_text(p) for p in files]
    elif root.is_file() and root.suffix.lower() == ".jsonl":
        rows = read_jsonl(root, required=(field,)).rows
        for n, row in enumerate(rows, 1):
            if not isinstance(row[field], str):
                raise DataFileError(f"corpus {root}: row {n}: field {field!r} is not a string")
        texts = [str(r[field]) for r in rows]
    elif root.is_file() and root.suffix.lower() in TEXT_SUFFIXES:
        texts = [block for block in re.split(r"\n\s*\n", _read_text(root))]
    elif root.exists():
        raise DataFileError(f"corpus {root}: a folder, a .txt/.md file or a .jsonl file is needed")
    else:
        raise DataFileError(f"corpus not found: {root} (a folder, a .txt/.md file or a .jsonl file)")
    docs = _keep(texts, min_chars, max_chars)
    if not docs:
        raise DataFileError(
            f"corpus {root}: no document of {min_chars}-{max_chars or 'any'} characters in {len(texts)} read"
        )
    return docs


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise DataFileError(f"corpus {path}: not UTF-8 text ({err})") from err


def _keep(texts: Sequence[str], min_chars: int, max_chars: int | None) -> list[str]:
    seen: set[str] = set()
    out = []
    for text in texts:
        doc = text.strip()
        if len(doc) < min_chars or (max_chars is not None and len(doc) > max_chars) or doc in seen:
            continue
        seen.add(doc)
        out.append(doc)
    return out
