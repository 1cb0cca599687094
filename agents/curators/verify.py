"""The task's own check of every answered item: well formed, and the teacher's answer agrees with the answer
the writer proposed (the task world's oracle where it can solve the question)."""

from __future__ import annotations

from collections.abc import Sequence

from agents.assessor import WorldAssessor
from core.plugins import Inputs, Plugin, PluginConfig, register
from core.records import Record, dropped


class VerifyConfig(PluginConfig):
    """No knobs: the length limit and the verifier are the task's."""


@register
class VerifyCurator(Plugin):
    """Drops malformed items and teacher/reference disagreements."""

    name = "verify"
    kind = "curator"
    Config = VerifyConfig
    default_rank = 0

    def curate(self, items: Sequence[Record], inputs: Inputs) -> tuple[list[Record], list[Record]]:
        """(kept, dropped), each dropped item with `verify: <why>`."""
        task = self.parts.task
        assessor = WorldAssessor(max_chars=task.max_item_chars, verifier=task.verifier)
        kept, out = [], []
        for item in items:
            why = assessor.problem(item)
            if why:
                out.append(dropped(item, self.name, why))
            else:
                kept.append(item)
        return kept, out
