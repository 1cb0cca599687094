"""The Rainbow archive: the biased target sampler, sentence BLEU and its filter, the replacement rule, every
perturbation style keeping the oracle's answer (or dropped with its reason), the plan's state round trip, the
`perturb` writer, and the chat path's prompts, parses and two-order judge against a scripted model."""

from __future__ import annotations

import json
import math
import random
import re
from collections import Counter
from collections.abc import Sequence

import pytest
from pydantic import ValidationError

from agents.archive import Archive, Elite
from agents.llm.client import LLMClient
from agents.llm.prompts import render
from agents.llm.scripted import ScriptedBackend
from agents.plans.rainbow import RainbowChatPlan, RainbowPlan, _nudge, parse_mutation, parse_verdict
from agents.proposal import Ask, Proposal
from agents.similarity import sentence_bleu
from agents.tasks import styles
from agents.tasks.styles import STYLES, Styled, applies, restyle
from agents.tasks.world import LEVELS, generate_items, is_template, point_of, points_for, sample_item, solve
from agents.writers.perturb import PerturbWriter
from core.ifd import IFDScore
from core.plugins import Inputs, Parts
from core.records import Record
from core.text import question_key

POINTS = ["add.carry", "seq.first", "cmp.max", "word.sub"]


# -- the archive: sampler and replacement ------------------------------------------------------------
def _archive() -> Archive:
    archive = Archive([("a", "plain"), ("b", "plain"), ("c", "plain")])
    archive.offer(("b", "plain"), Elite({"instruction": "weak"}, 0.0))
    archive.offer(("c", "plain"), Elite({"instruction": "strong"}, 1.0))
    return archive


def test_target_sampling_is_softmax_biased_to_empty_then_weak_cells() -> None:
    archive = _archive()
    weights = archive.weights(temperature=0.5, empty_bonus=0.5)
    scores = [(1 + 0.5) / 0.5, (1 - 0) / 0.5, (1 - 1) / 0.5]  # empty, weak (f=0), strong (f=f_max)
    want = [math.exp(s) / sum(math.exp(x) for x in scores) for s in scores]
    assert weights == pytest.approx(want)
    assert weights[0] > weights[1] > weights[2]
    rng = random.Random(0)
    drawn = Counter(archive.sample_target(rng, 0.5, 0.5)[0] for _ in range(20_000))
    assert [drawn[c] / 20_000 for c in "abc"] == pytest.approx(want, abs=0.01)
    # a higher temperature flattens the bias; no bonus leaves an empty cell level with a weak one
    flat = archive.weights(temperature=100.0, empty_bonus=0.5)
    assert max(flat) - min(flat) < 0.02
    assert archive.weights(1.0, 0.0)[0] == pytest.approx(archive.weights(1.0, 0.0)[1])
    with pytest.raises(ValueError, match="temperature must be positive"):
        archive.weights(0.0, 0.5)


def test_one_elite_per_cell_replaced_only_by_a_more_effective_candidate() -> None:
    archive = Archive([("p", "s")])
    cell = ("p", "s")
    assert archive.offer(cell, Elite({"instruction": "first"}, 0.0, loss=2.0))  # an empty cell takes anything
    assert not archive.offer(cell, Elite({"instruction": "equal"}, 0.0, loss=2.0))  # a tie keeps the elite
    assert not archive.offer(cell, Elite({"instruction": "surer"}, 0.0, loss=1.0))
    assert archive.offer(cell, Elite({"instruction": "less sure"}, 0.0, loss=3.0))  # same fitness, higher loss
    assert archive.offer(cell, Elite({"instruction": "failed"}, 1.0, loss=0.1))  # the student fails it: wins
    assert not archive.offer(cell, Elite({"instruction": "passed"}, 0.0, loss=9.0))  # a loss never beats a failure
    assert archive.elites[cell].item["instruction"] == "failed"
    assert (archive.qd_score(), archive.coverage()) == (1.0, 1.0)
    with pytest.raises(ValueError, match="not in the archive's grid"):
        archive.offer(("q", "s"), Elite({}, 1.0))


