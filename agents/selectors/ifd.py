"""IFD selection by the current student (Cherry-LLM, Superfiltering): keep items whose instruction helps the
student predict the answer (IFD below `threshold`), then the highest-IFD `top_share` of those.

With `reverse`, the student also scores r-IFD (Selective Reflection-Tuning's reverse direction: how much the
answer helps predict the instruction, `trainers/ifd.py`), each item carries `rifd`, and an item with r-IFD at
or above `reverse_threshold` is dropped too: its answer does not point back to its question.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from pydantic import Field

from core.ifd import select_by_ifd
from core.plugins import Inputs, Plugin, PluginConfig, register
from core.records import Record, dropped, kept


class IFDSelectorConfig(PluginConfig):
    """Thresholds and share of the IFD selection."""

    threshold: float = Field(1.0, gt=0, description="keep IFD below this")
    top_share: float = Field(1.0, gt=0, le=1, description="then keep the highest-IFD share of those")
    reverse: bool = Field(False, description="also score r-IFD and drop items at or above reverse_threshold")
    reverse_threshold: float = Field(1.0, gt=0, description="with reverse: keep r-IFD below this")


@register
class IFDSelector(Plugin):
    """Scores every item with the student of the previous round and keeps the hard, aligned ones."""

    name = "ifd"
    kind = "selector"
    Config = IFDSelectorConfig
    needs = frozenset({"student"})
    reads = ("student",)
    default_rank = 2
    config: IFDSelectorConfig

    def select(self, items: Sequence[Record], inputs: Inputs) -> tuple[list[Record], list[Record]]:
        """(kept, dropped); every item carries its `ifd`, `loss_cond`, `loss_alone` (and `rifd`)."""
        if not items:
            return [], []
        c = self.config
        score = inputs["student"]
        scores = score(items, reverse=False)
        reverse = score(items, reverse=True) if c.reverse else [None] * len(items)
        selection = select_by_ifd(scores, c.top_share, c.threshold, share_of="eligible")
        kept_rows, out = [], []
        for i, (item, s, r) in enumerate(zip(items, scores, reverse, strict=True)):
            scored = {**item, "ifd": s.ifd, "loss_cond": s.loss_cond, "loss_alone": s.loss_alone}
            if c.reverse:
                scored["rifd"] = r.ifd if r is not None else None
            if i in selection.dropped:
                why = selection.dropped[i]
                if s.ifd is None and s.reason:  # e.g. the answer truncated away: raise student.max_length
                    why = f"{why} ({s.reason})"
                out.append(dropped(scored, self.name, why))
            elif c.reverse and (r is None or r.ifd is None or math.isnan(r.ifd) or r.ifd >= c.reverse_threshold):
                why = f"r-IFD>={c.reverse_threshold:g}" if r is not None and r.ifd is not None else "no r-IFD score"
                out.append(dropped(scored, self.name, why))
            else:
                kept_rows.append(kept(scored))
        return kept_rows, out
