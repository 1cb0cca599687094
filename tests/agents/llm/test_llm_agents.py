from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

from agents.examiner import WorldExaminer
from agents.llm.assessor import LLMAssessor
from agents.llm.client import LLMClient
from agents.llm.examiner import AutoDetectExaminer, load_taxonomy
from agents.llm.scripted import ScriptedBackend
from agents.llm.teacher import LLMTeacher
from agents.llm.types import ChatRequest
from agents.plans import llm2llm
from agents.roles import NodeStats, WeaknessProfile
from agents.similarity import rouge_l
from core import plugins
from core.ifd import IFDScore
from core.plugins import Inputs, Parts
from tests.helpers import Strategy

PROFILE = WeaknessProfile(round=0, nodes=[])
TAXONOMY = [
    {"id": "add", "category": "arithmetic", "description": "add two numbers"},
    {"id": "sub", "category": "arithmetic", "description": "subtract two numbers"},
]


def _failure(i: int, source: str = "seed", point: str = "add") -> dict[str, object]:
    return {
        "id": f"p{i}",
        "instruction": f"Question number {i}: what is {i} plus {i + 10}?",
        "output": str(2 * i + 10),
        "prediction": f"wrong-{i}",
        "correct": False,
        "knowledge_point": point,
        "facet": "carry",
        "skill": "arithmetic",
        "difficulty": 2,
        "source": source,
    }


def _user(req: ChatRequest) -> str:
    return next(m["content"] for m in reversed(req.messages) if m["role"] == "user")


def _counter() -> Iterator[int]:
    n = 0
    while True:
        yield n
        n += 1


# -- Questioner: llm2llm ----------------------------------------------------------------------------
def test_llm2llm_one_item_per_seed_failure_with_wrong_answer_in_prompt() -> None:
    def reply(req: ChatRequest) -> str:
        i = re.search(r"Question number (\d+)", _user(req))[1]  # type: ignore[index]
        body = json.dumps({"question": f"Fresh task {i}: sum of {i} and 99?", "answer": str(int(i) + 99)})
        return f"Here you go:\n```json\n{body}\n```"

    backend = ScriptedBackend([("The student was given", reply)], model="teacher-x")
    failures = [_failure(1), _failure(2, source="synthetic"), _failure(3)]
    items = Strategy("llm2llm", "chat", client=backend)(PROFILE, failures, budget=10, round=1)

    assert [i["parent_id"] for i in items] == ["p1", "p3"]  # synthetic failures are never re-augmented
    assert [i["id"] for i in items] == ["r001-llm2llm-00000", "r001-llm2llm-00001"]
    first = items[0]
    assert first["instruction"] == "Fresh task 1: sum of 1 and 99?" and first["reference"] == "100"
    assert (first["knowledge_point"], first["facet"], first["skill"], first["difficulty"]) == (
        "add",
        "carry",
        "arithmetic",
        2,
    )
    assert (first["source"], first["round"], first["strategy"]) == ("synthetic", 1, "llm2llm")
    msgs = backend.calls[0].messages
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user"]  # system + one worked example
    assert "educational" in msgs[0]["content"] and json.loads(msgs[2]["content"])["answer"].endswith("60")
    assert "Question number 1" in msgs[3]["content"]
    assert "The answer key says:\n\n12" in msgs[3]["content"]
    assert "wrongly:\n\nwrong-1" in msgs[3]["content"]
    assert len(backend.calls) == 2 and backend.calls[0].sampling.temperature == 1.0


def test_llm2llm_budget_and_custom_examples() -> None:
    backend = ScriptedBackend(
        [("Question number (\\d+)", lambda r: json.dumps({"question": f"Q {len(backend.calls)}", "answer": "1"}))]
    )
    example = {"question": "EXQ", "answer": "EXA", "prediction": "EXP", "new_question": "NQ", "new_answer": "NA"}
    items = Strategy("llm2llm", "chat", client=backend)(PROFILE, [_failure(i) for i in range(5)], budget=2, round=3)
    assert len(items) == 2 and len(backend.calls) == 2
    messages = llm2llm.messages(_failure(1), 1, examples=[example])
    shot_user, shot_reply = messages[1]["content"], messages[2]["content"]
    assert "EXQ" in shot_user and "EXP" in shot_user and json.loads(shot_reply) == {"question": "NQ", "answer": "NA"}


