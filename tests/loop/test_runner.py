"""The loop for real at a small size: a full run, and a run killed in every phase then resumed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from loop.config import load_config
from loop.runner import start_run
from tests.helpers import kill_when_held, rows, start

SMALL = [
    "task.points=[seq.first, num.parity, cmp.max, seq.last]",
    "task.seed_per_point=60",
    "task.seed_overrides={seq.last: 3}",
    "task.test_per_point=20",
    "task.probe_per_point=20",
    "rounds.max_rounds=2",
    "rounds.plateau_rounds=5",
    "synthesis.budget_per_round=60",
    "training.epochs=null",
    "training.max_steps=150",
    "tracking.wandb_mode=disabled",
]
PHASES_0 = ["data", "build", "train", "evaluate", "log"]
PHASES_R = ["examine", "question", "answer", "assess", "filter", "train", "evaluate", "log"]


def _items(run: Path) -> list[tuple]:
    return [
        (r["id"], r["kept"], r.get("drop_reason"))
        for k in range(3)
        for r in rows(run / f"round_{k:03d}" / "items.jsonl")
    ]


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("ref") / "run"
    cfg = load_config(overrides=[*SMALL, f"run_dir={run}"])
    _, rounds = start_run(cfg)
    assert len(rounds) == 3
    return run


def test_full_run_artifacts_metrics_and_accuracy(reference_run: Path) -> None:
    run = reference_run
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "finished"
    done = {k for k, v in manifest["phases"].items() if v["status"] == "done"}
    assert done == {f"round_000/{p}" for p in PHASES_0} | {f"round_{r:03d}/{p}" for r in (1, 2) for p in PHASES_R}
    metrics = [m for m in rows(run / "metrics.jsonl") if "round" in m and "test/accuracy" in m]
    assert [m["round"] for m in metrics] == [0, 1, 2]
    assert {"test/accuracy/sequences", "test/accuracy/comparison", "probe/accuracy", "synth/kept"} <= set(metrics[1])
    assert metrics[-1]["test/accuracy"] > metrics[0]["test/accuracy"] + 0.1, [m["test/accuracy"] for m in metrics]
    synthetic = [r for r in rows(run / "round_001" / "items.jsonl")]
    assert synthetic and all(r["source"] == "synthetic" and r["round"] == 1 for r in synthetic)
    for r in synthetic:
        assert {"id", "strategy", "parent_id", "knowledge_point", "teacher", "kept", "drop_reason"} <= set(r)
        assert r["kept"] == (r["drop_reason"] is None)
    assert any(r.get("ifd") is not None for r in synthetic)
    profile = json.loads((run / "round_001" / "profile.json").read_text())
    assert profile["nodes"] and all(0 <= n["ci_low"] <= n["accuracy"] <= n["ci_high"] <= 1 for n in profile["nodes"])
    test_ids = {r["id"] for r in rows(run / "test.jsonl")}
    train_q = {r["instruction"] for k in range(3) for r in rows(run / f"round_{k:03d}" / "train.jsonl")}
    assert not train_q & {r["instruction"] for r in rows(run / "test.jsonl")}, "test item reached training"
    assert len(test_ids) == 80
    status = subprocess.run(
        [sys.executable, "-m", "loop.cli", "status", str(run)], capture_output=True, text=True, check=True
    )
    assert "finished" in status.stdout and "round" in status.stdout


def test_killed_in_every_phase_then_resumed_matches_reference(reference_run: Path, tmp_path: Path) -> None:
    run, log = tmp_path / "run", tmp_path / "log.txt"
    log.write_text("")
    holds = [f"round_000/{p}" for p in PHASES_0] + [f"round_001/{p}" for p in PHASES_R]
    proc = start(["run", *SMALL, f"run_dir={run}"], holds[0], log)
    kill_when_held(proc, log, holds[0])
    for hold in holds[1:]:
        proc = start(["resume", str(run)], hold, log)
        kill_when_held(proc, log, hold)
        manifest = json.loads((run / "manifest.json").read_text())
        assert manifest["phases"][hold]["status"] == "running"
    proc = start(["resume", str(run)], None, log)
    assert proc.wait(timeout=600) == 0, log.read_text()[-3000:]
    assert _items(run) == _items(reference_run)
    rounds = [m["round"] for m in rows(run / "metrics.jsonl") if "test/accuracy" in m]
    assert rounds == [0, 1, 2], "a round was logged twice or not at all"
    ref = [m["test/accuracy"] for m in rows(reference_run / "metrics.jsonl") if "test/accuracy" in m]
    got = [m["test/accuracy"] for m in rows(run / "metrics.jsonl") if "test/accuracy" in m]
    assert got == ref
