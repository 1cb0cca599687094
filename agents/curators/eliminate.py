"""Evol-Instruct's elimination rules on the answer: a short reply that says sorry (a refusal), and a reply of
nothing but punctuation and stop words. Deterministic, so it needs no model; any writer's items can use it."""

from __future__ import annotations

import re
from collections.abc import Sequence

from pydantic import Field

from core.plugins import Inputs, Plugin, PluginConfig, register
from core.records import Record, dropped

# English function words (our list). "yes", "no", numbers and the like are left out: they are whole answers.
_STOP_TEXT = """a an the and or but if then else of to in on at by for with from up down out over under again further
    about into through during before after above below between this that these those it its itself i me my
    myself we our ours you your yours he him his she her hers they them their theirs what which who whom whose
    is are was were be been being am do does did doing have has had having will would shall should can could
    may might must as so than too very just also only own same such both each few more most other some any
    all here there when where why how not nor s t don ok okay well oh um uh"""
STOP_WORDS = frozenset(_STOP_TEXT.split())
_WORD = re.compile(r"[^\W_]+")


class EliminateConfig(PluginConfig):
    """The two answer-side rules of Evol-Instruct's elimination step."""

    sorry_words: int = Field(80, ge=1, description="a reply containing 'sorry' with fewer words than this is dropped")


@register
class EliminateCurator(Plugin):
    """Drops refusals ('sorry' in a short reply) and replies of only punctuation and stop words."""

    name = "eliminate"
    kind = "curator"
    Config = EliminateConfig
    config: EliminateConfig

    def curate(self, items: Sequence[Record], inputs: Inputs) -> tuple[list[Record], list[Record]]:
        """(kept, dropped), each dropped item with `eliminate: <rule>`."""
        kept, out = [], []
        for item in items:
            why = self.problem(str(item.get("output") or ""))
            if why:
                out.append(dropped(item, self.name, why))
            else:
                kept.append(item)
        return kept, out

    def problem(self, answer: str) -> str | None:
        """The rule an answer breaks, or None."""
        words = _WORD.findall(answer.lower())
        if "sorry" in words and len(answer.split()) < self.config.sorry_words:
            return f"sorry and short (under {self.config.sorry_words} words)"
        if all(w in STOP_WORDS for w in words):
            return "only punctuation and stop words"
        return None