def test_garbage_forever_is_bounded_and_every_retry_differs() -> None:
    backend = ScriptedBackend([(".", "I am sorry, I cannot do that.")])
    q = Strategy("llm2llm", "chat", client=backend, max_tries=3)
    assert q(PROFILE, [_failure(1)], budget=5, round=2) == []
    assert len(backend.calls) == 3
    assert len({c.sampling.seed for c in backend.calls}) == 3
    assert q.rejected == [
        {"parent_id": "p1", "reason": q.rejected[0]["reason"], "excerpt": "I am sorry, I cannot do that."}
    ]
    assert str(q.rejected[0]["reason"]).startswith("unparsable: no JSON object with keys question, answer")


def test_repeat_and_rouge_rejection_then_keep() -> None:
    known = "Ann has 12 red apples and 7 green apples in her basket and she buys 3 more red apples at the market today"
    near = known.replace("today", "tonight")
    assert rouge_l(known, near) > 0.95
    replies = iter([known.upper() + "!", near, "Bob has 4 pears; he eats one. How many are left?"])
    backend = ScriptedBackend([(".", lambda r: json.dumps({"question": next(replies), "answer": "x"}))])
    q = Strategy("llm2llm", "chat", client=backend, max_tries=3)
    items = q(PROFILE, [_failure(1)], budget=1, round=1, known=[known])
    assert [i["instruction"] for i in items] == ["Bob has 4 pears; he eats one. How many are left?"]
    assert len(backend.calls) == 3 and q.rejected == []

    replies2 = iter([near, known])
    backend2 = ScriptedBackend([(".", lambda r: json.dumps({"question": next(replies2), "answer": "x"}))])
    q2 = Strategy("llm2llm", "chat", client=backend2, max_tries=2)
    assert q2(PROFILE, [_failure(1)], budget=1, round=1, known=[known]) == []  # the pool's questions are known
    assert q2.rejected[0]["reason"] == "repeat of a known question"
    backend3 = ScriptedBackend([(".", json.dumps({"question": near, "answer": "x"}))])
    q3 = Strategy("llm2llm", "chat", client=backend3, max_tries=1)
    q3(PROFILE, [_failure(1)], budget=1, round=1, known=[known])
    assert str(q3.rejected[0]["reason"]).startswith("too similar: ROUGE-L 0.96 > 0.95 to 'Ann has 12")


# -- Questioner: autodetect -------------------------------------------------------------------------
def _scored(point: str, scores: list[float]) -> list[dict[str, object]]:
    return [
        {
            "id": f"{point}-{k}",
            "instruction": f"{point} probe {k} score {s:g}",
            "score": s,
            "correct": s >= 3.1,
            "knowledge_point": point,
            "skill": "arithmetic",
            "difficulty": 1,
        }
        for k, s in enumerate(scores)
    ]


def _node(point: str, acc: float) -> NodeStats:
    return NodeStats(point, point, None, 10, round(acc * 10), acc, 0.0, 1.0, [], acc < 0.8)


