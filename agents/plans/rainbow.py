"""Rainbow Teaming's archive as a plan (arXiv 2402.16822; docs/strategies.md, "Rainbow archive"): a
MAP-Elites grid of the items the student fails, kept across rounds, that becomes the next round's probes
and the seeds the writer writes new items from.

The grid is knowledge point x perturbation style (agents/tasks/styles.py), optionally x a binned numeric
feature of the question (its largest number's digits, or its length in words). Each round, before writing:

1. the elites are asked again (the student has trained since) and their fitness is measured anew;
2. the last round's graded probes are offered to their (point, plain) cells, at no cost: the student has
   answered them already (`seed_from_probes`);
3. `iterations` times: `mutations` (parent, target cell) pairs, the parent drawn uniformly from the elites
   (from the last round's probes while the archive is empty), the target cell by the paper's bias to empty
   and weak cells; the parent is mutated toward the target's point, then its style; a candidate with BLEU
   above `bleu_max` against its parent, a known question or one too long is dropped with that reason; the
   student answers the rest in one batch and each is offered to its cell.

`rainbow` runs on the task world: the mutators are code (a parent of the target point gets one number or
letter changed, keeping its point; else the target point's generator draws a new question; then the style
is applied), the world's oracle answers and checks every candidate (one it cannot read, or that asks
another point, is dropped with the reason), and the fitness is 1 when the student answers wrongly, else 0,
ties broken by the student's loss on the right answer. `rainbow_chat` runs on any task: the chat model
mutates (one request naming the target point and style), and a pairwise judge, asked in both orders,
decides whether the candidate's exchange shows a worse student answer than the elite's; the candidate takes
the cell only when it wins both. Its fitness is the number of such contests an elite has won.

The plan then asks the writer for `budget` new items from the elites (the failing ones by default): each
elite is an ask whose context carries its style and its question as the example, so `perturb` writes
items of the same point, facet and style, and `chat` writes from the elite's question.
"""

from __future__ import annotations

import random
import re
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Sequence
from typing import Literal

from pydantic import Field, field_validator

from agents.archive import Archive, Cell, Elite
from agents.llm.prompts import render
from agents.llm.types import ChatRequest, Sampling
from agents.proposal import Ask, Proposal, allocate
from agents.similarity import sentence_bleu
from agents.tasks.styles import STYLES, applies, restyle
from agents.tasks.world import get_point, is_correct, is_template, point_of, sample_item, solve
from core.plugins import Inputs, Plugin, PluginConfig, register
from core.records import Record
from core.text import question_key


class RainbowConfig(PluginConfig):
    """The archive's grid, the MAP-Elites iterations per round and what the elites become."""

    styles: list[str] = Field(
        list(STYLES),
        description=f"the perturbation styles, the grid's second axis (known: {', '.join(STYLES)})",
    )
    numeric_axis: Literal["none", "digits", "words"] = Field(
        "none",
        description="a third, binned axis: none; digits (of the largest number the question restates); words "
        "(of the question)",
    )
    bins: list[int] = Field(
        [2, 3], description="upper edges of the numeric axis' bins; a value above the last edge is the last bin"
    )
    iterations: int = Field(10, ge=0, le=1000, description="MAP-Elites iterations per round")
    mutations: int = Field(
        10, ge=1, le=1000, description="candidates per iteration, answered by the student in one batch (rainbowplus: 5)"
    )
    temperature: float = Field(1.0, gt=0, description="T of the target cell's softmax((1 - f/f_max + bonus) / T)")
    empty_bonus: float = Field(0.5, ge=0, description="added to an empty cell's score in the target softmax")
    bleu_max: float = Field(0.6, gt=0, le=1, description="drop a candidate whose BLEU against its parent is above this")
    max_chars: int = Field(160, ge=20, description="drop a candidate longer than this many characters")
    seed_from_probes: bool = Field(
        True, description="offer the last round's graded probes to their (point, plain) cells (already answered)"
    )
    probes: Literal["all", "failing", "none"] = Field(
        "all",
        description="which elites the round's evaluation asks again as probes (the next round's examiner sees them)",
    )
    seeds: Literal["failing", "all"] = Field(
        "failing", description="which elites the writer writes new items from (all, where none is failing)"
    )

    @field_validator("styles")
    @classmethod
    def _known_styles(cls, styles: list[str]) -> list[str]:
        unknown = [s for s in styles if s not in STYLES]
        if unknown:
            raise ValueError(f"unknown style {unknown[0]!r}; known: {', '.join(STYLES)}")
        if not styles or len(set(styles)) != len(styles):
            raise ValueError("styles must name at least one style, each once")
        return styles

    @field_validator("bins")
    @classmethod
    def _increasing(cls, bins: list[int]) -> list[int]:
        if not bins or any(b <= a for a, b in zip(bins, bins[1:], strict=False)) or bins[0] < 0:
            raise ValueError(f"bins must be increasing non-negative edges, at least one, got {bins}")
        return bins


