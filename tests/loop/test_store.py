from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from loop.steps import Out, Steps
from loop.store import (
    ChangedRecordError,
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
    (tmp_path / "run" / "manifest.json").write_text('{"version": 2, "phases": {}}')  # from another gaploop
    with pytest.raises(ManifestError, match=r"manifest.json: manifest version 2, this gaploop reads 1"):
        _ = RunStore(tmp_path / "run").manifest


def test_run_directory_lock(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "run")
    store.create("name: x\n", "x")
    with store.lock(), pytest.raises(RuntimeError, match="in use by process"), RunStore(tmp_path / "run").lock():
        pass
    (tmp_path / "run" / ".lock").write_text("999999999")  # left by a killed process
    with RunStore(tmp_path / "run").lock():
        assert (tmp_path / "run" / ".lock").read_text() == str(os.getpid())
    assert not (tmp_path / "run" / ".lock").exists()


def _steps(root: Path) -> tuple[RunStore, Steps, list[str]]:
    """A run directory with a step executor, and a log of which steps ran."""
    store = RunStore(root)
    if not store.manifest_path.exists():
        store.create("name: x\n", "x")
    return store, Steps(store), []


def _two_steps(store: RunStore, steps: Steps, ran: list[str]) -> None:
    """`make` writes rows and a folder; `use` is given make's rows."""
    rows_file, folder = store.path(0, "rows.jsonl"), store.path(0, "model")

    def make() -> Out:
        ran.append("make")
        tmp = store.root / "tmp-model"
        tmp.mkdir(exist_ok=True)
        (tmp / "w.bin").write_bytes(b"w")
        return Out(files={rows_file: [{"id": i} for i in range(3)], folder: tmp})

    def use() -> Out:
        ran.append("use")
        return Out(files={store.path(0, "used.json"): {"n": len(read_jsonl(rows_file).rows)}})

    steps.run(0, "make", ["make"], make)
    steps.run(0, "use", ["use", rows_file], use)


def test_outputs_are_recorded_relative_to_the_run_with_their_sizes(tmp_path: Path) -> None:
    store, steps, ran = _steps(tmp_path / "run")
    _two_steps(store, steps, ran)
    entry = store.phase(0, "make")
    assert entry["outputs"] == ["round_000/rows.jsonl", "round_000/model"]
    assert entry["sizes"] == {"round_000/rows.jsonl": (store.root / "round_000/rows.jsonl").stat().st_size}
    assert store.outputs(entry) == [store.root / "round_000/rows.jsonl", store.root / "round_000/model"]
    # Moved elsewhere, the run finds its files: nothing is redone.
    moved = tmp_path / "elsewhere" / "run"
    moved.parent.mkdir()
    (tmp_path / "run").rename(moved)
    store, steps, ran = _steps(moved)
    _two_steps(store, steps, ran)
    assert ran == [] and store.damage(0, "make") is None


@pytest.mark.parametrize("fault", ["deleted", "cut mid-line", "cut at a line end", "folder deleted"])
def test_a_finished_phase_whose_output_was_damaged_is_redone(
    fault: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store, steps, ran = _steps(tmp_path / "run")
    _two_steps(store, steps, ran)
    before = (store.root / "round_000/rows.jsonl").read_bytes()
    target = store.root / "round_000/rows.jsonl"
    if fault == "deleted":
        target.unlink()
    elif fault == "cut mid-line":
        target.write_bytes(before[:-5])
    elif fault == "cut at a line end":
        target.write_bytes(before[: before.rindex(b"\n", 0, -1) + 1])  # one whole row fewer: still valid JSONL
    else:
        shutil.rmtree(store.root / "round_000/model")
    store, steps, ran = _steps(tmp_path / "run")
    _two_steps(store, steps, ran)
    assert ran == ["make"], "only the phase that wrote it is redone: its rows are the same, so `use` is not"
    assert target.read_bytes() == before and (store.root / "round_000/model/w.bin").exists()
    said = " ".join(capsys.readouterr().err.split())  # the console (stderr) wraps long lines
    assert "round 0 make: its output round_000/" in said and "redoing the phase" in said


def test_a_record_cut_short_while_a_run_goes_on_is_a_named_error(tmp_path: Path) -> None:
    store, steps, ran = _steps(tmp_path / "run")
    _two_steps(store, steps, ran)
    rows_file = store.root / "round_000/rows.jsonl"
    text = rows_file.read_bytes()
    rows_file.write_bytes(text[: text.rindex(b"\n", 0, -1) + 1])  # a whole row gone: read alone, it looks fine
    with pytest.raises(ChangedRecordError, match=r"rows.jsonl: phase round_000/make wrote \d+ bytes and it has \d+"):
        steps.run(0, "use again", ["use", rows_file], lambda: Out())
    rows_file.unlink()
    with pytest.raises(ChangedRecordError, match="and it is gone"):
        steps.run(0, "use again", ["use", rows_file], lambda: Out())


def test_a_manifest_with_absolute_or_cwd_relative_outputs_still_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Manifests written before outputs were stored relative to the run directory named them by the path the
    run was started with; moved since, such a run resumes without redoing anything, and repairs a lost file."""
    for started_as in ("absolute", "relative to the working directory"):
        old = tmp_path / started_as.replace(" ", "_") / "runs" / "a"
        store, steps, ran = _steps(old)
        _two_steps(store, steps, ran)
        manifest = json.loads(store.manifest_path.read_text())
        prefix = str(old) if started_as == "absolute" else "runs/a"
        del manifest["outputs_relative"]
        for entry in manifest["phases"].values():
            entry["outputs"] = [f"{prefix}/{name}" for name in entry["outputs"]]
            del entry["sizes"]
        store.manifest_path.write_text(json.dumps(manifest))
        moved = old.parent.parent / "moved"
        old.rename(moved)
        monkeypatch.chdir(tmp_path)  # not where the relative paths were relative to
        store, steps, ran = _steps(moved)
        assert store.phase(0, "make")["outputs"] == ["round_000/rows.jsonl", "round_000/model"]
        _two_steps(store, steps, ran)
        assert ran == [], started_as
        (moved / "round_000/used.json").unlink()
        store, steps, ran = _steps(moved)
        _two_steps(store, steps, ran)
        assert ran == ["use"], started_as
        assert json.loads(store.manifest_path.read_text())["outputs_relative"] is True
