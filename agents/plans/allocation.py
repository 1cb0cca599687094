"""Plans that weigh taxonomy nodes; the writer splits the round's budget by the weights.

- `weakness`: each weak node in proportion to its failure rate.
- `frontier`: learnability-aware. Weight p(1-p) (nodes the student gets partly right) plus the learning
  progress since the last round; a node stuck near zero gets easier items (one level down: a curriculum)
  beside items at the target level, and is parked only once `park_after` kept items have given it no
  progress (evidence, not a count of rounds: a starved point needs tens of items before it moves);
  mastered nodes get nothing.
- `random`: uniform over the whole taxonomy, the same budget: the control.
"""

from __future__ import annotations

import random

from pydantic import Field

from agents.proposal import Key, Proposal
from agents.roles import NodeStats, WeaknessProfile
from core.plugins import Inputs, Plugin, PluginConfig, register


class RandomConfig(PluginConfig):
    """The uniform control: no knobs."""


@register
class RandomPlan(Plugin):
    """Every node of the taxonomy the same weight."""

    name = "random"
    kind = "plan"
    Config = RandomConfig
    reads = ("taxonomy",)

    def propose(self, inputs: Inputs, budget: int, round: int, rng: random.Random) -> Proposal:
        """Weight 1 for every point of the taxonomy at the task's level."""
        keys: list[Key] = [(str(p["id"]), None, self.parts.difficulty) for p in inputs["taxonomy"]]
        return Proposal(weights=dict.fromkeys(keys, 1.0), reasons=dict.fromkeys(keys, "uniform control"))


class WeaknessConfig(PluginConfig):
    """Failure-proportional allocation."""


@register
class WeaknessPlan(Plugin):
    """Each node of the profile by its failure rate 1 - p."""

    name = "weakness"
    kind = "plan"
    Config = WeaknessConfig
    reads = ("profile",)
    default_rank = 0  # measured best of the four on the task world (docs/benchmarks.md)

    def propose(self, inputs: Inputs, budget: int, round: int, rng: random.Random) -> Proposal:
        """Weights 1 - p over the profile's nodes."""
        profile: WeaknessProfile = inputs["profile"]
        out = Proposal()
        for node in profile.nodes:
            key = (node.point, node.facet, self.parts.difficulty)
            _add(out, key, 1.0 - node.accuracy, f"failure rate {1 - node.accuracy:.2f}")
        return out


class FrontierConfig(PluginConfig):
    """Learnability-aware allocation: the frontier, a curriculum for stuck nodes, parking."""

    mastered: float = Field(0.95, gt=0, le=1, description="a node at or above this probe accuracy gets nothing")
    stuck: float = Field(0.1, ge=0, lt=1, description="a node at or below this accuracy is stuck")
    park_after: int = Field(
        60, ge=0, description="stop feeding a node stuck near zero once this many kept items moved it not"
    )
    progress_weight: float = Field(1.0, ge=0, description="weight of last round's accuracy gain beside p(1-p)")
    curriculum: bool = Field(
        True, description="half a stuck node's items one difficulty level down (else all at the task level)"
    )
    explore: bool = Field(
        False,
        description="a stuck node not yet fed park_after items gets weight 1-p (optimism: unknown learnability), "
        "not p(1-p)'s maximum 0.25",
    )


@register
class FrontierPlan(Plugin):
    """p(1-p) plus progress, a curriculum for stuck nodes, parking of nodes that show no progress."""

    name = "frontier"
    kind = "plan"
    Config = FrontierConfig
    reads = ("profile",)
    config: FrontierConfig

    def propose(self, inputs: Inputs, budget: int, round: int, rng: random.Random) -> Proposal:
        """Weights by learnability over the profile's nodes."""
        profile: WeaknessProfile = inputs["profile"]
        out = Proposal()
        for node in profile.nodes:
            fed = profile.fed.get(node.node, 0), profile.fed_rounds.get(node.node, 0)
            for key, weight, why in self._weigh(node, *fed):
                _add(out, key, weight, why)
        return out

    def _weigh(self, node: NodeStats, fed: int, fed_rounds: int) -> list[tuple[Key, float, str]]:
        c, p, level = self.config, node.accuracy, self.parts.difficulty
        key = (node.point, node.facet, level)
        if p >= c.mastered:
            return [(key, 0.0, "mastered")]
        if p <= c.stuck:
            recent = node.history[-fed_rounds:] if fed_rounds else []
            if fed >= c.park_after and max([p, *recent]) <= c.stuck:
                return [(key, 0.0, f"parked: {fed} items in {fed_rounds} rounds gave no progress")]
            # Optimism under uncertainty: until `park_after` items have been tried, a stuck node's
            # learnability is unknown, and a seed-starved point looks exactly like an unlearnable one.
            weight = 1.0 - p if c.explore else 0.25
            if not c.curriculum or level is None:
                return [(key, weight, f"stuck at {p:.2f}, fed {fed} so far")]
            easier = max(1, level - 1)
            why = f"stuck at {p:.2f}: curriculum, half at level {easier}"
            # Half one level down (a foothold), half at the target level (so it transfers).
            return [((node.point, node.facet, easier), weight / 2, why), (key, weight / 2, why)]
        gain = max(0.0, node.progress)
        return [(key, p * (1 - p) + c.progress_weight * gain, f"frontier p={p:.2f}, progress {gain:+.2f}")]


def _add(out: Proposal, key: Key, weight: float, why: str) -> None:
    if weight > 0:
        out.weights[key] = out.weights.get(key, 0.0) + weight
        out.reasons[key] = why


__all__ = ["FrontierPlan", "RandomPlan", "WeaknessPlan"]
