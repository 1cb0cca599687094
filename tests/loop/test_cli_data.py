from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from loop.cli import app

ROBE = "A robe takes 2 bolts of blue fiber and half that much white fiber. How many bolts in total does it take?"
PAPER = (
    "Weng earns $12 an hour for babysitting. Yesterday, she just did 50 minutes of babysitting. How much did she "
    "earn? Show your work and give the final answer in dollars."
)


def _write(path: Path, rows: list[object]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _read(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _invoke(*args: str | Path) -> tuple[int, str]:
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    return {
        "train": _write(
            tmp_path / "train.jsonl",
            [
                {"id": "a", "instruction": "Name three prime numbers below twenty."},
                {"id": "b", "instruction": ROBE.replace("white", "red")},  # near copy of test row 2
                {"id": "c", "instruction": f"Here is a task for you. {PAPER}"},  # restates a probe question
                {"id": "d", "instruction": "Write a haiku about autumn rain."},
            ],
        ),
        "test": _write(
            tmp_path / "test.jsonl", [{"question": "What is 2 + 2?", "answer": "#### 4"}, {"question": ROBE}]
        ),
        "probe": _write(tmp_path / "probe.jsonl", [{"id": "p1", "instruction": PAPER}]),
    }


def test_decontam_writes_kept_rows_report_and_table(files: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "clean.jsonl"
    code, output = _invoke(
        "data", "decontam", "--train", files["train"], "--against", files["test"], "--against", files["probe"],
        "--out", out,
    )  # fmt: skip
    assert code == 0, output
    assert [r["id"] for r in _read(out)] == ["a", "d"]
    report = _read(tmp_path / "clean.dropped.jsonl")
    assert [(r["line"], r["match"], r["matched"]["set"], r["matched"]["id"], r["matched"]["line"]) for r in report] == [
        (2, "near-copy", "test", "1", 2),
        (3, "13-gram", "probe", "p1", 1),
    ]
    assert report[0]["matched"]["text"] == ROBE and report[0]["matched"]["file"] == str(files["test"])
    assert report[1]["row"] == {"id": "c", "instruction": f"Here is a task for you. {PAPER}"}
    assert "kept 2 of 4 rows" in output and "dropped 2" in output
    # rows, dropped, then dropped by 13-gram, whole text, near copy
    table = {line.split()[1]: line.split()[3::2] for line in output.splitlines() if line.startswith("│")}
    assert table == {"test": ["2", "1", "0", "0", "1"], "probe": ["1", "1", "1", "0", "0"]}


def test_decontam_options(files: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "clean.jsonl"
    code, output = _invoke(
        "data", "decontam", "--train", files["train"], "--against", files["test"], "--out", out,
        "--near-threshold", "0",
    )  # fmt: skip
    assert code == 0, output
    assert [r["id"] for r in _read(out)] == ["a", "b", "c", "d"]  # the near-copy check is off
    train = _write(tmp_path / "t.jsonl", [{"id": "x", "text": "what is 2 + 2", "instruction": "other"}])
    code, output = _invoke("data", "decontam", "--train", train, "--against", files["test"], "--out", out)
    assert code == 0 and [r["id"] for r in _read(out)] == ["x"]
    code, output = _invoke(
        "data", "decontam", "--train", train, "--against", files["test"], "--out", out, "--field", "text",
        "--against-field", "question",
    )  # fmt: skip
    assert code == 0 and _read(out) == [] and "whole text" in _read(tmp_path / "clean.dropped.jsonl")[0]["match"]


@pytest.mark.parametrize(
    ("method", "threshold", "kept_ids"),
    [
        ("exact", None, ["a", "b", "d"]),
        ("rouge", None, ["a", "b"]),
        ("rouge", "0.95", ["a", "b", "d"]),
        ("minhash", None, ["a", "b", "d"]),
        ("minhash", "0.5", ["a", "b"]),
    ],
)
def test_dedup_methods(tmp_path: Path, method: str, threshold: str | None, kept_ids: list[str]) -> None:
    long = " ".join(f"word{i}" for i in range(40))
    rows = [
        {"id": "a", "prompt": long},
        {"id": "b", "prompt": "Write a poem about the sea"},
        {"id": "c", "prompt": long.upper() + "!"},  # an exact copy after normalisation
        {"id": "d", "prompt": " ".join(f"word{i}" if i < 30 else f"x{i}" for i in range(40))},  # Jaccard 0.58
    ]
    src, out = _write(tmp_path / "in.jsonl", rows), tmp_path / "out.jsonl"
    args = ["data", "dedup", "--in", src, "--out", out, "--method", method]
    code, output = _invoke(*args, *(["--threshold", threshold] if threshold else []))
    assert code == 0, output
    assert [r["id"] for r in _read(out)] == kept_ids
    report = _read(tmp_path / "out.dropped.jsonl")
    assert report[0]["line"] == 3 and report[0]["matched"] == {"line": 1, "id": "a", "text": long}
    assert f"{method}: kept {len(kept_ids)} of 4 rows" in output


@pytest.mark.parametrize(
    ("content", "args", "message"),
    [
        (None, [], "--in: file not found: "),
        ('{"instruction": "a"}\n{"instruction": \n', [], "--in: {src}:2: not valid JSON"),
        ('{"instruction": "a"}\n[1, 2]\n', [], "--in: {src}:2: expected a JSON object, got list"),
        ('{"instruction": "a"}\n{"text": "b"}\n', [], "--in: {src}:2: row has no text field (looked for instruction"),
        (
            '{"instruction": "a"}\n',
            ["--field", "body"],
            "--in: {src}:1: row has no field 'body'; its keys: instruction",
        ),
        ('{"instruction": 5}\n', [], "--in: {src}:1: field 'instruction' must be a string, got int"),
        (
            '{"instruction": "a"}\n',
            ["--method", "fuzzy"],
            "--method: expected one of exact, rouge, minhash, got 'fuzzy'",
        ),
        ('{"instruction": "a"}\n', ["--method", "exact", "--threshold", "0.5"], "--threshold: does not apply"),
        ('{"instruction": "a"}\n', ["--threshold", "1.5"], "--threshold: must be between 0 and 1, got 1.5"),
    ],
)
def test_dedup_errors_name_file_line_and_field(
    tmp_path: Path, content: str | None, args: list[str], message: str
) -> None:
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    if content is not None:
        src.write_text(content, encoding="utf-8")
    code, output = _invoke("data", "dedup", "--in", src, "--out", out, *args)
    assert code == 2
    assert message.format(src=src) in " ".join(output.split())
    assert not out.exists()


def test_decontam_errors_name_the_option_and_file(files: dict[str, Path], tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q"}\n{"answer": "#### 4"}\n', encoding="utf-8")
    out = tmp_path / "clean.jsonl"
    code, output = _invoke("data", "decontam", "--train", files["train"], "--against", bad, "--out", out)
    assert code == 2 and f"--against: {bad}:2: row has no text field" in " ".join(output.split())
    code, output = _invoke("data", "decontam", "--train", tmp_path / "nope.jsonl", "--against", bad, "--out", out)
    assert code == 2 and "--train: file not found: " in output
    assert not out.exists()
