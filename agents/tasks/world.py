"""The verifiable task world: skills split into knowledge points, items generated and checked by code.

Each knowledge point has a generator `(rng, difficulty) -> (question, answer)` and a difficulty knob
(1 = easiest). Answers are short canonical strings, so checking is an exact match after normalisation.
The same seed always gives the same items.
"""

from __future__ import annotations

import random
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass

Generator = Callable[[random.Random, int], tuple[str, str]]


@dataclass(frozen=True)
class KnowledgePoint:
    """One testable point of a skill, e.g. 'addition with a carry into a new digit'."""

    id: str
    skill: str
    description: str
    generate: Generator
    max_difficulty: int = 3


def _digits(rng: random.Random, n: int) -> int:
    return rng.randint(10 ** (n - 1) if n > 1 else 0, 10**n - 1)


def _add_no_carry(rng: random.Random, d: int) -> tuple[str, str]:
    n = d + 1
    a_digits = [rng.randint(0, 9) for _ in range(n)]
    b_digits = [rng.randint(0, 9 - x) for x in a_digits]
    a = int("".join(map(str, a_digits))) or 1
    b = int("".join(map(str, b_digits)))
    return f"What is {a} + {b}?", str(a + b)


def _add_carry(rng: random.Random, d: int) -> tuple[str, str]:
    n = d + 1
    while True:
        a, b = _digits(rng, n), _digits(rng, n)
        carries = any((a // 10**i) % 10 + (b // 10**i) % 10 >= 10 for i in range(n))
        if carries and len(str(a + b)) == n:
            return f"What is {a} + {b}?", str(a + b)


def _add_new_digit(rng: random.Random, d: int) -> tuple[str, str]:
    n = d + 1
    while True:
        a, b = _digits(rng, n), _digits(rng, n)
        if len(str(a + b)) > n:
            return f"What is {a} + {b}?", str(a + b)


def _sub_no_borrow(rng: random.Random, d: int) -> tuple[str, str]:
    n = d + 1
    a_digits = [rng.randint(1, 9)] + [rng.randint(0, 9) for _ in range(n - 1)]
    b_digits = [rng.randint(0, x) for x in a_digits]
    a, b = int("".join(map(str, a_digits))), int("".join(map(str, b_digits)))
    return f"What is {a} - {b}?", str(a - b)


def _sub_borrow(rng: random.Random, d: int) -> tuple[str, str]:
    n = d + 1
    while True:
        a, b = _digits(rng, n), _digits(rng, n)
        a, b = max(a, b), min(a, b)
        borrows = any((a // 10**i) % 10 < (b // 10**i) % 10 for i in range(n))
        if borrows:
            return f"What is {a} - {b}?", str(a - b)


def _sub_borrow_zero(rng: random.Random, d: int) -> tuple[str, str]:
    # a has a 0 in a middle digit that a borrow must cross, e.g. 304 - 127.
    n = d + 2
    while True:
        a_digits = [rng.randint(1, 9)] + [0] * (n - 2) + [rng.randint(0, 8)]
        a = int("".join(map(str, a_digits)))
        b = rng.randint(a % 10 + 1, a - 1) if a % 10 + 1 < a - 1 else 1
        if b % 10 > a % 10:
            return f"What is {a} - {b}?", str(a - b)


def _mul_1x1(rng: random.Random, d: int) -> tuple[str, str]:
    # The times table is small (a few hundred facts), so it is asked in two phrasings.
    lo = {1: 2, 2: 4, 3: 6}.get(d, 6)
    a, b = rng.randint(lo, 12), rng.randint(2, 9)
    if rng.random() < 0.5:
        return f"What is {a} * {b}?", str(a * b)
    return f"Multiply {a} by {b}.", str(a * b)


def _mul_nx1(rng: random.Random, d: int) -> tuple[str, str]:
    a, b = _digits(rng, d + 1), rng.randint(2, 9)
    return f"What is {a} * {b}?", str(a * b)


def _compare_max(rng: random.Random, d: int) -> tuple[str, str]:
    n = d + 1
    a, b = _digits(rng, n), _digits(rng, n)
    while a == b:
        b = _digits(rng, n)
    return f"Which is larger, {a} or {b}?", str(max(a, b))


def _count_letter(rng: random.Random, d: int) -> tuple[str, str]:
    length = 3 + 2 * d
    letters = rng.sample("abcdefgh", 3)
    word = "".join(rng.choice(letters) for _ in range(length))
    target = rng.choice(letters)
    return f"How many times does {target} appear in {word}?", str(word.count(target))


def _reverse_word(rng: random.Random, d: int) -> tuple[str, str]:
    word = "".join(rng.choice(string.ascii_lowercase) for _ in range(2 + d))
    return f"Reverse the letters of {word}.", word[::-1]


def _sort_digits(rng: random.Random, d: int) -> tuple[str, str]:
    digits = [str(rng.randint(0, 9)) for _ in range(2 + d)]
    return f"Sort the digits {' '.join(digits)} in ascending order.", " ".join(sorted(digits))


_NAMES = ("Ann", "Ben", "Cara", "Dan", "Eve", "Finn", "Gus", "Hana")
_THINGS = ("apples", "books", "coins", "pens", "cards", "shells")


def _word_add(rng: random.Random, d: int) -> tuple[str, str]:
    name, thing = rng.choice(_NAMES), rng.choice(_THINGS)
    a, b = _digits(rng, d), _digits(rng, d)
    a, b = max(a, 1), max(b, 1)
    return f"{name} has {a} {thing} and gets {b} more. How many {thing} does {name} have?", str(a + b)


def _word_sub(rng: random.Random, d: int) -> tuple[str, str]:
    name, thing = rng.choice(_NAMES), rng.choice(_THINGS)
    a = _digits(rng, d + 1)
    b = rng.randint(1, max(1, a - 1))
    return f"{name} has {a} {thing} and gives away {b}. How many {thing} are left?", str(a - b)


KNOWLEDGE_POINTS: tuple[KnowledgePoint, ...] = (
    KnowledgePoint("add.no_carry", "addition", "addition without any carry", _add_no_carry),
    KnowledgePoint("add.carry", "addition", "addition with a carry inside the number", _add_carry),
    KnowledgePoint("add.new_digit", "addition", "addition with a carry into a new digit", _add_new_digit),
    KnowledgePoint("sub.no_borrow", "subtraction", "subtraction without borrowing", _sub_no_borrow),
    KnowledgePoint("sub.borrow", "subtraction", "subtraction with borrowing", _sub_borrow),
    KnowledgePoint(
        "sub.borrow_zero", "subtraction", "subtraction with a borrow across a zero", _sub_borrow_zero
    ),
    KnowledgePoint("mul.1x1", "multiplication", "single-digit multiplication table", _mul_1x1),
    KnowledgePoint("mul.nx1", "multiplication", "multi-digit times one digit", _mul_nx1),
    KnowledgePoint("cmp.max", "comparison", "the larger of two numbers", _compare_max),
    KnowledgePoint("count.letter", "counting", "count a letter in a string", _count_letter),
    KnowledgePoint("rev.word", "reversing", "reverse a string of letters", _reverse_word),
    KnowledgePoint("sort.digits", "sorting", "sort digits ascending", _sort_digits),
    KnowledgePoint("word.add", "word_problems", "templated word problem, addition", _word_add),
    KnowledgePoint("word.sub", "word_problems", "templated word problem, subtraction", _word_sub),
)
POINTS_BY_ID: dict[str, KnowledgePoint] = {kp.id: kp for kp in KNOWLEDGE_POINTS}


def normalize_answer(text: str) -> str:
    """Canonical form for exact comparison: first line, trimmed, whitespace collapsed, no final dot."""
    first = text.strip().splitlines()[0] if text.strip() else ""
    return " ".join(first.split()).rstrip(".").strip().lower()


def is_correct(prediction: str, answer: str) -> bool:
    """Exact match after normalisation."""
    return normalize_answer(prediction) == normalize_answer(answer)


def get_point(point_id: str) -> KnowledgePoint:
    """The knowledge point with this id, or a KeyError naming the known ids."""
    try:
        return POINTS_BY_ID[point_id]
    except KeyError:
        raise KeyError(f"unknown knowledge point {point_id!r}; known: {', '.join(POINTS_BY_ID)}") from None


def generate_items(
    seed: int,
    counts: dict[str, int],
    difficulty: int | dict[str, int] = 1,
    split: str = "train",
    exclude: set[str] | None = None,
) -> list[dict[str, object]]:
    """Seeded items, `counts[point_id]` of each, as records; questions in `exclude` are skipped.

    The split name enters the seed, so train, probe and test draws differ even with the same seed.
    """
    rng = random.Random(f"{seed}:{split}")
    seen = set(exclude or ())
    items: list[dict[str, object]] = []
    for point_id, n in counts.items():
        kp = get_point(point_id)
        level = difficulty if isinstance(difficulty, int) else difficulty.get(point_id, 1)
        made, tries = 0, 0
        while made < n:
            tries += 1
            if tries > 50 * n + 100:
                raise RuntimeError(
                    f"knowledge point {point_id} at difficulty {level} yields too few distinct items "
                    f"for {n} in split {split!r} (made {made})"
                )
            question, answer = kp.generate(rng, level)
            if question in seen:
                continue
            seen.add(question)
            items.append(
                {
                    "id": f"{split}-{point_id}-{made:05d}",
                    "instruction": question,
                    "output": answer,
                    "knowledge_point": point_id,
                    "skill": kp.skill,
                    "difficulty": level,
                }
            )
            made += 1
    return items


def points_for(skills: Sequence[str] | None = None) -> list[str]:
    """Ids of the knowledge points of the given skills (all when None)."""
    return [kp.id for kp in KNOWLEDGE_POINTS if skills is None or kp.skill in skills]