def test_the_archive_round_trips_through_json() -> None:
    archive = _archive()
    archive.elites[("b", "plain")].loss, archive.elites[("b", "plain")].wins = 0.123456789012345, 2
    rows = json.loads(json.dumps(archive.to_json()))
    again = Archive.from_json(archive.grid, rows)
    assert again.elites == archive.elites and again.grid == archive.grid
    assert list(Archive.from_json([("b", "plain")], rows).elites) == [("b", "plain")]  # cells off the grid drop


# -- BLEU ----------------------------------------------------------------------------------------------
def test_sentence_bleu_with_add_one_smoothing() -> None:
    assert sentence_bleu("What is 47 + 8?", "What is 47 + 8?") == pytest.approx(1.0)
    assert sentence_bleu("a b", "c d") == 0.0 and sentence_bleu("", "a") == 0.0
    # by hand: unigrams 5/6, bigrams (3+1)/(5+1), trigrams (1+1)/(4+1), 4-grams (0+1)/(3+1); equal lengths
    want = (5 / 6 * 4 / 6 * 2 / 5 * 1 / 4) ** 0.25
    assert sentence_bleu("What is 45 + 8?", "What is 47 + 8?") == pytest.approx(want)
    assert sentence_bleu("What is 47 - 8?", "What is 47 + 8?") < 1.0  # an operator is a token
    short = sentence_bleu("What is", "What is 47 + 8?")  # the brevity penalty
    assert short == pytest.approx(math.exp(1 - 6 / 2) * ((2 / 2) * (2 / 2) * 1 * 1) ** 0.25)


# -- the styles keep the oracle's answer, or say why not -----------------------------------------------
@pytest.mark.parametrize("style", list(STYLES))
def test_every_style_keeps_the_oracles_answer_or_is_dropped_with_its_reason(style: str) -> None:
    for point in points_for():
        for level in LEVELS:
            for i in range(25):
                rng = random.Random(f"{style}:{point}:{level}:{i}")
                question, answer = sample_item(rng, point, level)
                out = restyle(style, question, point, rng)
                if not applies(style, point):
                    assert out == "not applicable"
                    continue
                assert isinstance(out, Styled), (question, out)
                assert solve(out.question) == answer == out.answer and point_of(out.question) == point
                assert out.base == question
                assert style == "plain" or question_key(out.question) != question_key(question)


