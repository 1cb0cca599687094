"""ReAlign: the task type (the task's own, or the model's pick from the list), the adaptive rewrite prompt as
rendered, the longest of two revisions, every post-filter as a named reason, and the answer still verified."""

from __future__ import annotations

import re
from types import SimpleNamespace

import pytest

from agents.llm.guides import REALIGN_REWRITE
from agents.llm.scripted import ScriptedBackend
from agents.llm.types import ChatRequest, ChatResult
from agents.refiners.realign import ReAlignRefiner, filter_rewrite, has_code, parse_revision, task_formats, tokens
from agents.tasks.math import extract_answer
from core.plugins import Inputs, Parts

QUESTION = "Natalia sold 48 clips in April and half as many in May. How many clips did she sell in all?"
ANSWER = "In May she sold 48/2 = 24 clips.\nIn all she sold 48+24 = 72 clips.\n#### 72"
LONG = (
    "The question asks for the clips sold over two months.\n1. May: 48 / 2 = 24 clips.\n2. In all: 48 + 24 = 72 "
    "clips.\nSo she sold 72 clips in April and May together.\n#### 72"
)


class _Samples:
    """A chat backend whose reply to each rewrite request is a given list of samples."""

    kind, model = "scripted", "scripted"

    def __init__(self, samples: list[str], classify: str = "math_puzzles") -> None:
        self.samples, self.classify, self.calls = samples, classify, []

    def chat(self, requests: list[ChatRequest]) -> list[ChatResult]:
        self.calls += list(requests)
        out = []
        for r in requests:
            texts = [self.classify] if r.agent == "realign-classify" else self.samples[: r.sampling.n]
            out.append(ChatResult(texts=texts, prompt_tokens=1, completion_tokens=1))
        return out

    def close(self) -> None:
        pass


def _math_task() -> SimpleNamespace:
    def verifier(answer: str, reference: str, record: dict) -> bool | None:
        return extract_answer(answer) == extract_answer(reference)

    return SimpleNamespace(has_oracle=False, kind="math", verifier=verifier, shape_answer=lambda item: item)


def _refine(backend: object, task: object = None, **options: object) -> list[dict]:
    refiner = ReAlignRefiner(ReAlignRefiner.Config(name="realign", **options), Parts(client=backend, task=task))
    item = {"id": "x", "instruction": QUESTION, "input": "", "output": ANSWER}
    return refiner.refine([item], Inputs(ReAlignRefiner, {}))


def test_the_longest_revision_replaces_the_answer_and_the_prompt_is_the_adaptive_one() -> None:
    backend = _Samples([f"Reasoning: fits.\nRevised response: {LONG}", f"Reasoning: ok\nRevised response: {ANSWER}"])
    (item,) = _refine(backend, _math_task())
    assert item["output"] == LONG and item["original_output"] == ANSWER
    assert item["realign"] == {"task": "math_puzzles", "tag": "rewrite", "why": None}
    (request,) = backend.calls  # the task's kind decided the type: no classifier call
    system, user = request.messages[0]["content"], request.messages[1]["content"]
    assert "copy the assistant's response unchanged" in system and system.endswith(
        '"Revised response: <the response>".'
    )
    assert user.startswith(
        f"[Question start]\n{QUESTION}\n[Question end]\n\n[Response start]\n{ANSWER}\n[Response end]"
    )
    assert user.endswith(f"[Format start]\n{task_formats()['math_puzzles']['format']}\n[Format end]")
    assert (request.sampling.temperature, request.sampling.n) == (0.3, 2)
    # The guide (used where `teacher.llm.guided` is on) admits the replies the parser reads, and only those.
    assert request.sampling.guide == REALIGN_REWRITE
    pattern = re.compile(REALIGN_REWRITE.spec)
    assert (
        pattern.fullmatch(f"Reasoning: fits.\nRevised response: {LONG}")
        and parse_revision(f"Reasoning: fits.\nRevised response: {LONG}") == LONG
    )
    assert not pattern.fullmatch(f"Revised response: {LONG}") and not pattern.fullmatch(
        "Reasoning: x\nRevised response: "
    )
    backend = _Samples([f"Revised response: {LONG}"])
    _refine(backend, _math_task(), adaptive=False)
    assert "copy the assistant's response" not in backend.calls[0].messages[0]["content"]


