"""The student's inference and IFD scoring in a child process (how GPUs hand memory back between phases)
give exactly what the in-process path gives, and a failing child says why."""

from __future__ import annotations

from pathlib import Path

import pytest

from agents.tasks.world import generate_items
from loop.config import load_config
from loop.parts import score_ifd
from loop.student import build_student, evaluate, in_child

SMALL = ["student.tiny.hidden_size=32", "student.tiny.num_layers=1", "student.tiny.intermediate_size=64"]
SMALL += ["student.tiny.vocab_size=128", "student.max_new_tokens=6"]


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cfg = load_config(overrides=SMALL)
    items = generate_items(0, {"add.carry": 40, "seq.reverse": 40})
    return build_student(
        cfg, tmp_path_factory.mktemp("proc") / "model", [f"{i['instruction']}\n{i['output']}" for i in items]
    )


def test_child_answers_and_ifd_equal_the_inline_ones(model: Path, tmp_path: Path) -> None:
    items = generate_items(1, {"add.carry": 12, "seq.reverse": 12, "cmp.max": 12}, split="probe")
    items[0] = {**items[0], "input": "context"}  # an input field reaches the child too
    inline_cfg = load_config(overrides=[*SMALL, "student.inference_process=inline"])
    child_cfg = load_config(overrides=[*SMALL, "student.inference_process=child"])
    assert not in_child(inline_cfg) and in_child(child_cfg)
    inline = evaluate(inline_cfg, model, items, "inline", stop=("\n",))
    child = evaluate(child_cfg, model, items, "child", stop=("\n",))
    assert [r["prediction"] for r in child] == [r["prediction"] for r in inline]
    assert [r["id"] for r in child] == [r["id"] for r in items]  # same order, records kept whole
    a = score_ifd(inline_cfg, model, items)
    b = score_ifd(child_cfg, model, items)
    assert [s.ifd for s in b] == pytest.approx([s.ifd for s in a], rel=1e-6)
    assert [s.loss_cond for s in b] == pytest.approx([s.loss_cond for s in a], rel=1e-6)
    ra, rb = score_ifd(inline_cfg, model, items, reverse=True), score_ifd(child_cfg, model, items, reverse=True)
    assert [s.ifd is None for s in rb] == [s.ifd is None for s in ra]  # r-IFD through the child too
    assert [s.ifd for s in rb if s.ifd is not None] == pytest.approx([s.ifd for s in ra if s.ifd is not None], rel=1e-6)
    assert [s.ifd for s in ra] != [s.ifd for s in a]


def test_a_failing_child_names_itself_and_shows_its_error(tmp_path: Path) -> None:
    cfg = load_config(overrides=[*SMALL, "student.inference_process=child"])
    missing = tmp_path / "no_model"
    with pytest.raises(RuntimeError) as err:
        evaluate(cfg, missing, generate_items(0, {"cmp.max": 2}), "round 3 evaluate")
    # The phase, the command, and the child's own error from the end of its output.
    assert str(err.value).startswith("round 3 evaluate: the child process `python -m trainers.inference ")
    assert f"FileNotFoundError: cannot load a model from {missing}" in str(err.value)
    with pytest.raises(RuntimeError) as err:
        score_ifd(cfg, missing, [{"instruction": "1+1", "output": "2"}])
    assert str(err.value).startswith("IFD scoring: the child process `python -m trainers.ifd ")
    assert f"FileNotFoundError: cannot load a model from {missing}" in str(err.value)


def test_vllm_engine_arguments_reach_the_job_only_for_vllm() -> None:
    from loop.config import ConfigError
    from loop.student import _engine

    cfg = load_config(overrides=["student.inference_backend=vllm", "student.vllm_engine={gpu_memory_utilization: 0.5}"])
    assert _engine(cfg) == {"gpu_memory_utilization": 0.5}
    assert _engine(load_config()) == {}
    with pytest.raises(ConfigError, match="vllm_engine applies to inference_backend vllm"):
        load_config(overrides=["student.vllm_engine={max_model_len: 512}"])


def test_the_training_job_names_absolute_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from loop.student import sft_job

    # The trainer runs from the package root (and over a hostfile on other nodes), not from here.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "base").mkdir(parents=True)
    cfg = load_config(overrides=SMALL)
    job = sft_job(cfg, Path("runs/base"), Path("runs/train.jsonl"), Path("runs/round_000/model"))
    assert job.model_path == str(tmp_path / "runs" / "base")
    assert job.data_path == str(tmp_path / "runs" / "train.jsonl")
    assert job.output_dir == str(tmp_path / "runs" / "round_000" / "model")
    hub = sft_job(cfg, Path("meta-llama/Llama-3.2-1B-Instruct"), Path("t.jsonl"), Path("o"))
    assert hub.model_path == "meta-llama/Llama-3.2-1B-Instruct"  # not a folder here: a hub name
