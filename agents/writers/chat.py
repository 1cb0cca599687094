"""A chat model as a writer: asks sent in batches, replies parsed, novel candidates kept, the rest re-asked.

A plan with a prompt of its own (llm2llm, instructors, autodetect) builds each ask's chat; for a plan that
only weighs nodes (weakness, frontier, random) the budget is split by the weights and each node gets the
generic `point_items` prompt: the node's description and up to `examples` of its failed probes. A
candidate is kept only if it is not a known question and its ROUGE-L to every known one is at most
`rouge_max`; an ask is re-asked (with another seed) at most `max_tries` times, then recorded as rejected
with its reason.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from functools import partial

from pydantic import Field

from agents.llm.guides import qa_list
from agents.llm.parsing import ParseError, excerpt, parse_json_list
from agents.llm.prompts import render
from agents.llm.types import ChatRequest, Guide, Message, Sampling
from agents.proposal import Ask, Candidate, Proposal, Written, candidate_record, node_asks, rejection
from agents.similarity import Novelty
from core.plugins import Inputs, Plugin, PluginConfig, register


class ChatWriterConfig(PluginConfig):
    """Writing by a chat model (teacher.llm)."""

    rouge_max: float = Field(
        0.95, gt=0, le=1, description="drop a candidate whose ROUGE-L to a known question is above this (LLM2LLM)"
    )
    examples: int = Field(3, ge=0, description="weighted plans: failed probes of the node shown in its prompt")


@dataclass
class _Job:
    ask: Ask
    messages: object
    kept: list[Candidate] = field(default_factory=list)
    reason: str = ""
    excerpt: str = ""


@register
class ChatWriter(Plugin):
    """Candidates written by the run's chat model."""

    name = "chat"
    kind = "writer"
    Config = ChatWriterConfig
    needs = frozenset({"chat"})
    reads = ("known", "failures", "taxonomy")
    default_rank = 1
    rng_tag = "llm-questioner"
    config: ChatWriterConfig

    def write(
        self, proposal: Proposal, budget: int, round: int, rng: random.Random, inputs: Inputs, strategy: str
    ) -> Written:
        """Candidates for every ask (and for the weights, split by `allocate`), each novel."""
        self._novel = Novelty(self.config.rouge_max, inputs["known"])
        left = budget - len(proposal.asks)
        weighted = node_asks(proposal, left, inputs["taxonomy"], inputs["failures"], self.config.examples)
        asks = list(proposal.asks) + weighted
        jobs = [_Job(a, a.messages or partial(_point_messages, a)) for a in asks]
        self._run(jobs, round)
        items, rejected = [], []
        for job in jobs:
            for question, answer, note in job.kept:
                items.append(candidate_record(job.ask, question, answer, note, round, len(items), strategy, self.name))
            if len(job.kept) < job.ask.n:
                got = (
                    f"kept {len(job.kept)} of {job.ask.n} after {self.parts.max_tries} tries; last: "
                    if job.ask.n > 1
                    else ""
                )
                rejected.append(rejection(job.ask.parent["id"], got + (job.reason or "no candidate"), job.excerpt))
        return Written(items, rejected)

    def _run(self, jobs: list[_Job], round: int) -> None:
        for attempt in range(self.parts.max_tries):
            pending = [(i, j) for i, j in enumerate(jobs) if len(j.kept) < j.ask.n]
            if not pending:
                break
            requests = [
                ChatRequest(
                    j.messages(j.ask.n - len(j.kept)),  # type: ignore[operator]
                    replace(self._sampling(round, i, j.ask, attempt), guide=_guide(j.ask, j.ask.n - len(j.kept))),
                    "questioner",
                    attempt,
                )
                for i, j in pending
            ]
            for (_, job), result in zip(pending, self.parts.client.chat(requests), strict=True):
                self._take(job, result.texts[0] if result.texts else "")

    def _sampling(self, round: int, index: int, ask: Ask, attempt: int) -> Sampling:
        # Calls are cached by request, and a fixed seed makes identical prompts return identical samples:
        # every request of a run gets its own seed, from (round, the ask's place in the round, its variant,
        # the attempt), so a resumed round asks exactly the same requests again.
        seed = ((round * 100_000 + index) * 1000 + ask.variant) * self.parts.max_tries + attempt
        return Sampling(temperature=self.parts.temperature, max_tokens=self.parts.max_tokens, seed=seed)

    def _take(self, job: _Job, text: str) -> None:
        try:
            candidates = (job.ask.parse or _parse_list)(text)
        except ParseError as err:
            job.reason, job.excerpt = f"unparsable: {err}", err.excerpt
            return
        for question, answer, note in candidates:
            if len(job.kept) >= job.ask.n:
                break
            problem = self._novel.problem(question)
            if problem:
                job.reason, job.excerpt = problem, excerpt(question)
                continue
            self._novel.add([question])
            job.kept.append((question, answer, note))


def _guide(ask: Ask, n: int) -> Guide | None:
    """The ask's own reply shape, or the generic prompt's: a list of n {question, answer} objects."""
    if ask.guide is not None or ask.parse is not None:
        return ask.guide
    return qa_list(n)


def _point_messages(ask: Ask, n: int) -> list[Message]:
    """The generic prompt for a weighted node: write n new questions testing it, like its failures."""
    context = ask.context
    examples = [
        {"question": f["instruction"], "answer": f.get("output", ""), "prediction": f.get("prediction", "")}
        for f in context["examples"]  # type: ignore[index]
    ]
    user = render(
        "point_items",
        point=ask.parent["knowledge_point"],
        facet=ask.parent.get("facet"),
        description=context["description"],  # type: ignore[index]
        examples=examples,
        why=ask.why,
        n=n,
    )
    return [{"role": "system", "content": render("point_items_system")}, {"role": "user", "content": user}]


def _parse_list(text: str) -> list[Candidate]:
    rows = parse_json_list(text, required=("question", "answer"))
    return [(str(r["question"]).strip(), str(r["answer"]).strip(), "") for r in rows]
