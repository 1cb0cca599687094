"""Evol-Instruct as a writer: the round's failed questions rewritten into harder variants, epoch after epoch.

Each ask starts `ceil(n / epochs)` chains at the failed probes it was given (a weighted node's examples, or
the failure an explicit ask is about). In every epoch each chain's current question is sent to the chat
model with one mutation, drawn per chain and epoch from `mutations`: the in-depth ones (add a constraint,
deepen, concretize, ask for several reasoning steps, complicate the input) rewrite it, the in-breadth one
writes a new question of the same domain. The reply after the last `Prompt#:` is the evolved question
(distilabel's parse). The paper's elimination rules that concern the question are named drops here: the
template's words leaked into it, no information gain (ROUGE-L to the question it evolved from above
`gain_rouge_max`, the cheap form of the paper's "equal?" judge), a repeat of a known question, and, on a
task whose code answers questions (the task world), "the task's code cannot answer it". A failed evolution
leaves its chain where it was, so the next epoch evolves the same question again (the paper's "back to the
pool"); a kept one becomes the chain's question, so epoch k writes k-times evolved questions. The rules on
the answer (a short "sorry", only stop words) are the `eliminate` curator's. Spec: docs/strategies.md.
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass, field
from typing import Literal

from pydantic import Field

from agents.llm.parsing import excerpt
from agents.llm.prompts import render
from agents.llm.types import ChatRequest, Sampling
from agents.proposal import Ask, Proposal, Written, candidate_record, failed_examples, node_asks, rejection
from agents.similarity import Novelty, rouge_l
from agents.writers.completion import CompletionWriter, CompletionWriterConfig
from core.plugins import Inputs, register
from core.records import Record

Mutation = Literal["constraints", "deepening", "concretizing", "reasoning", "complicate_input", "breadth"]
# The method each in-depth mutation names in the rewriting prompt (our words; the methods are the paper's).
METHODS: dict[str, str] = {
    "constraints": "Add one more constraint or requirement to #The Given Prompt#.",
    "deepening": "If #The Given Prompt# asks about certain issues, ask about them in more depth and breadth.",
    "concretizing": "Replace general concepts with more specific ones.",
    "reasoning": "If #The Given Prompt# can be solved with only a few simple steps of thought, rewrite it so that "
    "it explicitly asks for reasoning in several steps.",
    "complicate_input": "Add an input the prompt has to work on, in a structured form (a table, a list, code, or "
    "data such as JSON or XML).",
}
# Words of the prompts that must not reach an evolved question (the paper's fourth elimination rule).
LEAKS = ("given prompt", "rewritten prompt", "created prompt", "#the given prompt#", "prompt#")
_QUOTES = "\"'`“”‘’"
_LABEL = re.compile(r"^\s*(?:#?\s*(?:rewritten|created|new)\s+prompt\s*#?\s*:)\s*", re.IGNORECASE)


class EvolBaseConfig(CompletionWriterConfig):
    """Epochs, sampling and question-side elimination of every evolving writer (defaults: docs/strategies.md)."""

    epochs: int = Field(2, ge=1, le=8, description="evolution epochs per round (M; the paper's 4)")
    temperature: float = Field(1.0, ge=0, description="sampling temperature (the release's 1.0)")
    top_p: float = Field(0.95, gt=0, le=1, description="sampling nucleus (the release's 0.95)")
    max_tokens: int = Field(160, ge=8, description="new tokens per evolution; a reply cut by it is dropped")
    gain_rouge_max: float = Field(
        0.9,
        gt=0,
        le=1,
        description="no information gain: drop an evolution whose ROUGE-L to the question it evolved from is "
        "above this ('What is 17 + 25?' -> 'What is 17 + 25 + 8?' scores 0.89)",
    )
    min_chars: int = Field(10, ge=1, description="drop an evolved question shorter than this")
    max_chars: int = Field(1000, ge=1, description="drop an evolved question longer than this")


class EvolConfig(EvolBaseConfig):
    """Evol-Instruct: the paper's mutation prompts."""

    mutations: list[Mutation] = Field(
        ["constraints", "deepening", "concretizing", "reasoning", "complicate_input", "breadth"],
        min_length=1,
        description="drawn uniformly per chain and epoch (the release draws among the first four and breadth; "
        "the paper adds complicate_input)",
    )


def parse_evolved(text: str) -> tuple[str, str]:
    """(question, "") from an evolution reply, or ("", why): the text after the last `Prompt#:`, unquoted."""
    body = text.rsplit("Prompt#:", 1)[-1].strip()
    body = _LABEL.sub("", body).strip()
    if len(body) >= 2 and body[0] in _QUOTES and body[-1] in _QUOTES:
        body = body[1:-1].strip()
    if not body:
        return "", "empty reply"
    low = body.lower()
    leak = next((w for w in LEAKS if w in low), None)
    if leak:
        return "", f"template leakage ({leak!r})"
    return body, ""


@dataclass
class _Chain:
    ask: Ask
    index: int  # the ask's place in the round
    number: int  # the chain's place in its ask
    question: str  # what the next epoch evolves
    kept: list[tuple[str, dict[str, object]]] = field(default_factory=list)


