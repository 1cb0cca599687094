"""The role interfaces shared by programmatic agents (over the task world) and LLM agents.

Inputs and outputs are records (JSON-able dicts), never free text, so the loop can store, resume
and trace them. The keys the loop relies on:

- evaluation record: id, instruction, output (reference), prediction, correct, knowledge_point,
  facet, difficulty, skill; the Assessor adds error_type.
- candidate item: id, instruction, knowledge_point, facet, difficulty, skill, source="synthetic",
  round, strategy, parent_id (the failure or point it came from), reference (the answer the
  Questioner expects, when it knows one); the Teacher adds output and teacher.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Protocol

Record = dict[str, object]


@dataclass
class NodeStats:
    """Probe results of one taxonomy node: a knowledge point, or a finer sub-point (point|facet)."""

    node: str
    point: str
    facet: str | None
    n: int
    correct: int
    accuracy: float
    ci_low: float
    ci_high: float
    history: list[float] = field(default_factory=list)  # probe accuracy in earlier rounds, oldest first
    weak: bool = False

    @property
    def progress(self) -> float:
        """Accuracy gain since the previous round (0 when there is none)."""
        return self.accuracy - self.history[-1] if self.history else 0.0


@dataclass
class WeaknessProfile:
    """What the Examiner found after a round: stats per node (weakest first) and taxonomy refinements."""

    round: int
    nodes: list[NodeStats]
    refinements: list[Record] = field(default_factory=list)  # every split so far, with why
    fed: dict[str, int] = field(default_factory=dict)  # synthetic items given to each node so far
    fed_rounds: dict[str, int] = field(default_factory=dict)  # rounds in which each node was given items

    def to_json(self) -> Record:
        """A JSON-able dict (stored as round_NNN/profile.json)."""
        return {
            "round": self.round,
            "nodes": [asdict(n) for n in self.nodes],
            "refinements": self.refinements,
            "fed": self.fed,
            "fed_rounds": self.fed_rounds,
        }

    @classmethod
    def from_json(cls, data: Record) -> WeaknessProfile:
        """Inverse of to_json."""
        return cls(
            round=int(data["round"]),  # type: ignore[arg-type]
            nodes=[NodeStats(**n) for n in data["nodes"]],  # type: ignore[union-attr]
            refinements=list(data.get("refinements", [])),  # type: ignore[arg-type]
            fed=dict(data.get("fed", {})),  # type: ignore[arg-type]
            fed_rounds=dict(data.get("fed_rounds", {})),  # type: ignore[arg-type]
        )


class Examiner(Protocol):
    """Keeps the taxonomy; turns evaluation records into a ranked weakness profile."""

    def examine(self, evals: Sequence[Record], round: int, previous: WeaknessProfile | None) -> WeaknessProfile: ...


class Questioner(Protocol):
    """Writes new candidate items aimed at the weak spots, within a budget."""

    def question(
        self,
        profile: WeaknessProfile,
        failures: Sequence[Record],
        budget: int,
        round: int,
        successes: Sequence[Record] = (),
    ) -> list[Record]: ...


class Teacher(Protocol):
    """Answers candidate items (adds `output` and `teacher`)."""

    def answer(self, candidates: Sequence[Record]) -> list[Record]: ...


class Assessor(Protocol):
    """Grades student answers and curates synthetic items."""

    def grade(self, records: Sequence[Record]) -> list[Record]: ...

    def curate(self, items: Sequence[Record]) -> tuple[list[Record], list[Record]]: ...
