"""A MAP-Elites archive (Rainbow Teaming, arXiv 2402.16822): a grid of cells over categorical features, one
elite item per cell, the paper's biased choice of the cell to mutate toward, and its scores.

- A **cell** is a tuple of feature values, e.g. (knowledge point, perturbation style) or with a third, binned
  numeric feature. The grid is every cell an item can land in; cells start empty.
- **Target sampling** is biased toward empty and weak cells: softmax((1 - f/f_max + bonus * [empty]) / T)
  over the grid, where f is a cell's elite fitness and f_max the best fitness in the archive.
- **Replacement**: a candidate takes a cell when it is empty, or when the caller's comparison says the
  candidate beats the elite (higher fitness, ties by the student's loss; or a judge).
- **QD-score** is the sum of the elites' fitness; **coverage** the share of the grid's cells filled.

The archive is plain data (`to_json` / `from_json`), kept as a plan's state between rounds.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field

from core.records import Record

Cell = tuple[str, ...]


@dataclass
class Elite:
    """The item holding a cell: its record, its fitness, the student's loss on its answer (the tie-break),
    and the pairwise contests it has won (the judge's path)."""

    item: Record
    fitness: float
    loss: float | None = None
    wins: int = 0
    round: int = 0  # the round it entered the archive

    def beats(self, other: Elite) -> bool:
        """The oracle's rule: more effective means higher fitness, and on a tie a higher loss (the student is
        less sure of the right answer); an equal candidate does not replace the elite."""
        mine = (self.fitness, -math.inf if self.loss is None else self.loss)
        theirs = (other.fitness, -math.inf if other.loss is None else other.loss)
        return mine > theirs


@dataclass
class Archive:
    """One elite per cell of a fixed grid."""

    grid: list[Cell]
    elites: dict[Cell, Elite] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.grid = [tuple(c) for c in self.grid]
        if len(set(self.grid)) != len(self.grid):
            raise ValueError("the archive's grid lists a cell twice")
        self._in_grid = set(self.grid)

    def weights(self, temperature: float, empty_bonus: float) -> list[float]:
        """The target distribution over the grid (in grid order): softmax((1 - f/f_max + bonus*[empty]) / T)."""
        if temperature <= 0:
            raise ValueError(f"the sampling temperature must be positive, got {temperature}")
        top = max((e.fitness for e in self.elites.values()), default=0.0)
        scores = []
        for cell in self.grid:
            elite = self.elites.get(cell)
            norm = elite.fitness / top if elite is not None and top > 0 else 0.0
            scores.append((1.0 - norm + (empty_bonus if elite is None else 0.0)) / temperature)
        peak = max(scores)
        exp = [math.exp(s - peak) for s in scores]
        total = sum(exp)
        return [x / total for x in exp]

    def sample_target(self, rng: random.Random, temperature: float, empty_bonus: float) -> Cell:
        """A cell to mutate toward, drawn from `weights`."""
        return rng.choices(self.grid, weights=self.weights(temperature, empty_bonus))[0]

    def sample_parent(self, rng: random.Random) -> Elite:
        """A parent drawn uniformly from the elites (the paper's choice)."""
        if not self.elites:
            raise ValueError("the archive is empty: there is no parent to mutate")
        return self.elites[rng.choice(list(self.elites))]

    def offer(self, cell: Cell, candidate: Elite, beats: Callable[[Elite, Elite], bool] | None = None) -> bool:
        """Put `candidate` in `cell` if the cell is empty or the candidate beats its elite; True when it did."""
        if cell not in self._in_grid:
            raise ValueError(f"cell {cell} is not in the archive's grid")
        elite = self.elites.get(cell)
        if elite is not None and not (beats or Elite.beats)(candidate, elite):
            return False
        self.elites[cell] = candidate
        return True

    def qd_score(self) -> float:
        """The sum of the elites' fitness."""
        return sum(e.fitness for e in self.elites.values())

    def coverage(self) -> float:
        """The share of the grid's cells that hold an elite."""
        return len(self.elites) / len(self.grid) if self.grid else 0.0

    def to_json(self) -> list[dict[str, object]]:
        """The elites as rows, in grid order (the grid itself is rebuilt from the config)."""
        return [{"cell": list(c), **asdict(self.elites[c])} for c in self.grid if c in self.elites]

    @classmethod
    def from_json(cls, grid: Iterable[Sequence[str]], rows: Iterable[dict]) -> Archive:
        """An archive over `grid` holding the saved elites whose cells are in it."""
        archive = cls([tuple(c) for c in grid])
        for row in rows:
            cell = tuple(row["cell"])
            if cell in archive._in_grid:
                archive.elites[cell] = Elite(
                    item=dict(row["item"]),
                    fitness=float(row["fitness"]),
                    loss=None if row.get("loss") is None else float(row["loss"]),
                    wins=int(row.get("wins", 0)),
                    round=int(row.get("round", 0)),
                )
        return archive
