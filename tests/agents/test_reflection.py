"""Selective Reflection-Tuning: the reflection prompts as rendered, the reference's parse and fall-backs, the task's
checks on variants, and every selection rule on scores made to order (IFD and r-IFD as perplexity ratios)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from agents.llm.scripted import ScriptedBackend
from agents.refiners.reflection import ReflectionRefiner, parse_instruction_reflection, parse_response_reflection
from agents.selectors.reflection import SelectiveReflectionSelector
from agents.tasks.world import solve
from core.ifd import IFDScore
from core.plugins import Inputs, Parts
from core.records import drop_reason_key

ITEM = {"id": "r001-x-00000", "instruction": "What is 48 + 37?", "input": "", "output": "85", "reference": "85"}


def _world() -> SimpleNamespace:
    return SimpleNamespace(
        has_oracle=True,
        oracle=solve,
        verifier=lambda answer, reference, record: answer.strip() == reference.strip(),
        shape_candidate=lambda item: item,
        shape_answer=lambda item: item,
    )


def _refine(replies: dict[str, str], task: object = None, **options: object) -> tuple[list[dict], ScriptedBackend]:
    """The refiner over ITEM, with a reply per kind of request ('instruction', 'response', 'response-q')."""

    def reply(request) -> str:
        user = request.messages[-1]["content"]
        if "[New Instruction]" in user:
            return replies["instruction"]
        return replies["response-q" if "48 + 37" not in user else "response"]

    backend = ScriptedBackend([(".", reply)])
    refiner = ReflectionRefiner(
        ReflectionRefiner.Config(name="reflection", **options), Parts(client=backend, task=task)
    )
    return refiner.refine([dict(ITEM)], Inputs(ReflectionRefiner, {})), backend


def test_prompts_are_rendered_with_the_reference_structure_and_decoded_greedily() -> None:
    replies = {
        "instruction": "Too easy.\n[New Instruction] What is 148 + 237? [End]\n[New Answer] 385 [End]",
        "response": "Terse.\n[Better Answer] 85 [End]",
        "response-q": "Fine.\n[Better Answer] 385 [End]",
    }
    (out,), backend = _refine(replies, task=_world())
    first = backend.calls[0]
    assert first.messages[0]["content"].startswith("You are a careful and exacting assistant")
    user = first.messages[1]["content"]
    assert user.startswith("[Instruction]\nWhat is 48 + 37?\n\n[The Start of Answer]\n85\n\n[The End of Answer]\n\n")
    assert "[System]\nPlease do three things" in user and "[New Instruction] your instruction [End]" in user
    assert "[New Answer] your answer [End]" in user and "[Input]" not in user
    assert (first.sampling.temperature, first.agent) == (0.0, "reflection-instruction")
    assert first.sampling.guide is not None and first.sampling.guide.kind == "regex"
    response = [c for c in backend.calls if c.agent == "reflection-response"]
    assert len(response) == 2 and "[Better Answer] your answer [End]" in response[0].messages[1]["content"]
    assert "[Instruction]\nWhat is 148 + 237?" in response[1].messages[1]["content"]  # qa: reflected on q
    r = out["reflection"]
    assert r["q"] == {"instruction": "What is 148 + 237?", "input": "", "output": "385"}
    assert r["qa"]["output"] == "385" and r["a"] == {"instruction": "What is 48 + 37?", "input": "", "output": "85"}
    assert r["missing"] == {} and out["output"] == "85"  # the item itself is unchanged


def test_parse_follows_the_reference_and_falls_back_to_the_original() -> None:
    assert parse_instruction_reflection("x [New Instruction] Q [New Answer] A [End]") == ("Q", "A")
    assert parse_instruction_reflection("New Instruction: Q\nNew Answer: A") == ("Q", "A")
    assert parse_instruction_reflection("[New Instruction] Q [End]") == ("Q", "")
    assert parse_response_reflection("[Better Answer] A is 7.\n\n3.") == "A is 7."
    assert parse_response_reflection("Better Answer: 7") == "7"
    with pytest.raises(ValueError, match="no \\[New Instruction\\]"):
        parse_instruction_reflection("I think the instruction is fine.")
    replies = {
        "instruction": "[New Instruction] your instruction [End]\n[New Answer] N/A [End]",
        "response": "no tags at all",
    }
    (out,), backend = _refine(replies, tries=2)
    missing = out["reflection"]["missing"]
    assert missing["q"] == "fell back to the original: the format's placeholder"
    assert missing["a"].startswith("unparsed: no [Better Answer]") and missing["qa"] == "no new instruction to answer"
    assert {"q", "qa", "a"}.isdisjoint(out["reflection"]) and len(backend.calls) == 3  # one retry of the answer


def test_the_task_checks_each_variant_where_its_code_can_answer() -> None:
    replies = {
        "instruction": "[New Instruction] Explain addition to a child. [End]\n[New Answer] Putting together. [End]",
        "response": "[Better Answer] 86 [End]",
        "response-q": "[Better Answer] 9 [End]",
    }
    (out,), _ = _refine(replies, task=_world())
    missing = out["reflection"]["missing"]
    assert missing == {
        "q": "the task's code cannot answer the new instruction",
        "qa": "no new instruction to answer",
        "a": "the task's code contradicts its answer",
    }
    (out,), _ = _refine(replies, task=None)  # no task code: nothing to check against
    assert set(out["reflection"]) == {"q", "qa", "a", "missing"}


def _score(table: dict[str, tuple[float, float]]):
    """A student whose perplexity ratios are given per instruction: {instruction: (IFD, r-IFD)}."""

    def score(rows, reverse=False):
        out = []
        for row in rows:
            value = table[f"{row['instruction']}|{row['output']}"][1 if reverse else 0]
            if value is None:
                out.append(IFDScore(None, None, None, "truncated"))
            else:
                out.append(IFDScore(1.0 + math.log(value), 1.0, 1.0 + math.log(value)))
        return out

    return score


def _select(table: dict[str, tuple[float, float]], variants: dict[str, tuple[str, str]], **options: object):
    reflection = {v: {"instruction": q, "input": "", "output": a} for v, (q, a) in variants.items()}
    item = {**ITEM, "reflection": {**reflection, "missing": {}}}
    selector = SelectiveReflectionSelector(
        SelectiveReflectionSelector.Config(name="selective_reflection", **options), Parts()
    )
    return selector.select([item], Inputs(SelectiveReflectionSelector, {"student": lambda: _score(table)}))


VARIANTS = {"q": ("Q2", "A2"), "qa": ("Q2", "A3"), "a": ("What is 48 + 37?", "A1")}
ORI = "What is 48 + 37?|85"


@pytest.mark.parametrize(
    ("scores", "options", "want"),
    [
        # Rule 1: q harder than ori, and qa's answer fits better than q's: qa, under IFD < 1 and r-IFD < 1.
        ({ORI: (0.5, 0.6), "Q2|A2": (0.7, 0.8), "Q2|A3": (0.6, 0.5), "What is 48 + 37?|A1": (0.4, 0.1)}, {}, "qa"),
        (
            {ORI: (0.5, 0.6), "Q2|A2": (0.7, 0.8), "Q2|A3": (1.2, 0.5), "What is 48 + 37?|A1": (0.4, 0.1)},
            {},
            "harder instruction, but qa: IFD>=n",
        ),
        (
            {ORI: (0.5, 0.6), "Q2|A2": (0.7, 1.8), "Q2|A3": (0.6, 1.5), "What is 48 + 37?|A1": (0.4, 0.1)},
            {"below_one": False},
            "qa",
        ),
        (
            {ORI: (0.5, 0.6), "Q2|A2": (0.7, 1.8), "Q2|A3": (0.6, 1.5), "What is 48 + 37?|A1": (0.4, 0.1)},
            {},
            "harder instruction, but qa: r-IFD>=n",
        ),
        # q harder but qa no better: the reference adds nothing (and never falls through to rule 2) ...
        (
            {ORI: (0.5, 0.6), "Q2|A2": (0.7, 0.4), "Q2|A3": (0.6, 0.5), "What is 48 + 37?|A1": (0.4, 0.1)},
            {},
            "q only: harder instruction, but its better answer fits it no better",
        ),
        # ... unless keep_q_only.
        (
            {ORI: (0.5, 0.6), "Q2|A2": (0.7, 0.4), "Q2|A3": (0.6, 0.5), "What is 48 + 37?|A1": (0.4, 0.1)},
            {"keep_q_only": True},
            "q",
        ),
        # Rule 2: q not harder; a's answer fits better: a.
        ({ORI: (0.5, 0.6), "Q2|A2": (0.3, 0.8), "Q2|A3": (0.6, 0.5), "What is 48 + 37?|A1": (0.4, 0.1)}, {}, "a"),
        (
            {ORI: (0.5, 0.6), "Q2|A2": (0.3, 0.8), "Q2|A3": (0.6, 0.5), "What is 48 + 37?|A1": (None, 0.1)},
            {},
            "better-fitting answer, but a: no IFD score",
        ),
        # Neither: nothing, or the original with keep_original.
        (
            {ORI: (0.5, 0.6), "Q2|A2": (0.3, 0.8), "Q2|A3": (0.6, 0.5), "What is 48 + 37?|A1": (0.4, 0.9)},
            {},
            "no reflection is harder or fits better",
        ),
        (
            {ORI: (0.5, 0.6), "Q2|A2": (0.3, 0.8), "Q2|A3": (0.6, 0.5), "What is 48 + 37?|A1": (0.4, 0.9)},
            {"keep_original": True},
            "ori",
        ),
    ],
)
def test_selection_rules_are_the_reference(scores: dict, options: dict, want: str) -> None:
    kept, dropped = _select(scores, VARIANTS, **options)
    if want in ("q", "qa", "a", "ori"):
        (item,) = kept
        assert not dropped and item["reflected"] == want and item["kept"] is True
        row = {"ori": ("What is 48 + 37?", "85"), **VARIANTS}[want]
        assert (item["instruction"], item["output"]) == row and "reflection" not in item
        assert (item["original_instruction"], item["original_output"]) == ("What is 48 + 37?", "85")
        assert item["reflection_scores"][want]["ifd"] == pytest.approx(scores[f"{row[0]}|{row[1]}"][0])
    else:
        (item,) = dropped
        assert not kept and drop_reason_key(item) == f"selective_reflection: {want}"
        assert item["instruction"] == "What is 48 + 37?" and "reflection_scores" in item


def test_missing_variants_items_without_reflection_and_top_k() -> None:
    kept, dropped = _select({ORI: (0.5, 0.6), "What is 48 + 37?|A1": (0.4, 0.1)}, {"a": VARIANTS["a"]})
    assert kept[0]["reflected"] == "a" and not dropped
    kept, dropped = _select({ORI: (0.5, 0.6)}, {})  # every reflection missing: nothing to choose from
    assert not kept and drop_reason_key(dropped[0]) == "selective_reflection: no reflected version to choose from"
    kept, dropped = _select({ORI: (0.5, 0.6)}, {}, keep_original=True)
    assert kept[0]["reflected"] == "ori" and not dropped
    selector = SelectiveReflectionSelector(
        SelectiveReflectionSelector.Config(name="selective_reflection", top_k=1), Parts()
    )
    items = [
        {
            **ITEM,
            "id": f"i{k}",
            "instruction": f"Q{k}",
            "output": "o",
            "reflection": {"a": {"instruction": f"Q{k}", "output": "b"}, "missing": {}},
        }
        for k in range(3)
    ]
    table = {f"Q{k}|o": (0.5, 0.9) for k in range(3)} | {f"Q{k}|b": (0.2 + 0.1 * k, 0.1) for k in range(3)}
    plain = {**ITEM, "id": "plain"}
    kept, dropped = selector.select(
        [*items, plain], Inputs(SelectiveReflectionSelector, {"student": lambda: _score({**table, ORI: (0.5, 0.5)})})
    )
    assert [i["id"] for i in kept] == ["i2", "plain"]  # the highest IFD of the reflected, and the unreflected as it was
    assert [drop_reason_key(i) for i in dropped] == ["selective_reflection: below the top n by IFD"] * 2
