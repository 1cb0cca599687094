"""Every shipped config loads and validates; the DeepSpeed JSON its training phase would build is accepted by
DeepSpeed's own config parser at the world size it is meant for; the launch script's dry run prints the
commands it would run and refuses bad arguments. The GPU recipes cannot run here; this is how they are checked."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from loop.config import CONFIG_DIR, load_config
from loop.student import sft_job
from trainers.sft import build_ds_config

REPO = CONFIG_DIR.parent
CONFIGS = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
# Hidden sizes of the students the recipes name, from their HF config.json files (the hub is out of reach).
HIDDEN = {"meta-llama/Llama-3.2-1B-Instruct": 2048, "meta-llama/Llama-3.1-8B-Instruct": 4096}
# The GPUs each recipe is written for (its comments say so); LLM2LLM's effective batch is 128 there.
WORLD = {"gsm8k_llama3.2-1b": 4, "gsm8k_llama3.1-8b_zero3": 16, "sst2": 1, "trec": 1, "snips": 1, "casehold": 1}


def test_the_shipped_configs_are_the_ones_checked_here() -> None:
    assert {"demo", "demo_llm", "gsm8k_llama3.2-1b", "gsm8k_llama3.1-8b_zero3"} <= set(CONFIGS)
    assert set(WORLD) <= set(CONFIGS)


@pytest.mark.parametrize("name", CONFIGS)
def test_config_loads_and_deepspeed_accepts_its_training_json(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from deepspeed.runtime import config as ds_config

    cfg = load_config(CONFIG_DIR / f"{name}.yaml")
    hidden = cfg.student.tiny.hidden_size if cfg.student.model == "tiny" else HIDDEN[cfg.student.model]
    world = WORLD.get(name, 1)
    job = sft_job(cfg, Path("base"), Path("train.jsonl"), Path("out"))
    config = build_ds_config(job, world, hidden)
    # DeepSpeed reads the world size from torch.distributed, which a test does not start.
    monkeypatch.setattr(ds_config.dist, "get_rank", lambda *a, **k: 0)
    monkeypatch.setattr(ds_config.dist, "get_world_size", lambda *a, **k: world)
    parsed = ds_config.DeepSpeedConfig(config)
    assert parsed.zero_optimization_stage == cfg.training.zero_stage
    assert parsed.train_batch_size == cfg.training.micro_batch_size * cfg.training.grad_accum * world
    if name in WORLD:  # the GPU recipes: LLM2LLM's effective batch, bf16
        assert parsed.train_batch_size == 128 and parsed.bfloat16_config.enabled
    if cfg.training.zero_stage == 3:
        assert parsed.zero_config.gather_16bit_weights_on_model_save  # a loadable model folder is saved


def test_deepspeeds_parser_is_a_real_check(monkeypatch: pytest.MonkeyPatch) -> None:
    from deepspeed.runtime import config as ds_config

    cfg = load_config(CONFIG_DIR / "gsm8k_llama3.2-1b.yaml")
    config = build_ds_config(sft_job(cfg, Path("b"), Path("t"), Path("o")), 4, 2048)
    monkeypatch.setattr(ds_config.dist, "get_rank", lambda *a, **k: 0)
    monkeypatch.setattr(ds_config.dist, "get_world_size", lambda *a, **k: 8)  # launched on 8, written for 4
    with pytest.raises(AssertionError, match="train_batch_size is not equal"):
        ds_config.DeepSpeedConfig(config)
    config["zero_optimization"]["no_such_option"] = 1
    monkeypatch.setattr(ds_config.dist, "get_world_size", lambda *a, **k: 4)
    with pytest.raises(Exception, match="no_such_option"):
        ds_config.DeepSpeedConfig(config)


def _launch(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(REPO / "scripts" / "launch_multinode.sh"), *args], capture_output=True, text=True, cwd=REPO
    )


def test_the_launch_scripts_dry_run_prints_what_it_would_run(tmp_path: Path) -> None:
    hostfile = tmp_path / "hostfile"
    hostfile.write_text("node1 slots=8\nnode2 slots=8\n")
    got = _launch(
        "--config", "configs/gsm8k_llama3.1-8b_zero3.yaml", "--teacher-model", "Qwen/Qwen2.5-72B-Instruct",
        "--teacher-gpus", "4,5,6,7", "--student-gpus", "0,1,2,3", "--hostfile", str(hostfile), "--dry-run",
        "--", "seed=3",
    )  # fmt: skip
    assert got.returncode == 0, got.stderr
    teacher, wait, run = got.stdout.splitlines()
    assert teacher.startswith("teacher: env CUDA_VISIBLE_DEVICES=4,5,6,7 ")
    assert "-m vllm.entrypoints.openai.api_server --model Qwen/Qwen2.5-72B-Instruct" in teacher
    assert "--tensor-parallel-size 4" in teacher
    assert wait == "wait:    until http://127.0.0.1:8000/v1/models answers (at most 1800s)"
    assert run.startswith("run:     env CUDA_VISIBLE_DEVICES=0,1,2,3 ")
    for part in (
        "gaploop run configs/gsm8k_llama3.1-8b_zero3.yaml",
        "teacher.llm.base_url=http://127.0.0.1:8000/v1",
        "teacher.llm.model=Qwen/Qwen2.5-72B-Instruct",
        "training.launcher=deepspeed",
        f"training.hostfile={hostfile}",
        "seed=3",
    ):
        assert part in run, run
    # A server already running: nothing is started.
    got = _launch(
        "--config", "configs/demo.yaml", "--teacher-model", "m", "--teacher-url", "http://h:9/v1", "--dry-run"
    )
    assert got.returncode == 0 and not got.stdout.startswith("teacher:") and "base_url=http://h:9/v1" in got.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "--config is required"),
        (["--config", "nope.yaml", "--teacher-model", "m"], "--config nope.yaml: no such file"),
        (["--config", "configs/demo.yaml"], "--teacher-model is required"),
        (["--config", "configs/demo.yaml", "--teacher-model", "m"], "give --teacher-gpus"),
        (["--config", "configs/demo.yaml", "--teacher-model", "m", "--teacher-gpus", "0,1", "--student-gpus", "1"],
         "GPU 1 is in both"),
        (["--config", "configs/demo.yaml", "--teacher-model", "m", "--teacher-gpus", "a"], "comma-separated"),
        (["--bogus"], "unknown argument '--bogus'"),
    ],
)  # fmt: skip
def test_the_launch_script_refuses_bad_arguments(args: list[str], message: str) -> None:
    got = _launch(*args)
    assert got.returncode == 2 and message in got.stderr, got.stderr
