"""The verifiable task world: skills split into knowledge points, items generated and checked by code.

Each knowledge point has a seeded generator `(rng, difficulty) -> (question, answer)` with a difficulty
knob (1 easiest, 3 hardest; the default task level is 2, so level 1 is an easier curriculum step), a
*facet* that sorts its items into finer sub-points (used by the Examiner to refine a weak point), and
every question is re-solved from its text by `solve`, so answers are checked independently of the
generator. Letter sequences are written with spaces so that each letter is one token of the student.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from core.text import question_key

Gen = Callable[[random.Random, int], tuple[str, str]]
Facet = Callable[[str, str], str]
LEVELS = (1, 2, 3)


@dataclass(frozen=True)
class KnowledgePoint:
    """One testable point of a skill, e.g. 'addition with a carry'."""

    id: str
    skill: str
    description: str
    generate: Gen
    facet: Facet


def _num(rng: random.Random, digits: int) -> int:
    return rng.randint(10 ** (digits - 1) if digits > 1 else 0, 10**digits - 1)


def _ops(question: str) -> list[int]:
    return [int(x) for x in re.findall(r"\d+", question)]


def _letters(rng: random.Random, n: int, pool: str = "abcdefghjkmnpqrstuvwxyz") -> list[str]:
    return [rng.choice(pool) for _ in range(n)]


# -- arithmetic -------------------------------------------------------------------------------------
# (digits of a, digits of b) by level
_SIZES = {1: (1, 1), 2: (2, 1), 3: (2, 2)}


def _carries(a: int, b: int) -> int:
    n, c = 0, 0
    while a or b:
        c = 1 if a % 10 + b % 10 + c >= 10 else 0
        n += c
        a, b = a // 10, b // 10
    return n


def _borrows(a: int, b: int) -> int:
    n, br = 0, 0
    while a or b:
        br = 1 if a % 10 - br < b % 10 else 0
        n += br
        a, b = a // 10, b // 10
    return n


def _add(carry: bool) -> Gen:
    def gen(rng: random.Random, d: int) -> tuple[str, str]:
        da, db = _SIZES[d]
        while True:
            a, b = _num(rng, da), _num(rng, db)
            if (_carries(a, b) > 0) == carry:
                return f"What is {a} + {b}?", str(a + b)

    return gen


def _sub(borrow: bool) -> Gen:
    def gen(rng: random.Random, d: int) -> tuple[str, str]:
        da, db = _SIZES[d]
        while True:
            a, b = _num(rng, da), _num(rng, db)
            if d == 1 and borrow:
                a = rng.randint(10, 18)  # teen minus a digit: the easiest borrow
            if a >= b and (_borrows(a, b) > 0) == borrow:
                return f"What is {a} - {b}?", str(a - b)

    return gen


def _mul_table(rng: random.Random, d: int) -> tuple[str, str]:
    # A table is a few hundred facts at most, so it is asked in two phrasings.
    top = {1: 5, 2: 9, 3: 12}[d]
    a, b = rng.randint(0, top), rng.randint(0, min(top, 9))
    if rng.random() < 0.5:
        return f"What is {a} * {b}?", str(a * b)
    return f"What is {a} times {b}?", str(a * b)


def _mul_by10(rng: random.Random, d: int) -> tuple[str, str]:
    a = _num(rng, d + 1)
    return f"What is {a} * 10?", str(a * 10)


def _cmp(pick: Callable[[int, int], int], word: str) -> Gen:
    def gen(rng: random.Random, d: int) -> tuple[str, str]:
        a, b = _num(rng, d), _num(rng, d)
        while a == b:
            b = _num(rng, d)
        return f"Which is {word}, {a} or {b}?", str(pick(a, b))

    return gen


def _next(carry: bool) -> Gen:
    def gen(rng: random.Random, d: int) -> tuple[str, str]:
        while True:
            a = _num(rng, d + (2 if carry else 1))  # enough distinct numbers ending in 9
            if (a % 10 == 9) == carry:
                return f"What number comes after {a}?", str(a + 1)

    return gen


def _parity(rng: random.Random, d: int) -> tuple[str, str]:
    a = _num(rng, d + 1)
    return f"Is {a} even or odd?", "even" if a % 2 == 0 else "odd"


# -- letter sequences -------------------------------------------------------------------------------
def _seq_first(rng: random.Random, d: int) -> tuple[str, str]:
    s = _letters(rng, 2 + d)
    return f"What is the first letter of {' '.join(s)}?", s[0]


def _seq_last(rng: random.Random, d: int) -> tuple[str, str]:
    s = _letters(rng, 2 + d)
    return f"What is the last letter of {' '.join(s)}?", s[-1]


def _seq_reverse(rng: random.Random, d: int) -> tuple[str, str]:
    s = _letters(rng, 1 + d)
    return f"Reverse {' '.join(s)}.", " ".join(reversed(s))


def _seq_sort(rng: random.Random, d: int) -> tuple[str, str]:
    s = [str(rng.randint(0, 9)) for _ in range(1 + d)]
    return f"Sort {' '.join(s)}.", " ".join(sorted(s))


def _seq_count(rng: random.Random, d: int) -> tuple[str, str]:
    pool = rng.sample("abcdefgh", 2)
    s = [rng.choice(pool) for _ in range(2 + 2 * d)]
    t = rng.choice(pool)
    return f"How many {t} in {' '.join(s)}?", str(s.count(t))


# -- word problems ----------------------------------------------------------------------------------
_NAMES = ("Ann", "Ben", "Cara", "Dan", "Eve", "Finn", "Gus", "Hana")
_THINGS = ("apples", "books", "coins", "pens", "cards", "shells")


def _word_add(rng: random.Random, d: int) -> tuple[str, str]:
    name, thing = rng.choice(_NAMES), rng.choice(_THINGS)
    a, b = _num(rng, 1 if d < 3 else 2), _num(rng, 1)
    if d == 1:
        a, b = rng.randint(0, 5), rng.randint(0, 4)
    return f"{name} has {a} {thing} and gets {b} more. How many {thing} now?", str(a + b)


def _word_sub(rng: random.Random, d: int) -> tuple[str, str]:
    name, thing = rng.choice(_NAMES), rng.choice(_THINGS)
    a = _num(rng, 1) if d < 3 else _num(rng, 2)
    b = rng.randint(0, a if d > 1 else min(a, 3))
    return f"{name} has {a} {thing} and gives away {b}. How many {thing} now?", str(a - b)


# -- facets: finer sub-points of a point ------------------------------------------------------------
def _facet_answer_len(question: str, answer: str) -> str:
    return f"answer has {len(answer.replace(' ', ''))} chars"


def _facet_big_operand(question: str, answer: str) -> str:
    return "an operand >= 6" if any(x % 10 >= 6 for x in _ops(question)) else "operands < 6"


def _facet_zero(question: str, answer: str) -> str:
    return "has a 0 digit" if "0" in "".join(map(str, _ops(question))) else "no 0 digit"


def _facet_first_larger(question: str, answer: str) -> str:
    a, b = _ops(question)[:2]
    return "first is the answer" if str(a) == answer else "second is the answer"


def _facet_repeat(question: str, answer: str) -> str:
    body = question.split(" of ")[-1] if " of " in question else question
    letters = re.findall(r"\b[a-z]\b", body)
    return "has a repeated letter" if len(set(letters)) < len(letters) else "all letters distinct"


KNOWLEDGE_POINTS: tuple[KnowledgePoint, ...] = (
    KnowledgePoint("add.no_carry", "addition", "addition without a carry", _add(False), _facet_big_operand),
    KnowledgePoint("add.carry", "addition", "addition with a carry", _add(True), _facet_answer_len),
    KnowledgePoint("sub.no_borrow", "subtraction", "subtraction without borrowing", _sub(False), _facet_zero),
    KnowledgePoint("sub.borrow", "subtraction", "subtraction with a borrow", _sub(True), _facet_answer_len),
    KnowledgePoint("mul.table", "multiplication", "the multiplication table", _mul_table, _facet_big_operand),
    KnowledgePoint("mul.by10", "multiplication", "multiply by ten", _mul_by10, _facet_answer_len),
    KnowledgePoint("cmp.max", "comparison", "the larger of two numbers", _cmp(max, "larger"), _facet_first_larger),
    KnowledgePoint("cmp.min", "comparison", "the smaller of two numbers", _cmp(min, "smaller"), _facet_first_larger),
    KnowledgePoint("num.next", "counting", "the next number, no carry", _next(False), _facet_answer_len),
    KnowledgePoint("num.next_carry", "counting", "the next number across a ten", _next(True), _facet_answer_len),
    KnowledgePoint("num.parity", "counting", "even or odd", _parity, _facet_big_operand),
    KnowledgePoint("seq.first", "sequences", "first letter of a sequence", _seq_first, _facet_repeat),
    KnowledgePoint("seq.last", "sequences", "last letter of a sequence", _seq_last, _facet_repeat),
    KnowledgePoint("seq.reverse", "sequences", "reverse a sequence", _seq_reverse, _facet_repeat),
    KnowledgePoint("seq.sort", "sequences", "sort digits", _seq_sort, _facet_repeat),
    KnowledgePoint("seq.count", "sequences", "count a letter in a sequence", _seq_count, _facet_answer_len),
    KnowledgePoint("word.add", "word_problems", "word problem, addition", _word_add, _facet_answer_len),
    KnowledgePoint("word.sub", "word_problems", "word problem, subtraction", _word_sub, _facet_answer_len),
)
POINTS_BY_ID: dict[str, KnowledgePoint] = {kp.id: kp for kp in KNOWLEDGE_POINTS}


# -- the oracle: answers computed from the question text alone ---------------------------------------
def _add_point(m: re.Match[str]) -> str:
    return "add.carry" if _carries(int(m[1]), int(m[2])) else "add.no_carry"


def _sub_point(m: re.Match[str]) -> str:
    return "sub.borrow" if _borrows(int(m[1]), int(m[2])) else "sub.no_borrow"


# Each template of the world: its pattern, the answer it computes, and the knowledge point it tests.
_TEMPLATES: tuple[tuple[re.Pattern[str], Callable[[re.Match[str]], str], Callable[[re.Match[str]], str]], ...] = (
    (re.compile(r"^What is (\d+) \+ (\d+)\?$"), lambda m: str(int(m[1]) + int(m[2])), _add_point),
    (re.compile(r"^What is (\d+) - (\d+)\?$"), lambda m: str(int(m[1]) - int(m[2])), _sub_point),
    (
        re.compile(r"^What is (\d+) (?:\*|times) (\d+)\?$"),
        lambda m: str(int(m[1]) * int(m[2])),
        lambda m: "mul.by10" if int(m[2]) == 10 else "mul.table",
    ),
    (re.compile(r"^Which is larger, (\d+) or (\d+)\?$"), lambda m: str(max(int(m[1]), int(m[2]))), lambda m: "cmp.max"),
    (
        re.compile(r"^Which is smaller, (\d+) or (\d+)\?$"),
        lambda m: str(min(int(m[1]), int(m[2]))),
        lambda m: "cmp.min",
    ),
    (
        re.compile(r"^What number comes after (\d+)\?$"),
        lambda m: str(int(m[1]) + 1),
        lambda m: "num.next_carry" if m[1][-1] == "9" else "num.next",
    ),
    (
        re.compile(r"^Is (\d+) even or odd\?$"),
        lambda m: "even" if int(m[1]) % 2 == 0 else "odd",
        lambda m: "num.parity",
    ),
    (
        re.compile(r"^What is the first letter of ([a-z](?: [a-z])*)\?$"),
        lambda m: m[1].split()[0],
        lambda m: "seq.first",
    ),
    (
        re.compile(r"^What is the last letter of ([a-z](?: [a-z])*)\?$"),
        lambda m: m[1].split()[-1],
        lambda m: "seq.last",
    ),
    (
        re.compile(r"^Reverse ([a-z](?: [a-z])*)\.$"),
        lambda m: " ".join(reversed(m[1].split())),
        lambda m: "seq.reverse",
    ),
    (re.compile(r"^Sort (\d(?: \d)*)\.$"), lambda m: " ".join(sorted(m[1].split())), lambda m: "seq.sort"),
    (
        re.compile(r"^How many ([a-z]) in ([a-z](?: [a-z])*)\?$"),
        lambda m: str(m[2].split().count(m[1])),
        lambda m: "seq.count",
    ),
    (
        re.compile(r"^\w+ has (\d+) (\w+) and gets (\d+) more\. How many \2 now\?$"),
        lambda m: str(int(m[1]) + int(m[3])),
        lambda m: "word.add",
    ),
    (
        re.compile(r"^\w+ has (\d+) (\w+) and gives away (\d+)\. How many \2 now\?$"),
        lambda m: str(int(m[1]) - int(m[3])),
        lambda m: "word.sub",
    ),
)


# -- styled forms: the same questions reworded (agents/tasks/styles.py writes them) ---------------------
# The oracle reads a styled question by restating it as the template question it asks; the answer is then
# computed from that, so a rewording that changed what is asked cannot pass as the old question. Only
# questions that match no template are read this way: the world's own questions are solved as before.
_ONES = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
    "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen",
)  # fmt: skip
_TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
# Lead-in sentences of the "longer context" style: no numbers, no information.
CONTEXT_SENTENCES = (
    "Here is a question from a practice sheet.",
    "Read the question below with care.",
    "This one comes from a quiz for beginners.",
    "Answer the question that follows.",
)
_CONTEXT = "|".join(re.escape(s) for s in CONTEXT_SENTENCES)
_LETTERS = r"([a-z](?: [a-z])*)"


def _word_problem(name: str, has: str, thing: str, gets: str | None, gives: str | None) -> str:
    """A word problem in the world's own wording (it gets `gets` more, or gives `gives` away)."""
    change = f"gets {gets} more" if gets else f"gives away {gives}"
    return f"{name} has {has} {thing} and {change}. How many {thing} now?"