class _Rainbow(Plugin, ABC):
    """The archive's round; the subclasses supply the cells a point has, the mutator and the replacement rule."""

    kind = "plan"
    config: RainbowConfig

    # -- state ------------------------------------------------------------------------------------
    def load_state(self, state: dict | None) -> None:
        """The elites, the per-round history and the id counter the last round left."""
        self.rows: list[dict] = list(state["elites"]) if state else []
        self.history: list[dict[str, object]] = list(state["history"]) if state else []
        self.made = int(state["made"]) if state else 0

    def state(self) -> dict | None:
        """The archive after this round's iterations."""
        return {"elites": self.archive.to_json(), "history": self.history, "made": self.made}

    # -- what the round gets ----------------------------------------------------------------------
    def metrics(self) -> dict[str, float]:
        """This round's QD-score, coverage and candidate counts (for metrics.jsonl and W&B)."""
        last = self.history[-1]
        out = {f"archive/{k}": float(v) for k, v in last.items() if isinstance(v, int | float) and k != "round"}
        rejected: dict[str, int] = last["rejected"]  # type: ignore[assignment]
        out.update({f"archive/rejected/{re.sub(r'[^a-z0-9]+', '_', k)}": float(v) for k, v in rejected.items()})
        return out

    def probes(self) -> list[Record]:
        """The elites the round's evaluation asks as probes (by `probes`), as task items."""
        if self.config.probes == "none":
            return []
        rows = [r for r in self.rows if self.config.probes == "all" or r["fitness"] > 0]
        keep = ("id", "instruction", "output", "knowledge_point", "facet", "skill", "difficulty", "style")
        return [{**{k: r["item"][k] for k in keep if k in r["item"]}, "source": "archive"} for r in rows]

    # -- the round --------------------------------------------------------------------------------
    def propose(self, inputs: Inputs, budget: int, round: int, rng: random.Random) -> Proposal:
        """Re-measure, seed, run the iterations, then ask for items from the elites."""
        self.begin(inputs, round)
        for iteration in range(self.config.iterations if self.parents_exist() else 0):
            self.step(rng, iteration, self.config.mutations)
        self.end()
        return self.asks(budget, rng)

    def begin(self, inputs: Inputs, round: int) -> None:
        """The archive of the last round over this round's grid, its elites measured anew, the probes offered."""
        if not hasattr(self, "rows"):
            self.load_state(None)
        self.round, self.inputs = round, inputs
        self.points = [str(p["id"]) for p in inputs["taxonomy"]]
        self.descriptions = {str(p["id"]): str(p.get("description") or "") for p in inputs["taxonomy"]}
        self.archive = Archive.from_json(self.grid(), self.rows)
        self.known = {question_key(q) for q in inputs["known"]}
        self.known |= {question_key(e.item["instruction"]) for e in self.archive.elites.values()}
        self.tally: Counter[str] = Counter()  # candidates, accepted, seeded, and the subclass's own counts
        self.rejected: Counter[str] = Counter()
        self.qd: list[float] = []
        self.remeasure()
        # The task's own probes: the archive's elites asked as probes are measured above, and they are styled.
        self.parents = [
            p for p in inputs["probes"] if str(p.get("knowledge_point")) in self.points and p.get("source") != "archive"
        ]
        # a point's skill as the task's items name it (the evaluation's accuracy per skill counts elites too)
        self.skills = {str(p["id"]): str(p.get("category") or "") for p in inputs["taxonomy"]}
        self.skills |= {str(p["knowledge_point"]): str(p["skill"]) for p in self.parents if p.get("skill")}
        if self.config.seed_from_probes:
            self.tally["seeded"] += self.seed(self.parents)

    def parents_exist(self) -> bool:
        """Whether a mutation has a parent: an elite, or (while the archive is empty) a probe."""
        return bool(self.archive.elites or self.parents)

    def step(self, rng: random.Random, iteration: int, mutations: int) -> list[Record]:
        """One MAP-Elites iteration of `mutations` candidates; returns those the student answered."""
        c = self.config
        pairs = []
        for _ in range(mutations):
            parent = self.archive.sample_parent(rng).item if self.archive.elites else rng.choice(self.parents)
            pairs.append((parent, self.archive.sample_target(rng, c.temperature, c.empty_bonus)))
        batch: list[tuple[Cell, Record]] = []
        for (parent, target), made in zip(pairs, self.mutate(pairs, rng, iteration), strict=True):
            why = made if isinstance(made, str) else self.problem(made, parent)
            if why:
                self.rejected[why] += 1
                continue
            assert isinstance(made, dict)
            self.known.add(question_key(made["instruction"]))
            made["id"], self.made = f"archive-{self.made:05d}", self.made + 1
            batch.append((self.cell_of(made, target), made))
        self.tally["candidates"] += len(batch)
        self.tally["accepted"] += self.offer(batch, iteration)
        self.qd.append(self.archive.qd_score())
        return [item for _, item in batch]

    def end(self) -> None:
        """The round's line of the history, and the elites to keep."""
        elites = self.archive.elites.values()
        self.history.append(
            {
                "round": self.round,
                **self.tally,
                "qd_score": self.archive.qd_score(),
                "coverage": self.archive.coverage(),
                "filled": len(self.archive.elites),
                "cells": len(self.archive.grid),
                "failing_cells": sum(e.fitness > 0 for e in elites),
                "rejected": dict(sorted(self.rejected.items())),
                "qd_by_iteration": self.qd,
            }
        )
        self.rows = self.archive.to_json()

    def grid(self) -> list[Cell]:
        """Every cell: point x style (where the style has a form for the point) x numeric bin."""
        labels = self.bin_labels()
        return [(p, s, *b) for p in self.points for s in self.config.styles if self.fits(s, p) for b in labels]

    def bin_labels(self) -> list[tuple[str, ...]]:
        if self.config.numeric_axis == "none":
            return [()]
        edges = self.config.bins
        return [(f"<={e}",) for e in edges] + [(f">{edges[-1]}",)]

    def cell_of(self, item: Record, target: Cell) -> Cell:
        """The cell a candidate lands in: its target's point and style, and its own measured bin."""
        axis = self.config.numeric_axis
        if axis == "none":
            return target
        text = str(item.get("base") or item["instruction"])
        value = max((len(n) for n in re.findall(r"\d+", text)), default=0) if axis == "digits" else len(text.split())
        edges = self.config.bins
        label = next((f"<={e}" for e in edges if value <= e), f">{edges[-1]}")
        return (*target[:2], label)

    def problem(self, item: Record, parent: Record) -> str:
        """Why a mutated candidate is dropped before the student sees it ("" when it is kept)."""
        question = str(item["instruction"])
        if len(question) > self.config.max_chars:
            return "too long"
        if question_key(question) in self.known:
            return "known question"
        if sentence_bleu(question, str(parent["instruction"])) > self.config.bleu_max:
            return "near copy of its parent"  # BLEU above bleu_max
        return ""

    def asks(self, budget: int, rng: random.Random) -> Proposal:
        """One ask per seed elite, the budget split evenly over them (in a random order for the remainder)."""
        elites = list(self.archive.elites.values())
        seeds = [e for e in elites if e.fitness > 0] if self.config.seeds == "failing" else elites
        seeds = seeds or elites
        rng.shuffle(seeds)
        asks = []
        for i, n in sorted(allocate(dict.fromkeys(range(len(seeds)), 1.0), budget).items()):
            item = seeds[i].item
            point, style = str(item["knowledge_point"]), str(item["style"])
            shown = f"the student answered {str(item.get('prediction', ''))[:40]!r}"
            why = f"archive cell {point} x {style}: {shown}" + (
                f", not {item['output']!r}" if item.get("output") else ""
            )
            key = (point, item.get("facet"), item.get("difficulty")) if self.parts.difficulty is not None else None
            context = {"style": style, "description": self.descriptions.get(point, ""), "examples": [item]}
            asks.append(Ask(item, n, why, key, variant=i, context=context))  # type: ignore[arg-type]
        return Proposal(asks=asks)

    # -- the subclasses' parts --------------------------------------------------------------------
    def fits(self, style: str, point: str) -> bool:
        """Whether a cell (point, style) can hold an item."""
        return True

    @abstractmethod
    def remeasure(self) -> None:
        """The elites' fitness under the current student."""

    @abstractmethod
    def seed(self, probes: Sequence[Record]) -> int:
        """Offer the last round's graded probes to their plain cells; how many took one."""

    @abstractmethod
    def mutate(self, pairs: list[tuple[Record, Cell]], rng: random.Random, iteration: int) -> list[Record | str]:
        """Each parent mutated toward its target cell: the candidate item, or why there is none."""

    @abstractmethod
    def offer(self, batch: list[tuple[Cell, Record]], iteration: int) -> int:
        """The student answers the candidates; each is offered to its cell. How many took a cell."""


