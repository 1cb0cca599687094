"""End to end: the demo on a very small config, real DeepSpeed, real W&B offline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loop.config import load_config
from loop.demo import run_demo
from loop.tracking import find_wandb_files, read_wandb_file


def test_demo_runs_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")
    cfg = load_config(
        overrides=[
            f"run_dir={tmp_path / 'run'}",
            "task.points=[add.no_carry, cmp.max, seq.reverse]",
            "task.seed_per_point=40",
            "task.test_per_point=10",
            "student.tiny.hidden_size=64",
            "student.tiny.num_layers=2",
            "student.tiny.intermediate_size=128",
            "training.epochs=null",
            "training.max_steps=60",
            "training.micro_batch_size=16",
            "tracking.wandb_mode=offline",
        ]
    )
    result = run_demo(cfg)
    run = tmp_path / "run"
    assert result.last_loss < result.first_loss * 0.7, (result.first_loss, result.last_loss)
    manifest = json.loads((run / "manifest.json").read_text())
    assert {k for k, v in manifest["phases"].items() if v["status"] == "done"} >= {
        "round_000/data",
        "round_000/build",
        "round_000/train",
        "round_000/evaluate",
        "round_000/log",
        "round_000/evaluate_base",
        "round_000/ifd",
    }
    # Round 0 is the loop's own: its student where a loop run keeps it, its summary beside it.
    assert (run / "round_000" / "model" / "config.json").is_file()
    summary = json.loads((run / "round_000" / "summary.json").read_text())["metrics"]
    assert summary["test/accuracy"] == result.accuracy_after
    base = [json.loads(x) for x in (run / "round_000" / "eval_test_base.jsonl").read_text().splitlines()]
    assert len(base) == 30 and result.accuracy_before == sum(r["correct"] for r in base) / 30
    evals = [json.loads(x) for x in (run / "round_000" / "eval_test.jsonl").read_text().splitlines()]
    assert len(evals) == 30 and all("prediction" in r and "correct" in r for r in evals)
    ifd_rows = [json.loads(x) for x in (run / "round_000" / "ifd_seed.jsonl").read_text().splitlines()]
    assert len(ifd_rows) == 120 and sum(r["ifd"] is not None for r in ifd_rows) == 120
    metrics = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    round_rows = [m for m in metrics if m.get("round") == 0]
    assert round_rows and "test/accuracy" in round_rows[-1] and "test/accuracy/comparison" in round_rows[-1]
    assert any("train/loss" in m for m in metrics)
    demo = [m for m in metrics if "demo/ifd_mean" in m]
    assert len(demo) == 1 and demo[0]["demo/test_accuracy_base"] == result.accuracy_before
    history = read_wandb_file(find_wandb_files(run)[0])["history"]
    assert any(h.get("test/accuracy") == round_rows[-1]["test/accuracy"] for h in history)
    assert any(h.get("demo/ifd_mean") == result.ifd_mean for h in history)