_RESTATED: tuple[tuple[re.Pattern[str], Callable[[re.Match[str]], str]], ...] = (
    # longer context and distractor: a lead-in sentence before a template question
    (re.compile(rf"^(?:{_CONTEXT}) (.+)$"), lambda m: m[1]),
    (re.compile(r"^[A-Z][a-z]+ is \d+ years old\. (.+)$"), lambda m: m[1]),
    # negation: a clause saying what is not asked, after the question
    (re.compile(r"^(.+?), (?:not|do not) [^,]+([?.])$"), lambda m: f"{m[1]}{m[2]}"),
    # units
    (re.compile(r"^How many cm is (\d+) cm ([+-]) (\d+) cm\?$"), lambda m: f"What is {m[1]} {m[2]} {m[3]}?"),
    (
        re.compile(r"^(\d+) bags hold (\d+) grams each\. How many grams in all\?$"),
        lambda m: f"What is {m[1]} * {m[2]}?",
    ),
    (re.compile(r"^How many mm are in (\d+) cm\?$"), lambda m: f"What is {m[1]} * 10?"),
    (
        re.compile(
            r"^(\w+) has (\d+) litres of water and (gets (\d+) more|gives away (\d+)) litres\. How many litres now\?$"
        ),
        lambda m: _word_problem(m[1], m[2], "litres", m[4], m[5]),
    ),
    # paraphrases
    (
        re.compile(r"^(?:Add (\d+) and (\d+)\.|What is the sum of (\d+) and (\d+)\?)$"),
        lambda m: f"What is {m[1] or m[3]} + {m[2] or m[4]}?",
    ),
    (re.compile(r"^Subtract (\d+) from (\d+)\.$"), lambda m: f"What is {m[2]} - {m[1]}?"),
    (re.compile(r"^What is (\d+) minus (\d+)\?$"), lambda m: f"What is {m[1]} - {m[2]}?"),
    (
        re.compile(r"^(?:Multiply (\d+) by (\d+)\.|What is the product of (\d+) and (\d+)\?)$"),
        lambda m: f"What is {m[1] or m[3]} * {m[2] or m[4]}?",
    ),
    (re.compile(r"^Of (\d+) and (\d+), which is (larger|smaller)\?$"), lambda m: f"Which is {m[3]}, {m[1]} or {m[2]}?"),
    (
        re.compile(r"^Which number is (bigger|less), (\d+) or (\d+)\?$"),
        lambda m: f"Which is {'larger' if m[1] == 'bigger' else 'smaller'}, {m[2]} or {m[3]}?",
    ),
    (
        re.compile(r"^(?:Which number follows (\d+)|What is one more than (\d+))\?$"),
        lambda m: f"What number comes after {m[1] or m[2]}?",
    ),
    (
        re.compile(r"^(?:Is the number (\d+) even or odd\?|Say whether (\d+) is even or odd\.)$"),
        lambda m: f"Is {m[1] or m[2]} even or odd?",
    ),
    (
        re.compile(rf"^Which letter comes (first|last) in {_LETTERS}\?$"),
        lambda m: f"What is the {m[1]} letter of {m[2]}?",
    ),
    (re.compile(rf"^Write {_LETTERS} in reverse order\.$"), lambda m: f"Reverse {m[1]}."),
    (re.compile(r"^Put (\d(?: \d)*) in increasing order\.$"), lambda m: f"Sort {m[1]}."),
    (re.compile(rf"^Count how many times ([a-z]) appears in {_LETTERS}\.$"), lambda m: f"How many {m[1]} in {m[2]}?"),
    (
        re.compile(
            r"^(\w+) had (\d+) (\w+)\. Then \1 (got (\d+) more|gave away (\d+))\. How many \3 does \1 have now\?$"
        ),
        lambda m: _word_problem(m[1], m[2], m[3], m[5], m[6]),
    ),
)


