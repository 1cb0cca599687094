"""LLM2LLM's plan: one new item per failed seed-side probe (synthetic items are never re-augmented).

With a chat writer the model sees a system prompt, one worked example and the failed question with its
answer key, and writes one similar question with its answer. Departure from the release: the prompt also
shows the student's wrong answer, which the release's template has no slot for. With the task world's
generator, the new item is a fresh one of the same point, facet and level.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from functools import partial

from agents.llm.guides import QA_OBJECT
from agents.llm.parsing import parse_json
from agents.llm.prompts import render
from agents.llm.types import Message
from agents.proposal import Ask, Candidate, Proposal, sample_records
from core.plugins import Inputs, Plugin, PluginConfig, register
from core.records import Record

WHY = "one similar item per failure"


class LLM2LLMConfig(PluginConfig):
    """One new item per failure; no knobs beyond the round's budget (failures past it are sampled)."""


@register
class LLM2LLMPlan(Plugin):
    """Per failed probe (not a synthetic item), one ask for a similar item."""

    name = "llm2llm"
    kind = "plan"
    Config = LLM2LLMConfig
    reads = ("failures",)

    def propose(self, inputs: Inputs, budget: int, round: int, rng: random.Random) -> Proposal:
        """One ask per failure, a random subset of them when they exceed the budget."""
        failures = [f for f in inputs["failures"] if f.get("source") != "synthetic"]
        asks = []
        for f in sample_records(failures, budget, rng):
            level = f.get("difficulty", self.parts.difficulty)
            key = (str(f["knowledge_point"]), f.get("facet"), None if level is None else int(level))  # type: ignore[arg-type]
            asks.append(Ask(f, 1, WHY, key, partial(messages, f), parse, guide=QA_OBJECT))
        return Proposal(asks=asks)


def messages(failure: Record, n: int, examples: Sequence[Record] = ()) -> list[Message]:
    """The chat for one new item (LLM2LLM asks for one per failure; `n` is always 1). `examples` are worked
    shots {question, answer, prediction, new_question, new_answer}; without them the built-in one is shown."""
    shots: list[Message] = []
    for ex in examples:
        user = render("llm2llm_user", question=ex["question"], answer=ex["answer"], prediction=ex["prediction"])
        reply = json.dumps({"question": ex["new_question"], "answer": ex["new_answer"]}, ensure_ascii=False)
        shots += [{"role": "user", "content": user}, {"role": "assistant", "content": reply}]
    if not shots:
        shots = [
            {"role": "user", "content": render("llm2llm_example_user")},
            {"role": "assistant", "content": render("llm2llm_example_reply")},
        ]
    user = render(
        "llm2llm_user",
        question=failure["instruction"],
        answer=failure.get("output", ""),
        prediction=failure.get("prediction", ""),
    )
    return [{"role": "system", "content": render("llm2llm_system")}, *shots, {"role": "user", "content": user}]


def parse(text: str) -> list[Candidate]:
    """The one {question, answer} object of the reply."""
    row = parse_json(text, required=("question", "answer"))
    return [(str(row["question"]).strip(), str(row["answer"]).strip(), "")]
