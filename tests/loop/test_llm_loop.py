"""The loop with LLM agents for real: SmolLM2-135M-Instruct as the chat teacher on the transformers backend,
the call cache in the run directory, usage accounting, a kill inside the Questioner's phase and a resume
that pays for none of its calls again, and a token budget that stops the loop cleanly."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from loop.config import ConfigError, load_config
from loop.runner import start_run
from loop.tasks import WorldTask
from tests.helpers import LLM_SMALL, kill_when_held, rows, start


def test_llm_loop_end_to_end_killed_in_question_and_resumed_from_the_cache(tmp_path: Path) -> None:
    run, log = tmp_path / "run", tmp_path / "log.txt"
    log.write_text("")
    proc = start(["run", *LLM_SMALL, f"run_dir={run}"], "round_001/question", log)
    try:
        # The Questioner made (and cached) its calls, then the process dies before writing its records.
        kill_when_held(proc, log, "round_001/question", timeout=1800)
        proc = start(["resume", str(run)], None, log)
        assert proc.wait(timeout=1800) == 0, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:  # a failed assertion must not leave a training run behind
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "finished"
    assert (run / "llm_cache.sqlite").exists()
    metrics = {m["round"]: m for m in rows(run / "metrics.jsonl") if "test/accuracy" in m}
    m = metrics[1]
    failures = [p for p in rows(run / "round_000" / "eval_probe.jsonl") if not p["correct"]]
    jobs = min(len(failures), 12)
    # One llm2llm request per failure (re-asks add more), each asked twice: before the kill and after.
    fresh = m["llm/questioner/calls"] - m["llm/questioner/cached_calls"]
    assert fresh >= jobs and m["llm/questioner/cached_calls"] == fresh, m
    assert m["llm/total_tokens"] > 0 and m["llm/tokens"] == m["llm/total_tokens"]
    # What the real teacher did is reported per agent: re-asks after unusable replies, time and speed.
    for agent in ("questioner", "teacher"):
        assert m[f"llm/{agent}/seconds"] > 0 and m[f"llm/{agent}/tokens_per_s"] > 0, m
    # Each of the two passes asked once per failure, plus its re-asks (a re-ask carries its attempt number).
    assert m["llm/questioner/calls"] == 2 * jobs + m["llm/questioner/retries"], m

    items = rows(run / "round_001" / "items.jsonl")
    candidates = rows(run / "round_001" / "candidates.jsonl")
    rejected = rows(run / "round_001" / "dropped_question.jsonl")
    assert len(candidates) + len(rejected) == jobs
    assert len(items) == jobs, "every request ends as a kept item or a dropped one with its reason"
    for row in items:
        assert row["source"] == "synthetic" and row["strategy"] == "llm2llm" and row["parent_id"]
        assert row["kept"] == (row["drop_reason"] is None)
    reasons = {str(r["drop_reason"]).split(":")[0] for r in items if not r["kept"]}
    # Every drop names the plugin (or the questioner's phase) that made it.
    # (SmolLM2-135M writes few well-formed items and fewer right answers: most drop, each with its reason.)
    assert reasons <= {"questioner", "verify", "quality", "decontaminate", "dedup", "ifd"}, reasons
    for row in items:
        if row["kept"]:  # the world's oracle verified every kept answer
            assert WorldTask(load_config()).verifier(row["output"], str(row.get("reference")), row)


def test_a_token_budget_stops_the_loop_cleanly_mid_round(tmp_path: Path) -> None:
    run = tmp_path / "run"
    tiny = [
        "task.points=[seq.first, cmp.max]",
        "task.seed_per_point=20",
        "training.max_steps=20",
        "teacher.llm.budget_tokens=1",
        "rounds.max_rounds=2",
    ]
    cfg = load_config(LLM_SMALL[0], [*LLM_SMALL[1:], *tiny, f"run_dir={run}"])
    _, rounds = start_run(cfg)
    # Round 1's first batch of Questioner calls is sent (nothing was spent yet), the next batch is refused.
    assert [r.index for r in rounds] == [0]
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "finished" and "token budget spent" in manifest["stop_reason"]
    assert manifest["phases"]["round_001/examine"]["status"] == "done"
    assert "round_001/train" not in manifest["phases"]
    assert [m["round"] for m in rows(run / "metrics.jsonl") if "test/accuracy" in m] == [0]


def test_llm_config_errors_name_the_field() -> None:
    with pytest.raises(ConfigError, match="'autodetect' needs a chat model \\(set teacher.kind=llm\\)"):
        load_config(overrides=["synthesis.strategy=autodetect"])
    with pytest.raises(ConfigError, match="served model's name"):
        load_config(overrides=["teacher.kind=llm", "teacher.llm.backend=openai"])
    with pytest.raises(ConfigError, match="teacher.llm.backend"):
        load_config(overrides=["teacher.kind=llm", "teacher.llm.backend=ollama"])


def test_the_auto_chat_backend_is_vllm_only_where_it_is_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    import trainers.inference
    from loop.parts import chat_backend

    cfg = load_config(LLM_SMALL[0])
    assert cfg.teacher.llm.backend == "auto"
    for installed, expected in ((True, "vllm"), (False, "transformers")):
        monkeypatch.setattr(trainers.inference, "vllm_installed", lambda v=installed: v)
        assert chat_backend(cfg) == expected
    assert chat_backend(load_config(LLM_SMALL[0], ["teacher.llm.backend=transformers", "teacher.llm.engine={}"])) == (
        "transformers"
    )


def test_world_verifier_prefers_the_oracle() -> None:
    record = {"instruction": "What is 2 + 3?"}
    verifier = WorldTask(load_config()).verifier
    assert verifier("5", "6", record) is True  # the oracle solves it: the proposed answer is ignored
    assert verifier("6", "6", record) is False
    assert verifier("blue", "blue", {"instruction": "What colour is the sky?"}) is True