def number_words(n: int) -> str:
    """`n` (0 <= n < 1,000,000) in English words: 47 -> "forty-seven", 305 -> "three hundred five"."""
    if not 0 <= n < 1_000_000:
        raise ValueError(f"number_words covers 0 to 999999, not {n}")
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + (f"-{_ONES[n % 10]}" if n % 10 else "")
    if n < 1000:
        return f"{_ONES[n // 100]} hundred" + (f" {number_words(n % 100)}" if n % 100 else "")
    return f"{number_words(n // 1000)} thousand" + (f" {number_words(n % 1000)}" if n % 1000 else "")


_NUMBER_WORD = "|".join([*_ONES, *_TENS[2:], "hundred", "thousand"])
_WORDS_RUN = re.compile(rf"\b(?:{_NUMBER_WORD})(?:[ -](?:{_NUMBER_WORD}))*\b")
_WORDS_VALUE = {w: i for i, w in enumerate(_ONES)} | {w: 10 * i for i, w in enumerate(_TENS) if i >= 2}


def _words_value(run: str) -> int | None:
    """The number a run of number words names, or None unless it is exactly how `number_words` writes one."""
    total, group = 0, 0
    for word in re.split(r"[ -]", run):
        if word == "hundred":
            group *= 100
        elif word == "thousand":
            total, group = total + group * 1000, 0
        else:
            group += _WORDS_VALUE[word]
    value = total + group
    return value if value < 1_000_000 and number_words(value) == run else None


