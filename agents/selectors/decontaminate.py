"""Decontamination: no item may restate a probe or test question.

`exact`: the same question key (`core.text.question_key`) as an evaluation item; `ngram` also drops an item
sharing a run of `ngram` words with one, and (with `near_copy`) near copies (agents/hygiene.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import Field

from agents.hygiene import decontaminate
from core.plugins import Inputs, Plugin, PluginConfig, register
from core.records import Record, dropped
from core.text import question_key


class DecontaminateConfig(PluginConfig):
    """Against every probe drawn so far and the held-out test."""

    method: Literal["exact", "ngram"] = Field(
        "exact",
        description="exact: the same question key as a probe or test item; ngram: also a shared n-word run "
        "(and near copies, see near_copy) with any probe or test item",
    )
    ngram: int = Field(13, ge=1, description="ngram: words per run")
    near_copy: float | None = Field(
        None,
        gt=0,
        le=1,
        description="ngram: also drop items holding this share of a test item's words in order (0.9 catches small "
        "edits; leave null on templated tasks whose items differ only in numbers)",
    )


@register
class DecontaminateSelector(Plugin):
    """Drops items that restate an evaluation question, naming the one matched."""

    name = "decontaminate"
    kind = "selector"
    Config = DecontaminateConfig
    reads = ("evaluation",)
    default_rank = 0
    config: DecontaminateConfig

    def select(self, items: Sequence[Record], inputs: Inputs) -> tuple[list[Record], list[Record]]:
        """(kept, dropped); a dropped item names the evaluation item it restates (`matched_id`)."""
        against: dict[str, list[Record]] = inputs["evaluation"]
        held_out = {question_key(r["instruction"]): str(r["id"]) for rows in against.values() for r in rows}
        kept, out = [], []
        for item in items:
            match = held_out.get(question_key(item["instruction"]))
            if match is not None:
                out.append(dropped(item, self.name, f"restates evaluation item {match}", matched_id=match))
            else:
                kept.append(item)
        if self.config.method == "ngram" and kept:
            c = self.config
            kept, near = decontaminate(kept, against, n=c.ngram, near_threshold=c.near_copy)
            out += [dropped(d, self.name, str(d.get("drop_detail") or d["drop_reason"])) for d in near]
        return kept, out