def test_autodetect_targets_weak_and_new_points_with_past_items() -> None:
    count = _counter()
    backend = ScriptedBackend(
        [(".", lambda r: json.dumps({"key_point": "carries", "prompt": f"Hard prompt {next(count)}: add 999 and 1"}))]
    )
    profile = WeaknessProfile(
        round=2,
        nodes=[_node("add", 0.3), _node("sub", 1.0)],
        refinements=[
            {
                "kind": "new_point",
                "point": "carry_chains",
                "category": "arithmetic",
                "description": "long chains of carries",
                "why": "",
                "round": 1,
            }
        ],
    )
    records = _scored("add", [1, 2, 5, 8, 9, 2]) + _scored("sub", [9, 9])
    failures = [r for r in records if not r["correct"]]
    successes = [r for r in records if r["correct"]]
    q = Strategy("autodetect", "chat", client=backend, taxonomy=TAXONOMY, per_point=2)
    items = q(profile, failures, budget=10, round=2, successes=successes)

    assert [i["knowledge_point"] for i in items] == ["carry_chains", "carry_chains", "add", "add"]
    assert all(i["reference"] is None and "key point: carries" in str(i["why"]) for i in items)
    assert items[2]["parent_id"] == "add" and items[2]["difficulty"] == 1
    seed_prompt, search_prompt = _user(backend.calls[0]), _user(backend.calls[2])
    assert "long chains of carries" in seed_prompt and "Previous prompts" not in seed_prompt
    shown = re.findall(r"Score: (\S+)", search_prompt)
    assert len(shown) == 5 and sum(float(s) <= 3 for s in shown) >= 2  # 2 bad + 3 random of the 6
    assert shown == sorted(shown, key=float, reverse=True)  # worst nearest the request
    assert "aimed at a lower score" in search_prompt and "add two numbers" in search_prompt
    assert backend.calls[2].sampling.seed != backend.calls[3].sampling.seed  # same node: distinct requests
    assert len({(json.dumps(c.messages), c.sampling.seed) for c in backend.calls}) == 4

    few_bad = _scored("add", [9, 8, 7, 6, 5, 4, 2])  # one bad case only: show the 5 lowest
    backend2 = ScriptedBackend([(".", json.dumps({"key_point": "k", "prompt": "Another hard prompt"}))])
    Strategy("autodetect", "chat", client=backend2, taxonomy=[], per_point=1)(
        WeaknessProfile(round=1, nodes=[_node("add", 0.5)]), [], budget=1, round=1, successes=few_bad
    )
    assert re.findall(r"Score: (\S+)", _user(backend2.calls[0])) == ["7", "6", "5", "4", "2"]


# -- Questioner: LLMs-as-Instructors ------------------------------------------------------------------
def _list_reply(req: ChatRequest) -> str:
    n = int(re.search(r"write (\d+) similar", _user(req))[1])  # type: ignore[index]
    parent = re.search(r"\[QUESTION\] Question number (\d+)", _user(req))[1]  # type: ignore[index]
    return json.dumps(
        [{"question": f"Variant {k} of item {parent}: what is {k} and {parent}?", "answer": "1"} for k in range(n)]
    )


def test_instructors_learning_from_error_splits_the_budget() -> None:
    backend = ScriptedBackend([("STUDENT'S WRONG ANSWER", _list_reply)])
    items = Strategy("instructors", "chat", client=backend)(PROFILE, [_failure(i) for i in range(3)], budget=7, round=1)
    assert [sum(i["parent_id"] == f"p{k}" for i in items) for k in range(3)] == [3, 3, 1]  # ceil(7/3), capped
    first = _user(backend.calls[0])
    assert "[STUDENT'S WRONG ANSWER] wrong-0" in first and "write 3 similar questions" in first
    assert "answered these questions correctly" not in first
    assert items[0]["reference"] == "1" and items[0]["strategy"] == "instructors"


def test_instructors_contrast_shows_nearest_right_answers() -> None:
    backend = ScriptedBackend([("STUDENT'S WRONG ANSWER", _list_reply)])
    successes = [
        {"id": "s1", "instruction": "Question number 40: what is 40 plus 50?", "correct": True},
        {"id": "s2", "instruction": "Reverse the list: a b c", "correct": True},
        {"id": "s3", "instruction": "Question number 41: what is 41 plus 51?", "correct": True},
    ]
    q = Strategy("instructors", "chat", client=backend, contrast=True, k=2)
    items = q(PROFILE, [_failure(5)], budget=2, round=1, successes=successes)
    assert len(items) == 2
    system, user = backend.calls[0].messages[0]["content"], _user(backend.calls[0])
    assert "boundary" in system
    assert "[QUESTION] Question number 40" in user and "[QUESTION] Question number 41" in user
    assert "Reverse the list" not in user
    assert user.index("answered these questions correctly") < user.index("Question number 5")


