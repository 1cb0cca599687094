from __future__ import annotations

from agents.examiner import WorldExaminer
from agents.roles import WeaknessProfile
from agents.stats import two_proportion_z, wilson_interval


def _evals(point: str, facet_hits: dict[str, tuple[int, int]]) -> list[dict]:
    out = []
    for facet, (k, n) in facet_hits.items():
        out += [{"knowledge_point": point, "facet": facet, "correct": i < k} for i in range(n)]
    return out


def test_wilson_and_z() -> None:
    lo, hi = wilson_interval(0, 30)
    assert lo == 0.0 and 0.05 < hi < 0.15
    lo, hi = wilson_interval(15, 30)
    assert lo < 0.5 < hi and hi - lo < 0.4
    assert two_proportion_z(18, 20, 2, 20) > 4
    assert two_proportion_z(5, 10, 5, 10) == 0


def test_stats_rank_weakest_first_with_history() -> None:
    ex = WorldExaminer()
    evals = _evals("a", {"x": (9, 10)}) + _evals("b", {"x": (2, 10)})
    p0 = ex.examine(evals, 0, None)
    assert [n.node for n in p0.nodes] == ["b", "a"]
    assert p0.nodes[0].weak and not p0.nodes[1].weak
    p1 = ex.examine(_evals("a", {"x": (10, 10)}) + _evals("b", {"x": (6, 10)}), 1, p0)
    b = next(n for n in p1.nodes if n.node == "b")
    assert b.history == [0.2] and abs(b.progress - 0.4) < 1e-9
    assert WeaknessProfile.from_json(p1.to_json()).to_json() == p1.to_json()


def test_refines_a_weak_point_when_one_facet_fails_significantly() -> None:
    ex = WorldExaminer()
    evals = _evals("add.carry", {"answer has 2 chars": (14, 15), "answer has 3 chars": (1, 15)})
    profile = ex.examine(evals, 2, None)
    assert len(profile.refinements) == 1
    ref = profile.refinements[0]
    assert ref["point"] == "add.carry" and "answer has 3 chars" in ref["why"] and ref["z"] > 2
    assert {n.node for n in profile.nodes} == {"add.carry|answer has 2 chars", "add.carry|answer has 3 chars"}


def test_no_split_on_noise_or_strong_points() -> None:
    ex = WorldExaminer()
    noisy = _evals("p", {"f1": (3, 10), "f2": (4, 10)})
    strong = _evals("q", {"f1": (10, 10), "f2": (8, 10)})
    assert ex.examine(noisy + strong, 1, None).refinements == []