def _unformatted(question: str) -> str | None:
    """The "format change" style undone: numbers in words back to digits, a list of letters ("a, b and c") spaced."""
    out = _WORDS_RUN.sub(lambda m: str(v) if (v := _words_value(m[0])) is not None else m[0], question)
    out = re.sub(r"\b([a-z])(?:,| and) (?=[a-z]\b)", r"\1 ", out)
    return out if out != question else None


def restated(question: str) -> str | None:
    """The template question a styled question asks (see agents/tasks/styles.py), or None where it is none."""
    text = question.strip()
    readings = [m_fn(m) for pattern, m_fn in _RESTATED if (m := pattern.match(text))]
    unformatted = _unformatted(text)
    for reading in [*readings, *([unformatted] if unformatted else [])]:
        if _base_template(reading) is not None:
            return reading
    return None


def _base_template(
    question: str,
) -> tuple[re.Match[str], Callable[[re.Match[str]], str], Callable[[re.Match[str]], str]] | None:
    for pattern, answer, point in _TEMPLATES:
        m = pattern.match(question.strip())
        if m:
            return m, answer, point
    return None


def _template(
    question: str,
) -> tuple[re.Match[str], Callable[[re.Match[str]], str], Callable[[re.Match[str]], str]] | None:
    found = _base_template(question)
    if found is None:
        again = restated(question)
        found = _base_template(again) if again is not None else None
    return found


