"""LLMs-as-Instructors' plan: learning from error, optionally by contrast.

n = ceil(budget / #wrong) similar items per wrong answer (capped by the budget), the model shown the
question and the wrong answer; with `contrast`, also the k nearest questions the student got right
(TF-IDF cosine here, where the paper embeds with BERT). Departures: the answer key is shown too, when
the record has one; the paper's n has +1 to make up for drops, here the missing items are asked for again
instead (the writer's tries).
"""

from __future__ import annotations

import math
import random
from functools import partial

from pydantic import Field

from agents.llm.guides import qa_list
from agents.llm.parsing import parse_json_list
from agents.llm.prompts import render
from agents.llm.types import Message
from agents.proposal import Ask, Candidate, Proposal, sample_records
from agents.similarity import TfidfIndex
from core.plugins import Inputs, Plugin, PluginConfig, register
from core.records import Record


class InstructorsConfig(PluginConfig):
    """Learning from error (and by contrast)."""

    contrast: bool = Field(False, description="also show the k nearest questions the student got right")
    k: int = Field(2, ge=1, description="contrast: how many right answers to show (the paper uses 2-3)")


@register
class InstructorsPlan(Plugin):
    """Per wrong answer, n similar items written by a model that sees the error."""

    name = "instructors"
    kind = "plan"
    Config = InstructorsConfig
    needs = frozenset({"chat"})
    reads = ("failures", "successes")
    config: InstructorsConfig

    def propose(self, inputs: Inputs, budget: int, round: int, rng: random.Random) -> Proposal:
        """Asks of ceil(budget / #wrong) items each, the last ones smaller so the budget holds."""
        wrong = sample_records(list(inputs["failures"]), budget, rng)
        if not wrong:
            return Proposal()
        successes = inputs["successes"] if self.config.contrast else []
        index = TfidfIndex([str(s["instruction"]) for s in successes]) if successes else None
        per, left, asks = math.ceil(budget / len(wrong)), budget, []
        for f in wrong:
            near = index.nearest(str(f["instruction"]), self.config.k) if index else []
            right = [index.texts[i] for i, _ in near] if index else []
            n = min(per, left)
            why = f"instructors: learning from error{' by contrast' if right else ''}, {n} per wrong answer"
            asks.append(Ask(f, n, why, messages=partial(messages, f, right), parse=parse, guide=qa_list(n)))
            left -= n
        return Proposal(asks=asks)


def messages(failure: Record, right: list[str], n: int) -> list[Message]:
    """The chat asking for n items like the failed one (and unlike the right ones shown)."""
    system = render("instructors_system", contrast=bool(right))
    user = render(
        "instructors_user",
        question=failure["instruction"],
        answer=failure.get("output") or "",
        prediction=failure.get("prediction", ""),
        correct=right,
        n=n,
    )
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def parse(text: str) -> list[Candidate]:
    """A list of {question, answer} objects."""
    rows = parse_json_list(text, required=("question", "answer"))
    return [(str(r["question"]).strip(), str(r["answer"]).strip(), "") for r in rows]
