from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from loop.store import (
    DataFileError,
    ManifestError,
    RunStore,
    atomic_path,
    fingerprint,
    read_jsonl,
    write_jsonl,
)


def test_interrupted_write_keeps_old_file(tmp_path: Path) -> None:
    target = tmp_path / "items.jsonl"
    write_jsonl(target, [{"id": 1}, {"id": 2}])

    class Boom(RuntimeError):
        pass

    with pytest.raises(Boom), atomic_path(target) as tmp:
        tmp.write_text('{"id": 3}\n{"id": 4')  # half-written
        raise Boom
    assert [r["id"] for r in read_jsonl(target).rows] == [1, 2]
    assert [p.name for p in tmp_path.iterdir()] == ["items.jsonl"], "temporary file left behind"


def test_malformed_rows_named_by_file_and_line(tmp_path: Path) -> None:
    f = tmp_path / "data.jsonl"
    f.write_text(
        '{"instruction": "a", "output": "1"}\n'
        "not json\n"
        '{"instruction": "b"}\n'
        '{"instruction": " ", "output": "2"}\n'
        "[1, 2]\n"
        '{"instruction": "c", "output": "3"}\n'
    )
    with pytest.raises(DataFileError, match=r"data.jsonl:2: not valid JSON"):
        read_jsonl(f, required=("instruction", "output"))
    report = read_jsonl(f, required=("instruction", "output"), non_empty=("instruction",), skip_malformed=True)
    assert [r["instruction"] for r in report.rows] == ["a", "c"]
    assert [line for line, _ in report.skipped] == [2, 3, 4, 5]
    assert "missing field(s) output" in report.skipped[1][1]
    assert "empty field(s) instruction" in report.skipped[2][1]
    assert "expected a JSON object" in report.skipped[3][1]


def test_manifest_phases_and_fingerprints(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "run")
    store.create("name: x\n", "x")
    data = store.path(0, "seed.jsonl")
    write_jsonl(data, [{"id": "a"}])
    fp = fingerprint({"lr": 1}, data)
    assert not store.is_done(0, "train", fp)
    store.mark_started(0, "train", fp)
    assert store.phase(0, "train")["status"] == "running"
    store.mark_done(0, "train", fp, outputs=["round_000/model"], stats={"steps": 3})
    reopened = RunStore(tmp_path / "run")
    assert reopened.is_done(0, "train", fp)
    write_jsonl(data, [{"id": "b"}])  # inputs changed -> the phase must run again
    assert not reopened.is_done(0, "train", fingerprint({"lr": 1}, data))
    with pytest.raises(FileExistsError, match="already holds a run"):
        RunStore(tmp_path / "run").create("", "x")


def test_corrupt_manifest_is_a_clear_error(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "run")
    store.create("name: x\n", "x")
    store.mark_done(0, "train", "abc")
    (tmp_path / "run" / "manifest.json").write_text('{"version": 1, "phases": {')
    with pytest.raises(ManifestError, match=r"corrupt.*manifest.json.bak"):
        _ = RunStore(tmp_path / "run").manifest
    backup = json.loads((tmp_path / "run" / "manifest.json.bak").read_text())
    assert backup["phases"]["round_000/train"]["status"] == "done"
    with pytest.raises(ManifestError, match="not a run directory"):
        _ = RunStore(tmp_path / "nowhere").manifest


def test_run_directory_lock(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "run")
    store.create("name: x\n", "x")
    with store.lock(), pytest.raises(RuntimeError, match="in use by process"), RunStore(tmp_path / "run").lock():
        pass
    (tmp_path / "run" / ".lock").write_text("999999999")  # left by a killed process
    with RunStore(tmp_path / "run").lock():
        assert (tmp_path / "run" / ".lock").read_text() == str(os.getpid())
    assert not (tmp_path / "run" / ".lock").exists()