def solve(question: str) -> str | None:
    """The correct answer computed from the question text, or None when no template matches."""
    found = _template(question)
    if found is None:
        return None
    value = found[1](found[0])
    return None if value.startswith("-") else value


def is_template(question: str) -> bool:
    """Whether a question is in the world's own wording (not a styled form of one)."""
    return _base_template(question) is not None


def point_of(question: str) -> str | None:
    """The knowledge point a question tests, read from its text (None where the world cannot answer it): a
    model that was asked for one point often writes another's question."""
    found = _template(question)
    if found is None or found[1](found[0]).startswith("-"):
        return None
    return found[2](found[0])


def normalize_answer(text: str) -> str:
    """Canonical form for exact comparison: first line, trimmed, whitespace collapsed, no final dot."""
    first = text.strip().splitlines()[0] if text.strip() else ""
    return " ".join(first.split()).rstrip(".").strip().lower()


_ANSWER_IS = re.compile(r"\banswer\s+is\s*:?\s*\**\s*(.+?)\s*\**\s*\.?\s*$", re.I | re.M)
_EQUALS = re.compile(r"=\s*(-?\d+)\s*\.?\s*$", re.M)


def final_answer(text: str) -> str:
    """The short answer inside a chat model's worded reply: the last "the answer is X", else the last line
    ending in "= N", else the reply's first line (a one-line reply is returned as it is)."""
    stripped = text.strip()
    for pattern in (_ANSWER_IS, _EQUALS):
        found = pattern.findall(stripped)
        if found:
            return found[-1].strip()
    return stripped.splitlines()[0].strip() if stripped else ""


