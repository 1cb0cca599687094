from __future__ import annotations

import copy
import random
from pathlib import Path

import pytest

from agents.hygiene import (
    HygieneError,
    decontaminate,
    exact_dedup,
    minhash_dedup,
    read_rows,
    rouge_dedup,
    row_text,
    shingles,
)
from core.text import question_key

# A 22-word test question: one changed word in it leaves no shared 13-word run.
ROBE = "A robe takes 2 bolts of blue fiber and half that much white fiber. How many bolts in total does it take?"
DUCKS = (
    "Janet's ducks lay 16 eggs per day. She eats three for breakfast every morning and bakes muffins for her "
    "friends every day with four. She sells the remainder at the farmers' market daily for $2 per fresh duck egg. "
    "How much in dollars does she make every day at the farmers' market?"
)
TEST = {
    "gsm8k_test": [{"id": "t1", "question": DUCKS}, {"id": "t2", "question": ROBE}],
    "probe": [{"question": "What is 7 + 1?"}],  # no id: named by position
}


def _jaccard(a: str, b: str) -> float:
    x, y = shingles(a), shingles(b)
    return len(x & y) / len(x | y)


def test_text_field_and_normalisation() -> None:
    assert row_text({"question": "q", "prompt": "p"}) == "q"
    assert row_text({"instruction": "i", "question": "q"}) == "i"
    assert row_text({"body": "b"}, field="body") == "b"
    with pytest.raises(HygieneError, match=r"no text field \(looked for instruction, question, prompt\); its keys: x"):
        row_text({"x": 1})
    with pytest.raises(HygieneError, match="field 'instruction' must be a string, got int"):
        row_text({"instruction": 3})
    assert question_key("  What IS 7+1?! ") == "what is 7 + 1"
    assert question_key("What is 7 - 1?") != question_key("What is 7 + 1?")


def test_exact_dedup_keeps_first_and_names_the_match() -> None:
    rows = [
        {"id": "a", "instruction": "What is 2 + 3?"},
        {"id": "b", "instruction": "what is 2+3"},  # same after normalisation
        {"id": "c", "instruction": "What is 2 - 3?"},  # a different question
        {"id": "d", "instruction": "Name a prime number."},  # in the existing pool
    ]
    pool = [{"id": "p9", "instruction": "name a PRIME number"}]
    before = copy.deepcopy(rows)
    kept, dropped = exact_dedup(rows, against=pool)
    assert rows == before
    assert [k["id"] for k in kept] == ["a", "c"]
    assert kept[0] is not rows[0]
    assert [(d["id"], d["row_index"], d["matched_set"], d["matched_id"], d["drop_reason"]) for d in dropped] == [
        ("b", 1, "input", "a", "duplicate"),
        ("d", 3, "against", "p9", "duplicate"),
    ]
    assert dropped[0]["kept"] is False and dropped[0]["matched_text"] == "What is 2 + 3?"
    assert dropped[0]["drop_detail"] == "same text as input row a"


def test_rouge_dedup_threshold() -> None:
    rows = [
        {"id": "a", "instruction": "Write a poem about the sea"},
        {"id": "b", "instruction": "Write a short poem about the sea"},  # ROUGE-L 12/13
        {"id": "c", "instruction": "List three prime numbers below twenty"},
    ]
    kept, dropped = rouge_dedup(rows, threshold=0.7)
    assert [k["id"] for k in kept] == ["a", "c"]
    assert [(d["id"], d["similarity"], d["matched_id"], d["match"]) for d in dropped] == [("b", 0.9231, "a", "rouge-l")]
    kept, dropped = rouge_dedup(rows, threshold=0.95)  # LLM2LLM's bar keeps it
    assert [k["id"] for k in kept] == ["a", "b", "c"] and dropped == []
    kept, dropped = rouge_dedup(rows[1:], against=rows[:1])
    assert [(d["id"], d["matched_set"]) for d in dropped] == [("b", "against")]


def _corpus(seed: int, n: int, copies: int) -> tuple[list[dict[str, object]], dict[str, str]]:
    """`n` unrelated 60-word rows of made-up words plus `copies` copies with one word replaced."""
    rng = random.Random(seed)
    vocab = [f"w{rng.randrange(10**9)}" for _ in range(4000)]
    rows: list[dict[str, object]] = [{"id": f"r{i}", "instruction": " ".join(rng.sample(vocab, 60))} for i in range(n)]
    planted = {}
    for j in range(copies):
        source = rows[rng.randrange(n)]
        toks = str(source["instruction"]).split()
        toks[rng.randrange(60)] = "changed"
        rows.insert(rng.randrange(n, len(rows) + 1), {"id": f"c{j}", "instruction": " ".join(toks)})
        planted[f"c{j}"] = str(source["id"])
    return rows, planted


