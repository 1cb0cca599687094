"""Perturbation styles of the task world: each rewrites a world question into another surface form that
asks the same thing (or, for none of them, something else), and the world's oracle reads every form back
(`agents/tasks/world.py` `restated`), so a styled item is still verified by code.

    plain       the world's own wording
    paraphrase  other words ("Add 47 and 8.", "Which letter comes last in a b c?")
    distractor  an irrelevant sentence with a number before the question ("Ben is 12 years old. ...")
    units       quantities with units, a conversion where the point is one ("How many mm are in 45 cm?")
    context     a lead-in sentence with no information before the question
    negation    a clause saying what is not asked ("What is 47 + 8, not 47 - 8?")
    format      numbers written as words, letters as a list ("a, b and c")

A style that does not fit a point (units on letters; a list of letters where the answer is a list itself) is
not applicable there: `applies` says so, and `restyle` returns the reason instead of an item. Every styled
item is checked by the oracle before it is used: `restyle` returns why not where the oracle reads another
answer or another point, or cannot read it at all.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass

from agents.tasks.world import CONTEXT_SENTENCES, get_point, is_template, number_words, point_of, solve

# name -> what the style does, in words (the chat mutator's prompt shows it; `gaploop plugins` lists it)
STYLES: dict[str, str] = {
    "plain": "the question as the task itself words it",
    "paraphrase": "the same question in other words",
    "distractor": "an irrelevant sentence with a number placed before the question",
    "units": "the quantities carry units, with a unit conversion where the question allows one",
    "context": "a longer lead-in with no information before the question",
    "negation": "a negated clause that says what is not being asked",
    "format": "a different surface format: numbers written as words, letters as a list (a, b and c)",
}
_NAMES = ("Ann", "Ben", "Cara", "Dan", "Eve", "Finn", "Gus", "Hana")


@dataclass(frozen=True)
class Styled:
    """A styled question, the answer the oracle computes for it, and the template question it restates."""

    question: str
    answer: str
    base: str


def _family(point: str) -> str:
    """The form of a point's questions: add.carry -> add, num.next_carry -> next, num.parity -> parity."""
    return {"num.next": "next", "num.next_carry": "next", "num.parity": "parity"}.get(point, point.split(".")[0])


def _fields(q: str) -> dict[str, str]:
    """The parts of a world question a style's wording uses: numbers a, b; sequence s and counted letter t;
    a word problem's name and thing."""
    nums = re.findall(r"\d+", q)
    seq = re.findall(r"\b[a-z0-9](?: [a-z0-9])*(?=[?.]$)", q)  # "... of a b c?" -> "a b c"
    words = q.split()
    return {
        "a": nums[0] if nums else "",
        "b": nums[1] if len(nums) > 1 else "",
        "s": seq[0] if seq else "",
        "t": words[2] if len(words) > 2 else "",  # "How many t in ..."
        "name": words[0],
        "thing": words[3] if len(words) > 3 else "",
    }


# Wordings per point (or per family of points), filled from `_fields`; a style draws one of its list.
_PARAPHRASES: dict[str, tuple[str, ...]] = {
    "add": ("Add {a} and {b}.", "What is the sum of {a} and {b}?"),
    "sub": ("Subtract {b} from {a}.", "What is {a} minus {b}?"),
    "mul": ("Multiply {a} by {b}.", "What is the product of {a} and {b}?"),
    "cmp.max": ("Of {a} and {b}, which is larger?", "Which number is bigger, {a} or {b}?"),
    "cmp.min": ("Of {a} and {b}, which is smaller?", "Which number is less, {a} or {b}?"),
    "next": ("Which number follows {a}?", "What is one more than {a}?"),
    "parity": ("Is the number {a} even or odd?", "Say whether {a} is even or odd."),
    "seq.first": ("Which letter comes first in {s}?",),
    "seq.last": ("Which letter comes last in {s}?",),
    "seq.reverse": ("Write {s} in reverse order.",),
    "seq.sort": ("Put {s} in increasing order.",),
    "seq.count": ("Count how many times {t} appears in {s}.",),
    "word.add": ("{name} had {a} {thing}. Then {name} got {b} more. How many {thing} does {name} have now?",),
    "word.sub": ("{name} had {a} {thing}. Then {name} gave away {b}. How many {thing} does {name} have now?",),
}
# Comparisons, counting and letters have none: a unit would change what the answer is written as.
_UNITS: dict[str, tuple[str, ...]] = {
    "add": ("How many cm is {a} cm + {b} cm?",),
    "sub": ("How many cm is {a} cm - {b} cm?",),
    "mul.by10": ("How many mm are in {a} cm?",),
    "mul.table": ("{a} bags hold {b} grams each. How many grams in all?",),
    "word.add": ("{name} has {a} litres of water and gets {b} more litres. How many litres now?",),
    "word.sub": ("{name} has {a} litres of water and gives away {b} litres. How many litres now?",),
}