# -- on the task world: code mutators, the oracle's fitness ------------------------------------------
@register
class RainbowPlan(_Rainbow):
    """The archive over the task world: programmatic mutators, fitness = the student fails an oracle-valid item."""

    name = "rainbow"
    Config = RainbowConfig
    needs = frozenset({"world"})
    reads = ("taxonomy", "probes", "known", "answers", "student", "state")

    def fits(self, style: str, point: str) -> bool:
        return applies(style, point)

    def measure(self, items: list[Record], predictions: list[str] | None = None) -> list[Elite]:
        """Fitness 1 where the student's answer (asked now, unless given) is not the oracle's, and the student's
        loss on the oracle's answer (the tie-break)."""
        if not items:
            return []
        if predictions is None:
            predictions = [str(a["prediction"]) for a in self.inputs["answers"](items)]
        losses = self.inputs["student"](items)
        out = []
        for item, prediction, s in zip(items, predictions, losses, strict=True):
            fitness = 0.0 if is_correct(prediction, str(item["output"])) else 1.0
            out.append(Elite({**item, "prediction": prediction}, fitness, s.loss_cond, round=self.round))
        return out

    def remeasure(self) -> None:
        cells = list(self.archive.elites)
        for cell, fresh in zip(cells, self.measure([self.archive.elites[c].item for c in cells]), strict=True):
            old = self.archive.elites[cell]
            self.archive.elites[cell] = Elite(fresh.item, fresh.fitness, fresh.loss, old.wins, old.round)

    def seed(self, probes: Sequence[Record]) -> int:
        if "plain" not in self.config.styles:
            return 0
        keep = ("id", "instruction", "output", "knowledge_point", "facet", "difficulty")
        probes = [p for p in probes if is_template(str(p["instruction"]))]  # a plain cell holds the world's wording
        items = [
            {
                **{k: p[k] for k in keep},
                "skill": get_point(str(p["knowledge_point"])).skill,
                "style": "plain",
                "base": p["instruction"],
            }
            for p in probes
        ]
        elites = self.measure(items, [str(p["prediction"]) for p in probes])  # answered in the last evaluation
        cells = [self.cell_of(i, (str(i["knowledge_point"]), "plain")) for i in items]
        return sum(self.archive.offer(cell, elite) for cell, elite in zip(cells, elites, strict=True))

    def mutate(self, pairs: list[tuple[Record, Cell]], rng: random.Random, iteration: int) -> list[Record | str]:
        return [self._mutate(parent, target, rng) for parent, target in pairs]

    def _mutate(self, parent: Record, target: Cell, rng: random.Random) -> Record | str:
        """Toward the target's point (a changed number or letter of a parent of that point, else a new question
        of the point), then toward its style; the oracle checks the result."""
        point, style = target[0], target[1]
        level = int(parent.get("difficulty") or self.parts.difficulty or 2)
        base = str(parent.get("base") or parent["instruction"])
        changed = _nudge(base, point, rng) if parent.get("knowledge_point") == point else None
        if changed is None:
            base, _ = sample_item(rng, point, self.parts.difficulty or level)
        else:
            base = changed
        styled = restyle(style, base, point, rng)
        if isinstance(styled, str):
            return f"{style}: {styled}"
        kp = get_point(point)
        return {
            "instruction": styled.question,
            "output": styled.answer,
            "knowledge_point": point,
            "skill": kp.skill,
            "facet": kp.facet(base, styled.answer),
            "difficulty": level if changed is not None else (self.parts.difficulty or level),
            "style": style,
            "base": base,
            "parent_id": parent.get("id"),
            "round": self.round,
        }

    def offer(self, batch: list[tuple[Cell, Record]], iteration: int) -> int:
        elites = self.measure([item for _, item in batch])
        return sum(self.archive.offer(cell, elite) for (cell, _), elite in zip(batch, elites, strict=True))


