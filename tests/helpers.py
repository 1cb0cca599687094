"""Helpers shared by the tests (import them from here, not from another test module)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from agents.proposal import Proposer
from agents.roles import WeaknessProfile
from agents.tasks.world import get_point, points_for
from core import plugins
from core.plugins import Parts
from core.records import Record


class Strategy:
    """A plan times a writer, called as the loop calls them, with the round inputs given as arguments."""

    def __init__(
        self,
        plan: str,
        writer: str = "generator",
        *,
        seed: int = 0,
        difficulty: int | None = 2,
        client: object = None,
        points: Sequence[str] | None = None,
        taxonomy: Sequence[Record] | None = None,
        max_tries: int = 3,
        writer_options: dict[str, object] | None = None,
        **plan_options: object,
    ) -> None:
        parts = Parts(seed=seed, difficulty=difficulty, client=client, max_tries=max_tries, max_tokens=256)
        plan_cls, writer_cls = plugins.get("plan", plan), plugins.get("writer", writer)
        self.plan = plan_cls(plan_cls.Config(name=plan, **plan_options), parts)
        self.writer = writer_cls(writer_cls.Config(name=writer, **(writer_options or {})), parts)
        tag = getattr(writer_cls, "rng_tag", writer)
        self.proposer = Proposer(self.plan, self.writer, f"{seed}:{tag}:{plan}")
        ids = list(points or points_for())
        self.taxonomy = list(taxonomy) if taxonomy is not None else [_point(p) for p in ids]
        self.rejected: list[Record] = []

    def __call__(
        self,
        profile: WeaknessProfile,
        failures: Sequence[Record],
        budget: int,
        round: int,
        successes: Sequence[Record] = (),
        known: Iterable[str] = (),
    ) -> list[Record]:
        values = {
            "profile": profile,
            "failures": list(failures),
            "successes": list(successes),
            "taxonomy": self.taxonomy,
            "known": [*known, *(str(f["instruction"]) for f in failures if "instruction" in f)],
        }
        written = self.proposer.question(values, budget, round)
        self.rejected = written.rejected
        return written.items


def _point(point_id: str) -> Record:
    try:
        kp = get_point(point_id)
    except KeyError:
        return {"id": point_id, "category": "", "description": ""}
    return {"id": point_id, "category": kp.skill, "description": kp.description}
