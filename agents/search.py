"""AutoDetect's iterative search over the verifiable task world: where inside each knowledge point does the
student fail?

AutoDetect asks a model, per test point, for a new prompt "aimed at a lower score", shown past prompts with
their scores, until 15 items. Over the world the same search needs no model: a point's items fall into
cells (difficulty level x facet), and each new item is drawn from the cell a Beta posterior over its
failure rate says is most likely the worst (Thompson sampling; a cell never tried starts at Beta(1, 1),
and a cell that keeps failing keeps being asked). A level of a point never asked yet first gets one item
of any facet: many facets belong to one level only (an answer's length), so crossing the facets seen so
far with the levels would never reach it, and a point failing everything at its task level would
otherwise rarely be tried one level down. Every point gets the same number of items per iteration, as
AutoDetect runs every point to the same count, so failure rates stay comparable across points; the search
only decides *where inside* a point to ask.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from agents.roles import Record
from agents.tasks.world import LEVELS, get_point, sample_item

Cell = tuple[int, str]  # (difficulty level, facet)


@dataclass(frozen=True)
class CellStats:
    """What the search knows about one cell of a point."""

    point: str
    difficulty: int
    facet: str
    asked: int
    failed: int

    @property
    def failure_rate(self) -> float:
        return self.failed / self.asked if self.asked else 0.0


class WorldSearch:
    """Picks the next items per point from the cells the graded items so far point to."""

    def __init__(
        self, points: Sequence[str], seed: int, difficulty: int = 2, per_node: int = 20, levels: Sequence[int] = LEVELS
    ) -> None:
        if per_node < 1:
            raise ValueError(f"per_node must be at least 1, got {per_node}")
        unknown = [lv for lv in levels if lv not in LEVELS]
        if unknown or difficulty not in levels:
            raise ValueError(f"levels {list(levels)} must be among {LEVELS} and hold the start difficulty {difficulty}")
        for p in points:
            get_point(p)  # an unknown point fails here, naming the known ones
        self.points = list(points)
        self.seed = seed
        self.difficulty = difficulty
        self.per_node = per_node
        self.levels = tuple(levels)
        self._seen: set[str] = set()
        self._impossible: set[tuple[str, int, str]] = set()

    def remember(self, questions: Iterable[object]) -> None:
        """Questions that must not be asked again (e.g. the student's training items)."""
        self._seen.update(str(q) for q in questions)

    def initial(self) -> list[Record]:
        """Iteration 0: `per_node` items of every point at the start difficulty, any facet."""
        rng = random.Random(f"{self.seed}:search:0")
        items: list[Record] = []
        for point in self.points:
            for _ in range(self.per_node):
                item = self._draw(rng, point, self.difficulty, None, 0, "iteration 0: the point at its level")
                if item is not None:
                    items.append(item)
        return items

    def next_items(self, graded: Sequence[Record], iteration: int) -> list[Record]:
        """`per_node` new items per point, each from the cell a posterior draw says fails most."""
        rng = random.Random(f"{self.seed}:search:{iteration}")
        stats = self.cells(graded)
        items: list[Record] = []
        for point in self.points:
            known = {(c.difficulty, c.facet): c for c in stats if c.point == point}
            made = 0
            for level in self.levels:
                if made < self.per_node and not any(lv == level for lv, _ in known):
                    item = self._draw(
                        rng, point, level, None, iteration, f"iteration {iteration}: level {level} not tried yet"
                    )
                    if item is not None:
                        items.append(item)
                        made += 1
            facets = sorted({f for _, f in known}) or [None]
            candidates: list[tuple[int, str | None]] = [(lv, f) for lv in self.levels for f in facets]
            for _ in range(self.per_node * 4):  # a cell that yields no new question gives its turn back
                if made == self.per_node:
                    break
                open_cells = [c for c in candidates if (point, c[0], str(c[1])) not in self._impossible]
                if not open_cells:
                    break
                level, facet = max(open_cells, key=lambda c: _posterior_draw(rng, known.get((c[0], str(c[1])))))
                cell = known.get((level, str(facet)))
                why = f"iteration {iteration}: cell level {level}, {facet or 'any facet'}" + (
                    f" ({cell.failed}/{cell.asked} failed so far)" if cell else " (not tried yet)"
                )
                item = self._draw(rng, point, level, facet, iteration, why)
                if item is not None:
                    items.append(item)
                    made += 1
        return items

    def cells(self, graded: Sequence[Record]) -> list[CellStats]:
        """Asked and failed counts per (point, level, facet) of the graded items."""
        return cell_stats(graded)

    def _draw(
        self, rng: random.Random, point: str, level: int, facet: str | None, iteration: int, why: str
    ) -> Record | None:
        """One unseen item of the cell, or None (and the cell marked impossible when it yields none)."""
        kp = get_point(point)
        for _ in range(50):
            try:
                question, answer = sample_item(rng, point, level, facet, max_tries=500)
            except RuntimeError:
                break  # this level has no item of that facet
            if question in self._seen:
                continue
            self._seen.add(question)
            return {
                "id": f"search{iteration}-{point}-{len(self._seen):06d}",
                "instruction": question,
                "output": answer,
                "knowledge_point": point,
                "skill": kp.skill,
                "difficulty": level,
                "facet": kp.facet(question, answer),
                "iteration": iteration,
                "why": why,
            }
        self._impossible.add((point, level, str(facet)))
        return None


def cell_stats(graded: Sequence[Record]) -> list[CellStats]:
    """Asked and failed counts per (point, level, facet) of graded world items (those with a level)."""
    counts: dict[tuple[str, int, str], list[int]] = defaultdict(lambda: [0, 0])
    for r in graded:
        if r.get("difficulty") is None:
            continue
        key = (str(r["knowledge_point"]), int(r["difficulty"]), str(r["facet"]))  # type: ignore[call-overload]
        counts[key][0] += 1
        counts[key][1] += not r["correct"]
    return [CellStats(p, d, f, n, k) for (p, d, f), (n, k) in sorted(counts.items())]


def _posterior_draw(rng: random.Random, cell: CellStats | None) -> float:
    """A draw of the cell's failure rate from Beta(1 + failed, 1 + passed)."""
    failed, asked = (cell.failed, cell.asked) if cell else (0, 0)
    return rng.betavariate(1 + failed, 1 + asked - failed)
