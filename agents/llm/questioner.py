"""The LLM Questioner: a teacher model writes new items aimed at the student's failures.

- `llm2llm` (LLM2LLM): one new item per failed *seed* item (synthetic items are never re-augmented),
  from a system prompt, one worked example and the failed question with its answer key. Departure:
  the prompt also shows the student's wrong answer, which the release's template has no slot for.
- `autodetect` (AutoDetect's iterative search): per weak node, a new prompt aimed at a lower score,
  shown 5 past items (2 random bad ones + 3 random, else the 5 lowest); new points from the Examiner
  get a seed prompt from their description. Up to `per_point` items per node: new points first, then
  weak nodes weakest first. The search spans rounds: new prompts get their scores when next probed.
- `instructors` (LLMs-as-Instructors): n = ceil(budget / #wrong) similar items per wrong answer
  (capped by the budget), shown the question and the wrong answer; with `contrast`, also the k nearest
  questions the student got right (TF-IDF cosine here, where the paper embeds with BERT). Departures:
  the answer key is shown too, when the record has one; the paper's n has +1 to make up for drops,
  here the missing items are asked for again instead.
A candidate is kept only if it is not a known question and its ROUGE-L to every known one is at most
`rouge_max`; a request is re-asked (with another seed) at most `max_tries` times, then dropped with its
reason in `self.rejected`.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial

from agents.llm.parsing import Chat, ParseError, excerpt, parse_json, parse_json_list
from agents.llm.prompts import render
from agents.llm.types import ChatRequest, Message, Sampling
from agents.roles import NodeStats, Record, WeaknessProfile
from agents.similarity import RougeIndex, TfidfIndex, normalize_text

STRATEGIES = ("llm2llm", "autodetect", "instructors")
Candidate = tuple[str, "str | None", str]  # (question, proposed answer, key point)


@dataclass
class _Job:
    """One parent (a failure or a node) and the items still wanted from it."""

    parent: Record
    want: int
    messages: Callable[[int], list[Message]]  # the chat asking for n more items
    why: str
    variant: int = 0  # tells apart requests of one parent in a round (part of the sampling seed)
    kept: list[Candidate] = field(default_factory=list)
    reason: str = ""
    excerpt: str = ""


class LLMQuestioner:
    """Questioner backed by a chat model; `strategy` is one of STRATEGIES."""

    def __init__(
        self,
        client: Chat,
        strategy: str,
        examples: Sequence[Record] = (),
        max_tries: int = 3,
        rouge_max: float = 0.95,
        per_point: int = 5,
        known: Iterable[str] = (),
        taxonomy: Sequence[Record] = (),
        contrast: bool = False,
        k: int = 2,
        domain: str = "",
        temperature: float = 1.0,
        max_tokens: int = 1024,
        seed: int = 0,
    ) -> None:
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown LLM questioner strategy {strategy!r}; allowed: {', '.join(STRATEGIES)}")
        self.client = client
        self.strategy = strategy
        # llm2llm worked examples: {question, answer, prediction, new_question, new_answer}
        self.examples = list(examples)
        self.max_tries = max_tries
        self.rouge_max = rouge_max
        self.per_point = per_point
        self.descriptions = {str(p["id"]): str(p.get("description", "")) for p in taxonomy}
        self.contrast = contrast
        self.k = k
        self.domain = domain
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.seed = seed
        self.rejected: list[Record] = []
        self._seen: set[str] = set()
        self._index = RougeIndex()
        self.remember(known)

    def remember(self, questions: Iterable[object]) -> None:
        """Questions that exist already (pool, probes, test): new items must differ from them."""
        for q in questions:
            key = normalize_text(str(q))
            if key not in self._seen:
                self._seen.add(key)
                self._index.add(str(q))

    def question(
        self,
        profile: WeaknessProfile,
        failures: Sequence[Record],
        budget: int,
        round: int,
        successes: Sequence[Record] = (),
    ) -> list[Record]:
        """New candidate items (no `output`: the Teacher answers them); drops go to `self.rejected`."""
        self.rejected = []
        self.remember(str(f["instruction"]) for f in failures)
        rng = random.Random(f"{self.seed}:llm-questioner:{self.strategy}:{round}")
        if self.strategy == "llm2llm":
            jobs = self._llm2llm_jobs(failures, budget, rng)
        elif self.strategy == "autodetect":
            jobs = self._autodetect_jobs(profile, [*failures, *successes], budget, rng)
        else:
            jobs = self._instructor_jobs(failures, successes, budget, rng)
        self._run(jobs, round)
        return self._records(jobs, round)

    # -- strategies ---------------------------------------------------------------------------------
    def _llm2llm_jobs(self, failures: Sequence[Record], budget: int, rng: random.Random) -> list[_Job]:
        seeds = _sample([f for f in failures if f.get("source") != "synthetic"], budget, rng)
        why = "llm2llm: one similar item per failed seed item"
        return [_Job(f, 1, partial(self.llm2llm_messages, f), why) for f in seeds]

    def llm2llm_messages(self, failure: Record, n: int) -> list[Message]:
        """The chat for one new item (LLM2LLM asks for one per failure; `n` is always 1)."""
        shots: list[Message] = []
        for ex in self.examples:
            user = render("llm2llm_user", question=ex["question"], answer=ex["answer"], prediction=ex["prediction"])
            reply = json.dumps({"question": ex["new_question"], "answer": ex["new_answer"]}, ensure_ascii=False)
            shots += [{"role": "user", "content": user}, {"role": "assistant", "content": reply}]
        if not shots:
            shots = [
                {"role": "user", "content": render("llm2llm_example_user")},
                {"role": "assistant", "content": render("llm2llm_example_reply")},
            ]
        user = render(
            "llm2llm_user",
            question=failure["instruction"],
            answer=failure.get("output", ""),
            prediction=failure.get("prediction", ""),
        )
        return [{"role": "system", "content": render("llm2llm_system")}, *shots, {"role": "user", "content": user}]

    def _autodetect_jobs(
        self, profile: WeaknessProfile, records: Sequence[Record], budget: int, rng: random.Random
    ) -> list[_Job]:
        tested = {n.node for n in profile.nodes}
        fresh = [r for r in profile.refinements if r.get("kind") == "new_point" and r["point"] not in tested]
        targets = [(str(r["point"]), None, str(r.get("description") or "")) for r in fresh]
        targets += [(n.node, n, self.descriptions.get(n.point, "")) for n in profile.nodes if n.weak]
        jobs: list[_Job] = []
        for node, stats, description in targets:
            past = [r for r in records if stats is not None and _in_node(r, stats)]
            parent = {"id": node, "knowledge_point": node if stats is None else stats.point}
            parent |= {"facet": stats.facet if stats else None}  # a point-level node has no one facet
            parent |= {k: past[0].get(k) for k in ("skill", "difficulty")} if past else {}
            why = "autodetect: " + (f"new point {node!r}" if stats is None else f"weak, accuracy {stats.accuracy:.2f}")
            for v in range(min(self.per_point, budget - len(jobs))):
                ask = partial(self._autodetect_messages, node, description, _history(past, rng))
                jobs.append(_Job(parent, 1, ask, why, v))
        return jobs

    def _autodetect_messages(self, node: str, description: str, history: list[Record], n: int) -> list[Message]:
        """The chat for one new prompt on `node`: a search step from past items, else a seed prompt."""
        if history:
            text = render("autodetect_search", domain=self.domain, point=node, description=description, history=history)
        else:
            taxonomy = [{"id": p, "category": "", "description": d} for p, d in self.descriptions.items()]
            text = render("autodetect_seed", domain=self.domain, point=node, description=description, taxonomy=taxonomy)
        return [{"role": "user", "content": text}]

    def _instructor_jobs(
        self, failures: Sequence[Record], successes: Sequence[Record], budget: int, rng: random.Random
    ) -> list[_Job]:
        wrong = _sample(list(failures), budget, rng)
        if not wrong:
            return []
        per = math.ceil(budget / len(wrong))
        index = TfidfIndex([str(s["instruction"]) for s in successes]) if self.contrast and successes else None
        jobs, left = [], budget
        for f in wrong:
            right = [index.texts[i] for i, _ in index.nearest(str(f["instruction"]), self.k)] if index else []
            n = min(per, left)
            why = f"instructors: learning from error{' by contrast' if right else ''}, {n} per wrong answer"
            jobs.append(_Job(f, n, partial(self._instructor_messages, f, right), why))
            left -= n
        return jobs

    def _instructor_messages(self, failure: Record, right: list[str], n: int) -> list[Message]:
        system = render("instructors_system", contrast=bool(right))
        user = render(
            "instructors_user",
            question=failure["instruction"],
            answer=failure.get("output") or "",
            prediction=failure.get("prediction", ""),
            correct=right,
            n=n,
        )
        return [{"role": "system", "content": system}, {"role": "user", "content": user}]

    # -- asking, checking, recording ----------------------------------------------------------------
    def _run(self, jobs: list[_Job], round: int) -> None:
        for attempt in range(self.max_tries):
            pending = [j for j in jobs if len(j.kept) < j.want]
            if not pending:
                break
            requests = [
                ChatRequest(j.messages(j.want - len(j.kept)), self._sampling(round, j, attempt), "questioner")
                for j in pending
            ]
            for job, result in zip(pending, self.client.chat(requests), strict=True):
                self._take(job, result.texts[0] if result.texts else "")
        for job in jobs:
            if len(job.kept) < job.want:
                got = f"kept {len(job.kept)} of {job.want} after {self.max_tries} tries; last: " if job.want > 1 else ""
                reason = got + (job.reason or "no candidate")
                self.rejected.append({"parent_id": job.parent["id"], "reason": reason, "excerpt": job.excerpt})

    def _sampling(self, round: int, job: _Job, attempt: int) -> Sampling:
        # Calls are cached by request: every (round, variant, attempt) must be a distinct request.
        seed = (round * 1000 + job.variant) * self.max_tries + attempt
        return Sampling(temperature=self.temperature, max_tokens=self.max_tokens, seed=seed)

    def _take(self, job: _Job, text: str) -> None:
        try:
            candidates = self._parse(text)
        except ParseError as err:
            job.reason, job.excerpt = f"unparsable: {err}", err.excerpt
            return
        for question, answer, note in candidates:
            if len(job.kept) >= job.want:
                break
            problem = self._novelty(question)
            if problem:
                job.reason, job.excerpt = problem, excerpt(question)
                continue
            self.remember([question])
            job.kept.append((question, answer, note))

    def _parse(self, text: str) -> list[Candidate]:
        if self.strategy == "autodetect":
            got = parse_json(text, required=("prompt",))
            return [(str(got["prompt"]).strip(), None, str(got.get("key_point") or ""))]
        if self.strategy == "llm2llm":
            rows = [parse_json(text, required=("question", "answer"))]
        else:
            rows = parse_json_list(text, required=("question", "answer"))
        return [(str(r["question"]).strip(), str(r["answer"]).strip(), "") for r in rows]

    def _novelty(self, question: str) -> str | None:
        """Why a candidate question is not new enough, or None when it is."""
        if not question:
            return "empty question"
        if normalize_text(question) in self._seen:
            return "repeat of a known question"
        score, where = self._index.best(question, stop_above=self.rouge_max)
        if score > self.rouge_max and where is not None:
            return f"too similar: ROUGE-L {score:.2f} > {self.rouge_max} to {excerpt(self._index.texts[where], 80)!r}"
        return None

    def _records(self, jobs: list[_Job], round: int) -> list[Record]:
        items: list[Record] = []
        for job in jobs:
            p = job.parent
            for question, answer, note in job.kept:
                items.append(
                    {
                        "id": f"r{round:03d}-{self.strategy}-{len(items):05d}",
                        "instruction": question,
                        "reference": answer,
                        "knowledge_point": p.get("knowledge_point"),
                        "facet": p.get("facet"),
                        "skill": p.get("skill"),
                        "difficulty": p.get("difficulty"),
                        "source": "synthetic",
                        "round": round,
                        "strategy": self.strategy,
                        "parent_id": p["id"],
                        "why": f"{job.why}; key point: {note}" if note else job.why,
                    }
                )
        return items


def _sample(records: list[Record], budget: int, rng: random.Random) -> list[Record]:
    """At most `budget` records, a random subset in their original order."""
    if len(records) <= budget:
        return records
    keep = sorted(rng.sample(range(len(records)), max(0, budget)))
    return [records[i] for i in keep]


def _in_node(record: Record, node: NodeStats) -> bool:
    return str(record.get("knowledge_point")) == node.point and (
        node.facet is None or record.get("facet") == node.facet
    )


def _badness(record: Record) -> float:
    """A record's score for ordering (lower is worse); a right/wrong record counts as 10/1."""
    score = record.get("score")
    return float(score) if score is not None else (10.0 if record.get("correct") else 1.0)  # type: ignore[arg-type]


def _history(past: Sequence[Record], rng: random.Random, show: int = 5) -> list[Record]:
    """AutoDetect's examples: 2 random bad items (score <= 3, or wrong) + 3 random others, else the
    `show` lowest; shown best first, so the worst sit nearest the request."""
    bad = [r for r in past if _badness(r) <= 3]
    if len(past) < show or len(bad) < 2:
        chosen = sorted(past, key=_badness)[:show]
    else:
        chosen = rng.sample(bad, 2)
        chosen += rng.sample([r for r in past if all(r is not c for c in chosen)], show - 2)
    return [
        {
            "instruction": excerpt(str(r["instruction"]), 600),
            "key_point": r.get("key_point") or r.get("facet") or r.get("knowledge_point"),
            "score": r.get("score"),
            "correct": bool(r.get("correct")),
        }
        for r in sorted(chosen, key=_badness, reverse=True)
    ]
