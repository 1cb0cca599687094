"""Instruction back-translation: the backward model is trained on the seed turned around, each weak node gets the
documents nearest its failures, the document is the answer, every dropped instruction says why, and no
document is used twice (nor one that is an answer the run already has)."""

from __future__ import annotations

import random
from collections.abc import Sequence

import pytest

from agents.proposal import Ask, Proposal
from core import plugins
from core.generation import Sampling
from core.plugins import Inputs, Parts

CORPUS = (
    "Tom has 3 apples and buys 4 more, so he has 3 + 4 = 7 apples.\n#### 7",  # 0: addition
    "The train covers 60 km per hour for 2 hours: 60 * 2 = 120 km.\n#### 120",  # 1: multiplication
    "Sue had 9 pears and gave 2 away: 9 - 2 = 7 pears left.\n#### 7",  # 2: subtraction
    "A box holds 6 eggs; 5 boxes hold 6 * 5 = 30 eggs.\n#### 30",  # 3: multiplication
    "Ann reads 10 pages and then 15 more: 10 + 15 = 25 pages.\n#### 25",  # 4: addition (an answer of the pool)
    "Kim saves 4 dollars a week for 3 weeks: 4 * 3 = 12 dollars.\n#### 12",  # 5: multiplication
)
SEED = [
    {
        "id": "s0",
        "source": "seed",
        "instruction": "Ann reads 10 pages and then 15 more. How many?",
        "output": CORPUS[4],
    },
    {"id": "s1", "source": "seed", "instruction": "What is 2 * 3?", "output": "2 * 3 = 6\n#### 6"},
    {"id": "k0", "source": "synthetic", "kept": True, "instruction": "Old kept item?", "output": "kept answer"},
]
FAILURE = {
    "id": "p1",
    "knowledge_point": "multiplication",
    "instruction": "A box holds 12 eggs. How many eggs do 3 boxes hold?",
    "output": "12 * 3 = 36 eggs\n#### 36",
}
OTHER = {
    "id": "p2",
    "knowledge_point": "multiplication",
    "instruction": "A car drives 50 km per hour. How far does it go in 3 hours?",
    "output": "50 * 3 = 150 km\n#### 150",
}


class FakeTrainer:
    """The trainer service (core.plugins.Trainer) played by a script: it records what it was asked to train and
    writes the instruction the test gives for each document."""

    def __init__(self, replies: dict[int, str]) -> None:
        self.replies, self.trained, self.asked = replies, [], []

    def finetune(self, rows: Sequence[dict[str, object]], name: str, start: str, max_steps: int) -> str:
        self.trained.append((list(rows), name, start, max_steps))
        return f"/models/{name}"

    def complete(self, model: str, instructions: Sequence[str], samplings: Sequence[Sampling]) -> list[list[str]]:
        self.asked.append((model, list(instructions), list(samplings)))
        return [[self.replies[CORPUS.index(doc)]] for doc in instructions]


def _writer(trainer: FakeTrainer, **options: object):  # noqa: ANN202
    cls = plugins.get("writer", "backtranslation")
    return cls(cls.Config(name="backtranslation", **options), Parts(seed=1, corpus=CORPUS, trainer=trainer))


def _inputs(writer, known: Sequence[str] = ()) -> Inputs:  # noqa: ANN001
    values = {
        "pool": SEED,
        "evaluation": {"test": [], "probe": [FAILURE, OTHER]},
        "failures": [FAILURE, OTHER],
        "taxonomy": [{"id": "multiplication", "description": "products"}],
        "known": [*known, *(r["instruction"] for r in SEED)],
        "state": None,
    }
    return Inputs(type(writer), {k: (lambda v=v: v) for k, v in values.items()})


