"""The shared loop of the writers that prompt a model with raw text rather than a chat (Magpie, Self-Instruct).

A subclass says which raw requests an ask needs (`requests`) and how one completion becomes questions or
drops (`parse`); this class sends them in one batch per attempt, checks each question against what is known
(`Novelty`) and, where the task has code that answers questions (the task world), against that code, and
asks again for what is still missing, at most `max_tries` times. Every sample that is not kept is recorded
with its reason, so the round's drop table shows what each filter cost.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from pydantic import Field

from agents.llm.parsing import excerpt
from agents.llm.types import ChatRequest
from agents.proposal import Ask, Proposal, Written, candidate_record, node_asks, rejection
from agents.similarity import Novelty
from core.plugins import Inputs, Plugin, PluginConfig
from core.records import Record

MAX_REQUESTS_PER_ASK = 64  # the seed scheme leaves room for this many requests per ask and attempt

Parsed = tuple[str, str]  # (question, "") for a question to check, ("", why) for a drop (why names the rule)


class CompletionWriterConfig(PluginConfig):
    """Knobs every raw-completion writer has."""

    rouge_max: float = Field(
        0.95,
        gt=0,
        le=1,
        description="drop a question whose ROUGE-L to a known one is above this (two world questions that differ "
        "in one number score 0.75-0.8)",
    )
    examples: int = Field(3, ge=0, description="weighted plans: failed probes of the node a prompt may show")
    verifiable_only: bool = Field(
        True,
        description="on a task whose code answers questions (the task world), drop a question it cannot answer: "
        "the student is only tested there",
    )


@dataclass
class _Job:
    ask: Ask
    kept: list[tuple[str, dict[str, object]]] = field(default_factory=list)
    drops: list[Record] = field(default_factory=list)


class CompletionWriter(Plugin):
    """Base of the raw-completion writers; subclasses set name and Config and implement requests and parse."""

    kind = "writer"
    needs = frozenset({"completion"})
    reads: tuple[str, ...] = ("known", "failures", "taxonomy")
    config: CompletionWriterConfig

    def requests(self, ask: Ask, missing: int, seed: int, attempt: int) -> list[ChatRequest]:
        """The raw requests that should bring `missing` more questions for `ask`."""
        raise NotImplementedError

    def parse(self, ask: Ask, text: str, finished: bool | None) -> list[Parsed]:
        """The questions (and drops) in one completion; `finished` is False when max_tokens cut it."""
        raise NotImplementedError

    def begin(self, inputs: Inputs) -> None:
        """Read what the writer needs beyond the known questions, once per round."""

    def extra(self, ask: Ask, question: str) -> dict[str, object]:
        """Fields a kept question's record carries beside the usual ones."""
        return {}

    def write(
        self, proposal: Proposal, budget: int, round: int, rng: random.Random, inputs: Inputs, strategy: str
    ) -> Written:
        """Questions for every ask of the proposal (and for its weights, split over nodes), each novel."""
        self.novel = Novelty(self.config.rouge_max, inputs["known"])
        self.begin(inputs)
        left = budget - len(proposal.asks)
        weighted = node_asks(proposal, left, inputs["taxonomy"], inputs["failures"], self.config.examples)
        jobs = [_Job(a) for a in [*proposal.asks, *weighted]]
        for attempt in range(self.parts.max_tries):
            pending = [(i, j) for i, j in enumerate(jobs) if len(j.kept) < j.ask.n]
            if not pending:
                break
            self._attempt(pending, round, attempt)
        items, rejected = [], []
        for job in jobs:
            for question, extra in job.kept:
                record = candidate_record(job.ask, question, None, "", round, len(items), strategy, self.name)
                items.append({**record, **extra})
            rejected += job.drops
            if len(job.kept) < job.ask.n:
                why = f"{self.name}: kept {len(job.kept)} of {job.ask.n} after {self.parts.max_tries} tries"
                rejected.append(rejection(job.ask.parent["id"], why))
        return Written(items, rejected)

    def _attempt(self, pending: Sequence[tuple[int, _Job]], round: int, attempt: int) -> None:
        requests: list[ChatRequest] = []
        owners: list[_Job] = []
        for index, job in pending:
            # Calls are cached by request and a fixed seed repeats its samples: every request of a run gets its
            # own seed from (round, the ask's place, its variant, the attempt, the request's place in the ask).
            base = ((round * 100_000 + index) * 1000 + job.ask.variant) * self.parts.max_tries + attempt
            asked = self.requests(job.ask, job.ask.n - len(job.kept), base * MAX_REQUESTS_PER_ASK, attempt)
            if len(asked) > MAX_REQUESTS_PER_ASK:
                limit = MAX_REQUESTS_PER_ASK
                raise ValueError(f"writer {self.name}: {len(asked)} requests for one ask; at most {limit}")
            requests += asked
            owners += [job] * len(asked)
        results = self.parts.client.chat(requests)
        for job, result in zip(owners, results, strict=True):
            finished = result.finished or [None] * len(result.texts)
            for text, done in zip(result.texts, finished, strict=True):
                for question, why in self.parse(job.ask, text, done):
                    self._take(job, question, why, text)

    def problem(self, question: str) -> str | None:
        """Why a parsed question cannot be kept (a repeat, too close to a known one, unanswerable), or None."""
        problem = self.novel.problem(question)
        task = self.parts.task
        checked = problem is None and self.config.verifiable_only and getattr(task, "has_oracle", False)
        if checked and task.oracle(question) is None:
            problem = "the task's code cannot answer it"
        return problem

    def _take(self, job: _Job, question: str, why: str, text: str) -> None:
        parent = job.ask.parent["id"]
        if why:
            job.drops.append(rejection(parent, f"{self.name}: {why}", excerpt(text)))
            return
        problem = self.problem(question)
        if problem:
            job.drops.append(rejection(parent, f"{self.name}: {problem}", excerpt(question)))
            return
        if len(job.kept) >= job.ask.n:
            return  # a good surplus sample: the ask has what it wanted (filters still counted every sample)
        self.novel.add([question])
        job.kept.append((question, self.extra(job.ask, question)))
