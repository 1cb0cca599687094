"""Records: the JSON-able dicts every stage reads and writes, the id of a new item, and the one way to drop.

The keys the loop relies on are listed in `agents/roles.py`. A dropped item keeps every field it had and
gains `kept: false` and `drop_reason: "<plugin>: <why>"`, so the round table and W&B count drops by the
plugin that made them, and a user reading items.jsonl sees why each one went.
"""

from __future__ import annotations

import re

Record = dict[str, object]


def item_id(round: int, strategy: str, index: int) -> str:
    """The id of the index-th new item a strategy wrote in a round (unique within the run)."""
    return f"r{round:03d}-{strategy}-{index:05d}"


def dropped(item: Record, plugin: str, why: str, **extra: object) -> Record:
    """`item` marked dropped by `plugin`, with the reason and any extra fields (a score, a matched id)."""
    return {**item, **extra, "kept": False, "drop_reason": f"{plugin}: {why}"}


def kept(item: Record, **extra: object) -> Record:
    """`item` marked kept, with any extra fields (its scores)."""
    return {**item, **extra, "kept": True, "drop_reason": None}


def drop_plugin(item: Record) -> str:
    """The plugin (or phase) that dropped an item: the part of its reason before the first ':'."""
    return str(item.get("drop_reason")).split(":")[0]


_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"|\([^)]*\)")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def drop_reason_key(item: Record) -> str:
    """An item's drop reason with its particulars taken out (quoted text, brackets, numbers -> n), so that
    reasons of one kind count together: "questioner: magpie: too similar: ROUGE-L n > n"."""
    text = _NUMBER.sub("n", _QUOTED.sub("", str(item.get("drop_reason"))))
    text = re.sub(r"\s+", " ", text).strip()
    return re.sub(r"(?:\s+(?:to|last)|[:;,])+$", "", text).strip()