# -- Examiner ---------------------------------------------------------------------------------------
PROPOSE = "propose one new test point"
JUDGE = "Judge whether the new test point"


def _proposer() -> tuple[str, object]:
    count = _counter()
    return PROPOSE, lambda r: json.dumps(
        {"name": f"Point {next(count)}", "category": "arithmetic", "description": "d", "explanation": "seen in cases"}
    )


def test_examiner_stats_match_world_examiner_and_use_scores() -> None:
    evals = [{"knowledge_point": "add", "correct": i < 3} for i in range(10)] + [
        {"knowledge_point": "sub", "correct": True} for _ in range(4)
    ]
    backend = ScriptedBackend([(PROPOSE, "[[Stop]]")])
    ours = AutoDetectExaminer(backend, TAXONOMY).examine(evals, 1, None)
    world = WorldExaminer().examine(evals, 1, None)
    assert ours.nodes == world.nodes
    scored = [{"knowledge_point": "add", "score": s, "correct": True} for s in (2, 5, 3.1, 3.0)]
    (node,) = AutoDetectExaminer(backend, TAXONOMY).examine(scored, 1, None).nodes
    assert (node.correct, node.n, node.weak) == (2, 4, True)  # score < 3.1 is a failure whatever `correct` says


def test_examiner_grows_the_taxonomy_with_an_accepted_point() -> None:
    backend = ScriptedBackend([_proposer(), (JUDGE, "[[Yes]]")])
    ex = AutoDetectExaminer(backend, TAXONOMY, domain="arithmetic")
    evals = _scored("add", [1, 2, 9]) + [dict(r, prediction="PRED-" + str(r["id"])) for r in _scored("sub", [2, 8])]
    profile = ex.examine(evals, 1, None)
    assert profile.refinements == [
        {
            "round": 1,
            "point": "point_0",
            "category": "arithmetic",
            "description": "d",
            "kind": "new_point",
            "why": "seen in cases",
        }
    ]
    assert [p["id"] for p in ex.taxonomy(profile.refinements)] == ["add", "sub", "point_0"]
    propose = _user(backend.calls[0])
    assert "mean score 4.0 over 3 items" in propose and "mean score 5.0 over 2 items" in propose
    assert "Response: PRED-sub-0" in propose and propose.count("Test point:") == 2
    # up to 2 bad cases per point: add's two failures (scores 1 and 2), never its success (score 9)
    assert "Prompt: add probe 0 score 1" in propose and "Prompt: add probe 1 score 2" in propose
    assert "add probe 2 score 9" not in propose and "Prompt: sub probe 1 score 8" not in propose
    assert "point_0" in _user(backend.calls[1])
    # the next round proposes again (one point per round) and can see the new point
    profile2 = ex.examine(evals, 2, profile)
    assert [r["point"] for r in profile2.refinements] == ["point_0", "point_1"]
    assert "point_0 (arithmetic): d -- not tested yet" in _user(backend.calls[2])


def test_examiner_stops_after_three_rejections_across_resumes() -> None:
    backend = ScriptedBackend([_proposer(), (JUDGE, "[[No]] too close to add")])
    ex = AutoDetectExaminer(backend, TAXONOMY)
    evals = _scored("add", [1, 9])
    profile = ex.examine(evals, 1, None)
    assert [r["kind"] for r in profile.refinements] == ["rejected"] * 3
    assert profile.refinements[0]["why"] == "judge: [[No]] too close to add"
    assert len(backend.calls) == 6 and len({c.sampling.seed for c in backend.calls if PROPOSE in _user(c)}) == 3
    resumed = WeaknessProfile.from_json(json.loads(json.dumps(profile.to_json())))
    assert ex.examine(evals, 2, resumed).refinements == profile.refinements and len(backend.calls) == 6
    # two rejections on record: one more ends growth within this round
    two = WeaknessProfile(round=1, nodes=[], refinements=profile.refinements[:2])
    assert len(ex.examine(evals, 2, two).refinements) == 3 and len(backend.calls) == 8