def test_minhash_dedup_finds_planted_copies_and_nothing_else() -> None:
    rows, planted = _corpus(seed=3, n=400, copies=40)
    by_id = {r["id"]: str(r["instruction"]) for r in rows}
    assert all(_jaccard(by_id[c], by_id[s]) >= 0.8 for c, s in planted.items())
    before = copy.deepcopy(rows)
    kept, dropped = minhash_dedup(rows, threshold=0.8)
    assert rows == before
    assert {d["id"]: d["matched_id"] for d in dropped} == planted
    assert len(kept) == 400 and all(d["similarity"] >= 0.8 and d["match"] == "minhash" for d in dropped)
    assert minhash_dedup(rows, threshold=0.8) == (kept, dropped)  # deterministic


def test_minhash_threshold_and_pool() -> None:
    base = " ".join(f"word{i}" for i in range(40))
    half = " ".join(f"word{i}" if i < 30 else f"other{i}" for i in range(40))
    assert 0.5 < _jaccard(base, half) < 0.8
    rows = [{"id": "x", "instruction": base}, {"id": "y", "instruction": half}]
    assert [k["id"] for k in minhash_dedup(rows)[0]] == ["x", "y"]
    kept, dropped = minhash_dedup(rows, threshold=0.5)
    assert [k["id"] for k in kept] == ["x"] and dropped[0]["similarity"] == round(_jaccard(base, half), 4)
    kept, dropped = minhash_dedup(rows[1:], against=[{"id": "pool-1", "prompt": base.upper()}], threshold=0.5)
    assert kept == [] and (dropped[0]["matched_set"], dropped[0]["matched_id"]) == ("against", "pool-1")


def test_decontamination_catches_copies_and_keeps_the_rest() -> None:
    rows = [
        {"id": "verbatim", "instruction": DUCKS},
        {"id": "one-word", "instruction": ROBE.replace("white", "red")},
        {
            "id": "inside",
            "instruction": f"Solve step by step and explain each step: {DUCKS.lower()} Answer in dollars.",
        },
        {"id": "short", "instruction": "Compute: what is 7+1? Then double the result."},
        {"id": "unrelated", "instruction": "A coat takes 3 bolts of green wool and twice that much black wool. Total?"},
        {"id": "other-op", "instruction": "What is 7 - 1?"},
        {"id": "fragment", "instruction": "She eats three for breakfast every morning."},  # 7 words of a long test
    ]
    before = copy.deepcopy(rows)
    kept, dropped = decontaminate(rows, TEST)
    assert rows == before
    assert [k["id"] for k in kept] == ["unrelated", "other-op", "fragment"]
    got = {d["id"]: (d["matched_set"], d["matched_id"], d["match"], d["row_index"]) for d in dropped}
    assert got == {
        "verbatim": ("gsm8k_test", "t1", "13-gram", 0),
        "one-word": ("gsm8k_test", "t2", "near-copy", 1),
        "inside": ("gsm8k_test", "t1", "13-gram", 2),
        "short": ("probe", "0", "whole text", 3),
    }
    by_id = {d["id"]: d for d in dropped}
    assert by_id["one-word"]["similarity"] == round(21 / 22, 4)
    assert by_id["one-word"]["matched_text"] == ROBE
    assert by_id["short"]["drop_detail"] == "5-word run 'what is 7 + 1' of probe row 0"
    assert all(d["drop_reason"] == "contaminated" and d["kept"] is False for d in dropped)
    assert decontaminate(rows, TEST) == (kept, dropped)


def test_decontamination_options() -> None:
    rows = [{"id": "one-word", "instruction": ROBE.replace("white", "red")}]
    assert decontaminate(rows, TEST, near_threshold=None)[1] == []  # the n-gram check alone misses it
    assert decontaminate(rows, TEST, near_threshold=0.96)[1] == []  # 21 of 22 words is below 0.96
    # With n=8 the edited copy shares an 8-word run and the n-gram check finds it.
    dropped = decontaminate(rows, TEST, n=8, near_threshold=None)[1]
    assert [(d["match"], d["matched_id"]) for d in dropped] == [("8-gram", "t2")]
    # A different field for the training rows than for the evaluation rows.
    rows = [{"id": "x", "body": DUCKS, "instruction": "unrelated"}]
    assert decontaminate(rows, TEST)[1] == []
    assert [d["matched_id"] for d in decontaminate(rows, TEST, field="body")[1]] == ["t1"]
    with pytest.raises(HygieneError, match=r"train row 0 \(id x\): row has no field 'prompt'"):
        decontaminate(rows, TEST, field="prompt")
    with pytest.raises(HygieneError, match=r"against 'bad' row 1 \(id 1\): row has no text field"):
        decontaminate(rows, {"bad": [{"question": "q"}, {"text": "t"}]})


def test_read_rows_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text('{"question": "a"}\n\n{"instruction": "b"}\n', encoding="utf-8")
    assert read_rows(path) == ([{"question": "a"}, {"instruction": "b"}], [1, 3])
    with pytest.raises(HygieneError, match=r"rows.jsonl:1: row has no field 'instruction'; its keys: question"):
        read_rows(path, field="instruction")
    path.write_text('{"question": "a"}\n{"question": \n', encoding="utf-8")
    with pytest.raises(HygieneError, match=r"rows.jsonl:2: not valid JSON"):
        read_rows(path)
    with pytest.raises(HygieneError, match="file not found: .*missing.jsonl"):
        read_rows(tmp_path / "missing.jsonl")
