"""What a run teaches and tests, behind one interface the runner uses: the verifiable task world (the
embedded default) or a real dataset (GSM8K-style math, classification, open-ended instructions).

A task makes the round-0 data, supplies probes, grades the student's answers, checks a teacher's answer
where code can (the verifier), says how a teacher's answers vote, where generation stops, and what the
Questioner's taxonomy is. The runner never asks which task it runs, except where only an LLM judge can
grade (open tasks).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from agents.assessor import WorldAssessor
from agents.llm.examiner import assign_points, load_taxonomy, propose_taxonomy
from agents.llm.parsing import Chat
from agents.llm.prompts import render
from agents.tasks.datasets import FORMATS, TaskData, is_correct_for, load_rows, make_splits, normalize_label
from agents.tasks.math import extract_answer, numbers_equal
from agents.tasks.world import (
    final_answer,
    generate_items,
    get_point,
    is_correct,
    normalize_answer,
    point_of,
    points_for,
    solve,
)
from loop.config import DatasetConfig, RunConfig

Record = dict[str, object]
UNASSIGNED = "unassigned"  # the knowledge point of an item the LLM Examiner could not place


@dataclass
class Data:
    """Round 0's records: the seed, the held-out test, a fixed probe split (empty where probes are drawn fresh)."""

    seed: list[Record]
    test: list[Record]
    probe: list[Record] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)


class WorldTask:
    """The verifiable task world: items generated per knowledge point, answers checked exactly."""

    kind = "world"
    fresh_probes = True  # new probe items each round, never trained on
    stop: tuple[str, ...] = ("\n",)  # answers are one line
    teacher_system = "teacher_system"
    max_item_chars: int | None = 200
    wants_llm_taxonomy = False
    has_oracle = True  # `oracle` answers the questions of the world's templates

    def __init__(self, cfg: RunConfig) -> None:
        self.cfg = cfg
        self.points = cfg.task.points or points_for()

    def check(self) -> None:
        """Nothing to read: the world makes its data."""

    def make_data(self) -> Data:
        """The seed (skewed by `task.seed_overrides`) and the test set, disjoint by construction."""
        t, seed_value = self.cfg.task, self.cfg.seed
        counts = {p: t.seed_overrides.get(p, t.seed_per_point) for p in self.points}
        seed = generate_items(seed_value, counts, t.difficulty, split="seed", strict=False)
        test = generate_items(
            seed_value,
            {p: t.test_per_point for p in self.points},
            t.difficulty,
            split="test",
            exclude={str(i["instruction"]) for i in seed},
            strict=False,
        )
        return Data(seed, test, counts={"seed": len(seed), "test": len(test)})

    def probes(self, r: int, exclude: set[str]) -> list[Record]:
        """Fresh probe items for round r, none of them in `exclude` (pool and test questions)."""
        t = self.cfg.task
        counts = {p: t.probe_per_point for p in self.points}
        return generate_items(self.cfg.seed, counts, t.difficulty, split=f"probe{r}", exclude=exclude, strict=False)

    def tokenizer_texts(self, data: Data) -> list[str]:
        """Text for the tiny student's tokenizer: every difficulty level, so later, harder items are covered."""
        return [
            f"{i['instruction']}\n{i['output']}"
            for level in (1, 2, 3)
            for i in generate_items(
                self.cfg.seed, {p: 60 for p in self.points}, level, split=f"tokenizer{level}", strict=False
            )
        ]

    def grade(self, answered: Sequence[Record]) -> list[Record]:
        """Exact grading with the world's error types."""
        return WorldAssessor().grade(answered)

    def verifier(self, answer: str, reference: str, record: Record) -> bool | None:
        """The world's oracle where it can solve the question, else the answer the Questioner proposed."""
        gold = solve(str(record.get("instruction", ""))) or reference
        return is_correct(answer, gold)

    def extract(self, text: str) -> str | None:
        """What a teacher's sample votes with: its short answer, normalised."""
        return normalize_answer(final_answer(text))

    def oracle(self, question: str) -> str | None:
        """The answer code computes for a question, or None where the world cannot solve it."""
        return solve(question)

    def shape_candidate(self, item: Record) -> Record:
        """A new question as the student will see it (world questions are already in form); a question that
        came without a proposed answer (Magpie) gets the oracle's, so the teacher's answer is checked; and a
        question of another point than the one it was asked for is counted for the point it tests (its facet
        read anew), with the point it was asked for kept in `asked_point`."""
        question = str(item.get("instruction", ""))
        if item.get("reference") is None:
            gold = solve(question)
            if gold is not None:
                item = {**item, "reference": gold}
        point = point_of(question)
        if point is None or point == item.get("knowledge_point") or point not in self.points:
            return item
        kp, reference = get_point(point), str(item.get("reference") or "")
        facet = kp.facet(question, reference) if reference else None
        return {
            **item,
            "knowledge_point": point,
            "skill": kp.skill,
            "facet": facet,
            "asked_point": item.get("knowledge_point"),
        }

    def shape_answer(self, item: Record) -> Record:
        """A teacher-answered item as it will be trained on: a chat model's worded reply is cut to its short
        answer (`final_answer`), the reply kept beside it in `teacher_reply`; one-line answers stay as they are."""
        reply = str(item.get("output") or "")
        short = final_answer(reply)
        if short == reply.strip():
            return item
        return {**item, "output": short, "teacher_reply": reply}

    def taxonomy(self, records: Sequence[Record] = ()) -> list[Record]:
        """The knowledge points, with their skill as category."""
        return [{"id": p, "category": get_point(p).skill, "description": get_point(p).description} for p in self.points]


