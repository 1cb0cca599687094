"""Curation before training: dedup against the pool, decontamination against evaluation sets, IFD."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from agents.tasks.world import normalize_question
from trainers.ifd import IFDScore, select_by_ifd

Record = dict[str, object]


def dedup_and_decontaminate(
    items: Sequence[Record], pool: Iterable[Record], evaluation: Iterable[Record], dedup: bool = True
) -> tuple[list[Record], list[Record]]:
    """(kept, dropped): drop items already in the pool or in this batch (unless `dedup` is off), and items
    that restate an evaluation (probe or test) question, recording the matched id."""
    seen = {normalize_question(r["instruction"]) for r in pool} if dedup else set()
    held_out = {normalize_question(r["instruction"]): str(r["id"]) for r in evaluation}
    kept, dropped = [], []
    for item in items:
        q = normalize_question(item["instruction"])
        if q in held_out:
            dropped.append({**item, "kept": False, "drop_reason": "contaminated", "matched_id": held_out[q]})
        elif q in seen:
            dropped.append({**item, "kept": False, "drop_reason": "duplicate"})
        else:
            if dedup:
                seen.add(q)
            kept.append(item)
    return kept, dropped


def apply_ifd(
    items: Sequence[Record], scores: Sequence[IFDScore], threshold: float, top_share: float
) -> tuple[list[Record], list[Record]]:
    """(kept, dropped) by IFD: keep IFD < threshold, then the top share; every item gets its scores."""
    selection = select_by_ifd(scores, top_share, threshold, share_of="eligible")
    kept, dropped = [], []
    for i, (item, s) in enumerate(zip(items, scores, strict=True)):
        scored = {**item, "ifd": s.ifd, "loss_cond": s.loss_cond, "loss_alone": s.loss_alone}
        if i in selection.dropped:
            why = selection.dropped[i]
            if s.ifd is None and s.reason:  # e.g. the answer truncated away: raise student.max_length
                why = f"{why} ({s.reason})"
            dropped.append({**scored, "kept": False, "drop_reason": f"ifd: {why}"})
        else:
            kept.append({**scored, "kept": True, "drop_reason": None})
    return kept, dropped
