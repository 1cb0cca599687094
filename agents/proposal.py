"""What a plan hands a writer: either weights over taxonomy nodes (the writer splits the round's budget
by them) or explicit asks (this parent, this many items, with this prompt), and how a budget is split.

A strategy is a plan times a writer: the plan decides who gets how many new items and why, the writer
turns that into candidate questions (the task world's generator, or a chat model). `propose` runs both.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from agents.llm.types import Guide, Message
from core.records import Record, item_id

Key = tuple[str, "str | None", int | None]  # (knowledge point, facet, level)
Candidate = tuple[str, "str | None", str]  # (question, proposed answer, key point)


@dataclass
class Ask:
    """One parent (a failed probe or a node) and the items wanted from it.

    `key` is what a generator writes (point, facet, level); `messages(n)` is the chat asking a model for n
    more items and `parse` reads its reply, where the plan has a prompt of its own (else the chat writer
    uses its generic per-point prompt).
    """

    parent: Record
    n: int
    why: str
    key: Key | None = None
    messages: Callable[[int], list[Message]] | None = None
    parse: Callable[[str], list[Candidate]] | None = None
    variant: int = 0  # tells apart asks of one parent in a round (part of the sampling seed)
    context: dict[str, object] = field(default_factory=dict)  # what a writer's own prompt shows (examples, ...)
    guide: Guide | None = None  # the reply's shape, for guided decoding (agents/llm/guides.py)


@dataclass
class Proposal:
    """A plan's output: weights over nodes (with a reason each), or explicit asks."""

    weights: dict[Key, float] = field(default_factory=dict)
    reasons: dict[Key, str] = field(default_factory=dict)
    asks: list[Ask] = field(default_factory=list)
    parents: dict[Key, Record] = field(default_factory=dict)  # node records by key (for chat prompts)


def allocate(weights: dict[Any, float], budget: int) -> dict[Any, int]:
    """Split `budget` over keys in proportion to weights (largest remainders; zero weights get none)."""
    total = sum(w for w in weights.values() if w > 0)
    if budget <= 0 or total <= 0:
        return {}
    raw = {k: budget * w / total for k, w in weights.items() if w > 0}
    counts = {k: math.floor(v) for k, v in raw.items()}
    left = budget - sum(counts.values())
    for k in sorted(raw, key=lambda k: (counts[k] - raw[k], k))[:left]:
        counts[k] += 1
    return {k: v for k, v in counts.items() if v > 0}


def sample_records(records: Sequence[Record], budget: int, rng: random.Random) -> list[Record]:
    """At most `budget` records, a random subset in their original order."""
    if len(records) <= budget:
        return list(records)
    keep = sorted(rng.sample(range(len(records)), max(0, budget)))
    return [records[i] for i in keep]


@dataclass
class Written:
    """A writer's output: candidate items, and the asks it gave up on (each with its reason)."""

    items: list[Record]
    rejected: list[Record] = field(default_factory=list)


def rejection(parent_id: object, reason: str, excerpt: str = "") -> Record:
    """An ask that produced no item: its parent, why, and the last reply's excerpt."""
    return {"parent_id": parent_id, "reason": reason, "excerpt": excerpt}


def node_asks(
    proposal: Proposal, budget: int, taxonomy: Sequence[Record], failures: Sequence[Record], examples: int
) -> list[Ask]:
    """A weighted proposal as one ask per node: its share of `budget`, its description and up to `examples` of
    its failed probes in the ask's context (what a chat writer's prompt shows)."""
    if not proposal.weights:
        return []
    descriptions = {str(p["id"]): str(p.get("description", "")) for p in taxonomy}
    asks = []
    for v, (key, n) in enumerate(sorted(allocate(proposal.weights, budget).items(), key=lambda kv: str(kv[0]))):
        point, facet, level = key
        node = f"{point}|{facet}" if facet else point
        shown = [
            f for f in failures if f.get("knowledge_point") == point and (facet is None or f.get("facet") == facet)
        ]
        parent: Record = {"id": node, "knowledge_point": point, "facet": facet, "difficulty": level}
        context = {"description": descriptions.get(str(point), ""), "examples": shown[:examples]}
        asks.append(Ask(parent, n, proposal.reasons[key], key, variant=v, context=context))
    return asks


def failed_examples(ask: Ask) -> list[Record]:
    """The failed questions an ask is about: a weighted node's examples, or the failure an explicit ask names."""
    return list(ask.context.get("examples") or ([ask.parent] if ask.parent.get("instruction") else []))  # type: ignore[call-overload]


def candidate_record(
    ask: Ask, question: str, answer: str | None, note: str, round: int, i: int, strategy: str, writer: str
) -> Record:
    """A written question as a candidate item: the ask's parent's point, facet and level, and why it was asked."""
    p = ask.parent
    return {
        "id": item_id(round, strategy, i),
        "instruction": question,
        "reference": answer,
        "knowledge_point": p.get("knowledge_point"),
        "facet": p.get("facet"),
        "skill": p.get("skill"),
        "difficulty": p.get("difficulty"),
        "source": "synthetic",
        "round": round,
        "strategy": strategy,
        "writer": writer,
        "parent_id": p["id"],
        "why": f"{ask.why}; key point: {note}" if note else ask.why,
    }


def known_questions(*groups: Iterable[Record]) -> list[str]:
    """The instructions of every record in the groups (what a new question must differ from)."""
    return [str(r["instruction"]) for g in groups for r in g]


class Proposer:
    """A plan times a writer outside the loop (`gaploop detect`, notebooks): the round inputs given as values."""

    def __init__(self, plan: Any, writer: Any, rng_seed: str) -> None:
        self.plan, self.writer, self.rng_seed = plan, writer, rng_seed

    def question(self, values: dict[str, object], budget: int, round: int) -> Written:
        """Candidates for `budget`, from the inputs in `values` (each plugin sees only what it declares)."""
        from core.plugins import Inputs

        providers = {k: (lambda v=v: v) for k, v in values.items()}
        rng = random.Random(f"{self.rng_seed}:{round}")
        proposal = self.plan.propose(Inputs(type(self.plan), providers), budget, round, rng)
        return self.writer.write(proposal, budget, round, rng, Inputs(type(self.writer), providers), self.plan.name)
