from __future__ import annotations

import json
from pathlib import Path

import pytest

from agents.tasks.math import extract_answer, is_correct, load_gsm8k_jsonl, numbers_equal

# The shared real-data folder beside the repository (as scripts/bench_ifd.py finds it); optional.
DATA = Path(__file__).resolve().parents[3] / "shared" / "data"


@pytest.mark.parametrize("name", ["gsm8k_train.jsonl", "gsm8k_test.jsonl"])
def test_every_gold_solution_parses_to_its_own_number(name: str) -> None:
    path = DATA / name
    if not path.is_file():
        pytest.skip(f"optional real data {path} is absent; the rule tests below cover the same code")
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    wrong = []
    for i, row in enumerate(rows):
        gold = row["answer"].rsplit("####", 1)[1].strip()
        got = extract_answer(row["answer"])
        if got != gold.replace(",", "") or not numbers_equal(got, gold):
            wrong.append((i, gold, got))
    assert len(rows) == {"gsm8k_train.jsonl": 7473, "gsm8k_test.jsonl": 1319}[name]
    assert wrong == []
    records = load_gsm8k_jsonl(path)
    assert [r["answer"] for r in records] == [r["answer"].rsplit("####", 1)[1].strip().replace(",", "") for r in rows]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # the #### line wins over every other rule, and over numbers in the reasoning
        ("16 - 3 - 4 = <<16-3-4=9>>9 eggs.\n9 * 2 = $<<9*2=18>>18\n#### 18", "18"),
        ("The answer is 5.\n#### 7\nChecked with 3 steps.", "7"),
        ("#### 1,200", "1200"),
        ("#### $70,000.", "70000"),
        ("#### -3", "-3"),
        ("first try #### 4\nsecond try #### 6", "6"),
        # then \boxed{...}
        (r"So the total is \boxed{42}. Step 3 was the hardest.", "42"),
        (r"Hence \boxed{1,000} dollars, not 999.", "1000"),
        (r"$\boxed{1{,}250}$ in 4 days", "1250"),
        (r"\boxed{\$18.50}", "18.5"),
        (r"\boxed{-7}", "-7"),
        (r"\boxed{\frac{3}{4}}", "3/4"),
        (r"\boxed{12 \text{ apples}} from 3 trees", "12"),
        (r"first \boxed{2} then \boxed{5}", "5"),
        # then "the answer is"
        ("The answer is 18. She used 3 baskets.", "18"),
        ("Final answer: $1,234.50. That took 2 steps.", "1234.5"),
        ("so the answer is -12 degrees, up from 4", "-12"),
        ("The answer is 0.75 of the 8 pies", "0.75"),
        # then the last number
        ("She has 5 apples, gives away 2 and keeps 3.", "3"),
        ("It costs 18.00 dollars.", "18"),
        ("About 50%.", "50"),
        ("The range was 10-20", "20"),
        ("It dropped to \u22125 degrees", "-5"),
        ("She ate 3/4 of it", "3/4"),
        ("####\n12 cookies", "12"),  # an empty #### line falls through
        (r"\boxed{ unfinished 3 and 8", "8"),  # an unbalanced box falls through
    ],
)
def test_extract_answer_rules(text: str, expected: str) -> None:
    assert extract_answer(text) == expected


@pytest.mark.parametrize("text", [None, "", "no numbers here", "#### none"])
def test_extract_answer_none_without_a_number(text: str | None) -> None:
    assert extract_answer(text) is None


@pytest.mark.parametrize(
    ("a", "b", "equal"),
    [
        ("1,000", "1000", True),
        ("1000", 1000.0, True),
        ("$1,000.00", 1000, True),
        ("18.", "18", True),
        ("0.5", "1/2", True),
        (0.1, "0.1", True),
        ("-3", "-3.0", True),
        ("1000", "100", False),
        ("3", "-3", False),
        (None, "1", False),
        ("abc", "abc", False),
        (float("nan"), float("nan"), False),
    ],
)
def test_numbers_equal(a: object, b: object, equal: bool) -> None:
    assert numbers_equal(a, b) is equal  # type: ignore[arg-type]


def test_numbers_equal_tolerance_and_is_correct() -> None:
    assert not numbers_equal("33.33", "100/3")
    assert numbers_equal("33.33", "100/3", rel_tol=1e-3)
    assert is_correct("So she makes 9 * 2 = 18 dollars.\n#### 18", "18")
    assert not is_correct("#### 17", "18")
    assert not is_correct(None, "18")


def test_load_gsm8k_records(tmp_path: Path) -> None:
    path = tmp_path / "mini.jsonl"
    rows = [
        {
            "question": " Tom has 3 apples and buys 1,000 more. How many? ",
            "answer": "3+1000=<<3+1000=1003>>1003\n#### 1,003",
        },
        {"id": "q7", "question": "Owes 5, pays 8. Balance?", "answer": "5-8=-3\n#### -3"},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n", encoding="utf-8")
    assert load_gsm8k_jsonl(path) == [
        {
            "id": "mini-1",
            "instruction": "Tom has 3 apples and buys 1,000 more. How many?",
            "output": "3+1000=<<3+1000=1003>>1003\n#### 1,003",
            "answer": "1003",
        },
        {"id": "q7", "instruction": "Owes 5, pays 8. Balance?", "output": "5-8=-3\n#### -3", "answer": "-3"},
    ]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "bad.jsonl:2: not valid JSON"),
        ('["a list"]', "bad.jsonl:2: expected a JSON object, got list"),
        ('{"question": "q"}', "bad.jsonl:2: field 'answer' missing"),
        ('{"question": "q", "answer": "it is 4"}', "bad.jsonl:2: answer has no '#### <number>' line"),
    ],
)
def test_load_gsm8k_errors_name_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"question": "q", "answer": "#### 1"}\n' + line + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("(", r"\(")) as err:
        load_gsm8k_jsonl(path)
    assert str(path) in str(err.value)
