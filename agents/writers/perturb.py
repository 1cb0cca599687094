"""The task world's generator with a perturbation style (agents/tasks/styles.py): fresh items of a (point,
facet, level), each reworded in a style and checked by the world's oracle.

An ask that names a style in its context (the `rainbow` plan's elites do) gets items in that style: new
questions of the elite's point and facet, worded as the elite is, never the elite itself. Items of a weighted
proposal get a style drawn uniformly from `styles` among those with a form for the point. A draw whose
rewording the oracle rejects is drawn again, as a known question is.
"""

from __future__ import annotations

import random

from pydantic import Field, field_validator

from agents.proposal import Proposal, Written
from agents.tasks.styles import STYLES, applies, restyle
from agents.writers.generator import GeneratorConfig, GeneratorWriter
from core.plugins import Inputs, register


class PerturbConfig(GeneratorConfig):
    """The generator's draws, reworded."""

    styles: list[str] = Field(
        [s for s in STYLES if s != "plain"],
        description=f"styles drawn for items of a weighted proposal (known: {', '.join(STYLES)}); an ask that "
        "names its own style uses that one",
    )

    @field_validator("styles")
    @classmethod
    def _known_styles(cls, styles: list[str]) -> list[str]:
        unknown = [s for s in styles if s not in STYLES]
        if unknown or not styles:
            raise ValueError(f"styles must name known styles ({', '.join(STYLES)}); got {styles}")
        return styles


@register
class PerturbWriter(GeneratorWriter):
    """World items in a perturbation style, verified by the oracle."""

    name = "perturb"
    Config = PerturbConfig
    rng_tag = "perturb"
    default_rank = None
    config: PerturbConfig

    def write(
        self, proposal: Proposal, budget: int, round: int, rng: random.Random, inputs: Inputs, strategy: str
    ) -> Written:
        """The generator's items, each in its ask's style or in one drawn from `styles`."""
        self.ask_styles = {str(a.parent["id"]): str(a.context["style"]) for a in proposal.asks if "style" in a.context}
        return super().write(proposal, budget, round, rng, inputs, strategy)

    def reword(
        self, question: str, point: str, parent: str | None, rng: random.Random
    ) -> tuple[str, dict[str, object]] | None:
        """`question` in the ask's style (or a drawn one); None where the oracle rejects the rewording."""
        style = self.ask_styles.get(parent) if parent is not None else None
        if style is None:
            fitting = [s for s in self.config.styles if applies(s, point)]
            style = rng.choice(fitting) if fitting else "plain"
        styled = restyle(style, question, point, rng)
        if isinstance(styled, str):
            return None
        return styled.question, {"style": style, "base": question}
