"""The programmatic Examiner: per-node failure rates with Wilson intervals, ranking, and refinement.

A node is a knowledge point, or, once the point is refined, one of its facets ("point|facet"), as
AutoDetect grows its taxonomy. A weak point is split when its probes show that one facet fails
significantly more than the rest (two-proportion z >= `split_z`); the split is recorded with the
numbers behind it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from agents.roles import NodeStats, Record, WeaknessProfile
from agents.stats import two_proportion_z, wilson_interval


def node_of(record: Record, refined: set[str]) -> str:
    """The taxonomy node a record belongs to, given the set of refined points."""
    point = str(record["knowledge_point"])
    return f"{point}|{record['facet']}" if point in refined and record.get("facet") else point


class WorldExaminer:
    """Examiner over the task world's taxonomy."""

    def __init__(
        self,
        weak_below: float = 0.8,
        split_z: float = 2.0,
        min_split_n: int = 8,
        max_refinements: int = 6,
    ) -> None:
        self.weak_below = weak_below
        self.split_z = split_z
        self.min_split_n = min_split_n
        self.max_refinements = max_refinements

    def examine(self, evals: Sequence[Record], round: int, previous: WeaknessProfile | None) -> WeaknessProfile:
        """Stats per node from this round's probe records, weakest first; may refine weak points."""
        refinements = list(previous.refinements) if previous else []
        refined = {str(r["point"]) for r in refinements}
        history = {n.node: [*n.history, n.accuracy] for n in previous.nodes} if previous else {}
        new = self._refine(evals, refined, round) if len(refinements) < self.max_refinements else []
        refinements += new[: self.max_refinements - len(refinements)]
        refined |= {str(r["point"]) for r in refinements}
        for r in new:  # children inherit the parent's history, so progress is still measurable
            for facet in r["facets"]:  # type: ignore[union-attr]
                history.setdefault(f"{r['point']}|{facet}", history.get(str(r["point"]), []))
        nodes = self._stats(evals, refined, history)
        return WeaknessProfile(
            round=round,
            nodes=nodes,
            refinements=refinements,
            fed=dict(previous.fed) if previous else {},
            fed_rounds=dict(previous.fed_rounds) if previous else {},
        )

    def _stats(self, evals: Sequence[Record], refined: set[str], history: dict[str, list[float]]) -> list[NodeStats]:
        groups: dict[str, list[bool]] = defaultdict(list)
        for r in evals:
            groups[node_of(r, refined)].append(bool(r["correct"]))
        return node_stats(groups, history, self.weak_below)

    def _refine(self, evals: Sequence[Record], refined: set[str], round: int) -> list[Record]:
        by_point: dict[str, dict[str, list[bool]]] = defaultdict(lambda: defaultdict(list))
        for r in evals:
            if r.get("facet"):
                by_point[str(r["knowledge_point"])][str(r["facet"])].append(bool(r["correct"]))
        out: list[Record] = []
        for point, facets in sorted(by_point.items()):
            if point in refined or len(facets) < 2:
                continue
            all_hits = [h for hits in facets.values() for h in hits]
            if sum(all_hits) / len(all_hits) >= self.weak_below:
                continue
            worst = min(facets, key=lambda f: sum(facets[f]) / len(facets[f]))
            rest = [h for f, hits in facets.items() if f != worst for h in hits]
            kw, nw = sum(facets[worst]), len(facets[worst])
            if nw < self.min_split_n or len(rest) < self.min_split_n:
                continue
            z = two_proportion_z(sum(rest), len(rest), kw, nw)
            if z >= self.split_z:
                out.append(
                    {
                        "round": round,
                        "point": point,
                        "facets": {f: {"n": len(h), "accuracy": sum(h) / len(h)} for f, h in facets.items()},
                        "z": round_(z),
                        "why": f"facet {worst!r} fails more ({kw}/{nw} right vs {sum(rest)}/{len(rest)}, z={z:.2f})",
                    }
                )
        return out


def round_(x: float) -> float:
    """Three decimals, for readable records."""
    return float(f"{x:.3f}")


def node_stats(groups: dict[str, list[bool]], history: dict[str, list[float]], weak_below: float) -> list[NodeStats]:
    """NodeStats (Wilson interval, history, weak flag) per node ("point" or "point|facet"), weakest first."""
    nodes = []
    for node, hits in groups.items():
        k, n = sum(hits), len(hits)
        lo, hi = wilson_interval(k, n)
        point, _, facet = node.partition("|")
        acc = k / n
        nodes.append(NodeStats(node, point, facet or None, n, k, acc, lo, hi, history.get(node, []), acc < weak_below))
    nodes.sort(key=lambda s: (s.accuracy, s.node))
    return nodes