def test_examiner_caps_new_points_and_honours_stop() -> None:
    accepted = [
        {"kind": "new_point", "point": f"n{i}", "category": "c", "description": "d", "round": 1} for i in range(6)
    ]
    backend = ScriptedBackend([_proposer(), (JUDGE, "[[Yes]]")])
    ex = AutoDetectExaminer(backend, TAXONOMY)
    full = ex.examine([], 7, WeaknessProfile(round=6, nodes=[], refinements=accepted))
    assert len(full.refinements) == 6 and backend.calls == []
    five = ex.examine([], 6, WeaknessProfile(round=5, nodes=[], refinements=accepted[:5]))
    assert [r["kind"] for r in five.refinements] == ["new_point"] * 6 and len(backend.calls) == 2
    stopper = ScriptedBackend([(PROPOSE, "The taxonomy is comprehensive. [[Stop]]")])
    stopped = AutoDetectExaminer(stopper, TAXONOMY).examine([], 1, None)
    assert [r["kind"] for r in stopped.refinements] == ["stop"]
    assert AutoDetectExaminer(stopper, TAXONOMY).examine([], 2, stopped).refinements == stopped.refinements
    assert len(stopper.calls) == 1


def test_examiner_unparsable_proposals_count_as_rejections(tmp_path: Path) -> None:
    backend = ScriptedBackend([(PROPOSE, "hmm, let me think")])
    ex = AutoDetectExaminer(backend, TAXONOMY, max_tries=2)
    profile = ex.examine(_scored("add", [1]), 1, None)
    assert [r["kind"] for r in profile.refinements] == ["rejected"] * 3
    assert str(profile.refinements[0]["why"]).startswith("unparsable proposal: neither a JSON proposal")
    assert len(backend.calls) == 6 and len({json.dumps(c.sampling.to_json()) for c in backend.calls}) == 6
    path = tmp_path / "tax.json"
    path.write_text(json.dumps({"points": [{"id": "add", "description": "add two numbers"}]}))
    assert load_taxonomy(path) == [{"id": "add", "category": "general", "description": "add two numbers"}]


# -- Teacher --------------------------------------------------------------------------------------------
def test_teacher_single_answer_and_bounded_retry() -> None:
    backend = ScriptedBackend([("2\\+2", "4"), ("silent", "  ")], model="big-teacher")
    out = LLMTeacher(backend, max_tries=2).answer(
        [{"id": "a", "instruction": "2+2?"}, {"id": "b", "instruction": "silent"}]
    )
    assert (out[0]["output"], out[0]["teacher"]) == ("4", "big-teacher")
    assert out[1]["output"] == "" and str(out[1]["teacher_note"]).startswith("no answer after 2 tries: empty answer")
    assert [c.sampling.temperature for c in backend.calls] == [0.0, 0.0, 0.7]
    assert backend.calls[0].messages[0]["role"] == "system" and backend.calls[0].messages[1]["content"] == "2+2?"


def _last_number(text: str) -> str | None:
    found = re.findall(r"-?\d+", text)
    return found[-1] if found else None


def _voter(texts: list[str]) -> ScriptedBackend:
    it = iter(texts)
    return ScriptedBackend([(".", lambda r: next(it))])


def test_teacher_self_consistency_majority_and_disagreement() -> None:
    teacher = LLMTeacher(
        _voter(["5+7 = 12", "so 12", "it is 13", "no idea", "answer: 12."]), samples=5, extract=_last_number
    )
    (out,) = teacher.answer([{"id": "a", "instruction": "5+7?"}])
    assert (out["output"], out["votes"], out["agreement"]) == ("5+7 = 12", {"12": 3, "13": 1}, 0.6)
    assert teacher.client.calls[0].sampling.n == 5 and teacher.client.calls[0].sampling.temperature == 0.7

    low = LLMTeacher(_voter(["1", "1", "2", "3", "4"]), samples=5, extract=_last_number, min_agreement=0.5)
    (weak,) = low.answer([{"id": "b", "instruction": "?"}])
    assert weak["output"] == "" and weak["teacher_note"] == "agreement 0.40 < 0.5 (majority '1', 2 of 5)"
    tie = LLMTeacher(_voter(["1", "2", "1", "2"]), samples=4, extract=_last_number, min_agreement=0.5)
    assert tie.answer([{"id": "c", "instruction": "?"}])[0]["teacher_note"] == "tie between '1' and '2' (2 each)"

    kept, dropped = _curate(ScriptedBackend([]), [{**weak, "instruction": "?"}], None)
    assert kept == [] and dropped[0]["drop_reason"].startswith(
        "verify: malformed: no answer from the teacher (agreement 0.40"
    )