def test_each_failure_gets_the_nearest_document_and_each_document_is_its_answer() -> None:
    trainer = FakeTrainer({1: "How far does a train go in 2 hours at 60 km per hour?", 3: "How many eggs in 5 boxes?"})
    writer = _writer(trainer)
    asks = [Ask({**FAILURE}, 1, "failed probe p1"), Ask({**OTHER}, 1, "failed probe p2")]
    written = writer.write(Proposal(asks=asks), 2, 1, random.Random(0), _inputs(writer), "llm2llm")
    # Humpback's backward model: the seed's pairs turned around (the kept synthetic item is not seed), from the base.
    rows, name, start, steps = trainer.trained[0]
    assert (name, start, steps) == ("backward", "base", 60)
    assert rows == [{"instruction": s["output"], "output": s["instruction"]} for s in SEED[:2]]
    # Each failed probe gets the document nearest it (eggs in boxes; km per hour), sampled as the paper does.
    model, docs, samplings = trainer.asked[0]
    assert model == "/models/backward" and docs == [CORPUS[3], CORPUS[1]]
    assert all((s.temperature, s.top_p, s.max_tokens, s.n) == (0.7, 0.9, 128, 1) for s in samplings)
    assert len({s.seed for s in samplings}) == 2
    items = written.items
    assert [i["output"] for i in items] == docs and all(i["answered"] and i["reference"] == i["output"] for i in items)
    assert {i["instruction"] for i in items} == set(trainer.replies.values())
    assert [i["parent_id"] for i in items] == ["p1", "p2"] and {i["knowledge_point"] for i in items} == {
        "multiplication"
    }
    assert all("nearest its failed probes (cosine" in i["why"] and i["writer"] == "backtranslation" for i in items)
    assert writer.state() == {"used": sorted(CORPUS.index(d) for d in docs)}


def test_filters_name_every_drop_and_documents_are_never_used_twice() -> None:
    replies = {0: "short", 1: "x" * 801, 2: "What is 2 * 3?", 3: CORPUS[3], 5: "How much does Kim save in 3 weeks?"}
    trainer = FakeTrainer(replies)
    writer = _writer(trainer, target=False)
    written = writer.write(Proposal(), 10, 1, random.Random(0), _inputs(writer), "random")
    # Document 4 is the answer of a seed item: never back-translated (it would put a known answer in again).
    assert sorted(CORPUS.index(d) for d in trainer.asked[0][1]) == [0, 1, 2, 3, 5]
    reasons = sorted(r["reason"] for r in written.rejected)
    assert reasons == [
        "copies its document (ROUGE-L > 0.9) (document 3)",
        "instruction of 5 characters, outside 10-800 (document 0)",
        "instruction of 801 characters, outside 10-800 (document 1)",
        "repeats a known question (document 2)",
    ]
    assert [i["instruction"] for i in written.items] == [replies[5]]
    assert all("at random" in i["why"] for i in written.items)
    # The next round: every usable document is used; the writer says so rather than writing nothing silently.
    again = _writer(trainer, target=False)
    again.load_state(writer.state())
    later = again.write(Proposal(), 10, 2, random.Random(0), _inputs(again), "random")
    assert later.items == [] and [r["reason"] for r in later.rejected] == ["the corpus has no unused document left"]


def test_the_pool_and_the_last_student_are_options() -> None:
    trainer = FakeTrainer({i: f"Question number {i} about it?" for i in range(len(CORPUS))})
    writer = _writer(trainer, pairs="pool", start="student", train_steps=7)
    writer.write(Proposal(), 1, 3, random.Random(0), _inputs(writer), "random")
    rows, _, start, steps = trainer.trained[0]
    assert (len(rows), start, steps) == (3, "student", 7)


def test_the_writer_needs_a_corpus_and_the_trainer() -> None:
    cls = plugins.get("writer", "backtranslation")
    assert plugins.missing_needs(cls, {"trainer", "student"}) == ["a corpus of unlabelled texts (set synthesis.corpus)"]
    with pytest.raises(ValueError, match="max_rouge_to_document"):
        cls.Config(name="backtranslation", max_rouge_to_document=0)