def _nudge(question: str, point: str, rng: random.Random) -> str | None:
    """`question` with one digit or one sequence letter changed so that it still asks `point` (None after 20 tries).
    A leading digit stays non-zero, so the numbers keep their length and the item its level."""
    spots = list(re.finditer(r"\b\d+\b|\b[a-z]\b", question))
    for _ in range(20 if spots else 0):
        m = rng.choice(spots)
        token = m[0]
        if token.isdigit():
            i = rng.randrange(len(token))
            digit = str(rng.randint(1 if i == 0 and len(token) > 1 else 0, 9))
            token = token[:i] + digit + token[i + 1 :]
        else:
            token = rng.choice([x for x in "abcdefghjkmnpqrstuvwxyz" if x != token])
        changed = question[: m.start()] + token + question[m.end() :]
        if changed != question and solve(changed) is not None and point_of(changed) == point:
            return changed
    return None


# -- elsewhere: a chat model mutates, a pairwise judge compares ----------------------------------------
class RainbowChatConfig(RainbowConfig):
    """The chat mutator's and the pairwise judge's sampling (defaults: rainbowplus's mutator)."""

    mutator_temperature: float = Field(0.7, ge=0, le=2, description="sampling temperature of the mutator")
    mutator_top_p: float = Field(0.9, gt=0, le=1, description="top-p of the mutator")
    mutator_max_tokens: int = Field(128, ge=8, description="new tokens of a mutator reply")
    judge_max_tokens: int = Field(32, ge=4, description="new tokens of a judge reply (temperature 0)")


