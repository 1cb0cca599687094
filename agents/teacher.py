"""The world's teacher: answers a question by solving its text (agents/tasks/world.py `solve`)."""

from __future__ import annotations

from collections.abc import Sequence

from agents.roles import Record
from agents.tasks.world import solve


class WorldOracle:
    """Teacher of the embedded default: exact answers computed from the question; none when unparsable."""

    name = "world-oracle"

    def answer(self, candidates: Sequence[Record]) -> list[Record]:
        """Each candidate with `output` (empty when the question is not one the oracle can solve)."""
        return [{**c, "output": solve(str(c["instruction"])) or "", "teacher": self.name} for c in candidates]


class OracleFirst:
    """The world's oracle answers what it can solve; another teacher (the chat model) answers the rest, in one
    batch. Where a writer model is weak at answering, this measures its questions apart from its answers."""

    def __init__(self, fallback: object) -> None:
        self.fallback = fallback

    def answer(self, candidates: Sequence[Record]) -> list[Record]:
        """Each candidate answered, in order: by the oracle where it solves it, else by the fallback."""
        gold = [solve(str(c["instruction"])) for c in candidates]
        rest = [c for c, g in zip(candidates, gold, strict=True) if g is None]
        theirs = iter(self.fallback.answer(rest) if rest else [])  # type: ignore[attr-defined]
        mine = WorldOracle.name
        return [
            {**c, "output": g, "teacher": mine} if g is not None else next(theirs)
            for c, g in zip(candidates, gold, strict=True)
        ]
