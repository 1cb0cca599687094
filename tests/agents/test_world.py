from __future__ import annotations

import random

import pytest

from agents.tasks.world import (
    KNOWLEDGE_POINTS,
    LEVELS,
    generate_items,
    get_point,
    is_correct,
    normalize_answer,
    points_for,
    sample_item,
    solve,
)


def test_same_seed_same_items_and_splits_differ() -> None:
    counts = {p: 5 for p in points_for()}
    a = generate_items(3, counts, 2, split="seed")
    assert a == generate_items(3, counts, 2, split="seed")
    b = generate_items(3, counts, 2, split="test")
    assert [x["instruction"] for x in a] != [x["instruction"] for x in b]


@pytest.mark.parametrize("level", LEVELS)
def test_the_oracle_solves_every_generated_item(level: int) -> None:
    rng = random.Random(level)
    for kp in KNOWLEDGE_POINTS:
        for _ in range(40):
            q, a = kp.generate(rng, level)
            assert solve(q) == a, (kp.id, q, a)


def test_exclude_keeps_splits_disjoint_and_strict_errors() -> None:
    seed = generate_items(0, {"mul.table": 150}, 2, split="seed", strict=False)
    test = generate_items(0, {"mul.table": 40}, 2, split="test", exclude={s["instruction"] for s in seed}, strict=False)
    assert not {s["instruction"] for s in seed} & {t["instruction"] for t in test}
    with pytest.raises(RuntimeError, match="too few distinct items"):
        generate_items(0, {"num.next": 5000}, 1)


def test_facets_and_errors() -> None:
    q, a = sample_item(random.Random(0), "cmp.max", 2, facet="first is the answer")
    assert get_point("cmp.max").facet(q, a) == "first is the answer"
    with pytest.raises(KeyError, match="known: add.no_carry"):
        get_point("nope")
    with pytest.raises(ValueError, match="difficulty 7"):
        sample_item(random.Random(0), "cmp.max", 7)
    assert solve("What is the capital of France?") is None


def test_normalisation() -> None:
    assert normalize_answer("  42.\nmore text") == "42"
    assert is_correct("u  a y", "u a y")
    assert not is_correct("", "0")


def test_oracle_first_answers_what_the_world_solves_and_hands_the_rest_on_in_order() -> None:
    from agents.teacher import OracleFirst

    class Fallback:
        def __init__(self) -> None:
            self.asked: list[str] = []

        def answer(self, candidates: list[dict]) -> list[dict]:
            self.asked += [c["instruction"] for c in candidates]
            return [{**c, "output": "a model's answer", "teacher": "llm"} for c in candidates]

    fallback = Fallback()
    questions = ["What is 48 + 37?", "Plan a party.", "What is 9 * 7?", "Tell me a joke."]
    got = OracleFirst(fallback).answer([{"instruction": q} for q in questions])
    assert [g["output"] for g in got] == ["85", "a model's answer", "63", "a model's answer"]
    assert [g["teacher"] for g in got] == ["world-oracle", "llm", "world-oracle", "llm"]
    assert fallback.asked == ["Plan a party.", "Tell me a joke."]  # one batch, only what the oracle cannot solve
