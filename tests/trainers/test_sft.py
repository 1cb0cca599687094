"""SFT with real DeepSpeed on CPU against a tiny student: loss goes down, checkpoints resume, the
saved folder reloads to the same logits, and the child-process launcher reports progress and errors."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError

from agents.tasks.world import generate_items, points_for
from core.jobs import read_job, write_job
from trainers import sft
from trainers.sft import (
    SFTError,
    SFTJob,
    build_ds_config,
    count_total_steps,
    epoch_batches,
    launch_sft,
    lr_lambda,
    train_sft,
)
from trainers.tiny import TinySpec, build_tiny_student, load_student
from trainers.training import TrainingConfig

SPEC = TinySpec(hidden_size=64, num_layers=2, num_heads=4, intermediate_size=128)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """A tiny base model and a JSONL training file built from the task world."""
    root = tmp_path_factory.mktemp("sft")
    rows = generate_items(0, {p: 12 for p in points_for()})
    build_tiny_student(root / "base", [f"{r['instruction']}\n{r['output']}" for r in rows], SPEC)
    data = root / "data.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root, root / "base", data


def make_job(base: Path, data: Path, out: Path, **overrides: object) -> SFTJob:
    """A small job; an override names a field of the job or of its training section."""
    training: dict[str, object] = {
        "epochs": None,
        "max_steps": 24,
        "micro_batch_size": 8,
        "grad_accum": 2,
        "lr": 3e-3,
        "warmup_ratio": 0.1,
        "zero_stage": 0,
        "launcher": "python",
    }
    training.update({k: v for k, v in overrides.items() if k in TrainingConfig.model_fields})
    job = {k: v for k, v in overrides.items() if k not in TrainingConfig.model_fields}
    return SFTJob(
        model_path=str(base),
        data_path=str(data),
        output_dir=str(out),
        training=TrainingConfig(**training),
        template="plain",
        max_length=48,
        **job,
    )


@pytest.mark.parametrize("stage", [0, 2, 3])
def test_training_lowers_loss_and_saved_model_matches_engine(setup: tuple[Path, Path, Path], stage: int) -> None:
    root, base, data = setup
    job = make_job(base, data, root / f"zero{stage}", zero_stage=stage)
    result, engine = train_sft(job)
    try:
        assert result.steps == 24 and len(result.losses) == 24
        assert result.last_loss < 0.6 * result.first_loss, result.losses
        assert result.train_tokens > 0 and result.tokens_per_s > 0

        model, tokenizer = load_student(result.model_dir)
        ids = torch.tensor([tokenizer("What is 12 + 7?\n19")["input_ids"]])
        engine.eval()
        with torch.no_grad():
            expected = engine(input_ids=ids).logits
            got = model(input_ids=ids).logits
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    finally:
        engine.destroy()

    events = [json.loads(line) for line in (root / f"zero{stage}" / "progress.jsonl").read_text().splitlines()]
    assert [e["step"] for e in events] == list(range(1, 25))
    assert {"loss", "lr", "tokens", "elapsed", "total_steps"} <= set(events[0])


def test_checkpoint_resume_continues_the_same_run(setup: tuple[Path, Path, Path]) -> None:
    root, base, data = setup
    full = sft.run_sft(make_job(base, data, root / "full", zero_stage=2, max_steps=12, checkpoint_every=6))
    assert (root / "full" / "checkpoints" / "step_6").is_dir()

    resumed_job = make_job(
        base,
        data,
        root / "resumed",
        zero_stage=2,
        max_steps=12,
        resume_from_checkpoint=str(root / "full" / "checkpoints" / "step_6"),
    )
    resumed = sft.run_sft(resumed_job)
    assert resumed.resumed_from_step == 6 and resumed.steps == 12
    # Same weights, optimizer state, lr schedule position and data order: the second half repeats exactly.
    assert resumed.losses == pytest.approx(full.losses[6:], rel=1e-4)
    events = [json.loads(line) for line in (root / "resumed" / "progress.jsonl").read_text().splitlines()]
    assert events[0]["step"] == 7


def test_gradient_checkpointing_trains_the_same_run(setup: tuple[Path, Path, Path]) -> None:
    root, base, data = setup
    plain = sft.run_sft(make_job(base, data, root / "plain", max_steps=8))
    recomputed, engine = train_sft(make_job(base, data, root / "recomputed", max_steps=8, gradient_checkpointing=True))
    try:
        assert engine.module.is_gradient_checkpointing
    finally:
        engine.destroy()
    # Activations recomputed in the backward pass: the same gradients, so the same losses step by step.
    assert recomputed.losses == pytest.approx(plain.losses, rel=1e-4)


def test_one_rank_of_zero0_skips_the_gradient_all_reduce_and_trains_the_same_run(
    setup: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, base, data = setup
    skipped, engine = train_sft(make_job(base, data, root / "skipped", max_steps=8))
    try:
        assert not engine.enable_backward_allreduce
    finally:
        engine.destroy()
    # DeepSpeed's own path: flatten every gradient, all-reduce it over one rank, divide by 1, copy it back.
    build = sft.build_engine

    def with_all_reduce(*args: object, **kwargs: object) -> object:
        built = build(*args, **kwargs)  # type: ignore[arg-type]
        built.enable_backward_allreduce = True
        return built

    monkeypatch.setattr(sft, "build_engine", with_all_reduce)
    reduced, engine = train_sft(make_job(base, data, root / "reduced", max_steps=8))
    try:
        assert engine.enable_backward_allreduce
    finally:
        engine.destroy()
    assert skipped.losses == pytest.approx(reduced.losses, rel=1e-6)


def test_launch_sft_in_a_child_reports_progress(setup: tuple[Path, Path, Path]) -> None:
    root, base, data = setup
    events: list[dict[str, object]] = []
    result = launch_sft(make_job(base, data, root / "child", max_steps=6), on_progress=events.append)
    assert [e["step"] for e in events] == [1, 2, 3, 4, 5, 6]
    assert result.steps == 6 and Path(result.model_dir, "model.safetensors").exists()
    # The loop's memory peaks travel back with the result: a torch process holds far more than 100 MB.
    assert result.peak_host_rss_bytes is not None and result.peak_host_rss_bytes > 100e6
    on_cuda = torch.cuda.is_available()
    assert (result.peak_gpu_allocated_bytes is not None) == on_cuda == (result.peak_gpu_reserved_bytes is not None)


def test_launch_sft_kills_the_child_on_interrupt(
    setup: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, base, data = setup
    procs: list[subprocess.Popen[bytes]] = []
    real_popen = subprocess.Popen

    def recording_popen(*args: object, **kwargs: object) -> subprocess.Popen[bytes]:
        procs.append(real_popen(*args, **kwargs))
        return procs[-1]

    def interrupt(event: dict[str, object]) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(sft.subprocess, "Popen", recording_popen)
    with pytest.raises(KeyboardInterrupt):
        launch_sft(make_job(base, data, root / "interrupted", max_steps=500), on_progress=interrupt)
    assert procs and procs[0].poll() is not None


def test_bad_row_names_file_and_line(setup: tuple[Path, Path, Path], tmp_path: Path) -> None:
    root, base, _ = setup
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instruction": "What is 1 + 1?", "output": "2"}\n{"instruction": "What is 2 + 2?"}\n')
    with pytest.raises(ValueError, match=r"bad\.jsonl:2: field 'output'"):
        sft.run_sft(make_job(base, bad, tmp_path / "out"))
    with pytest.raises(SFTError, match=r"bad\.jsonl:2"):
        launch_sft(make_job(base, bad, tmp_path / "child"))


def test_ds_config_fills_auto_and_rejects_conflicts(tmp_path: Path) -> None:
    training = TrainingConfig(micro_batch_size=4, grad_accum=3, zero_stage=3)
    job = SFTJob(model_path="m", data_path="d", output_dir="o", training=training)
    config = build_ds_config(job, world_size=2, hidden_size=64)
    assert config["train_batch_size"] == 24 and config["gradient_accumulation_steps"] == 3
    assert config["zero_optimization"]["stage"] == 3
    assert config["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True
    assert config["zero_optimization"]["reduce_bucket_size"] == 64 * 64
    assert config["bf16"]["enabled"] is False  # fp32 on CPU
    fixed = tmp_path / "fixed.json"
    fixed.write_text(json.dumps({"train_micro_batch_size_per_gpu": 16}))
    with pytest.raises(ValueError, match="train_micro_batch_size_per_gpu is 16"):
        custom = job.model_copy(update={"training": training.model_copy(update={"deepspeed_config": str(fixed)})})
        build_ds_config(custom, world_size=1, hidden_size=64)


def test_batches_are_seeded_and_cover_every_row() -> None:
    lengths = [5, 9, 3, 7, 7, 2, 8, 1, 4, 6, 10]
    a = epoch_batches(lengths, 3, seed=1, group_by_length=True)
    assert a == epoch_batches(lengths, 3, seed=1, group_by_length=True)
    assert sorted(i for b in a for i in b) == list(range(len(lengths)))
    assert a != epoch_batches(lengths, 3, seed=2, group_by_length=True)


def test_lr_schedule_warms_up_then_decays() -> None:
    f = lr_lambda("cosine", warmup_steps=2, total_steps=10)
    assert [f(0), f(1)] == [0.5, 1.0]
    assert f(2) == 1.0 and f(6) == pytest.approx(0.5) and f(9) < 0.05
    assert lr_lambda("linear", 0, 10)(5) == pytest.approx(0.5)
    assert lr_lambda("constant", 1, 10)(8) == 1.0


def test_job_length_is_max_steps_else_epochs(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="set exactly one of epochs and max_steps"):
        TrainingConfig(epochs=None, max_steps=None)
    training = TrainingConfig(epochs=2.0, max_steps=None, micro_batch_size=4, grad_accum=2)
    job = SFTJob(model_path="m", data_path="d", output_dir="o", training=training)
    assert count_total_steps(job, n_rows=30, world_size=1) == 8  # 2 epochs x 8 micro-batches / 2
    steps = TrainingConfig(epochs=None, max_steps=7)
    assert count_total_steps(job.model_copy(update={"training": steps}), n_rows=30, world_size=1) == 7
    # The job travels to its child as JSON and comes back equal; a stray field is named.
    assert read_job(SFTJob, write_job(tmp_path / "job.json", job)) == job
    (tmp_path / "bad.json").write_text(json.dumps({**job.model_dump(mode="json"), "lrr": 1}))
    with pytest.raises(ValueError, match=r"bad\.json \(SFTJob\): lrr: Extra inputs are not permitted"):
        read_job(SFTJob, tmp_path / "bad.json")


def test_extension_dir_per_environment_and_orphaned_build_lock_removed(tmp_path: Path) -> None:
    import os
    import sys

    from trainers.sft import STALE_LOCK_SECONDS, _prepare_extensions

    env: dict[str, str] = {}
    _prepare_extensions(env)
    assert env["TORCH_EXTENSIONS_DIR"] == str(Path(sys.prefix) / "torch_extensions")
    old, fresh = tmp_path / "deepspeed_shm_comm" / "lock", tmp_path / "other_op" / "lock"
    for lock in (old, fresh):
        lock.parent.mkdir()
        lock.touch()
    stale = old.stat().st_mtime - STALE_LOCK_SECONDS - 60
    os.utime(old, (stale, stale))
    env = {"TORCH_EXTENSIONS_DIR": str(tmp_path)}  # a user's own setting is kept
    _prepare_extensions(env)
    assert env["TORCH_EXTENSIONS_DIR"] == str(tmp_path)
    assert not old.exists() and fresh.exists()  # a lock of a build that may still be running stays


def test_tokens_per_second_leaves_the_first_steps_warm_up_out(tmp_path: Path) -> None:
    # A first step of 100 tokens in 2 s (allocation, DeepSpeed's first reduce), then 200 tokens in 2 s.
    many = sft.summarize([1.0, 0.5, 0.4], 300, 4.0, 3, 0, tmp_path, warm=(100, 2.0))
    assert many.tokens_per_s == 100.0 and many.seconds == 4.0
    one = sft.summarize([1.0], 100, 2.0, 1, 0, tmp_path, warm=(100, 2.0))  # one step: its own rate is all there is
    assert one.tokens_per_s == 50.0
