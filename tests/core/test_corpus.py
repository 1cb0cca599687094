"""The corpus reader: a folder, a text file of blocks, a JSONL field; filters; every bad input named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.corpus import read_corpus
from core.jsonl import DataFileError


def test_a_folder_a_text_file_and_a_jsonl_field(tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    (folder / "sub").mkdir(parents=True)
    (folder / "b.txt").write_text("second document\n")
    (folder / "a.md").write_text("\ufefffirst document")  # a BOM is not part of the text
    (folder / "sub" / "c.txt").write_text("third")
    (folder / "skip.json").write_text("{}")
    assert read_corpus(folder) == ["first document", "second document", "third"]
    blocks = tmp_path / "blocks.txt"
    blocks.write_text("one\nstill one\n\n  \ntwo\n\n\nthree\n\ntwo\n")
    assert read_corpus(blocks) == ["one\nstill one", "two", "three"]  # blank-line blocks; the repeat left out
    rows = tmp_path / "rows.jsonl"
    rows.write_text(
        "".join(json.dumps({"answer": a, "q": "?"}) + "\n" for a in ["4 + 4 = 8\n#### 8", "x", "long " * 9])
    )
    assert read_corpus(rows, field="answer", min_chars=2, max_chars=20) == ["4 + 4 = 8\n#### 8"]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p / "nowhere", "corpus not found"),
        (lambda p: (p / "empty").mkdir() or p / "empty", "no .txt or .md file in the folder"),
        (lambda p: (p / "x.csv").write_text("a") and p / "x.csv", "a folder, a .txt/.md file or a .jsonl file"),
        (
            lambda p: (p / "x.jsonl").write_text('{"text": 3}\n') and p / "x.jsonl",
            "row 1: field 'text' is not a string",
        ),
        (
            lambda p: (p / "y.jsonl").write_text('{"body": "a"}\n') and p / "y.jsonl",
            r"y.jsonl:1: missing field.s. text",
        ),
        (lambda p: (p / "z.txt").write_bytes(b"\xff\xfe\x00bad") and p / "z.txt", "not UTF-8 text"),
        (lambda p: (p / "s.txt").write_text("a\n\nb") and p / "s.txt", "no document of 5-any characters in 2 read"),
    ],
)
def test_bad_corpora_are_named(tmp_path: Path, make, message: str) -> None:  # noqa: ANN001
    path = make(tmp_path)
    with pytest.raises(DataFileError, match=message):
        read_corpus(path, min_chars=5 if path.name == "s.txt" else 1)
