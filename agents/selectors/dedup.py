"""Dedup: an item whose question is already in the training pool, or earlier in this batch, is dropped."""

from __future__ import annotations

from collections.abc import Sequence

from core.plugins import Inputs, Plugin, PluginConfig, register
from core.records import Record, dropped
from core.text import question_key


class DedupConfig(PluginConfig):
    """Exact dedup by the question key (near duplicates: the writers' ROUGE-L check, `gaploop data dedup`)."""


@register
class DedupSelector(Plugin):
    """Drops repeats of pool questions and of earlier items of the batch."""

    name = "dedup"
    kind = "selector"
    Config = DedupConfig
    reads = ("pool",)
    default_rank = 1

    def select(self, items: Sequence[Record], inputs: Inputs) -> tuple[list[Record], list[Record]]:
        """(kept, dropped), the first of equal questions kept."""
        seen = {question_key(r["instruction"]) for r in inputs["pool"]}
        kept, out = [], []
        for item in items:
            key = question_key(item["instruction"])
            if key in seen:
                out.append(dropped(item, self.name, "duplicate of a pool or batch question"))
            else:
                seen.add(key)
                kept.append(item)
        return kept, out