def _worded(table: dict[str, tuple[str, ...]]) -> Callable[[str, str, random.Random], str | None]:
    """A style that rewords by `table`: the point's own wordings, else its family's; None where it has none."""

    def write(q: str, point: str, rng: random.Random) -> str | None:
        wordings = table.get(point) or table.get(_family(point))
        return rng.choice(wordings).format(**_fields(q)) if wordings else None

    return write


def _distractor(q: str, point: str, rng: random.Random) -> str | None:
    # Another person than a word problem's own, so the sentence is about someone the question does not ask.
    name = rng.choice([x for x in _NAMES if not q.startswith(x)])
    return f"{name} is {rng.randint(5, 80)} years old. {q}"


def _context(q: str, point: str, rng: random.Random) -> str | None:
    return f"{rng.choice(CONTEXT_SENTENCES)} {q}"


def _negation(q: str, point: str, rng: random.Random) -> str | None:
    fam, end, body, f = _family(point), q[-1], q[:-1], _fields(q)
    if fam in ("add", "sub", "mul"):
        wrong = {"add": "-", "sub": "+", "mul": "+"}[fam]
        return f"{body}, not {f['a']} {wrong} {f['b']}{end}"
    clause = {
        "cmp": "not " + ("smaller" if "larger" in q else "larger"),
        "next": "not before it",
        "parity": "not prime or composite",
        "seq": "",
        "word": "not before",
    }[fam]
    if fam == "seq":
        clause = {
            "seq.first": "not the last",
            "seq.last": "not the first",
            "seq.reverse": "do not sort it",
            "seq.sort": "do not reverse it",
            "seq.count": "not the other letter",
        }[point]
    return f"{body}, {clause}{end}"


def _format(q: str, point: str, rng: random.Random) -> str | None:
    if point.startswith("seq."):
        if point in ("seq.reverse", "seq.sort"):
            return None  # the answer is a sequence too: in which format would be ambiguous
        seq = _fields(q)["s"]
        letters = seq.split()  # "a, b and c": a list the project's question key tells from "a b c"
        return f"{q[: -len(seq) - 1]}{', '.join(letters[:-1])} and {letters[-1]}{q[-1]}"
    return re.sub(r"\d+", lambda m: number_words(int(m[0])), q)


_WRITERS: dict[str, Callable[[str, str, random.Random], str | None]] = {
    "plain": lambda q, point, rng: q,
    "paraphrase": _worded(_PARAPHRASES),
    "distractor": _distractor,
    "units": _worded(_UNITS),
    "context": _context,
    "negation": _negation,
    "format": _format,
}
_PROBE = random.Random(0)


def applies(style: str, point: str) -> bool:
    """Whether `style` has a form for the questions of `point` (checked on one of its items)."""
    question, _ = get_point(point).generate(random.Random(0), 2)
    return _WRITERS[_known(style)](question, point, _PROBE) is not None


def restyle(style: str, question: str, point: str, rng: random.Random) -> Styled | str:
    """`question` (a world question of `point`) in `style`, checked by the oracle; or why not, as a short reason:
    `not applicable`, `unreadable` (the oracle cannot read it), `answer changed`, `point changed`."""
    gold = solve(question)
    if gold is None or point_of(question) != point or not is_template(question):
        raise ValueError(f"restyle needs a question of {point} in the world's wording, got {question!r}")
    styled = _WRITERS[_known(style)](question, point, rng)
    if styled is None:
        return "not applicable"
    answer = solve(styled)
    if answer is None:
        return "unreadable"
    if answer != gold:
        return "answer changed"
    if point_of(styled) != point:
        return "point changed"
    return Styled(styled, answer, question)


def _known(style: str) -> str:
    if style not in _WRITERS:
        raise ValueError(f"unknown style {style!r}; known: {', '.join(_WRITERS)}")
    return style
