"""A full disk: a run directory on a small tmpfs that fills during the run. The run stops with a message naming
what could not be written, no phase whose files were cut short is taken as done, and once space is freed
`gaploop resume` finishes it with the records of a run that never ran out of space."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import TINY, rows, start

RECORDS = ("round_001/candidates.jsonl", "round_001/items.jsonl", "round_001/eval_test.jsonl", "metrics.jsonl")


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 320 KB tmpfs (the run needs about 530 KB); skipped where mounting one is not allowed."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=320k", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def _complete(path: Path) -> bool:
    """True when an output a finished phase names is whole: JSON lines and JSON parse, a model folder loads."""
    if path.suffix == ".jsonl":
        rows(path)
    elif path.suffix == ".json":
        json.loads(path.read_text())
    elif path.is_dir() and (path / "config.json").exists():
        json.loads((path / "config.json").read_text())
        assert any(path.glob("*.safetensors")), path
    return path.exists()


def test_a_full_disk_stops_the_run_naming_it_and_a_resume_finishes_once_space_is_freed(
    small_disk: Path, tmp_path: Path
) -> None:
    run, ref, log = small_disk / "run", tmp_path / "ref", tmp_path / "log.txt"
    args = [*TINY, "rounds.max_rounds=1"]
    log.write_text("")
    assert start(["run", *args, f"run_dir={run}"], None, log).wait(timeout=600) != 0
    said = log.read_text()
    assert "No space left on device" in said and f"gaploop resume {run}" in said, said[-3000:]
    manifest = json.loads((run / "manifest.json").read_text())  # the manifest itself was never cut short
    done = {k: v for k, v in manifest["phases"].items() if v.get("status") == "done"}
    assert len(done) < 12, "the disk filled too late to test anything"
    for phase, entry in done.items():
        assert all(_complete(run / p) for p in entry.get("outputs", [])), phase

    subprocess.run(["mount", "-o", "remount,size=256m", str(small_disk)], check=True)  # space freed
    assert start(["resume", str(run)], None, log).wait(timeout=600) == 0, log.read_text()[-3000:]
    assert json.loads((run / "manifest.json").read_text())["status"] == "finished"
    assert start(["run", *args, f"run_dir={ref}"], None, log).wait(timeout=600) == 0
    for name in RECORDS:
        got, want = rows(run / name), rows(ref / name)
        if name == "metrics.jsonl":  # times differ from run to run; what was measured does not
            got, want = (
                [{k: v for k, v in m.items() if "time" not in k and "seconds" not in k} for m in x] for x in (got, want)
            )
        assert got == want, name
