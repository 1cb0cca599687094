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
