"""Humpback-style self-curation: the chat model rates each item 1-5 ("Score: n" on the last line); items
below `min_quality`, and items whose rating never parsed, are dropped with the score or the parse error."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import Field

from agents.llm.assessor import LLMAssessor
from agents.llm.parsing import ask_parsed, parse_score
from core.plugins import Inputs, Plugin, PluginConfig, register
from core.records import Record, dropped


class QualityConfig(PluginConfig):
    """The 5-point rating."""

    min_quality: float = Field(4, ge=1, le=5, description="keep items rated at least this")


@register
class QualityCurator(Plugin):
    """A 1-5 quality rating by the run's chat model."""

    name = "quality"
    kind = "curator"
    Config = QualityConfig
    needs = frozenset({"chat"})
    default_rank = 1
    config: QualityConfig

    def curate(self, items: Sequence[Record], inputs: Inputs) -> tuple[list[Record], list[Record]]:
        """(kept, dropped); every rated item carries `quality`."""
        p = self.parts
        rater = LLMAssessor(p.client, max_tries=p.max_tries, max_tokens=p.max_tokens)
        rated = ask_parsed(p.client, [rater.quality_request(i) for i in items], parse_score, p.max_tries)
        kept, out = [], []
        for item, g in zip(items, rated, strict=True):
            if g.value is None:
                out.append(dropped(item, self.name, f"unrated: {g.error}", quality=None))
            elif g.value < self.config.min_quality:
                out.append(dropped(item, self.name, f"{g.value:g} < {self.config.min_quality:g}", quality=g.value))
            else:
                kept.append({**item, "quality": g.value})
        return kept, out
