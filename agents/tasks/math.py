"""GSM8K-style math items: a word problem, a step-by-step answer whose last line is `#### <number>`, and
final-answer extraction from free model output so that answers are checked numerically.

Extraction order (the first rule that yields a number wins): the last `####` line, the last
`\\boxed{...}`, the last "the answer is ...", the last number anywhere. Numbers may carry thousands
commas, a sign, decimals, `$`, `%` or units; `a/b` fractions (and `\\frac{a}{b}` in a box) are kept.
"""

from __future__ import annotations

import json
import os
import re
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

# A sign only where it cannot be a binary minus ("10-20" is two numbers, the second not negative).
_SIGN = r"(?:(?<![\w)\]])-)?"
_UNSIGNED = r"(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+|/\d+)?|\.\d+"
_NUMBER = re.compile(rf"{_SIGN}\$?(?:{_UNSIGNED})")
_HASHES = re.compile(r"####[ \t]*([^\n]*)")
_ANSWER_IS = re.compile(r"answer\s*(?:is|:|=)\s*:?", re.IGNORECASE)
_FRAC = re.compile(r"\\[dt]?frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}")
_THIN_SPACE = re.compile(r"(?<=\d)(?:\\[,!]|\{,\})(?=\d)")  # 1\,000 and 1{,}000 in LaTeX
_LATEX_NOISE = re.compile(r"\\(?:text|mathrm|textbf|mbox)\s*\{[^{}]*\}|\\[,;!% $]|\\left|\\right")


def _canonical(token: str) -> str | None:
    """'$1,234.50' -> '1234.5', '-3/4' -> '-3/4', '18.00' -> '18'; None when it does not parse."""
    text = token.replace(",", "").replace("$", "").replace(" ", "")
    try:
        value = Fraction(text)
    except (ValueError, ZeroDivisionError):
        return None
    if "/" in text:
        num, den = text.split("/", 1)
        return f"{_canonical(num)}/{_canonical(den)}"
    if value.denominator == 1:
        return str(value.numerator)
    return format(Decimal(text).normalize(), "f")


def _numbers(text: str) -> list[str]:
    """Every number in `text`, canonical, in order of appearance."""
    text = text.replace("\u2212", "-")  # the Unicode minus sign some models write
    found = (_canonical(m.group(0)) for m in _NUMBER.finditer(text))
    return [n for n in found if n is not None]


def _boxed(text: str) -> str | None:
    """Content of the last `\\boxed{...}` (or `\\fbox{...}`), braces balanced; None when there is none."""
    start = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if start < 0:
        return None
    open_at = text.find("{", start)
    if open_at < 0:
        return None
    depth = 0
    for i in range(open_at, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[open_at + 1 : i]
    return None  # unbalanced: the model stopped inside the box


def _latex_number(text: str) -> str | None:
    """First number in a LaTeX fragment, with `\\frac{a}{b}` read as a/b and `\\text{...}` dropped."""
    text = _FRAC.sub(r"\1/\2", text)
    text = _THIN_SPACE.sub("", text)
    text = _LATEX_NOISE.sub(" ", text)
    numbers = _numbers(text)
    return numbers[0] if numbers else None


def extract_answer(text: str | None) -> str | None:
    """The final numeric answer of a model output or gold solution, canonical ('1,000.0' -> '1000'); None if none."""
    if not text:
        return None
    for tail in reversed(_HASHES.findall(text)):
        numbers = _numbers(tail)
        if numbers:
            return numbers[0]
    boxed = _boxed(text)
    if boxed is not None:
        number = _latex_number(boxed)
        if number is not None:
            return number
    for match in reversed(list(_ANSWER_IS.finditer(text))):
        # Only the rest of that sentence: a number further on belongs to something else.
        rest = re.split(r"(?<!\d)[.!?](?!\d)|\n", text[match.end() :], maxsplit=1)[0]
        numbers = _numbers(rest)
        if numbers:
            return numbers[0]
    numbers = _numbers(text)
    return numbers[-1] if numbers else None


def _as_fraction(value: str | float | int | Fraction | None) -> Fraction | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, Fraction)):
        return Fraction(value)
    if isinstance(value, float):
        # repr gives the shortest decimal that round-trips, so 0.1 compares equal to "0.1".
        return Fraction(repr(value)) if value == value and abs(value) != float("inf") else None
    canonical = _canonical(value.strip().rstrip(".%").strip())
    return Fraction(canonical) if canonical is not None else None


def numbers_equal(
    a: str | float | int | Fraction | None, b: str | float | int | Fraction | None, rel_tol: float = 0.0
) -> bool:
    """Numeric equality of two answers ('1,000' == '1000' == 1000.0 == '$1000'); False if either is not a number."""
    x, y = _as_fraction(a), _as_fraction(b)
    if x is None or y is None:
        return False
    if rel_tol:
        return abs(x - y) <= rel_tol * max(abs(x), abs(y))
    return x == y


def is_correct(output: str | None, answer: str) -> bool:
    """Whether the final answer extracted from `output` equals the gold number `answer`."""
    return numbers_equal(extract_answer(output), answer)


def load_gsm8k_jsonl(path: str | os.PathLike[str]) -> list[dict[str, str]]:
    """GSM8K rows (`question`, `answer`) as records: id (`<file stem>-<line>` unless the row has one),
    instruction, output (the whole solution) and answer (its `####` number, canonical)."""
    path = Path(path)
    records = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{where}: not valid JSON ({err.msg} at column {err.colno})") from None
            if not isinstance(row, dict):
                raise ValueError(f"{where}: expected a JSON object, got {type(row).__name__}")
            for key in ("question", "answer"):
                if not isinstance(row.get(key), str) or not row[key].strip():
                    raise ValueError(f"{where}: field {key!r} missing or not a non-empty string")
            tails = _HASHES.findall(row["answer"])
            gold = _numbers(tails[-1]) if tails else []
            if not gold:
                raise ValueError(f"{where}: answer has no '#### <number>' line: {row['answer'][-80:]!r}")
            records.append(
                {
                    "id": str(row.get("id", f"{path.stem}-{lineno}")),
                    "instruction": row["question"].strip(),
                    "output": row["answer"].strip(),
                    "answer": gold[0],
                }
            )
    return records