# -- Assessor -------------------------------------------------------------------------------------------
def _curate(backend: object, items: list[dict], verifier: object) -> tuple[list[dict], list[dict]]:
    """The loop's default curators with a chat model: the task's verification, then the 1-5 rating."""
    parts = Parts(client=backend, task=SimpleNamespace(max_item_chars=None, verifier=verifier), max_tries=2)
    kept, dropped = [], []
    for name in ("verify", "quality"):
        cls = plugins.get("curator", name)
        kept, out = cls(cls.Config(name=name), parts).curate(items if name == "verify" else kept, Inputs(cls, {}))
        dropped += out
    return kept, dropped


def _verifier(prediction: str, reference: str, record: dict) -> bool | None:
    return prediction.strip() == reference.strip() if reference.isdigit() else None


def test_assessor_grade_verifier_then_judge() -> None:
    backend = ScriptedBackend(
        [
            ("\\[Question\\]\nq-good", "Correct and clear. Rating: [[8]]"),
            ("\\[Question\\]\nq-bad", "Wrong. [[2]]"),
            ("\\[Question\\]\nq-garbage", "I refuse"),
        ]
    )
    records = [
        {"id": "1", "instruction": "q-digit", "output": "7", "prediction": "7"},
        {"id": "2", "instruction": "q-digit", "output": "7", "prediction": "8"},
        {"id": "3", "instruction": "q-good", "output": "Paris", "prediction": "It is Paris."},
        {"id": "4", "instruction": "q-bad", "output": "Paris", "prediction": "Lyon"},
        {"id": "5", "instruction": "q-garbage", "output": "Paris", "prediction": "?"},
    ]
    graded = LLMAssessor(backend, verifier=_verifier, max_tries=2).grade(records)
    got = [(g["correct"], g["score"], g["error_type"]) for g in graded]
    assert got == [
        (True, None, None),
        (False, None, "wrong"),
        (True, 8.0, None),
        (False, 2.0, "judged 2 < 3.1"),
        (False, None, "unjudged"),
    ]
    assert graded[0]["judge"] == "verifier" and graded[2]["judge"] == "Correct and clear. Rating: [[8]]"
    first = _user(backend.calls[0])
    assert "Reference Answer]\nParis\n" in first and "Assistant's Answer]\nIt is Paris.\n" in first
    assert len(backend.calls) == 4 and backend.calls[0].sampling.temperature == 0.0  # the garbage one twice
    assert backend.calls[-1].sampling.seed == 1


def test_assessor_curation_drops_with_reasons() -> None:
    backend = ScriptedBackend(
        [
            ("Answer:\ngood", "Clear and complete.\nScore: 5"),
            ("Answer:\nmeh", "Partly off.\nScore: 2"),
            ("Answer:\ngarbled", "???"),
        ]
    )
    items = [
        {"id": "a", "instruction": "", "output": "x"},
        {"id": "b", "instruction": "q", "output": "", "teacher_note": "tie between '1' and '2' (2 each)"},
        {"id": "c", "instruction": "3+4?", "output": "8", "reference": "7"},
        {"id": "d", "instruction": "q", "output": "meh"},
        {"id": "e", "instruction": "3+4?", "output": "good", "reference": "seven"},
        {"id": "f", "instruction": "q", "output": "garbled"},
    ]
    kept, dropped = _curate(backend, items, _verifier)
    assert [(k["id"], k["quality"]) for k in kept] == [("e", 5.0)]
    assert {d["id"]: d["drop_reason"] for d in dropped} == {
        "a": "verify: malformed: empty instruction",
        "b": "verify: malformed: no answer from the teacher (tie between '1' and '2' (2 each))",
        "c": "verify: teacher answer disagrees with the reference",
        "d": "quality: 2 < 4",
        "f": "quality: unrated: no 'Score: n' in 1-5: '???'",
    }
    assert all(d["kept"] is False for d in dropped)
    assert "Instruction:\nq\n" in _user(backend.calls[0]) and "Score: <rating>" in _user(backend.calls[0])