@register
class EvolWriter(CompletionWriter):
    """Harder variants of the round's failed questions, written by the chat model in `epochs` evolutions."""

    name = "evol_instruct"
    Config: type[EvolBaseConfig] = EvolConfig
    needs = frozenset({"chat"})
    config: EvolBaseConfig

    def write(
        self, proposal: Proposal, budget: int, round: int, rng: random.Random, inputs: Inputs, strategy: str
    ) -> Written:
        """Evolve chains from every ask's failed questions; an ask's items are its chains' kept evolutions."""
        self.novel = Novelty(self.config.rouge_max, inputs["known"])
        left = budget - len(proposal.asks)
        asks = [
            *proposal.asks,
            *node_asks(proposal, left, inputs["taxonomy"], inputs["failures"], self.config.examples),
        ]
        chains: list[_Chain] = []
        rejected: list[Record] = []
        for index, ask in enumerate(asks):
            starts = _starts(ask)
            if not starts:
                rejected.append(rejection(ask.parent["id"], f"{self.name}: no failed question to evolve"))
                continue
            count = math.ceil(ask.n / self.config.epochs)
            chains += [_Chain(ask, index, c, starts[c % len(starts)]) for c in range(count)]
        for epoch in range(self.config.epochs):
            rejected += self._epoch(chains, round, epoch)
        items: list[Record] = []
        for index, ask in enumerate(asks):
            mine = [c for c in chains if c.index == index]
            evolved = sorted((extra["epoch"], c.number, q, extra) for c in mine for q, extra in c.kept)  # type: ignore[misc]
            for _, _, question, extra in evolved[: ask.n]:
                record = candidate_record(ask, question, None, "", round, len(items), strategy, self.name)
                items.append({**record, **extra})
            if mine and len(evolved) < ask.n:
                why = f"{self.name}: kept {len(evolved)} of {ask.n} after {self.config.epochs} epochs"
                rejected.append(rejection(ask.parent["id"], why))
        return Written(items, rejected)

    def _epoch(self, chains: list[_Chain], round: int, epoch: int) -> list[Record]:
        requests, mutations = [], []
        for chain in chains:
            # Every request of a run has its own seed, from (round, ask, chain, epoch); the mutation is drawn
            # from the same numbers, so a resumed round sends exactly the same requests (and hits the cache).
            seed = ((round * 100_000 + chain.index) * 1000 + chain.number) * 16 + epoch
            mutation = self.mutation(seed)
            mutations.append(mutation)
            requests.append(self.request(chain.question, mutation, seed))
        drops = []
        for chain, mutation, result in zip(chains, mutations, self.parts.client.chat(requests), strict=True):
            text = result.texts[0] if result.texts else ""
            why = self._problem(chain.question, mutation, text, bool(result.finished and result.finished[0] is False))
            parent = chain.ask.parent["id"]
            if why[1]:
                drops.append(rejection(parent, f"{self.name}: {mutation}: {why[1]}", excerpt(text)))
                continue
            question = why[0]
            self.novel.add([question])
            chain.kept.append((question, {"evolved_from": chain.question, "mutation": mutation, "epoch": epoch + 1}))
            chain.question = question
        return drops

    def mutation(self, seed: int) -> str:
        """The mutation of one chain's evolution in one epoch, drawn from the numbers its seed is made of."""
        return random.Random(f"evol:{seed}").choice(self.config.mutations)  # type: ignore[attr-defined]

    def read_reply(self, mutation: str, text: str) -> tuple[str, str]:
        """(the evolved question, "") or ("", why not) from one reply."""
        return parse_evolved(text)

    def request(self, question: str, mutation: str, seed: int) -> ChatRequest:
        """The chat that evolves `question` by `mutation`."""
        if mutation == "breadth":
            user = render("evol_breadth", prompt=question)
        else:
            user = render("evol_depth", prompt=question, method=METHODS[mutation])
        c = self.config
        sampling = Sampling(temperature=c.temperature, top_p=c.top_p, max_tokens=c.max_tokens, seed=seed)
        system = "You are a helpful assistant."
        messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
        return ChatRequest(messages, sampling, "questioner", 0)

    def _problem(self, before: str, mutation: str, text: str, cut: bool) -> tuple[str, str]:
        """(the evolved question, "") or ("", why it is eliminated)."""
        if cut:
            return "", "not terminated (cut by max_tokens)"
        question, why = self.read_reply(mutation, text)
        if why:
            return "", why
        if not self.config.min_chars <= len(question) <= self.config.max_chars:
            return "", f"length {len(question)} outside {self.config.min_chars}-{self.config.max_chars} characters"
        if rouge_l(before, question) > self.config.gain_rouge_max:
            return "", "no information gain (too close to the question it evolved from)"
        problem = self.problem(question)
        return ("", problem) if problem else (question, "")


def _starts(ask: Ask) -> list[str]:
    """The failed questions an ask's chains start from."""
    return [str(e["instruction"]) for e in failed_examples(ask)]
