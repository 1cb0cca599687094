"""A run directory changed outside gaploop: a finished phase's output deleted, a record file cut short (mid-line or
at a line end), the folder moved. `gaploop resume` redoes exactly the phases whose outputs are not as they wrote
them, says so, and ends with the records of a run nobody touched; a moved run redoes nothing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from loop.config import load_config
from loop.runner import resume_run, start_run
from tests.helpers import TINY

RUN = [*TINY, "rounds.max_rounds=1"]


def _strip_times(value: object) -> object:
    """`value` without the timings, which differ from run to run (what was measured does not)."""
    if isinstance(value, dict):
        return {k: _strip_times(v) for k, v in value.items() if "time" not in k and "seconds" not in k}
    if isinstance(value, list):
        return [_strip_times(v) for v in value]
    return value


def _records(run: Path) -> dict[str, object]:
    """Every record file a phase wrote (JSON lines and JSON), and the metrics, timings left out."""
    manifest = json.loads((run / "manifest.json").read_text())
    names = {n for e in manifest["phases"].values() for n in e["outputs"] if n.endswith((".jsonl", ".json"))}
    out: dict[str, object] = {}
    for name in sorted(names | {"metrics.jsonl"}):
        text = (run / name).read_text()
        values = [json.loads(x) for x in text.splitlines()] if name.endswith(".jsonl") else json.loads(text)
        out[name] = _strip_times(values)
    return out


def _started(run: Path) -> dict[str, float]:
    return {k: v["started"] for k, v in json.loads((run / "manifest.json").read_text())["phases"].items()}


def _mv(run: Path, to: Path) -> Path:
    """`mv RUN TO` (a rename on one file system), TO's folder made first."""
    to.parent.mkdir(parents=True)
    shutil.move(run, to)
    return to


def _cut_at_line_end(path: Path) -> None:
    """The last row gone, cleanly: what is left is valid JSON lines, one row fewer."""
    data = path.read_bytes()
    path.write_bytes(data[: data.rindex(b"\n", 0, len(data) - 1) + 1])


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, object]]:
    """A finished run of the tiny config (two rounds), and its records."""
    run = tmp_path_factory.mktemp("run_dir") / "run"
    start_run(load_config(None, [*RUN, f"run_dir={run}"]))
    return run, _records(run)


def test_damaged_outputs_of_finished_phases_are_redone_and_the_records_come_back(
    finished: tuple[Path, dict[str, object]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    original, want = finished
    run = tmp_path / "damaged"
    shutil.copytree(original, run)
    before = _started(run)
    (run / "round_000" / "items.jsonl").unlink()  # round 0's seed, written by `data`
    candidates = run / "round_001" / "candidates.jsonl"  # written by `question`: cut mid-line
    candidates.write_bytes(candidates.read_bytes()[:-40])
    _cut_at_line_end(run / "round_001" / "items.jsonl")  # written by `filter`: one item fewer, still valid JSON
    (run / "round_001" / "summary.json").unlink()  # written by `log`, which also logs the round's metrics
    resume_run(run)
    after = _started(run)
    redone = sorted(k for k in before if after[k] != before[k])
    assert redone == ["round_000/data", "round_001/filter", "round_001/log", "round_001/question"]
    said = " ".join(capsys.readouterr().err.split())
    assert "round 0 data: its output round_000/items.jsonl is gone" in said
    assert "round 1 question: its output round_001/candidates.jsonl has" in said and "redoing the phase" in said
    assert _records(run) == want  # the seed, the candidates, every item with its reason, one metrics row a round


def _as_written_before(run: Path) -> None:
    """The manifest as gaploop wrote it before outputs were relative: each named by absolute path, no sizes."""
    manifest = json.loads((run / "manifest.json").read_text())
    del manifest["outputs_relative"]
    for entry in manifest["phases"].values():
        entry["outputs"] = [str(run / name) for name in entry["outputs"]]
        del entry["sizes"]
    (run / "manifest.json").write_text(json.dumps(manifest, indent=1))


@pytest.mark.parametrize("made_by", ["this gaploop", "gaploop before outputs were relative"])
def test_a_moved_run_directory_resumes_without_redoing_anything(
    made_by: str, finished: tuple[Path, dict[str, object]], tmp_path: Path
) -> None:
    original, want = finished
    run = tmp_path / "before"
    shutil.copytree(original, run)
    if made_by != "this gaploop":
        _as_written_before(run)
    before = _started(run)
    moved = _mv(run, tmp_path / "after" / "the_run")
    resume_run(moved)
    assert _started(moved) == before, "a phase of the moved run was redone"
    assert _records(moved) == want
    assert json.loads((moved / "manifest.json").read_text())["outputs_relative"] is True
    (moved / "round_001" / "candidates.jsonl").unlink()  # and a lost output is still noticed there
    resume_run(moved)
    after = _started(moved)
    assert sorted(k for k in before if after[k] != before[k]) == ["round_001/question"]
    assert _records(moved) == want
