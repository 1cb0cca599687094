"""The LLM Examiner (AutoDetect): per-point stats from graded probes, and taxonomy growth by a model.

A taxonomy is a list of points {id, category, description}. Each round the model sees the mean score
(or accuracy) of every point and up to `bad_cases` failed cases per point, and proposes one new point
as JSON or says [[Stop]]; a judge call accepts it with [[Yes]]. Growth ends for the run at [[Stop]],
after `max_rejections` rejections in a row, or once `max_new_points` were added. Departures from the
release: one accepted point per round (the new point is probed in the next round before the model
analyses again, where AutoDetect deep-searches it at once); rejected names are shown to the proposer so
it does not repeat them; an unparsable proposal counts as a rejection, so growth always ends. Every
proposal, stop and rejection is kept in `profile.refinements`, so the bounds hold across resumes.
"""

from __future__ import annotations

import random
import re
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import yaml

from agents.examiner import node_stats
from agents.llm.parsing import Chat, ParseError, ask_parsed, excerpt, parse_bracketed, parse_json, parse_json_list
from agents.llm.prompts import render
from agents.llm.types import ChatRequest, Sampling
from agents.roles import NodeStats, Record, WeaknessProfile

STOP = "stop"


def slug(name: str) -> str:
    """A point id from a free-text name: lowercase words joined by underscores."""
    return "_".join(re.findall(r"[^\W_]+", name.lower())) or "point"


def load_taxonomy(path: str | Path) -> list[Record]:
    """Points from a JSON or YAML file: a list of {id, category, description} (or {"points": [...]})."""
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))  # YAML is a superset of JSON
    points = data.get("points") if isinstance(data, dict) else data
    if not isinstance(points, list) or not all(isinstance(p, dict) and p.get("id") for p in points):
        raise ValueError(f"taxonomy {path}: expected a list of {{id, category, description}} points")
    return [{"id": str(p["id"]), "category": str(p.get("category", "general")), **_desc(p)} for p in points]


def _desc(point: Record) -> dict[str, str]:
    return {"description": str(point.get("description") or point["id"])}


def propose_taxonomy(client: Chat, domain: str, n: int, max_tries: int = 3) -> list[Record]:
    """A taxonomy of about `n` points for `domain`, written by the model (duplicate ids dropped)."""
    prompt = render("autodetect_taxonomy", domain=domain, n=n)
    request = ChatRequest([{"role": "user", "content": prompt}], Sampling(0.0, max_tokens=2048), "examiner")
    (got,) = ask_parsed(client, [request], lambda t: parse_json_list(t, required=("id", "description")), max_tries)
    if got.value is None:
        raise ValueError(f"propose_taxonomy({domain!r}): no usable taxonomy after {max_tries} tries: {got.error}")
    points: dict[str, Record] = {}
    for p in got.value:
        pid = slug(str(p["id"]))
        points.setdefault(pid, {"id": pid, "category": str(p.get("category", domain)), **_desc(p)})
    return list(points.values())


def assign_points(
    client: Chat, taxonomy: Sequence[Record], records: Sequence[Record], max_tries: int = 3, max_tokens: int = 64
) -> list[str | None]:
    """The taxonomy point each record's question tests, as the model names it ([[id]]); None where no known id
    came back after `max_tries` asks."""
    ids = {str(p["id"]) for p in taxonomy}

    def parse(text: str) -> str:
        point = slug(parse_bracketed(text))
        if point not in ids:
            raise ParseError(f"{point!r} is not a test point id", text)
        return point

    requests = [
        ChatRequest(
            [{"role": "user", "content": render("taxonomy_assign", taxonomy=taxonomy, question=r["instruction"])}],
            Sampling(0.0, max_tokens=max_tokens),
            "examiner",
        )
        for r in records
    ]
    return [g.value for g in ask_parsed(client, requests, parse, max_tries)]


