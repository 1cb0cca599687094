"""The task world's generator as a writer: fresh items of a (point, facet, level), never a known question.

On small item spaces (one-digit tables, two-digit sums) a third of a blind draw was duplicates, so every
draw is checked against the known questions (pool, probes, test) and a node whose item space runs out
passes its share of the budget on to the rest, in proportion to weight. The generator supplies a
`reference` answer the Assessor checks the teacher against.
"""

from __future__ import annotations

import random

from pydantic import Field

from agents.proposal import Key, Proposal, Written, allocate, rejection
from agents.tasks.world import get_point, sample_item
from core.plugins import Inputs, Plugin, PluginConfig, register
from core.records import Record, item_id
from core.text import question_key


class GeneratorConfig(PluginConfig):
    """Draws from the world's generator."""

    novel_tries: int = Field(200, ge=1, description="draws per item before a node counts as exhausted")


@register
class GeneratorWriter(Plugin):
    """Items drawn from the task world's generator; deterministic for a seed and round."""

    name = "generator"
    kind = "writer"
    Config = GeneratorConfig
    needs = frozenset({"world"})
    reads = ("known",)
    default_rank = 0
    rng_tag = "questioner"
    config: GeneratorConfig

    def write(
        self, proposal: Proposal, budget: int, round: int, rng: random.Random, inputs: Inputs, strategy: str
    ) -> Written:
        """Candidates for the proposal's weights (budget split, exhausted nodes passing theirs on) or asks."""
        self.known = {question_key(q) for q in inputs["known"]}
        # An ask's parent may be a question this round made (an archive's elite, asked as a probe after training):
        # its items must differ from it as from any known question.
        self.known |= {question_key(a.parent["instruction"]) for a in proposal.asks if a.parent.get("instruction")}
        self.strategy, self.round = strategy, round
        items: list[Record] = []
        rejected: list[Record] = []
        for ask in proposal.asks:
            assert ask.key is not None, "an ask for the generator names a (point, facet, level)"
            for _ in range(ask.n):
                item = self._item(rng, ask.key, len(items), str(ask.parent["id"]), ask.why)
                if item is None:
                    rejected.append(rejection(ask.parent["id"], "no unseen item of that kind is left"))
                    break
                items.append(item)
        exhausted: set[Key] = set()
        while proposal.weights and len(items) < budget:
            live = {k: w for k, w in proposal.weights.items() if k not in exhausted}
            plan = allocate(live, budget - len(items))
            if not plan:
                break
            for key, n in sorted(plan.items(), key=lambda kv: str(kv[0])):
                for _ in range(n):
                    item = self._item(rng, key, len(items), None, proposal.reasons[key])
                    if item is None:
                        exhausted.add(key)
                        break
                    items.append(item)
        return Written(items, rejected)

    def _item(self, rng: random.Random, key: Key, index: int, parent: str | None, why: str) -> Record | None:
        """An item not seen before, or None when `novel_tries` draws found only known questions."""
        point, facet, level = key
        assert level is not None, "the task world's items have a level"
        try:
            sample_item(random.Random(0), point, level, facet, max_tries=300)
        except RuntimeError:
            # The facet does not occur at this level (e.g. a two-digit answer on the easiest level).
            facet, why = None, f"{why}; facet {facet!r} absent at level {level}, any facet"
        for _ in range(self.config.novel_tries):
            drawn, reference = sample_item(rng, point, level, facet, max_tries=300)
            worded = self.reword(drawn, point, parent, rng)
            if worded is not None and question_key(worded[0]) not in self.known:
                break
        else:
            return None
        question, extra = worded
        self.known.add(question_key(question))
        kp = get_point(point)
        return {
            "id": item_id(self.round, self.strategy, index),
            "instruction": question,
            "reference": reference,
            "knowledge_point": point,
            "facet": kp.facet(drawn, reference),
            "skill": kp.skill,
            "difficulty": level,
            "source": "synthetic",
            "round": self.round,
            "strategy": self.strategy,
            "writer": self.name,
            "parent_id": parent or (f"{point}|{facet}" if facet else point),
            "why": why,
            **extra,
        }

    def reword(
        self, question: str, point: str, parent: str | None, rng: random.Random
    ) -> tuple[str, dict[str, object]] | None:
        """The drawn question as the item asks it, with fields to add to its record (None: draw again). The
        generator asks it as drawn; a subclass may restate it (agents/writers/perturb.py)."""
        return question, {}
