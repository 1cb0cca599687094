"""`gaploop runs DIR`: every run directory under a folder with its state, rounds, accuracy and strategy."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console

from loop.report import run_state, runs_table
from tests.helpers import TINY, start


def _run(root: Path, name: str, manifest: dict, accuracies: list[float], lock: int | None = None) -> Path:
    run = root / name
    run.mkdir(parents=True)
    (run / "manifest.json").write_text(json.dumps({"created": 1796400000.0, **manifest}))
    (run / "config.yaml").write_text("synthesis:\n  plan: {name: frontier}\n  writer: magpie\n")
    for r, acc in enumerate(accuracies):
        (run / f"round_{r:03d}").mkdir()
        (run / f"round_{r:03d}" / "summary.json").write_text(json.dumps({"metrics": {"test/accuracy": acc}}))
    if lock is not None:
        (run / ".lock").write_text(str(lock))
    return run


def test_each_run_says_its_state(tmp_path: Path) -> None:
    done = {"round_000/train": {"status": "done"}, "round_001/question": {"status": "done"}}
    finished = _run(
        tmp_path, "a", {"status": "finished", "stop_reason": "no gain for 2 rounds", "phases": done}, [0.2, 0.5]
    )
    crashed = {**done, "round_001/train": {"status": "running"}}
    stopped = _run(tmp_path, "b", {"phases": crashed}, [0.2])
    live = _run(tmp_path, "c", {"phases": crashed}, [0.3], lock=os.getpid())
    dead = _run(tmp_path, "d", {"phases": crashed}, [0.3], lock=2**22 + 12345)  # a pid that is not running
    assert run_state(finished) == "finished (no gain for 2 rounds)"
    assert run_state(stopped) == run_state(dead) == "stopped: round 1 train"
    assert run_state(live) == "running: round 1 train"
    console = Console(width=200, record=True)
    console.print(runs_table(tmp_path))
    text = console.export_text()
    line = next(x for x in text.splitlines() if x.startswith("│ a "))
    assert line.count("0.500") == 2 and "frontier x magpie" in line  # best and last of 0.2, 0.5


def test_the_command_lists_runs_and_names_a_missing_folder(tmp_path: Path) -> None:
    _run(tmp_path, "x", {"phases": {}}, [])
    cmd = [sys.executable, "-m", "loop.cli", "runs"]
    done = subprocess.run(
        [*cmd, str(tmp_path)], capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "200"}
    )
    assert done.returncode == 0 and "│ x " in done.stdout and "stopped: before round 0" in done.stdout, done.stdout
    missing = subprocess.run([*cmd, str(tmp_path / "none")], capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2 and "no such folder" in missing.stderr


def test_status_watch_follows_a_live_run_and_ends_when_it_stops(tmp_path: Path) -> None:
    run, log = tmp_path / "run", tmp_path / "log.txt"
    log.write_text("")
    proc = start(["run", *TINY, "rounds.max_rounds=1", f"run_dir={run}"], "round_001/examine", log)
    watch = None
    try:
        deadline = time.monotonic() + 300
        while "holding in round 1 phase examine" not in log.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.2)
        assert run_state(run) == "running: round 1 examine"
        cmd = [sys.executable, "-m", "loop.cli", "status", str(run), "--watch", "--interval", "0.2"]
        watch = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        time.sleep(3)
        assert watch.poll() is None  # still following: the run is alive
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the run dies; its lock is left behind, stale
        proc.wait()
    out, _ = watch.communicate(timeout=60)
    assert watch.returncode == 0 and "state: stopped: round 1 examine" in out, out[-2000:]