class DatasetTask:
    """A real task from `datasets` (task.dataset): fixed seed, probe and test splits drawn once in round 0."""

    fresh_probes = False  # the probe split is drawn once and kept apart from the seed and from training
    teacher_system_by_kind = {
        "math": "teacher_system_math",
        "classification": "teacher_system",
        "open": "teacher_system",
    }
    max_item_chars: int | None = None
    has_oracle = False  # a teacher answers new questions

    def __init__(self, cfg: RunConfig) -> None:
        assert cfg.task.dataset is not None  # the config's validator guarantees it for task.name=dataset
        self.cfg = cfg
        self.ds: DatasetConfig = cfg.task.dataset
        self.kind = self.ds.kind
        self.labels = list(self.ds.labels) if self.ds.labels else None
        # Math and open answers run over several lines and end with the end token; labels are one line.
        self.stop: tuple[str, ...] = ("\n",) if self.kind == "classification" else ()
        self.teacher_system = self.teacher_system_by_kind[self.kind]
        self.described: list[Record] | None = None  # the LLM Examiner's test points (taxonomy 'llm'), once known
        self.wants_llm_taxonomy = self.ds.taxonomy == "llm"

    def check(self) -> None:
        """Read the local data files now, so that a bad one fails before a run directory is made; the rows are
        kept for `make_data`. Hub datasets are read when the data phase runs."""
        sources = [self.ds.source, self.ds.test_source or self.ds.source]
        if all(Path(source).suffix.lower() in FORMATS for source in sources):
            self._rows = self._load_rows()

    def _load_rows(self) -> tuple[list[Record], list[Record]]:
        ds = self.ds
        options = {
            "config": ds.config,
            "cache_dir": ds.cache_dir,
            "revision": ds.revision,
            "instruction_template": ds.instruction_template,
        }
        train_rows = load_rows(ds.source, ds.train_split, ds.fields, **options)
        test_source = ds.test_source or ds.source
        if ds.test_source is not None and Path(ds.test_source).suffix.lower() in FORMATS:
            options["revision"] = None  # a local test file beside a hub train split has no revision
        return train_rows, load_rows(test_source, ds.test_split, ds.fields, **options)

    def make_data(self) -> Data:
        """Seed and probe from the train split, test from the test split (a fixed sample with test_count)."""
        ds = self.ds
        train_rows, test_rows = getattr(self, "_rows", None) or self._load_rows()
        if ds.test_count is not None and ds.test_count < len(test_rows):
            keep = sorted(random.Random(f"{self.cfg.seed}:test").sample(range(len(test_rows)), ds.test_count))
            test_rows = [test_rows[i] for i in keep]
        data: TaskData = make_splits(
            train_rows,
            test_rows,
            kind=self.kind,
            seed=self.cfg.seed,
            seed_share=ds.seed_share,
            seed_count=ds.seed_count,
            probe_share=ds.probe_share,
            probe_count=ds.probe_count,
            labels=self.labels,
            task=ds.instruction,
        )
        return Data(data.seed, data.test, data.probe, counts=data.counts)

    def label_points(self, data: Data, client: Chat) -> list[Record]:
        """AutoDetect's taxonomy for a dataset: test points proposed by the model for the domain (or read from
        taxonomy_file), and every seed, probe and test item assigned to one ('unassigned' where the model named
        none after its tries). Returns the points; the records' knowledge_point is set in place."""
        ds, llm = self.ds, self.cfg.teacher.llm
        if ds.taxonomy_file:
            points = load_taxonomy(ds.taxonomy_file)
        else:
            points = propose_taxonomy(client, str(ds.domain), ds.taxonomy_points, llm.max_tries)
        records = [*data.seed, *data.probe, *data.test]
        assigned = assign_points(client, points, records, llm.max_tries, llm.max_tokens)
        for record, point in zip(records, assigned, strict=True):
            record["knowledge_point"] = point or UNASSIGNED
        self.described = points
        return points

    def probes(self, r: int, exclude: set[str]) -> list[Record]:
        raise RuntimeError("a dataset task's probe split is drawn once in round 0 (probe.jsonl), not per round")

    def tokenizer_texts(self, data: Data) -> list[str]:
        """Text for a tiny student's tokenizer: the train-side records only (never the test)."""
        return [f"{i['instruction']}\n{i['output']}" for i in [*data.seed, *data.probe]]

    def grade(self, answered: Sequence[Record]) -> list[Record]:
        """Math by the final number, classification by the label named; open tasks need the LLM judge."""
        if self.kind == "open":
            raise RuntimeError("open tasks are graded by the LLM judge (the runner's judge), not by code")
        out = []
        for r in answered:
            ok = bool(is_correct_for(self.kind, str(r.get("prediction", "")), r, self.labels))
            out.append({**r, "correct": ok, "error_type": None if ok else self._error(str(r.get("prediction", "")))})
        return out

    def _error(self, prediction: str) -> str:
        if not prediction.strip():
            return "empty"
        if self.kind == "math":
            return "no number" if extract_answer(prediction) is None else "wrong number"
        return "no label" if normalize_label(prediction, self.labels or []) is None else "wrong label"

    def verifier(self, answer: str, reference: str, record: Record) -> bool | None:
        """Whether a teacher's answer agrees with the answer the Questioner proposed; None where code cannot tell."""
        if self.kind == "math":
            mine, theirs = extract_answer(answer), extract_answer(reference)
            return None if theirs is None else numbers_equal(mine, theirs)
        if self.kind == "classification":
            theirs = normalize_label(reference, self.labels or [])
            return None if theirs is None else normalize_label(answer, self.labels or []) == theirs
        return None

    def extract(self, text: str) -> str | None:
        """What a teacher's sample votes with: the final number, the label, or the whole text."""
        if self.kind == "math":
            return extract_answer(text)
        if self.kind == "classification":
            return normalize_label(text, self.labels or [])
        return " ".join(text.split()).lower() or None

    def oracle(self, question: str) -> str | None:
        """A dataset has no code that answers a new question: the teacher does."""
        return None

    def shape_candidate(self, item: Record) -> Record:
        """Classification: the new text inside the task's own prompt, as every seed and test item reads, whether
        the Questioner wrote a whole prompt or just the text."""
        if self.kind != "classification":
            return item
        question = str(item.get("instruction", ""))
        text = question.rsplit("Text:", 1)[-1].strip()
        if not text:
            return item  # the Assessor drops it as malformed
        prompt = render("task_classification", task=self.ds.instruction, labels=self.labels, text=text)
        return {**item, "instruction": prompt}

    def shape_answer(self, item: Record) -> Record:
        """Classification: the teacher's answer as the bare label it names (its knowledge point), or no answer when
        it names none; math: the gold number kept beside the worked answer."""
        output = str(item.get("output") or "")
        if self.kind == "math" and output:
            return {**item, "answer": extract_answer(output)}
        if self.kind != "classification" or not output:
            return item
        label = normalize_label(output, self.labels or [])
        if label is None:
            return {
                **item,
                "output": "",
                "teacher_note": f"the answer names no label of {self.labels}: {output[:80]!r}",
            }
        return {**item, "output": label, "label": label, "knowledge_point": label}

    def taxonomy(self, records: Sequence[Record] = ()) -> list[Record]:
        """The LLM Examiner's points where it made them; else one node per knowledge point in the data (the labels
        of a classification task), largest first."""
        if self.described is not None:
            return self.described
        counts = Counter(str(r.get("knowledge_point")) for r in records)
        what = {"math": "math word problems", "classification": "texts of label", "open": "instructions"}[self.kind]
        return [
            {"id": p, "category": self.kind, "description": f"{what} {p!r}" if self.kind == "classification" else what}
            for p, _ in counts.most_common()
        ]


Task = WorldTask | DatasetTask


def make_task(cfg: RunConfig) -> Task:
    """The task a run config names."""
    return DatasetTask(cfg) if cfg.task.name == "dataset" else WorldTask(cfg)
