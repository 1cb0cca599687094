"""Text keys shared by every check of "the same question", and the stop-string cut of generated text.

One key for the whole project: the writers' novelty checks, the pool dedup, exact decontamination against
probes and test, `gaploop data dedup --method exact` and the dataset splits all ask
`question_key(a) == question_key(b)`. It folds case, Unicode compatibility forms, spacing (also around
symbols: "7+5" and "7 + 5" agree) and punctuation, and keeps every word, number and arithmetic or
comparison symbol: "What is 7 + 5?" and "What is 7 - 5?" differ, and so do "3.5" and "35".
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

# A number with its decimal point or thousands separators is one token ("3.5" is not "35"); a word is a run
# of letters and digits; an arithmetic or comparison symbol is a token of its own; other punctuation and
# spacing only separate.
_TOKEN = re.compile(r"\d+(?:[.,]\d+)*|[^\W_]+|[+\-*/=<>%^×÷]")


def question_key(text: object) -> str:
    """The comparison key of a question: equal exactly when two texts differ only in case, spacing or
    punctuation other than arithmetic and comparison symbols."""
    return " ".join(_TOKEN.findall(unicodedata.normalize("NFKC", str(text)).casefold()))


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """`text` up to (not including) the earliest occurrence of any stop string."""
    cut = len(text)
    for s in stop:
        at = text.find(s) if s else -1
        if at != -1 and at < cut:
            cut = at
    return text[:cut]
