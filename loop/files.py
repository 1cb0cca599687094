"""The record files of a run directory, each named once, and the views the stages read (pool, evaluation
sets, everything asked so far). The pool is derived from the round files (seed + every round's kept
items), never appended to, so a redone phase cannot add an item twice.

    RUN_DIR/test.jsonl, probe.jsonl (a dataset's fixed probe split), taxonomy.json (a model-made taxonomy)
    RUN_DIR/round_NNN/profile.json          examine: the weakness profile
                      candidates.jsonl      propose: new questions (no answers yet)
                      dropped_question.jsonl         asks the writer gave up on
                      answered.jsonl        answer: with the teacher's answers
                      refined.jsonl         refine (where refiners are configured)
                      assessed.jsonl        curate: what the curators kept
                      dropped_assess.jsonl           what they dropped
                      items.jsonl           select: every item of the round, kept or dropped with why
                      state/<plugin>.json   a plugin's state after the round (e.g. an archive)
                      train.jsonl, model/   train
                      eval_probe.jsonl, eval_test.jsonl   evaluate
                      summary.json          log
"""

from __future__ import annotations

import json
from pathlib import Path

from core.jsonl import read_jsonl
from core.records import Record

TEST = "test.jsonl"
PROBE = "probe.jsonl"
TAXONOMY = "taxonomy.json"
PROFILE = "profile.json"
CANDIDATES = "candidates.jsonl"
DROPPED_QUESTION = "dropped_question.jsonl"
ANSWERED = "answered.jsonl"
REFINED = "refined.jsonl"
ASSESSED = "assessed.jsonl"
DROPPED_ASSESS = "dropped_assess.jsonl"
ITEMS = "items.jsonl"
TRAIN = "train.jsonl"
MODEL = "model"
WEIGHTS = "model/model.safetensors"
EVAL_PROBE = "eval_probe.jsonl"
EVAL_TEST = "eval_test.jsonl"
SUMMARY = "summary.json"


class RunFiles:
    """Paths and derived views of one run directory."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def at(self, r: int, name: str) -> Path:
        """A path inside round r's folder."""
        return self.root / f"round_{r:03d}" / name

    def state(self, r: int, kind: str, name: str) -> Path:
        """Where a plugin's state after round r is kept."""
        return self.at(r, f"state/{kind}-{name}.json")

    def rows(self, r: int, name: str) -> list[Record]:
        """The rows of one of round r's JSONL files."""
        return read_jsonl(self.at(r, name)).rows

    def json(self, r: int, name: str) -> dict:
        """One of round r's JSON files."""
        return json.loads(self.at(r, name).read_text())

    def test(self) -> list[Record]:
        """The held-out test."""
        return read_jsonl(self.root / TEST).rows

    def item_files(self, upto: int) -> list[Path]:
        """The item files of rounds 0..upto (their kept rows make up that round's training pool)."""
        return [self.at(k, ITEMS) for k in range(upto + 1)]

    def pool(self, upto: int) -> list[Record]:
        """Seed + every kept synthetic item of rounds 1..upto."""
        return [row for f in self.item_files(upto) for row in read_jsonl(f).rows if row.get("kept")]

    def asked(self, upto: int) -> list[Record]:
        """Every item of rounds 0..upto, kept or dropped: no new question may repeat one."""
        return [row for f in self.item_files(upto) for row in read_jsonl(f).rows if row.get("instruction")]

    def probe_files(self, before: int) -> list[Path]:
        """The graded probes of every round before `before`."""
        return [self.at(k, EVAL_PROBE) for k in range(before)]

    def evaluation(self, before: int) -> dict[str, list[Record]]:
        """The held-out test and every probe drawn before round `before`: no synthetic item may restate one."""
        probes = [row for f in self.probe_files(before) for row in read_jsonl(f).rows]
        return {"test": self.test(), "probe": probes}
