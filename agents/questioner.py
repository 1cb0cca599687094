"""The programmatic Questioner: four strategies that turn a weakness profile into new items.

- `llm2llm`: one similar item (same point, facet and level) per failed probe, LLM2LLM's rule.
- `weakness`: the round's budget over weak nodes in proportion to their failure rate.
- `frontier`: learnability-aware. Weight p(1-p) (points the student gets partly right) plus the
  learning progress since the last round; a node stuck near zero gets easier items (one level
  down: a curriculum) beside items at the target level, and is parked only once `park_after` kept
  items have given it no progress (evidence, not a count of rounds: a starved point needs tens of
  items before it moves); mastered nodes get nothing.
- `random`: uniform over the whole taxonomy, the same budget: the control.
Every strategy writes only questions it has not seen (`remember` the pool and the evaluation sets):
on small item spaces (one-digit tables, two-digit sums) a third of a blind draw was duplicates, so
the budget of an exhausted node goes to the others instead of to the dedup filter.
Every item records its strategy, its parent (the failed probe or the node) and the reason for its
allocation. The world's generator supplies a `reference` answer the Assessor checks the teacher against.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Sequence

from agents.roles import NodeStats, Record, WeaknessProfile
from agents.tasks.world import LEVELS, get_point, normalize_question, points_for, sample_item

Key = tuple[str, "str | None", int]  # (point, facet, level)

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
        park_after: int = 60,
        progress_weight: float = 1.0,
        novel_tries: int = 200,
        curriculum: bool = True,
        explore: bool = False,
    ) -> None:
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown questioner strategy {strategy!r}; allowed: {', '.join(STRATEGIES)}")
        self.strategy = strategy
        self.seed = seed
        self.difficulty = difficulty
        self.points = list(points or points_for())
        self.mastered = mastered
        self.stuck = stuck
        self.park_after = park_after
        self.progress_weight = progress_weight
        self.novel_tries = novel_tries
        self.curriculum = curriculum
        self.explore = explore
        self.known: set[str] = set()

    def remember(self, questions: Iterable[object]) -> None:
        """Questions that exist already (pool, probes, test): new items must differ from them."""
        self.known.update(normalize_question(q) for q in questions)

    def question(
        self,
        profile: WeaknessProfile,
        failures: Sequence[Record],
        budget: int,
        round: int,
        successes: Sequence[Record] = (),
    ) -> list[Record]:
        """New candidate items (without `output`; the Teacher answers them). `successes` is unused here."""
        rng = random.Random(f"{self.seed}:questioner:{self.strategy}:{round}")
        if self.strategy == "llm2llm":
            return self._llm2llm(rng, failures, budget, round)
        if self.strategy == "random":
            weights: dict[Key, float] = {(p, None, self.difficulty): 1.0 for p in self.points}
            reasons = dict.fromkeys(weights, "uniform control")
        else:
            weights, reasons = self._weights(profile)
        items: list[Record] = []
        exhausted: set[Key] = set()
        # A node whose item space runs out passes its share on to the rest, in proportion to weight.
        while len(items) < budget:
            live = {k: w for k, w in weights.items() if k not in exhausted}
            plan = allocate(live, budget - len(items))
            if not plan:
                break
            for key, n in sorted(plan.items(), key=lambda kv: str(kv[0])):
                for _ in range(n):
                    item = self._item(rng, *key, round, len(items), None, reasons[key])
                    if item is None:
                        exhausted.add(key)
                        break
                    items.append(item)
        return items

    # -- strategies ---------------------------------------------------------------------------------
    def _llm2llm(self, rng: random.Random, failures: Sequence[Record], budget: int, round: int) -> list[Record]:
        chosen = list(failures)
        if len(chosen) > budget:
            chosen = rng.sample(chosen, budget)
        items: list[Record] = []
        for f in chosen:
            item = self._item(
                rng,
                str(f["knowledge_point"]),
                f.get("facet"),  # type: ignore[arg-type]
                int(f.get("difficulty", self.difficulty)),  # type: ignore[arg-type]
                round,
                len(items),
                str(f["id"]),
                "one similar item per failure",
            )
            if item is not None:  # None: no unseen item of that kind is left
                items.append(item)
        return items

    def _weights(self, profile: WeaknessProfile) -> tuple[dict[Key, float], dict[Key, str]]:
        weights: dict[Key, float] = {}
        reasons: dict[Key, str] = {}
        for node in profile.nodes:
            fed = profile.fed.get(node.node, 0), profile.fed_rounds.get(node.node, 0)
            for key, weight, why in self._weigh(node, *fed):
                if weight > 0:
                    weights[key] = weights.get(key, 0.0) + weight
                    reasons[key] = why
        return weights, reasons

    def _weigh(self, node: NodeStats, fed: int, fed_rounds: int) -> list[tuple[Key, float, str]]:
        p = node.accuracy
        key = (node.point, node.facet, self.difficulty)
        if self.strategy == "weakness":
            return [(key, 1.0 - p, f"failure rate {1 - p:.2f}")]
        # frontier
        if p >= self.mastered:
            return [(key, 0.0, "mastered")]
        if p <= self.stuck:
            recent = node.history[-fed_rounds:] if fed_rounds else []
            if fed >= self.park_after and max([p, *recent]) <= self.stuck:
                return [(key, 0.0, f"parked: {fed} items in {fed_rounds} rounds gave no progress")]
            # Optimism under uncertainty: until `park_after` items have been tried, a stuck node's
            # learnability is unknown, and a seed-starved point looks exactly like an unlearnable one.
            weight = 1.0 - p if self.explore else 0.25
            if not self.curriculum:
                return [(key, weight, f"stuck at {p:.2f}, fed {fed} so far")]
            easier = max(LEVELS[0], self.difficulty - 1)
            why = f"stuck at {p:.2f}: curriculum, half at level {easier}"
            # Half one level down (a foothold), half at the target level (so it transfers).
            return [((node.point, node.facet, easier), weight / 2, why), (key, weight / 2, why)]
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
    ) -> Record | None:
        """An item not seen before, or None when `novel_tries` draws found only known questions."""
        try:
            sample_item(random.Random(0), point, level, facet, max_tries=300)
        except RuntimeError:
            # The facet does not occur at this level (e.g. a two-digit answer on the easiest level).
            facet, why = None, f"{why}; facet {facet!r} absent at level {level}, any facet"
        for _ in range(self.novel_tries):
            question, reference = sample_item(rng, point, level, facet, max_tries=300)
            if normalize_question(question) not in self.known:
                break
        else:
            return None
        self.known.add(normalize_question(question))
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
