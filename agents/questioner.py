"""The programmatic Questioner: four strategies that turn a weakness profile into new items.

- `llm2llm`: one similar item (same point, facet and level) per failed probe, LLM2LLM's rule.
- `weakness`: the round's budget over weak nodes in proportion to their failure rate.
- `frontier`: learnability-aware. Weight p(1-p) (points the student gets partly right) plus the
  learning progress since the last round; a node stuck near zero gets easier items (one level
  down: a curriculum) while it has not yet been fed much, and is parked once it was fed for
  `patience` rounds without progress; mastered nodes get nothing.
- `random`: uniform over the whole taxonomy, the same budget: the control.
Every item records its strategy, its parent (the failed probe or the node) and the reason for its
allocation. The world's generator supplies a `reference` answer the Assessor checks the teacher against.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

from agents.roles import NodeStats, Record, WeaknessProfile
from agents.tasks.world import LEVELS, get_point, points_for, sample_item

STRATEGIES = ("llm2llm", "weakness", "frontier", "random")


def allocate(weights: dict[str, float], budget: int) -> dict[str, int]:
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


class WorldQuestioner:
    """Questioner over the task world; deterministic for a given seed and round."""

    def __init__(
        self,
        strategy: str,
        seed: int,
        difficulty: int,
        points: Sequence[str] | None = None,
        mastered: float = 0.95,
        stuck: float = 0.1,
        patience: int = 2,
        progress_weight: float = 1.0,
    ) -> None:
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown questioner strategy {strategy!r}; allowed: {', '.join(STRATEGIES)}")
        self.strategy = strategy
        self.seed = seed
        self.difficulty = difficulty
        self.points = list(points or points_for())
        self.mastered = mastered
        self.stuck = stuck
        self.patience = patience
        self.progress_weight = progress_weight

    def question(self, profile: WeaknessProfile, failures: Sequence[Record], budget: int, round: int) -> list[Record]:
        """New candidate items (without `output`; the Teacher answers them)."""
        rng = random.Random(f"{self.seed}:questioner:{self.strategy}:{round}")
        if self.strategy == "llm2llm":
            return self._llm2llm(rng, failures, budget, round)
        if self.strategy == "random":
            plan = {(p, None, self.difficulty): n for p, n in allocate(dict.fromkeys(self.points, 1.0), budget).items()}
            reasons = dict.fromkeys(plan, "uniform control")
        else:
            plan, reasons = self._plan(profile, budget)
        items: list[Record] = []
        for (point, facet, level), n in sorted(plan.items(), key=lambda kv: str(kv[0])):
            for _ in range(n):
                items.append(
                    self._item(rng, point, facet, level, round, len(items), None, reasons[(point, facet, level)])
                )
        return items

    # -- strategies ---------------------------------------------------------------------------------
    def _llm2llm(self, rng: random.Random, failures: Sequence[Record], budget: int, round: int) -> list[Record]:
        chosen = list(failures)
        if len(chosen) > budget:
            chosen = rng.sample(chosen, budget)
        return [
            self._item(
                rng,
                str(f["knowledge_point"]),
                f.get("facet"),  # type: ignore[arg-type]
                int(f.get("difficulty", self.difficulty)),  # type: ignore[arg-type]
                round,
                i,
                str(f["id"]),
                "one similar item per failure",
            )
            for i, f in enumerate(chosen)
        ]

    def _plan(
        self, profile: WeaknessProfile, budget: int
    ) -> tuple[dict[tuple[str, str | None, int], int], dict[tuple[str, str | None, int], str]]:
        weights: dict[tuple[str, str | None, int], float] = {}
        reasons: dict[tuple[str, str | None, int], str] = {}
        for node in profile.nodes:
            for key, weight, why in self._weigh(node, profile.fed_rounds.get(node.node, 0)):
                if weight > 0:
                    weights[key] = weights.get(key, 0.0) + weight
                    reasons[key] = why
        return allocate(weights, budget), reasons

    def _weigh(self, node: NodeStats, fed_rounds: int) -> list[tuple[tuple[str, str | None, int], float, str]]:
        p = node.accuracy
        key = (node.point, node.facet, self.difficulty)
        if self.strategy == "weakness":
            return [(key, 1.0 - p, f"failure rate {1 - p:.2f}")]
        # frontier
        if p >= self.mastered:
            return [(key, 0.0, "mastered")]
        if p <= self.stuck:
            recent = node.history[-fed_rounds:] if fed_rounds else []
            if fed_rounds >= self.patience and max([p, *recent]) <= self.stuck:
                return [(key, 0.0, f"parked: fed in {fed_rounds} rounds without progress")]
            easier = max(LEVELS[0], self.difficulty - 1)
            why = f"stuck at {p:.2f}: curriculum, half at level {easier}"
            # Half one level down (a foothold), half at the target level (so it transfers).
            return [((node.point, node.facet, easier), 0.125, why), (key, 0.125, why)]
        gain = max(0.0, node.progress)
        return [(key, p * (1 - p) + self.progress_weight * gain, f"frontier p={p:.2f}, progress {gain:+.2f}")]

    # -- items --------------------------------------------------------------------------------------
    def _item(
        self,
        rng: random.Random,
        point: str,
        facet: str | None,
        level: int,
        round: int,
        index: int,
        parent: str | None,
        why: str,
    ) -> Record:
        try:
            question, reference = sample_item(rng, point, level, facet, max_tries=300)
        except RuntimeError:
            # The facet does not occur at this level (e.g. a two-digit answer on the easiest level).
            question, reference = sample_item(rng, point, level)
            why = f"{why}; facet {facet!r} absent at level {level}, any facet"
        kp = get_point(point)
        return {
            "id": f"r{round:03d}-{self.strategy}-{index:05d}",
            "instruction": question,
            "reference": reference,
            "knowledge_point": point,
            "facet": kp.facet(question, reference),
            "skill": kp.skill,
            "difficulty": level,
            "source": "synthetic",
            "round": round,
            "strategy": self.strategy,
            "parent_id": parent or (f"{point}|{facet}" if facet else point),
            "why": why,
        }
