from __future__ import annotations

import json
from pathlib import Path

import pytest

from loop.tracking import Tracker, find_wandb_files, read_wandb_file, redact, resolve_wandb_mode


def test_redact_masks_secrets() -> None:
    cfg = {"teacher": {"api_key": "sk-123", "model": "m"}, "x": [{"token": "t"}], "empty_token": ""}
    out = redact(cfg)
    assert out == {"teacher": {"api_key": "***", "model": "m"}, "x": [{"token": "***"}], "empty_token": ""}


def test_auto_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    assert resolve_wandb_mode("auto") == "offline"
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert resolve_wandb_mode("auto") == "online"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert resolve_wandb_mode("auto") == "disabled"
    assert resolve_wandb_mode("offline") == "offline"


def test_offline_run_reads_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")
    config = {"training": {"lr": 0.003}, "teacher": {"api_key": "sk-secret"}}
    tracker = Tracker(tmp_path, config, mode="offline", name="t")
    for step in (10, 20):
        tracker.log({"train/loss": 1.0 / step}, step=step)
    tracker.log({"test/accuracy": 0.25, "test/accuracy/addition": 0.5}, round=0)
    tracker.log({"test/accuracy": 0.75}, round=1)
    tracker.log_table("synth/items", [{"id": "a", "ifd": 0.5}], round=1)
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    tracker.log_artifact("t items", "dataset", rows=[{"id": "a"}], aliases=["round-1"], metadata={"kept": 1})
    tracker.log_artifact("t-student", "model", reference=model, aliases=["final"])
    tracker.finish()

    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r.get("test/accuracy") for r in lines if "round" in r] == [0.25, 0.75]

    files = find_wandb_files(tmp_path)
    assert len(files) == 1
    run = read_wandb_file(files[0])
    rows = [r for r in run["history"] if "test/accuracy" in r]
    assert [(r["round"], r["test/accuracy"]) for r in rows] == [(0, 0.25), (1, 0.75)]
    assert any(r.get("train/global_step") == 20 for r in run["history"])
    flat = json.dumps(run["config"])
    assert "0.003" in flat
    assert "sk-secret" not in flat
    assert run["finished"]
    assert run["config"]["code"]["version"] == "0.1.0"  # and the commit, where the code is a git checkout
    by_name = {a["name"]: a for a in run["artifacts"]}  # W&B stores tables as artifacts too
    items, student = by_name["t-items"], by_name["t-student"]
    # W&B keeps an artifact's aliases as a set: their order varies from run to run.
    assert (items["type"], sorted(items["aliases"]), items["files"]) == (
        "dataset",
        ["latest", "round-1"],
        ["items.jsonl"],
    )
    assert items["metadata"] == {"kept": 1}
    assert (student["type"], sorted(student["aliases"])) == ("model", ["final", "latest"])
    assert student["references"] == [model.resolve().as_uri() + "/config.json"]

    # A resumed tracker keeps earlier rows in metrics.jsonl.
    again = Tracker(tmp_path, config, mode="disabled")
    again.log({"test/accuracy": 0.8}, round=2)
    assert len(again.rows) == len(lines) + 1
    # A phase redone on resume (its record deleted, a crash after the log) logs its round or step once.
    again.log({"test/accuracy": 0.8}, round=2)
    Tracker(tmp_path, config, mode="disabled").log({"train/loss": 9.0}, step=10)
    assert Tracker(tmp_path, config, mode="disabled").rows == again.rows
