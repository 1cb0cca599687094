"""AutoDetect's iterative search as a plan: per weak node, new prompts aimed at a lower score.

Each ask shows 5 past items of the node (2 random bad ones + 3 random, else the 5 lowest); a new point
from the Examiner gets a seed prompt from its description. Up to `per_point` items per node: new points
first, then weak nodes weakest first. The search spans rounds: new prompts get their scores when next
probed.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from functools import partial

from pydantic import Field

from agents.llm.guides import PROMPT_OBJECT
from agents.llm.parsing import excerpt, parse_json
from agents.llm.prompts import render
from agents.llm.types import Message
from agents.proposal import Ask, Candidate, Proposal, Proposer
from agents.roles import NodeStats, WeaknessProfile
from core.plugins import Inputs, Parts, Plugin, PluginConfig, register
from core.records import Record


class AutoDetectConfig(PluginConfig):
    """The search's per-node width."""

    per_point: int = Field(5, ge=1, description="new prompts per node and round")
    show: int = Field(5, ge=1, description="past items shown in each search prompt")


@register
class AutoDetectPlan(Plugin):
    """Per new or weak node, `per_point` search asks built from the node's past items."""

    name = "autodetect"
    kind = "plan"
    Config = AutoDetectConfig
    needs = frozenset({"chat"})
    reads = ("profile", "failures", "successes", "taxonomy")
    config: AutoDetectConfig

    def propose(self, inputs: Inputs, budget: int, round: int, rng: random.Random) -> Proposal:
        """Asks for new points first, then for weak nodes, weakest first, until the budget is used."""
        profile: WeaknessProfile = inputs["profile"]
        records = [*inputs["failures"], *inputs["successes"]]
        descriptions = {str(p["id"]): str(p.get("description", "")) for p in inputs["taxonomy"]}
        tested = {n.node for n in profile.nodes}
        fresh = [r for r in profile.refinements if r.get("kind") == "new_point" and r["point"] not in tested]
        targets: list[tuple[str, NodeStats | None, str]] = [
            (str(r["point"]), None, str(r.get("description") or "")) for r in fresh
        ]
        targets += [(n.node, n, descriptions.get(n.point, "")) for n in profile.nodes if n.weak]
        asks: list[Ask] = []
        for node, stats, description in targets:
            past = [r for r in records if stats is not None and _in_node(r, stats)]
            parent: Record = {"id": node, "knowledge_point": node if stats is None else stats.point}
            parent |= {"facet": stats.facet if stats else None}  # a point-level node has no one facet
            parent |= {k: past[0].get(k) for k in ("skill", "difficulty")} if past else {}
            why = "autodetect: " + (f"new point {node!r}" if stats is None else f"weak, accuracy {stats.accuracy:.2f}")
            key = (parent["knowledge_point"], parent["facet"], self.parts.difficulty)
            for v in range(min(self.config.per_point, budget - len(asks))):
                history = _history(past, rng, self.config.show)
                ask = partial(search_messages, node, description, history, descriptions, self.parts.domain)
                asks.append(Ask(parent, 1, why, key, ask, parse, v, guide=PROMPT_OBJECT))  # type: ignore[arg-type]
        return Proposal(asks=asks)


def search_messages(
    node: str, description: str, history: list[Record], taxonomy: dict[str, str], domain: str, n: int
) -> list[Message]:
    """The chat for one new prompt on `node`: a search step from past items, else a seed prompt."""
    if history:
        text = render("autodetect_search", domain=domain, point=node, description=description, history=history)
    else:
        points = [{"id": p, "category": "", "description": d} for p, d in taxonomy.items()]
        text = render("autodetect_seed", domain=domain, point=node, description=description, taxonomy=points)
    return [{"role": "user", "content": text}]


def parse(text: str) -> list[Candidate]:
    """The {prompt, key_point} object of the reply (no answer: the teacher writes the reference)."""
    got = parse_json(text, required=("prompt",))
    return [(str(got["prompt"]).strip(), None, str(got.get("key_point") or ""))]


def _in_node(record: Record, node: NodeStats) -> bool:
    return str(record.get("knowledge_point")) == node.point and (
        node.facet is None or record.get("facet") == node.facet
    )


def _badness(record: Record) -> float:
    """A record's score for ordering (lower is worse); a right/wrong record counts as 10/1."""
    score = record.get("score")
    return float(score) if score is not None else (10.0 if record.get("correct") else 1.0)  # type: ignore[arg-type]


def _history(past: Sequence[Record], rng: random.Random, show: int = 5) -> list[Record]:
    """AutoDetect's examples: 2 random bad items (score <= 3, or wrong) + 3 random others, else the
    `show` lowest; shown best first, so the worst sit nearest the request."""
    bad = [r for r in past if _badness(r) <= 3]
    if len(past) < show or len(bad) < 2:
        chosen = sorted(past, key=_badness)[:show]
    else:
        chosen = rng.sample(bad, 2)
        chosen += rng.sample([r for r in past if all(r is not c for c in chosen)], show - 2)
    return [
        {
            "instruction": excerpt(str(r["instruction"]), 600),
            "key_point": r.get("key_point") or r.get("facet") or r.get("knowledge_point"),
            "score": r.get("score"),
            "correct": bool(r.get("correct")),
        }
        for r in sorted(chosen, key=_badness, reverse=True)
    ]


def search(parts: Parts, per_point: int) -> Proposer:
    """AutoDetect's search with the chat writer, for `gaploop detect`'s LLM mode."""
    from agents.writers.chat import ChatWriter, ChatWriterConfig

    plan = AutoDetectPlan(AutoDetectConfig(name=AutoDetectPlan.name, per_point=per_point), parts)
    writer = ChatWriter(ChatWriterConfig(name=ChatWriter.name), parts)
    return Proposer(plan, writer, f"{parts.seed}:llm-questioner:{AutoDetectPlan.name}")
