"""Selective Reflection-Tuning, student side: the student's IFD and r-IFD choose among an item's reflections.

Reads the `reflection` variants the `reflection` refiner wrote and scores the original (ori) and every variant
with the student of the previous round, in its own training template: IFD = ppl(A | Q) / ppl(A) and r-IFD =
ppl(Q | A) / ppl(Q) with the reference's reverse prompt (`trainers/ifd.py`). The rules are the reference's
(`selection_code/get_select_data.py`), on the perplexity ratios as there (`ratio: loss` takes the loss ratios):

1. The new instruction is harder for the student, IFD(q) > IFD(ori): keep qa if its better answer fits its
   instruction better, r-IFD(qa) < r-IFD(q), and IFD(qa) < 1 and r-IFD(qa) < 1. Otherwise the reference adds
   nothing (the Q-only case; `keep_q_only` keeps q then, under the same two bounds).
2. Else the better answer fits the original instruction better, r-IFD(a) < r-IFD(ori): keep a under the same
   two bounds. Otherwise nothing is added (`keep_original` keeps the original then, unchanged).

A kept item takes the chosen variant's instruction and answer (the original's stay in `original_instruction`
and `original_output`), with `reflected` naming the variant and `reflection_scores` every variant's IFD and
r-IFD. `top_k` then keeps the k kept items of highest IFD (the README's small selected set; not in the
reference's code). Every other item is dropped with the rule that let it go.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

from pydantic import Field

from core.ifd import IFDScore
from core.plugins import Inputs, Plugin, PluginConfig, register
from core.records import Record, dropped, kept


class SelectiveReflectionConfig(PluginConfig):
    """The reference's rules, and the options around them."""

    ratio: Literal["ppl", "loss"] = Field("ppl", description="compare perplexity ratios (the reference) or losses")
    below_one: bool = Field(True, description="a kept variant needs IFD < 1 and r-IFD < 1 (the reference)")
    keep_q_only: bool = Field(False, description="keep the new instruction with its own answer when qa loses")
    keep_original: bool = Field(False, description="keep an item unchanged when no reflection wins")
    top_k: int | None = Field(None, ge=1, description="then keep only the k kept items of highest IFD")


def _value(score: IFDScore | None, ratio: str) -> float | None:
    if score is None:
        return None
    value = score.ifd_ppl if ratio == "ppl" else score.ifd
    return None if value is None or math.isnan(value) else value


@register
class SelectiveReflectionSelector(Plugin):
    """Keeps the reflected variant the student finds harder yet better aligned (Selective Reflection-Tuning)."""

    name = "selective_reflection"
    kind = "selector"
    Config = SelectiveReflectionConfig
    needs = frozenset({"student"})
    reads = ("student",)
    config: SelectiveReflectionConfig

    def select(self, items: Sequence[Record], inputs: Inputs) -> tuple[list[Record], list[Record]]:
        """(kept, dropped): each kept item is its chosen variant; items without `reflection` pass unchanged."""
        rows: list[Record] = []  # ori and every variant, scored in one batch per direction
        where: list[dict[str, int]] = []
        for item in items:
            spots = {"ori": len(rows)}
            rows.append(item)
            for variant, row in (item.get("reflection") or {}).items():  # type: ignore[union-attr]
                if variant != "missing":
                    spots[variant] = len(rows)
                    rows.append({**item, **row})
            where.append(spots)
        if not rows:
            return [], []
        score = inputs["student"]
        ifd, rifd = score(rows, reverse=False), score(rows, reverse=True)
        chosen, out = [], []
        for item, spots in zip(items, where, strict=True):
            if "reflection" not in item:
                chosen.append(item)
                continue
            scores = {
                v: {"ifd": _value(ifd[k], self.config.ratio), "rifd": _value(rifd[k], self.config.ratio)}
                for v, k in spots.items()
            }
            if len(spots) == 1 and not self.config.keep_original:  # every reflection is missing (see its `missing`)
                out.append(dropped(item, self.name, "no reflected version to choose from", reflection_scores=scores))
                continue
            variant, why = self.choose(scores)
            if variant is None:
                out.append(dropped(item, self.name, why, reflection_scores=scores))
                continue
            row = rows[spots[variant]]
            picked = {k: v for k, v in row.items() if k != "reflection"}
            picked.update(
                reflected=variant,
                reflection_scores=scores,
                original_instruction=item["instruction"],
                original_output=item["output"],
                ifd=ifd[spots[variant]].ifd,
                rifd=rifd[spots[variant]].ifd,
                reflection_missing=(item.get("reflection") or {}).get("missing"),  # type: ignore[union-attr]
            )
            chosen.append(kept(picked))
        return self._top_k(chosen, out)

    def choose(self, s: dict[str, dict[str, float | None]]) -> tuple[str | None, str]:
        """The variant the rules keep (None: nothing) and, when none, the rule that let the item go."""
        c = self.config

        def less(a: float | None, b: float | None) -> bool:
            return a is not None and b is not None and a < b

        def bounded(v: str) -> str | None:
            if not c.below_one:
                return None
            if not less(s[v]["ifd"], 1.0):
                return f"{v}: IFD>=1" if s[v]["ifd"] is not None else f"{v}: no IFD score"
            if not less(s[v]["rifd"], 1.0):
                return f"{v}: r-IFD>=1" if s[v]["rifd"] is not None else f"{v}: no r-IFD score"
            return None

        ori = s["ori"]
        if "q" in s and less(ori["ifd"], s["q"]["ifd"]):
            if "qa" in s and less(s["qa"]["rifd"], s["q"]["rifd"]):
                why = bounded("qa")
                return ("qa", "") if why is None else (None, f"harder instruction, but {why}")
            if c.keep_q_only:
                why = bounded("q")
                return ("q", "") if why is None else (None, f"harder instruction, but {why}")
            return None, "q only: harder instruction, but its better answer fits it no better"
        if "a" in s and less(s["a"]["rifd"], ori["rifd"]):
            why = bounded("a")
            return ("a", "") if why is None else (None, f"better-fitting answer, but {why}")
        if c.keep_original:
            return "ori", ""
        return None, "no reflection is harder or fits better"

    def _top_k(self, chosen: list[Record], out: list[Record]) -> tuple[list[Record], list[Record]]:
        k = self.config.top_k
        reflected = [i for i, item in enumerate(chosen) if "reflected" in item]
        if k is None or len(reflected) <= k:
            return chosen, out

        def ifd_of(i: int) -> float:
            item = chosen[i]
            value = item["reflection_scores"][item["reflected"]]["ifd"]  # type: ignore[index]
            return -1.0 if value is None else float(value)

        ranked = sorted(reflected, key=lambda i: -ifd_of(i))
        cut = set(ranked[k:])
        kept_rows = [item for i, item in enumerate(chosen) if i not in cut]
        out += [dropped(chosen[i], self.name, f"below the top {k} by IFD") for i in sorted(cut)]
        return kept_rows, out