def test_the_model_classifies_where_the_task_cannot_and_unknown_names_are_default() -> None:
    backend = _Samples([f"Revised response: {LONG}"], classify="Math_puzzles.")
    (item,) = _refine(backend, None)
    assert item["realign"]["task"] == "math_puzzles" and backend.calls[0].agent == "realign-classify"
    prompt = backend.calls[0].messages[0]["content"]
    assert "[Existing tasks start]\nmath_puzzles: a math word problem" in prompt and prompt.endswith("Task name:")
    assert backend.calls[0].sampling.max_tokens == 50
    for reply, task in [("a joke", "default"), ("story_generation", "story_generation")]:
        (item,) = _refine(_Samples([f"Revised response: {LONG}"], classify=reply), None)
        assert item["realign"] == {"task": task, "tag": "original", "why": f"task {task!r} is not rewritten"}
        assert item["output"] == ANSWER


def test_a_wrong_rewritten_answer_and_an_unparsed_reply_keep_the_original() -> None:
    wrong = LONG.replace("#### 72", "#### 73").replace("= 72", "= 73")
    (item,) = _refine(_Samples([f"Revised response: {wrong}"]), _math_task())
    assert item["output"] == ANSWER and item["realign"]["why"] == "the task's code finds the rewritten answer wrong"
    backend = _Samples(["Here is a better version: ..."])
    (item,) = _refine(backend, _math_task(), tries=2)
    assert item["realign"]["why"] == "unparsed: no 'Revised response:'" and len(backend.calls) == 2


NO_PLAN = "a planning format for a question that asks for no plan"
CODE, HALF = "code in only one of original and rewrite", "the rewrite keeps 0.5 of the tokens or fewer"


@pytest.mark.parametrize(
    ("original", "rewrite", "question", "task", "why"),
    [
        ("B", "The answer is (B), since ...", "Which one?", "open_qa", None),
        ("B", "The answer is Because ...", "Which one?", "open_qa", "the one-letter answer is lost"),
        ("True", "x", "Is it?", "fact_verification", None),  # True/False passes through
        ("a b c d e f", "### Response: a b c d e f g", "q", "open_qa", "template words leaked into the rewrite"),
        ("a b c d e f", "Revised response: a b c d e f", "q", "open_qa", "template words leaked into the rewrite"),
        ("go to x then y", "Goals: x.\n1. go to x\n2. y", "Schedule my day", "planning", NO_PLAN),
        ("go to x then y", "Goals: x.\n1. go to x\n2. y", "Make a plan for my day", "planning", None),
        ("def f():\n    return 1", "f returns one", "code?", "code_generation", CODE),
        ("it is one", "```python\nprint(1)\n```", "code?", "code_generation", CODE),
        ("one two three four five six seven", "one two three", "q", "open_qa", HALF),
        ("one two three four five six seven", "one two three four five", "q", "open_qa", None),
    ],
)  # fmt: skip
def test_post_filters_are_realigns(original: str, rewrite: str, question: str, task: str, why: str | None) -> None:
    assert filter_rewrite(original, rewrite, question, task) == why


def test_tokens_and_code_detection() -> None:
    assert tokens("48/2 = 24 clips.") == 7 and has_code("x\n```\ncode\n```") and has_code("def f(x): return x")
    assert not has_code("define the return policy") and not has_code("``` unclosed")


def test_the_task_world_keeps_its_short_answer() -> None:
    world = SimpleNamespace(
        has_oracle=True,
        oracle=lambda q: "72",
        verifier=lambda a, r, rec: a.strip().endswith(r),
        shape_answer=lambda item: {**item, "output": "72"},
    )
    refiner = ReAlignRefiner(
        ReAlignRefiner.Config(name="realign"),
        Parts(client=ScriptedBackend([(".", "Revised response: First, 48 / 2 = 24. Then 48 + 24 = 72")]), task=world),
    )
    (item,) = refiner.refine([{"id": "x", "instruction": QUESTION, "output": "72"}], Inputs(ReAlignRefiner, {}))
    assert item["output"] == "72" and item["realign"]["tag"] == "original"
    assert item["realign"]["why"].startswith("the task trains on the short answer") and "realign_rewrite" in item
