"""The one question key: what counts as the same question everywhere (dedup, novelty, decontamination)."""

from __future__ import annotations

import random

import pytest

from agents.tasks.world import points_for, sample_item
from core.text import cut_at_stop, question_key


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("What is 7 + 5?", "What is 7 - 5?"),  # the operator is the question
        ("What is 7 * 5?", "What is 7 / 5?"),
        ("Is 3 < 4?", "Is 3 > 4?"),
        ("What is 12 + 5?", "What is 1 + 25?"),  # the numbers are the question
        ("Is 3.5 larger than 35?", "Is 35 larger than 35?"),  # a decimal point is part of its number
        ("What is 2 + 2?", "What is 2 + 3?"),
    ],
)
def test_different_questions_have_different_keys(a: str, b: str) -> None:
    assert question_key(a) != question_key(b)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("What is 7 + 5?", "what is 7 + 5"),  # case and the question mark
        ("What is 7 + 5?", "  What   is 7 + 5 ?  "),  # spacing
        ("What is 7+5?", "What is 7 + 5?"),  # spacing around a symbol
        ("Hello, world!", "hello world"),  # punctuation that is not arithmetic
        ("Ｗhat is ７ + ５?", "What is 7 + 5?"),  # Unicode compatibility forms (full-width letters and digits)
        ("Count the a's in 'banana'.", "count the a s in banana"),
    ],
)
def test_the_same_question_written_differently_has_one_key(a: str, b: str) -> None:
    assert question_key(a) == question_key(b)


def test_on_the_task_world_the_key_tells_apart_exactly_the_distinct_questions() -> None:
    # The world's generators write each question one way, so two of its questions are the same question
    # exactly when their texts are equal; the key must agree (the default run's draws depend on it).
    rng = random.Random(0)
    texts = {sample_item(rng, p, level)[0] for p in points_for() for level in (1, 2, 3) for _ in range(300)}
    assert len(texts) > 5000
    assert len({question_key(t) for t in texts}) == len(texts)


def test_cut_at_stop_takes_the_earliest_stop() -> None:
    assert cut_at_stop("12\nmore<|end|>", ["<|end|>", "\n"]) == "12"
    assert cut_at_stop("no stop here", ["\n", ""]) == "no stop here"