_NEW = re.compile(r"new question\s*:\s*(.+)", re.IGNORECASE)
_WORSE = re.compile(r"worse\s*:\s*\**\s*([12])\b", re.IGNORECASE)


def parse_mutation(text: str) -> str | None:
    """The question after "New question:" (or a one-line reply as it is), without quotes; None if empty."""
    found = _NEW.findall(text)
    lines = [x.strip() for x in (found[-1:] if found else text.strip().splitlines()[:1])]
    question = lines[0].strip().strip("\"'`").strip() if lines else ""
    return question or None


def parse_verdict(text: str) -> int | None:
    """Which exchange (1 or 2) the judge found worse, from its last "Worse: N"; None when it says neither."""
    found = _WORSE.findall(text)
    return int(found[-1]) if found else None


@register
class RainbowChatPlan(_Rainbow):
    """The archive on any task: the chat model mutates, a pairwise judge in both orders keeps the better elite."""

    name = "rainbow_chat"
    Config = RainbowChatConfig
    needs = frozenset({"chat"})
    reads = ("taxonomy", "probes", "known", "answers", "state")
    config: RainbowChatConfig

    def answer(self, items: list[Record]) -> list[str]:
        return [str(a["prediction"]) for a in self.inputs["answers"](items)] if items else []

    def remeasure(self) -> None:
        cells = list(self.archive.elites)
        for cell, prediction in zip(cells, self.answer([self.archive.elites[c].item for c in cells]), strict=True):
            self.archive.elites[cell].item["prediction"] = prediction

    def seed(self, probes: Sequence[Record]) -> int:
        if "plain" not in self.config.styles:
            return 0
        taken = 0
        for p in probes:
            if p.get("correct"):  # no judge here: a probe the student got right does not enter
                continue
            keep = ("id", "instruction", "output", "knowledge_point", "skill", "facet", "prediction")
            item = {k: p.get(k) for k in keep}
            cell = self.cell_of(item, (str(p["knowledge_point"]), "plain"))
            if cell not in self.archive.elites:
                taken += self.archive.offer(cell, Elite({**item, "style": "plain"}, 0.0, round=self.round))
        return taken

    def mutate(self, pairs: list[tuple[Record, Cell]], rng: random.Random, iteration: int) -> list[Record | str]:
        c = self.config
        requests = []
        for i, (parent, (point, style, *_)) in enumerate(pairs):
            user = render(
                "rainbow_mutate",
                point=point,
                description=self.descriptions.get(point, ""),
                style=style,
                style_description=STYLES[style],
                domain=self.parts.domain,
                parent=str(parent["instruction"]),
            )
            seed = (self.round * 10_000 + iteration) * 1000 + i  # a request of its own: a resume asks it again
            sampling = Sampling(c.mutator_temperature, c.mutator_top_p, c.mutator_max_tokens, seed=seed)
            requests.append(ChatRequest([{"role": "user", "content": user}], sampling, "questioner"))
        out: list[Record | str] = []
        for (parent, (point, style, *_)), result in zip(pairs, self.parts.client.chat(requests), strict=True):
            question = parse_mutation(result.texts[0] if result.texts else "")
            if question is None:
                out.append("unparsed mutation")
                continue
            item = {"instruction": question, "knowledge_point": point, "skill": self.skills.get(point), "style": style}
            out.append({**item, "parent_id": parent.get("id"), "round": self.round})
        return out

    def offer(self, batch: list[tuple[Cell, Record]], iteration: int) -> int:
        for (_, item), prediction in zip(batch, self.answer([item for _, item in batch]), strict=True):
            item["prediction"] = prediction
        contested = [(cell, item) for cell, item in batch if cell in self.archive.elites]
        verdicts = self.judge([(item, self.archive.elites[cell].item) for cell, item in contested], iteration)
        won = {id(item): v for (_, item), v in zip(contested, verdicts, strict=True)}
        taken = 0
        for cell, item in batch:
            elite = self.archive.elites.get(cell)
            if elite is None:
                taken += self.archive.offer(cell, Elite(item, 0.0, round=self.round))
            elif won[id(item)] is True:  # it beat the elite in both orders, and so every contest the elite won
                wins = elite.wins + 1
                taken += self.archive.offer(cell, Elite(item, float(wins), wins=wins, round=self.round), _always)
            elif won[id(item)] is False:  # the elite won in both orders: one more contest won
                elite.fitness, elite.wins = elite.fitness + 1, elite.wins + 1
        return taken

    def judge(self, pairs: list[tuple[Record, Record]], iteration: int) -> list[bool | None]:
        """For each (candidate, elite): True when the judge finds the candidate's exchange worse in both orders,
        False when it finds the elite's worse in both, None on a split or an unreadable verdict."""
        self.tally["judge_calls"] += 2 * len(pairs)  # counted even when zero, so every round logs it
        self.tally["judge_unparsed"] += 0
        if not pairs:
            return []
        requests = []
        for i, (cand, elite) in enumerate(pairs):
            for order, (first, second) in enumerate(((cand, elite), (elite, cand))):
                user = render(
                    "rainbow_judge",
                    first_question=first["instruction"],
                    first_answer=first.get("prediction", ""),
                    second_question=second["instruction"],
                    second_answer=second.get("prediction", ""),
                )
                seed = ((self.round * 10_000 + iteration) * 1000 + i) * 2 + order
                sampling = Sampling(0.0, max_tokens=self.config.judge_max_tokens, seed=seed)
                requests.append(ChatRequest([{"role": "user", "content": user}], sampling, "examiner"))
        texts = [r.texts[0] if r.texts else "" for r in self.parts.client.chat(requests)]
        out: list[bool | None] = []
        for i in range(len(pairs)):
            a, b = parse_verdict(texts[2 * i]), parse_verdict(texts[2 * i + 1])
            self.tally["judge_unparsed"] += (a is None) + (b is None)
            out.append(True if (a, b) == (1, 2) else False if (a, b) == (2, 1) else None)
        return out


def _always(candidate: Elite, elite: Elite) -> bool:
    """The judge has already decided: the candidate takes the cell."""
    return True
