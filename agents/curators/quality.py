"""Humpback-style self-curation: the chat model rates each item 1-5 ("Score: n" on the last line); items
below `min_quality` are dropped with the score. Humpback keeps only 5s, or >= 4.5 averaged over several ratings
(`samples`). A rating that never parses is a judge failure, counted as such (`quality: unrated: ...`); what then
happens to the item is the config's fallback (`on_unrated`): dropped, kept, or judged by the student's IFD, as
`../shared/strategies.md` asks of every judge-like step (a 135M model gave 0 of 4 parseable ratings unguided).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Literal

from pydantic import Field

from agents.llm.assessor import LLMAssessor
from agents.llm.parsing import ParseError, ask_parsed, parse_score
from agents.llm.types import ChatRequest
from core.plugins import Inputs, Plugin, PluginConfig, register
from core.records import Record, dropped


class QualityConfig(PluginConfig):
    """The 5-point rating and its fallback."""

    min_quality: float = Field(4, ge=1, le=5, description="keep items rated at least this (Humpback: 5, or 4.5)")
    samples: int = Field(
        1, ge=1, le=16, description="ratings per item, averaged; more than one are sampled at temperature 0.7"
    )
    on_unrated: Literal["drop", "keep", "ifd"] = Field(
        "drop",
        description="an item whose rating never parsed: dropped, kept, or kept only where the student's IFD is "
        "below ifd_below (the student's view replaces a judge that cannot judge)",
    )
    ifd_below: float = Field(1.0, gt=0, description="the IFD fallback keeps an unrated item below this")


@register
class QualityCurator(Plugin):
    """A 1-5 quality rating by the run's chat model, with a fallback for ratings that never parse."""

    name = "quality"
    kind = "curator"
    Config = QualityConfig
    needs = frozenset({"chat"})
    reads = ("student",)  # the IFD fallback
    default_rank = 1
    config: QualityConfig

    def curate(self, items: Sequence[Record], inputs: Inputs) -> tuple[list[Record], list[Record]]:
        """(kept, dropped); a rated item carries `quality`, an unrated one the fallback kept `quality_fallback`."""
        c = self.config
        ratings = self._ratings(items)
        unrated = [i for i, (score, _) in enumerate(ratings) if score is None]
        ifds: dict[int, float | None] = {}
        if unrated and c.on_unrated == "ifd":
            scores = inputs["student"]([items[i] for i in unrated])
            ifds = {i: s.ifd for i, s in zip(unrated, scores, strict=True)}
        kept, out = [], []
        for i, (item, (score, error)) in enumerate(zip(items, ratings, strict=True)):
            if score is not None:
                if score < c.min_quality:
                    out.append(dropped(item, self.name, f"{score:g} < {c.min_quality:g}", quality=score))
                else:
                    kept.append({**item, "quality": score})
            elif c.on_unrated == "keep":
                kept.append({**item, "quality": None, "quality_fallback": f"kept unrated ({error})"})
            elif c.on_unrated == "ifd" and ifds.get(i) is not None and ifds[i] < c.ifd_below:  # type: ignore[operator]
                kept.append({**item, "quality": None, "quality_fallback": f"unrated; student IFD {ifds[i]:.3f}"})
            elif c.on_unrated == "ifd":
                shown = "none" if ifds.get(i) is None else f"{ifds[i]:.3f}"
                why = f"unrated ({error}); student IFD {shown} not below {c.ifd_below:g}"
                out.append(dropped(item, self.name, why, quality=None))
            else:
                out.append(dropped(item, self.name, f"unrated: {error}", quality=None))
        return kept, out

    def _ratings(self, items: Sequence[Record]) -> list[tuple[float | None, str | None]]:
        """Per item: the (mean) rating, or None and why none parsed."""
        p, c = self.parts, self.config
        rater = LLMAssessor(p.client, max_tries=p.max_tries, max_tokens=p.max_tokens)
        requests = [rater.quality_request(i) for i in items]
        if c.samples == 1:
            return [(g.value, g.error) for g in ask_parsed(p.client, requests, parse_score, p.max_tries)]
        sampled = [
            ChatRequest(r.messages, replace(r.sampling, temperature=0.7, n=c.samples, seed=k), r.agent)
            for k, r in enumerate(requests)
        ]
        out: list[tuple[float | None, str | None]] = []
        for result in p.client.chat(sampled):
            scores, errors = [], []
            for text in result.texts:
                try:
                    scores.append(parse_score(text))
                except ParseError as err:
                    errors.append(str(err))
            out.append((sum(scores) / len(scores), None) if scores else (None, errors[0]))
        return out
