"""Magpie: the pre-query derived from a chat template, the exact raw prompt a steered ask sends, and what the
sanitiser and filters make of real-looking samples (the ugly ones included)."""

from __future__ import annotations

import random
from types import SimpleNamespace

import pytest

from agents.llm.scripted import CUT, ScriptedBackend
from agents.llm.template import pre_query
from agents.proposal import Proposal
from agents.tasks.world import solve
from agents.writers.magpie import MagpieWriter, sanitize
from core.plugins import Inputs, Parts

SMOL_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"


class _Tokenizer:
    """A tokenizer stand-in: a chat template and the special tokens it writes."""

    def __init__(self, template: str, specials: tuple[str, ...], eos: str) -> None:
        self.chat_template, self.all_special_tokens, self.eos_token = template, specials, eos

    def apply_chat_template(self, messages: list[dict[str, str]], tokenize: bool, add_generation_prompt: bool) -> str:
        import jinja2

        return jinja2.Template(self.chat_template).render(
            messages=messages, add_generation_prompt=add_generation_prompt
        )


LLAMA3 = (
    "<|begin_of_text|>{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
    "{{ m['content'] }}<|eot_id|>{% endfor %}{% if add_generation_prompt %}"
    "<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)
GEMMA2 = (
    "<bos>{% for m in messages %}<start_of_turn>{{ 'model' if m['role'] == 'assistant' else m['role'] }}\n"
    "{{ m['content'] }}<end_of_turn>\n{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)


def test_the_pre_query_is_the_template_up_to_the_user_message() -> None:
    llama = _Tokenizer(
        LLAMA3, ("<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"), "<|eot_id|>"
    )
    got = pre_query(llama)  # type: ignore[arg-type]
    assert got.text == "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n"  # Magpie's Llama-3 entry
    assert set(got.stop) == {"<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",
                             "assistant", "Assistant"}  # fmt: skip
    gemma = _Tokenizer(GEMMA2, ("<bos>", "<start_of_turn>", "<end_of_turn>"), "<eos>")
    got = pre_query(gemma)  # type: ignore[arg-type]
    assert got.text == "<bos><start_of_turn>user\n"
    assert "model" in got.stop and "Model" in got.stop and "<eos>" in got.stop  # the role word, and EOS
    assert "assistant" not in pre_query(gemma, role_stop=False).stop  # type: ignore[arg-type]
    # SmolLM2's template injects its default system prompt: the derived pre-query carries it (as measured).
    smol = ScriptedBackend([]).pre_query()
    assert smol.text == f"<|im_start|>system\n{SMOL_SYSTEM}<|im_end|>\n<|im_start|>user\n"
    assert ScriptedBackend([]).pre_query("Steer.").text == "<|im_start|>system\nSteer.<|im_end|>\n<|im_start|>user\n"
    with pytest.raises(ValueError, match="no chat template"):
        pre_query(_Tokenizer("", (), "</s>"))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("sample", "question"),
    [
        ("Can you help me plan a charity event?", "Can you help me plan a charity event?"),
        ("1. Question: What is 23 + 19? Answer: 42", "What is 23 + 19?"),
        ("**Question** What is 5 + 7?\nThe answer is 12.", "What is 5 + 7?"),
        ('"What is 7 - 5?" asked Tom.', "What is 7 - 5?"),
        ("What is 3 + 4?\nWhat is 5 + 6?", "What is 3 + 4?"),
        ("## Problem: Which is larger, 31 or 13?", "Which is larger, 31 or 13?"),
        ("Write a haiku about rain\nRain falls on the roof", "Write a haiku about rain"),
        ("Answer: 5", ""),
    ],
)
def test_the_sanitiser_keeps_the_question_a_sample_asks(sample: str, question: str) -> None:
    assert sanitize(sample)[0] == question


def _writer(replies: list[str], **options: object) -> tuple[MagpieWriter, ScriptedBackend]:
    it = iter(replies)
    backend = ScriptedBackend([(".", lambda r: next(it))])
    task = SimpleNamespace(has_oracle=True, oracle=solve)
    writer = MagpieWriter(MagpieWriter.Config(name="magpie", **options), Parts(client=backend, task=task, max_tries=2))
    return writer, backend


def _inputs(writer: MagpieWriter, known: list[str]) -> Inputs:
    failures = [{"instruction": "What is 48 + 37?", "knowledge_point": "add.carry", "facet": None, "correct": False}]
    values = {
        "known": known,
        "failures": failures,
        "taxonomy": [{"id": "add.carry", "description": "addition with a carry"}],
    }
    return Inputs(type(writer), {k: (lambda v=v: v) for k, v in values.items()})


def test_a_steered_ask_sends_the_exact_prompt_and_keeps_only_answerable_new_questions() -> None:
    samples = [
        "What is 56 + 29?",  # kept
        "1. Question: What is 67 + 18? Answer: 85",  # kept, sanitised
        "What is 48 + 37?",  # a known question
        "Can you help me plan a charity event?",  # the world cannot answer it
        "What is 77 + 15? Let me think step by step and" + CUT,  # cut by max_tokens
        "Here are the sums:",  # ends with ':'
        "Answer: 42",  # an answer, no question
        "What is 56 + 29?",  # a repeat of the first
    ]
    writer, backend = _writer(samples, samples_per_item=4)
    proposal = Proposal(weights={("add.carry", None, 2): 1.0}, reasons={("add.carry", None, 2): "fails 9/10"})
    written = writer.write(proposal, 2, 1, random.Random(0), _inputs(writer, ["What is 48 + 37?"]), "weakness")
    (request,) = [c for c in backend.calls]
    assert request.messages == [] and request.sampling.n == 8 and request.sampling.temperature == 0.7
    assert request.prompt == (
        "<|im_start|>system\nYou are an AI assistant for addition with a carry. People come to you with short, "
        "self-contained questions about addition with a carry, and you help them find the right answer. Questions "
        "you are often asked look like these:\n- What is 48 + 37?<|im_end|>\n<|im_start|>user\n"
    )
    assert request.sampling.stop == ("<|im_start|>", "<|im_end|>", "assistant", "Assistant")
    assert [i["instruction"] for i in written.items] == ["What is 56 + 29?", "What is 67 + 18?"]
    assert written.items[1]["raw_instruction"] == samples[1] and "raw_instruction" not in written.items[0]
    assert all(i["knowledge_point"] == "add.carry" and i["writer"] == "magpie" for i in written.items)
    reasons = [r["reason"] for r in written.rejected]
    assert reasons == [
        "magpie: repeat of a known question",
        "magpie: the task's code cannot answer it",
        "magpie: not terminated (cut by max_tokens)",
        "magpie: incomplete (ends with ':')",
        "magpie: empty after sanitising",
        "magpie: repeat of a known question",  # the first sample, kept a moment ago, is known now
    ]


def test_a_short_ask_is_asked_again_with_another_seed_then_given_up() -> None:
    writer, backend = _writer(["Tell me a joke?", "Who are you?", "What is 12 + 9?", "Sing?"], samples_per_item=2)
    proposal = Proposal(weights={("add.carry", None, 2): 1.0}, reasons={("add.carry", None, 2): "weak"})
    written = writer.write(proposal, 1, 3, random.Random(0), _inputs(writer, []), "weakness")
    seeds = [c.sampling.seed for c in backend.calls]
    assert len(seeds) == 2 and len(set(seeds)) == 2
    assert [i["instruction"] for i in written.items] == ["What is 12 + 9?"]
    writer, _ = _writer(["Tell me a joke?"] * 4, samples_per_item=2)
    written = writer.write(proposal, 1, 3, random.Random(0), _inputs(writer, []), "weakness")
    assert not written.items and written.rejected[-1]["reason"] == "magpie: kept 0 of 1 after 2 tries"
