"""The programmatic Assessor: exact grading with error types, and curation of synthetic items."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from agents.roles import Record
from agents.tasks.world import normalize_answer


def error_type(prediction: str, answer: str) -> str | None:
    """A label for a wrong answer (None when right): format, wrong length, off by one, wrong carry, ..."""
    pred, gold = normalize_answer(prediction), normalize_answer(answer)
    if pred == gold:
        return None
    if not pred:
        return "empty"
    if gold.isdigit():
        if not pred.isdigit():
            return "format"
        if len(pred) != len(gold):
            return "wrong length"
        diff = abs(int(pred) - int(gold))
        if diff == 1:
            return "off by one"
        if diff % 10 == 0:
            return "wrong carry"  # right last digit, a wrong digit further left: a carry or borrow slip
        return "wrong digit"
    if sorted(pred.split()) == sorted(gold.split()):
        return "wrong order"
    if len(pred.split()) != len(gold.split()):
        return "wrong length"
    return "wrong value"


class WorldAssessor:
    """Grades against the reference answer; curates synthetic items with a reason for every drop."""

    def __init__(
        self, max_chars: int | None = 200, verifier: Callable[[str, str, Record], bool | None] | None = None
    ) -> None:
        self.max_chars = max_chars  # None: no length limit (real tasks' worked answers run long)
        # verifier(answer, reference, item): does the teacher's answer agree with the proposed one (None: cannot
        # tell); by default the world's exact comparison
        self.verifier = verifier

    def grade(self, records: Sequence[Record]) -> list[Record]:
        """Each record with `correct` and `error_type` (from its `prediction` and `output`)."""
        out = []
        for r in records:
            err = error_type(str(r.get("prediction", "")), str(r["output"]))
            out.append({**r, "correct": err is None, "error_type": err})
        return out

    def curate(self, items: Sequence[Record]) -> tuple[list[Record], list[Record]]:
        """(kept, dropped); a dropped item carries `drop_reason`."""
        kept, dropped = [], []
        for item in items:
            reason = self.problem(item)
            if reason:
                dropped.append({**item, "kept": False, "drop_reason": reason})
            else:
                kept.append(item)
        return kept, dropped

    def problem(self, item: Record) -> str | None:
        """Why an answered item cannot be trained on, or None."""
        question, output = str(item.get("instruction") or "").strip(), str(item.get("output") or "").strip()
        if not question:
            return "malformed: empty instruction"
        if not output:
            note = item.get("teacher_note")  # e.g. a classification answer that names no label
            return (
                f"malformed: no answer from the teacher ({note})" if note else "malformed: no answer from the teacher"
            )
        if self.max_chars is not None and len(question) + len(output) > self.max_chars:
            return f"malformed: longer than {self.max_chars} characters"
        reference = item.get("reference")
        if reference is None or not str(reference).strip():
            return None
        if self.verifier is not None:
            agrees = self.verifier(output, str(reference), item)
        else:
            agrees = normalize_answer(output) == normalize_answer(str(reference))
        return "teacher answer disagrees with the reference" if agrees is False else None
