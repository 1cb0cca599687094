from __future__ import annotations

import random

import pytest

from agents.similarity import RougeIndex, TfidfIndex, lcs_length, max_rouge_l, rouge_l, tokens


def _lcs_dp(a: list[str], b: list[str]) -> int:
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def test_rouge_l_hand_computed() -> None:
    # LCS "the cat on the mat" = 5 of 6 and 5 tokens: F1 = 2 * 5 / (6 + 5)
    assert rouge_l("The cat sat on the mat.", "the cat on the mat") == pytest.approx(10 / 11)
    # LCS "b d" = 2 of 4 and 3 tokens: F1 = 4 / 7
    assert rouge_l("a b c d", "b d e") == pytest.approx(4 / 7)
    assert rouge_l("Hello, World!", "hello world") == 1.0
    assert rouge_l("", "anything") == 0.0 and rouge_l("x y", "z") == 0.0
    assert rouge_l("a b c d", "b d e") == rouge_l("b d e", "a b c d")
    assert tokens("What's 12+7?") == ["what", "s", "12", "7"]
    assert tokens("  What is 2+2 ? ") == ["what", "is", "2", "2"]  # ROUGE's tokens; question_key keeps the '+'


def test_bit_parallel_lcs_matches_dynamic_programming() -> None:
    rng = random.Random(0)
    for _ in range(500):
        a = [rng.choice("abcde") for _ in range(rng.randint(0, 30))]
        b = [rng.choice("abcde") for _ in range(rng.randint(0, 30))]
        assert lcs_length(a, b) == _lcs_dp(a, b)


def test_rouge_index_equals_brute_force_and_stops_early() -> None:
    rng = random.Random(1)
    words = tokens("how many apples does ann have after she gives away sells buys the of a to")
    corpus = [" ".join(rng.choice(words) for _ in range(rng.randint(4, 15))) for _ in range(300)]
    index = RougeIndex(corpus)
    for _ in range(20):
        query = " ".join(rng.choice(words) for _ in range(rng.randint(4, 15)))
        brute = max(rouge_l(query, c) for c in corpus)
        score, where = index.best(query)
        assert score == pytest.approx(brute) and where is not None
        assert rouge_l(query, corpus[where]) == pytest.approx(brute)
        assert max_rouge_l(query, corpus) == pytest.approx(brute)
    hit, _ = index.best(corpus[7], stop_above=0.5)
    assert hit > 0.5
    assert RougeIndex().best("anything") == (0.0, None)
    assert index.best("zebra quantum") == (0.0, None)  # shares no token with any text


def test_tfidf_nearest_neighbours() -> None:
    texts = [
        "What is 12 plus 7?",
        "What is 12 times 7?",
        "Reverse the list: a b c",
        "Sort the list: c a b",
        "What is 13 plus 8?",
    ]
    index = TfidfIndex(texts)
    nearest = index.nearest("What is 14 plus 9?", k=5)
    # Only texts sharing a term come back; "plus" outranks "times"; the list texts share nothing.
    assert [i for i, _ in nearest] == [0, 4, 1]
    assert 1 > nearest[0][1] > nearest[2][1] > 0
    assert len(index.nearest("What is 14 plus 9?", k=2)) == 2
    assert [i for i, _ in index.nearest("Sort the list: b c a", k=1)] == [3]
    assert index.nearest("What is 12 plus 7?", k=1)[0][0] != 0  # the same question is not its own neighbour
    assert index.nearest("zebra", k=3) == []