# -- Through the caching client ---------------------------------------------------------------------
def test_retries_reach_the_model_through_the_call_cache(tmp_path: Path) -> None:
    backend = ScriptedBackend([(".", "not json at all")])
    client = LLMClient(backend, tmp_path / "calls.sqlite")
    Strategy("llm2llm", "chat", client=client, max_tries=3)(PROFILE, [_failure(1)], budget=5, round=1)
    assert len(backend.calls) == 3  # a retry equal to the first try would have been a cache hit
    again = Strategy("llm2llm", "chat", client=client, max_tries=3)
    assert again(PROFILE, [_failure(1)], budget=5, round=1) == []
    assert len(backend.calls) == 3 and str(again.rejected[0]["reason"]).startswith("unparsable")  # re-run: free
    judge = LLMAssessor(client, max_tries=2)
    assert (
        judge.grade([{"id": "x", "instruction": "q", "output": "a", "prediction": "b"}])[0]["error_type"] == "unjudged"
    )
    assert len(backend.calls) == 5


def test_quality_fallbacks_for_ratings_that_never_parse_and_averaged_samples() -> None:
    """Humpback's curation with a judge that cannot judge: an unrated item is dropped (default), kept, or kept only
    where the student's IFD is below 1; several sampled ratings are averaged (keep 5, or >= 4.5 averaged)."""
    backend = ScriptedBackend([("Answer:\ngood", "Fine.\nScore: 5"), ("Answer:\n(low|high)", "I cannot say.")])
    items = [
        {"id": "good", "instruction": "q", "output": "good"},
        {"id": "low", "instruction": "q", "output": "low"},
        {"id": "high", "instruction": "q", "output": "high"},
    ]
    ifd = {"low": 0.7, "high": 1.3}
    scored: list[list[str]] = []

    def student(rows: list[dict], reverse: bool = False) -> list[IFDScore]:
        scored.append([r["id"] for r in rows])
        return [IFDScore(0.5 * ifd[r["id"]], 0.5, ifd[r["id"]]) for r in rows]

    cls = plugins.get("curator", "quality")
    curate = lambda **o: cls(cls.Config(name="quality", **o), Parts(client=backend, max_tries=2)).curate(  # noqa: E731
        items, Inputs(cls, {"student": lambda: student})
    )
    kept, dropped = curate(on_unrated="ifd")
    assert [(k["id"], k["quality"], k.get("quality_fallback")) for k in kept] == [
        ("good", 5.0, None),
        ("low", None, "unrated; student IFD 0.700"),
    ]
    assert dropped[0]["drop_reason"].startswith(
        "quality: unrated (no 'Score: n' in 1-5: 'I cannot say.'); student IFD 1.300"
    )
    assert scored == [["low", "high"]]  # only the unrated items are scored
    kept, dropped = curate(on_unrated="keep")
    assert [k["id"] for k in kept] == ["good", "low", "high"] and dropped == []
    kept, dropped = curate()
    assert [k["id"] for k in kept] == ["good"] and len(dropped) == 2
    # Three sampled ratings averaged: 5, 4, unparsable -> 4.5 >= 4.5 (Humpback's averaged bar).
    replies = iter(["Score: 5", "Score: 4", "no"])
    sampler = ScriptedBackend([("Answer:", lambda req: next(replies))])
    part = Parts(client=sampler, max_tries=2)
    kept, _ = cls(cls.Config(name="quality", samples=3, min_quality=4.5), part).curate(items[:1], Inputs(cls, {}))
    assert [k["quality"] for k in kept] == [4.5]
    (request,) = sampler.calls
    assert (request.sampling.n, request.sampling.temperature) == (3, 0.7)