def test_a_rewording_the_oracle_does_not_confirm_is_dropped_with_a_named_reason(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cases = {
        "unreadable": lambda q, point, rng: "What is the answer to that?",
        "answer changed": lambda q, point, rng: q.replace("+", "-"),  # 47 + 8 asked as 47 - 8
        "point changed": lambda q, point, rng: "What is 45 + 10?",  # 55 again, but with no carry
    }
    for reason, writer in cases.items():
        monkeypatch.setitem(styles._WRITERS, "paraphrase", writer)
        assert restyle("paraphrase", "What is 47 + 8?", "add.carry", random.Random(0)) == reason
    with pytest.raises(ValueError, match="unknown style 'slang'"):
        restyle("slang", "What is 47 + 8?", "add.carry", random.Random(0))
    with pytest.raises(ValueError, match="in the world's wording"):  # a styled question is not restyled again
        restyle("context", "Add 47 and 8.", "add.carry", random.Random(0))


def test_the_world_still_solves_its_own_questions_as_before() -> None:
    items = generate_items(0, dict.fromkeys(points_for(), 30), 2, split="test")
    assert all(solve(str(i["instruction"])) == i["output"] for i in items)
    assert solve("What is the answer?") is None and solve("Subtract 9 from 5.") is None  # negative: no answer


def test_a_nudge_changes_one_number_or_letter_and_keeps_the_point() -> None:
    rng = random.Random(0)
    for point in points_for():
        for i in range(20):
            question, _ = sample_item(random.Random(f"{point}{i}"), point, 2)
            changed = _nudge(question, point, rng)
            if changed is None:  # a point whose every one-token change lands elsewhere (rare)
                continue
            assert changed != question and point_of(changed) == point and solve(changed) is not None
            assert len(changed.split()) == len(question.split())


# -- the world plan, with a scripted student ----------------------------------------------------------
class FakeStudent:
    """Right on the world's own wording, wrong on every other style; loss = the question's length / 100."""

    def __init__(self) -> None:
        self.asked = 0

    def answers(self, items: Sequence[Record]) -> list[Record]:
        self.asked += len(items)
        return [
            {**i, "prediction": str(i["output"]) if solve(str(i["instruction"])) and _plain(i) else "x"} for i in items
        ]

    def scores(self, items: Sequence[Record], reverse: bool = False) -> list[IFDScore]:
        return [IFDScore(len(str(i["instruction"])) / 100, 1.0, 0.5) for i in items]


def _plain(item: Record) -> bool:
    return question_key(item["instruction"]) == question_key(item.get("base") or item["instruction"])


def _probes(student: FakeStudent) -> list[Record]:
    items = generate_items(0, dict.fromkeys(POINTS, 4), 2, split="probe0")
    return [{**a, "correct": a["prediction"] == a["output"]} for a in student.answers(items)]


def _inputs(
    plan: type, student: FakeStudent, state: dict | None, known: Sequence[str] = (), more: Sequence[Record] = ()
) -> Inputs:
    from agents.tasks.world import get_point

    taxonomy = [{"id": p, "category": get_point(p).skill, "description": get_point(p).description} for p in POINTS]
    values = {
        "taxonomy": taxonomy,
        "probes": [*_probes(student), *more],
        "known": list(known),
        "answers": student.answers,
        "student": student.scores,
        "state": state,
    }
    return Inputs(plan, {k: (lambda v=v: v) for k, v in values.items()})


def _plan(**options: object) -> RainbowPlan:
    config = RainbowPlan.Config(name="rainbow", **{"iterations": 4, "mutations": 6, **options})
    return RainbowPlan(config, Parts(seed=0, difficulty=2))


def _round(plan: RainbowPlan, student: FakeStudent, state: dict | None, r: int, budget: int = 12) -> Proposal:
    plan.load_state(state)
    # as in the loop, the last round's probes hold the archive's elites (styled), graded, beside the task's own
    archived = [{**a, "correct": a["prediction"] == a["output"]} for a in student.answers(plan.probes())]
    inputs = _inputs(RainbowPlan, student, state, more=archived)
    return plan.propose(inputs, budget, r, random.Random(f"rainbow:{r}"))


def test_a_round_fills_the_archive_with_oracle_valid_failures_and_asks_from_them() -> None:
    student, plan = FakeStudent(), _plan()
    proposal = _round(plan, student, None, 1)
    state = plan.state()
    assert state is not None
    (log,) = state["history"]
    plain = [row for row in state["elites"] if row["cell"][1] == "plain"]
    assert len(plain) == len(POINTS) and log["seeded"] >= len(POINTS)  # each point's plain cell, from the probes
    assert {row["item"]["id"] for row in plain} <= {p["id"] for p in _probes(FakeStudent())}
    assert log["candidates"] + sum(log["rejected"].values()) == 4 * 6
    assert student.asked == 4 * len(POINTS) + log["candidates"]  # probes once, then each candidate once
    elites = [Elite(**{k: v for k, v in row.items() if k != "cell"}) for row in state["elites"]]
    for row, elite in zip(state["elites"], elites, strict=True):
        point, style = row["cell"]
        assert elite.item["knowledge_point"] == point and elite.item["style"] == style
        assert solve(elite.item["instruction"]) == elite.item["output"]  # the oracle confirms every elite
        assert elite.fitness == (0.0 if style == "plain" else 1.0)  # the fake student fails every other style
    assert log["qd_score"] == sum(e.fitness for e in elites) and log["failing_cells"] == sum(
        e.fitness > 0 for e in elites
    )
    assert log["coverage"] == pytest.approx(len(elites) / log["cells"])
    assert log["cells"] == sum(applies(s, p) for p in POINTS for s in STYLES)
    # asks: from the failing elites, in their style, the budget split over them
    assert sum(a.n for a in proposal.asks) == 12
    assert all(a.parent["style"] != "plain" and a.context["style"] == a.parent["style"] for a in proposal.asks)
    metrics = plan.metrics()
    assert metrics["archive/qd_score"] == log["qd_score"] and metrics["archive/coverage"] == log["coverage"]
    assert all(f"archive/rejected/{re.sub(r'[^a-z0-9]+', '_', k)}" in metrics for k in log["rejected"])
    probes = plan.probes()
    assert len(probes) == len(elites) and all(p["source"] == "archive" and p["output"] for p in probes)
    plan.config.probes = "failing"
    assert len(plan.probes()) == sum(e.fitness > 0 for e in elites)


def test_the_bleu_filter_drops_a_near_copy_of_its_parent() -> None:
    plan = _plan(bleu_max=0.6)
    plan.known = set()
    parent = {"instruction": "Ben is 12 years old. What is 47 + 8?"}
    near = {"instruction": "Ben is 30 years old. What is 47 + 6?"}
    assert sentence_bleu(near["instruction"], parent["instruction"]) > 0.6
    assert plan.problem(near, parent) == "near copy of its parent"
    assert plan.problem({"instruction": "Add 47 and 6."}, parent) == ""
    plan.known = {question_key("Add 47 and 6.")}
    assert plan.problem({"instruction": "Add 47 and 6."}, parent) == "known question"
    assert plan.problem({"instruction": "x" * 200}, parent) == "too long"


def test_the_state_round_trips_and_the_next_round_continues_from_it_exactly() -> None:
    student = FakeStudent()
    first = _plan()
    _round(first, student, None, 1)
    saved = json.loads(json.dumps(first.state()))  # as the step executor writes and reads it
    a, b = _plan(), _plan()
    got_a = _round(a, FakeStudent(), saved, 2)
    got_b = _round(b, FakeStudent(), json.loads(json.dumps(saved)), 2)
    assert a.state() == b.state() and [x.parent["id"] for x in got_a.asks] == [x.parent["id"] for x in got_b.asks]
    assert [h["round"] for h in a.state()["history"]] == [1, 2]  # type: ignore[index]
    for row in a.state()["elites"]:  # type: ignore[index]  # the archive's probes never enter a plain cell
        assert (row["cell"][1] == "plain") == is_template(row["item"]["instruction"])
        assert is_template(row["item"]["base"])
    assert a.made > first.made  # ids keep counting across rounds
    ids = [row["item"]["id"] for row in a.state()["elites"]]  # type: ignore[index]
    assert len(ids) == len(set(ids))


def test_a_numeric_axis_puts_each_candidate_in_its_measured_bin() -> None:
    plan = _plan(numeric_axis="digits", bins=[1, 2])
    _round(plan, FakeStudent(), None, 1)
    state = plan.state()
    assert state is not None and state["elites"]
    for row in state["elites"]:
        digits = max((len(n) for n in re.findall(r"\d+", row["item"]["base"])), default=0)
        assert row["cell"][2] == ("<=1" if digits <= 1 else "<=2" if digits <= 2 else ">2")


def test_bad_config_values_name_the_field() -> None:
    with pytest.raises(ValidationError, match="unknown style 'slang'"):
        RainbowPlan.Config(name="rainbow", styles=["plain", "slang"])
    with pytest.raises(ValidationError, match="bins must be increasing"):
        RainbowPlan.Config(name="rainbow", bins=[3, 2])
    with pytest.raises(ValidationError, match="styles"):
        PerturbWriter.Config(name="perturb", styles=[])


# -- the perturb writer --------------------------------------------------------------------------------
def test_perturb_writes_items_in_the_asks_style_never_the_elite_itself() -> None:
    writer = PerturbWriter(PerturbWriter.Config(name="perturb"), Parts(seed=0, difficulty=2))
    parent = {
        "id": "archive-00001",
        "instruction": "Ben is 12 years old. What is 47 + 8?",
        "knowledge_point": "add.carry",
    }
    asks = [Ask(parent, 5, "elite", ("add.carry", None, 2), context={"style": "distractor"})]
    known = ["What is 47 + 8?"]
    inputs = Inputs(PerturbWriter, {"known": lambda: known})
    written = writer.write(Proposal(asks=asks), 5, 1, random.Random(0), inputs, "rainbow")
    assert len(written.items) == 5
    for item in written.items:
        assert item["style"] == "distractor" and item["instruction"].split(". ", 1)[1] == item["base"]
        assert solve(item["instruction"]) == item["reference"] and point_of(item["instruction"]) == "add.carry"
        assert question_key(item["instruction"]) != question_key(parent["instruction"])
        assert item["parent_id"] == "archive-00001"
    weighted = Proposal(weights={("seq.first", None, 2): 1.0}, reasons={("seq.first", None, 2): "w"})
    items = writer.write(weighted, 8, 1, random.Random(1), inputs, "weakness").items
    assert {i["style"] for i in items} <= set(writer.config.styles) and len({i["style"] for i in items}) > 1


# -- the chat path ---------------------------------------------------------------------------------------
def test_the_mutator_and_judge_replies_parse() -> None:
    assert parse_mutation('Sure.\nNew question: "What is 12 + 9, not 12 - 9?"') == "What is 12 + 9, not 12 - 9?"
    assert parse_mutation("What is 3 + 4?") == "What is 3 + 4?" and parse_mutation("  ") is None
    assert parse_verdict("Worse: 2") == 2 and parse_verdict("Hmm. Worse: **1**") == 1
    assert parse_verdict("Both are fine") is None


def _chat_plan(backend: ScriptedBackend, tmp: object) -> RainbowChatPlan:
    config = RainbowChatPlan.Config(name="rainbow_chat", iterations=2, mutations=3, styles=["plain", "distractor"])
    client = LLMClient(backend, tmp / "calls.sqlite")  # type: ignore[operator]
    return RainbowChatPlan(config, Parts(seed=0, client=client, domain="arithmetic"))


class _Recording(ScriptedBackend):
    """A scripted backend that keeps every prompt it was sent."""

    def __init__(self, rules: list) -> None:
        super().__init__(rules)
        self.prompts: list[str] = []

    def chat(self, requests: Sequence[object]) -> list:
        self.prompts += [r.messages[-1]["content"] for r in requests]  # type: ignore[attr-defined]
        return super().chat(requests)  # type: ignore[arg-type]


def test_the_mutator_prompt_and_the_judges_two_orders(tmp_path: object) -> None:
    mutated = "New question: Eve is 9 years old. What is 39 + 4?"
    backend = _Recording([("Rewrite the question below", mutated), ("Worse: 1", "Worse: 1")])
    plan = _chat_plan(backend, tmp_path)
    plan.round, plan.tally, plan.descriptions = 1, Counter(), {"add.carry": "addition with a carry"}
    plan.skills = {"add.carry": "addition"}
    parent = {"id": "p1", "instruction": "What is 38 + 5?", "knowledge_point": "add.carry"}
    (made,) = plan.mutate([(parent, ("add.carry", "distractor"))], random.Random(0), 0)
    assert backend.prompts[0] == (
        "You write test questions that probe where a student model goes wrong. Rewrite the question below into a "
        "new one that\n"
        "- tests this skill: add.carry (addition with a carry)\n"
        "- is worded in this style: distractor, that is, an irrelevant sentence with a number placed before the "
        "question.\n"
        "The questions are about arithmetic.\n"
        "The new question must have one correct answer and must not give it away. Change the wording, not only a "
        "number.\n\n"
        "Question: What is 38 + 5?\n\n"
        'Reply with one line: "New question: " followed by the question.'
    )
    assert made == {
        "instruction": "Eve is 9 years old. What is 39 + 4?",
        "knowledge_point": "add.carry",
        "skill": "addition",
        "style": "distractor",
        "parent_id": "p1",
        "round": 1,
    }
    cand = {"instruction": "Q-new", "prediction": "A-new"}
    elite = {"instruction": "Q-old", "prediction": "A-old"}
    assert plan.judge([(cand, elite)], 0) == [None]  # "Worse: 1" in both orders: a split
    first, second = backend.prompts[1:3]
    assert first == render(
        "rainbow_judge", first_question="Q-new", first_answer="A-new", second_question="Q-old", second_answer="A-old"
    )
    assert second == render(
        "rainbow_judge", first_question="Q-old", first_answer="A-old", second_question="Q-new", second_answer="A-new"
    )
    assert "[Exchange 1]\nQuestion: Q-new\nStudent's answer: A-new\n\n[Exchange 2]\nQuestion: Q-old" in first


def test_a_chat_round_fills_the_archive_and_asks_the_chat_writer_from_its_elites(tmp_path: object) -> None:
    count = iter(range(1000))

    def mutate(req: object) -> str:
        return f"New question: Gus is {next(count)} years old. How many pens are left over?"

    backend = ScriptedBackend([("Rewrite the question below", mutate), ("Worse: 1", "Worse: 1")])
    plan = _chat_plan(backend, tmp_path)
    plan.load_state(None)
    proposal = plan.propose(_inputs(RainbowChatPlan, FakeStudent(), None), 4, 1, random.Random(0))
    log = plan.history[-1]
    assert log["candidates"] + sum(log["rejected"].values()) == 2 * 3 and log["judge_calls"] % 2 == 0
    state = plan.state()
    assert state is not None and state["elites"]
    assert all(row["fitness"] == row["wins"] for row in state["elites"])  # the judge's path counts contests won
    assert proposal.asks and all(a.key is None and a.context["examples"] for a in proposal.asks)


def test_a_candidate_takes_a_cell_only_when_it_wins_both_orders(tmp_path: object) -> None:
    replies = {"win": ["Worse: 1", "Worse: 2"], "split": ["Worse: 1", "Worse: 1"], "loss": ["Worse: 2", "Worse: 1"]}
    for case, (first, second) in replies.items():
        answers = iter([first, second])
        backend = ScriptedBackend([("Worse: 1", lambda r, a=answers: next(a))])
        plan = _chat_plan(backend, tmp_path / case)  # type: ignore[operator]
        plan.round, plan.tally = 1, Counter()
        plan.inputs = Inputs(RainbowChatPlan, {"answers": lambda: FakeStudent().answers})
        cell = ("add.carry", "plain")
        plan.archive = Archive([cell])
        plan.archive.offer(cell, Elite({"instruction": "What is 47 + 8?", "output": "55"}, 1.0, wins=1))
        taken = plan.offer([(cell, {"instruction": "What is 48 + 9?", "output": "57"})], 0)
        elite = plan.archive.elites[cell]
        if case == "win":
            assert taken == 1 and elite.item["instruction"] == "What is 48 + 9?" and elite.wins == 2
        else:
            assert taken == 0 and elite.item["instruction"] == "What is 47 + 8?"
            assert elite.wins == (2 if case == "loss" else 1)  # a defence counts, a split does not
        assert plan.tally["judge_calls"] == 2