def is_correct(prediction: str, answer: str) -> bool:
    """Exact match after normalisation."""
    return normalize_answer(prediction) == normalize_answer(answer)


def get_point(point_id: str) -> KnowledgePoint:
    """The knowledge point with this id, or a KeyError naming the known ids."""
    try:
        return POINTS_BY_ID[point_id]
    except KeyError:
        raise KeyError(f"unknown knowledge point {point_id!r}; known: {', '.join(POINTS_BY_ID)}") from None


def points_for(skills: Sequence[str] | None = None) -> list[str]:
    """Ids of the knowledge points of the given skills (all when None)."""
    return [kp.id for kp in KNOWLEDGE_POINTS if skills is None or kp.skill in skills]


def sample_item(
    rng: random.Random, point_id: str, difficulty: int, facet: str | None = None, max_tries: int = 2000
) -> tuple[str, str]:
    """One (question, answer) of a point at a level, optionally restricted to a facet value."""
    kp = get_point(point_id)
    if difficulty not in LEVELS:
        raise ValueError(f"difficulty {difficulty} of {point_id} is not one of {LEVELS}")
    for _ in range(max_tries):
        question, answer = kp.generate(rng, difficulty)
        if facet is None or kp.facet(question, answer) == facet:
            return question, answer
    raise RuntimeError(f"{point_id} at difficulty {difficulty} yields no item of facet {facet!r}")


def generate_items(
    seed: int | str,
    counts: dict[str, int],
    difficulty: int | dict[str, int] = 2,
    split: str = "train",
    exclude: set[str] | None = None,
    strict: bool = True,
) -> list[dict[str, object]]:
    """Seeded items, `counts[point_id]` of each, as records; questions in `exclude` are skipped.

    The split name enters the seed, so train, probe and test draws differ even with the same seed.
    A point whose item space is too small for the count raises (or, with strict=False, gives fewer).
    """
    rng = random.Random(f"{seed}:{split}")
    seen = {question_key(q) for q in exclude or ()}
    items: list[dict[str, object]] = []
    for point_id, n in counts.items():
        kp = get_point(point_id)
        level = difficulty if isinstance(difficulty, int) else difficulty.get(point_id, 2)
        made, tries = 0, 0
        while made < n:
            tries += 1
            if tries > 50 * n + 200:
                if not strict:
                    break
                raise RuntimeError(
                    f"knowledge point {point_id} at difficulty {level} has too few distinct items "
                    f"for {n} in split {split!r} (made {made})"
                )
            question, answer = sample_item(rng, point_id, level)
            if question_key(question) in seen:
                continue
            seen.add(question_key(question))
            items.append(
                {
                    "id": f"{split}-{point_id}-{made:05d}",
                    "instruction": question,
                    "output": answer,
                    "knowledge_point": point_id,
                    "skill": kp.skill,
                    "difficulty": level,
                    "facet": kp.facet(question, answer),
                }
            )
            made += 1
    return items