def passed(record: Record, weak_score: float) -> bool:
    """Whether the student passed a probe: its judge score >= weak_score where it has one, else `correct`."""
    score = record.get("score")
    return float(score) >= weak_score if score is not None else bool(record.get("correct"))  # type: ignore[arg-type]


class AutoDetectExaminer:
    """Examiner over a model-grown taxonomy (AutoDetect's Examiner)."""

    def __init__(
        self,
        client: Chat,
        taxonomy: Sequence[Record],
        weak_score: float = 3.1,
        weak_accuracy: float = 0.8,
        max_rejections: int = 3,
        max_new_points: int = 6,
        bad_cases: int = 2,
        domain: str = "",
        max_tries: int = 3,
        seed: int = 0,
    ) -> None:
        self.client = client
        self.base = [dict(p) for p in taxonomy]
        self.weak_score = weak_score
        self.weak_accuracy = weak_accuracy
        self.max_rejections = max_rejections
        self.max_new_points = max_new_points
        self.bad_cases = bad_cases
        self.domain = domain
        self.max_tries = max_tries
        self.seed = seed

    def taxonomy(self, refinements: Sequence[Record] = ()) -> list[Record]:
        """The given points plus those accepted so far."""
        grown = [r for r in refinements if r.get("kind") == "new_point"]
        return self.base + [
            {"id": r["point"], "category": r["category"], "description": r["description"]} for r in grown
        ]

    def examine(self, evals: Sequence[Record], round: int, previous: WeaknessProfile | None) -> WeaknessProfile:
        """Stats per point from this round's graded probes, weakest first; may grow the taxonomy by one point."""
        refinements = list(previous.refinements) if previous else []
        history = {n.node: [*n.history, n.accuracy] for n in previous.nodes} if previous else {}
        nodes = self._stats(evals, history)
        refinements += self._grow(evals, refinements, round)
        return WeaknessProfile(
            round=round,
            nodes=nodes,
            refinements=refinements,
            fed=dict(previous.fed) if previous else {},
            fed_rounds=dict(previous.fed_rounds) if previous else {},
        )

    def _stats(self, evals: Sequence[Record], history: dict[str, list[float]]) -> list[NodeStats]:
        groups: dict[str, list[bool]] = defaultdict(list)
        for r in evals:
            groups[str(r["knowledge_point"])].append(passed(r, self.weak_score))
        return node_stats(groups, history, self.weak_accuracy)

    # -- taxonomy growth ----------------------------------------------------------------------------
    def growth_over(self, refinements: Sequence[Record]) -> bool:
        """Whether the model may propose no more points: [[Stop]] seen, or a bound reached."""
        kinds = [r.get("kind") for r in refinements]
        if STOP in kinds or kinds.count("new_point") >= self.max_new_points:
            return True
        since_accept = kinds[::-1].index("new_point") if "new_point" in kinds else len(kinds)
        return sum(k == "rejected" for k in kinds[len(kinds) - since_accept :]) >= self.max_rejections

    def _grow(self, evals: Sequence[Record], refinements: list[Record], round: int) -> list[Record]:
        new: list[Record] = []
        while not self.growth_over([*refinements, *new]):
            record = self._propose(evals, [*refinements, *new], round)
            new.append(record)
            if record["kind"] != "rejected":  # accepted or stopped: the next analysis waits for new probes
                break
        return new

    def _propose(self, evals: Sequence[Record], done: list[Record], round: int) -> Record:
        taxonomy = self.taxonomy(done)
        # Calls are cached by request: each proposal (and each of its retries, seed + 1...) gets its own seeds.
        attempt = len(done)
        rng = random.Random(f"{self.seed}:autodetect:{round}:{attempt}")
        prompt = render(
            "autodetect_propose",
            domain=self.domain,
            taxonomy=[{**p, "summary": self._summary(evals, str(p["id"]))} for p in taxonomy],
            bad_cases=self._bad_cases(evals, taxonomy, rng),
            rejected=[r["point"] for r in done if r.get("kind") == "rejected" and r.get("point")],
        )
        sampling = Sampling(1.0, seed=attempt * self.max_tries, max_tokens=1024)
        request = ChatRequest([{"role": "user", "content": prompt}], sampling, "examiner")
        (got,) = ask_parsed(self.client, [request], _parse_proposal, self.max_tries)
        base = {"round": round, "point": None, "category": None, "description": None}
        if got.value is None:
            return {**base, "kind": "rejected", "why": f"unparsable proposal: {got.error}"}
        if got.value == STOP:
            return {**base, "kind": STOP, "why": "the model judged the taxonomy comprehensive ([[Stop]])"}
        return self._judge(got.value, taxonomy, base)

    def _judge(self, proposal: dict[str, object], taxonomy: list[Record], base: Record) -> Record:
        point = slug(str(proposal["name"]))
        category = str(proposal.get("category") or (taxonomy[0]["category"] if taxonomy else "general"))
        record = {**base, "point": point, "category": category, "description": str(proposal["description"])}
        if point in {str(p["id"]) for p in taxonomy}:
            return {**record, "kind": "rejected", "why": f"duplicate of the existing point {point!r}"}
        prompt = render(
            "autodetect_judge_point",
            domain=self.domain,
            taxonomy=taxonomy,
            name=point,
            description=record["description"],
        )
        request = ChatRequest([{"role": "user", "content": prompt}], Sampling(0.0, max_tokens=512), "examiner")
        (got,) = ask_parsed(self.client, [request], _parse_verdict, self.max_tries)
        if got.value == "yes":
            return {**record, "kind": "new_point", "why": str(proposal.get("explanation") or "")}
        why = f"judge: {excerpt(got.text)}" if got.value == "no" else f"judge gave no verdict: {got.error}"
        return {**record, "kind": "rejected", "why": why}

    def _summary(self, evals: Sequence[Record], point: str) -> str:
        rows = [r for r in evals if str(r["knowledge_point"]) == point]
        scores = [float(r["score"]) for r in rows if r.get("score") is not None]  # type: ignore[arg-type]
        if scores:
            return f"mean score {sum(scores) / len(scores):.1f} over {len(scores)} items"
        if rows:
            k = sum(passed(r, self.weak_score) for r in rows)
            return f"accuracy {k / len(rows):.2f} ({k}/{len(rows)})"
        return "not tested yet"

    def _bad_cases(self, evals: Sequence[Record], taxonomy: list[Record], rng: random.Random) -> list[Record]:
        failed: dict[str, list[Record]] = defaultdict(list)
        for r in evals:
            if not passed(r, self.weak_score):
                failed[str(r["knowledge_point"])].append(r)
        groups = []
        for point in [str(p["id"]) for p in taxonomy] + sorted(set(failed) - {str(p["id"]) for p in taxonomy}):
            if failed.get(point):
                chosen = rng.sample(failed[point], min(self.bad_cases, len(failed[point])))
                cases = [
                    {
                        "instruction": excerpt(str(c.get("instruction", "")), 600),
                        "prediction": excerpt(str(c.get("prediction", "")), 400),
                        "score": c.get("score"),
                    }
                    for c in chosen
                ]
                groups.append({"point": point, "cases": cases})
        return groups


def _parse_proposal(text: str) -> dict[str, object] | str:
    try:
        return parse_json(text, required=("name", "description"))
    except ParseError:
        pass  # not a proposal; it may still be a [[Stop]]
    if re.search(r"\[\[\s*stop\s*\]\]", text, re.I):
        return STOP
    raise ParseError("neither a JSON proposal {name, description} nor [[Stop]]", text)


def _parse_verdict(text: str) -> str:
    verdict = parse_bracketed(text).strip().lower()
    if verdict not in ("yes", "no"):
        raise ParseError("verdict is neither [[Yes]] nor [[No]]", text)
    return verdict
