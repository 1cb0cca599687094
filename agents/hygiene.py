"""Data hygiene: exact and near-duplicate removal, and decontamination against evaluation sets.

Every function takes rows (dicts whose text is in `instruction`, `question` or `prompt`, or in the named
field) and returns `(kept, dropped)`: kept rows are shallow copies in input order; each dropped row is a
copy with `kept=False`, its input position `row_index`, `drop_reason`, `drop_detail`, `match`,
`similarity` and the row it matched (`matched_set`, `matched_id`, `matched_index`, `matched_text`).
Results are deterministic and inputs are never mutated.

Words are lowercase runs of letters and digits plus arithmetic symbols (`+ - * / = < > % ^`), so that
"What is 7 + 1?" and "What is 7 - 1?" stay different while case, spacing and punctuation do not count;
exact duplicates are those with the same `core.text.question_key`, the project's one "same question".
"""

from __future__ import annotations

import os
import re
import zlib
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from datasketch import MinHash, MinHashLSH

from agents.similarity import RougeIndex, lcs_length
from core.jsonl import iter_jsonl
from core.text import question_key

Record = dict[str, object]
TEXT_FIELDS = ("instruction", "question", "prompt")
_WORD = re.compile(r"[^\W_]+|[+\-*/=<>%^×÷]")
# A near-copy candidate gram held by more evaluation rows than this is boilerplate ("how much money
# does she"), not evidence of a copy; skipping it keeps the candidate lists short.
_COMMON_GRAM = 50
# Near-copy scoring runs only on the evaluation rows sharing the most candidate grams with a row.
_MAX_CANDIDATES = 8


class HygieneError(ValueError):
    """A row cannot be checked (no text field, or a non-string text)."""


def words(text: str) -> list[str]:
    """Lowercase words and arithmetic symbols of `text`; punctuation and spacing separate them."""
    return _WORD.findall(text.lower())


def row_text(row: Mapping[str, object], field: str | None = None) -> str:
    """The text of a row: `row[field]`, or the first of instruction / question / prompt it has."""
    if not isinstance(row, Mapping):
        raise HygieneError(f"expected a JSON object, got {type(row).__name__}")
    names = (field,) if field else TEXT_FIELDS
    for name in names:
        if name in row:
            value = row[name]
            if not isinstance(value, str):
                raise HygieneError(f"field {name!r} must be a string, got {type(value).__name__}")
            return value
    looked = f"field {field!r}" if field else "text field (looked for " + ", ".join(TEXT_FIELDS) + ")"
    raise HygieneError(f"row has no {looked}; its keys: {', '.join(map(str, row)) or 'none'}")


def row_id(row: Mapping[str, object], index: int) -> str:
    """A row's `id` when it has one, else its 0-based position."""
    return str(row["id"]) if row.get("id") is not None else str(index)


def read_rows(path: str | os.PathLike[str], field: str | None = None) -> tuple[list[Record], list[int]]:
    """(rows, their line numbers) of a JSONL file; a missing file, a line that is not a JSON object, or a
    row without its text field raises HygieneError naming file:line and the field."""
    path = Path(path)
    if not path.is_file():
        raise HygieneError(f"file not found: {path}")
    rows, lines = [], []
    try:
        for lineno, row, problem in iter_jsonl(path):
            if problem is None:
                try:
                    row_text(row, field)  # type: ignore[arg-type]
                except HygieneError as err:
                    problem = str(err)
            if problem is not None:
                raise HygieneError(f"{path}:{lineno}: {problem}")
            rows.append(row)
            lines.append(lineno)
    except UnicodeDecodeError as err:
        raise HygieneError(f"{path}: not UTF-8 text ({err})") from None
    return rows, lines


def _texts(rows: Sequence[Record], field: str | None, what: str) -> list[str]:
    """Every row's text, checked before any work so that a bad row fails fast, named by position and id."""
    texts = []
    for i, row in enumerate(rows):
        try:
            texts.append(row_text(row, field))
        except HygieneError as err:
            name = row_id(row, i) if isinstance(row, Mapping) else str(i)
            raise HygieneError(f"{what} row {i} (id {name}): {err}") from None
    return texts


def _check_unit(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be between 0 and 1, got {value}")


def _dropped(
    row: Record,
    index: int,
    reason: str,
    match: str,
    similarity: float,
    detail: str,
    matched: tuple[str, int, Record, str],
) -> Record:
    matched_set, matched_index, matched_row, text = matched
    return {
        **row,
        "kept": False,
        "row_index": index,
        "drop_reason": reason,
        "drop_detail": detail,
        "match": match,
        "similarity": round(similarity, 4),
        "matched_set": matched_set,
        "matched_id": row_id(matched_row, matched_index),
        "matched_index": matched_index,
        "matched_text": text,
    }


def exact_dedup(
    rows: Sequence[Record], field: str | None = None, against: Sequence[Record] = ()
) -> tuple[list[Record], list[Record]]:
    """(kept, dropped): drop rows whose normalised text equals an `against` row or an earlier kept row."""
    seen: dict[str, tuple[str, int, Record, str]] = {}
    for i, (row, text) in enumerate(zip(against, _texts(against, field, "against"), strict=True)):
        seen.setdefault(question_key(text), ("against", i, row, text))
    kept, dropped = [], []
    for i, (row, text) in enumerate(zip(rows, _texts(rows, field, "input"), strict=True)):
        key = question_key(text)
        if key in seen:
            first = seen[key]
            detail = f"same text as {first[0]} row {row_id(first[2], first[1])}"
            dropped.append(_dropped(row, i, "duplicate", "exact", 1.0, detail, first))
        else:
            seen[key] = ("input", i, row, text)
            kept.append(dict(row))
    return kept, dropped


def rouge_dedup(
    rows: Sequence[Record], threshold: float = 0.7, field: str | None = None, against: Sequence[Record] = ()
) -> tuple[list[Record], list[Record]]:
    """(kept, dropped): drop rows with ROUGE-L above `threshold` to an `against` row or an earlier kept row
    (Self-Instruct drops above 0.7, LLM2LLM above 0.95). Exact search, quadratic in the worst case: for pools
    of a few thousand rows (2,000 GSM8K questions take about 17 s on one core)."""
    _check_unit("threshold", threshold)
    index = RougeIndex()
    origin: list[tuple[str, int, Record, str]] = []
    for i, (row, text) in enumerate(zip(against, _texts(against, field, "against"), strict=True)):
        index.add(text)
        origin.append(("against", i, row, text))
    kept, dropped = [], []
    for i, (row, text) in enumerate(zip(rows, _texts(rows, field, "input"), strict=True)):
        score, where = index.best(text, stop_above=threshold)
        if where is not None and score > threshold:
            first = origin[where]
            detail = f"rouge-l {score:.3f} > {threshold} with {first[0]} row {row_id(first[2], first[1])}"
            dropped.append(_dropped(row, i, "near-duplicate", "rouge-l", score, detail, first))
        else:
            index.add(text)
            origin.append(("input", i, row, text))
            kept.append(dict(row))
    return kept, dropped


_MIX = np.uint64(0x9E3779B97F4A7C15)  # odd 64-bit constants of the golden-ratio and splitmix64 hashes
_FMIX = np.uint64(0xBF58476D1CE4E5B9)


def _shingle_array(text: str, ngram: int) -> np.ndarray:
    """Sorted distinct 32-bit hashes of the word `ngram`-grams of `text` (the whole text when it is shorter)."""
    toks = words(text)
    if len(toks) <= ngram:
        return np.array([zlib.crc32(" ".join(toks).encode())], dtype=np.uint32)
    # Hash each word once and combine n consecutive word hashes arithmetically: the per-shingle work
    # stays in numpy, which is most of minhash_dedup's time when done as one string hash per shingle.
    word_hashes = np.fromiter((zlib.crc32(t.encode()) for t in toks), dtype=np.uint64, count=len(toks))
    width = len(toks) - ngram + 1
    h = word_hashes[:width].copy()
    for k in range(1, ngram):
        h = h * _MIX + word_hashes[k : k + width]
    h ^= h >> np.uint64(31)
    h *= _FMIX
    h ^= h >> np.uint64(29)
    return np.unique((h & np.uint64(0xFFFFFFFF)).astype(np.uint32))


def shingles(text: str, ngram: int = 5) -> frozenset[int]:
    """32-bit hashes of the word `ngram`-grams of `text` (the whole text when it is shorter)."""
    return frozenset(_shingle_array(text, ngram).tolist())


def _jaccard(a: np.ndarray, b: np.ndarray) -> float:
    shared = len(np.intersect1d(a, b, assume_unique=True))
    return shared / (len(a) + len(b) - shared)


def _identity(value: int) -> int:
    return value


def minhash_dedup(
    rows: Sequence[Record],
    threshold: float = 0.8,
    num_perm: int = 128,
    ngram: int = 5,
    field: str | None = None,
    against: Sequence[Record] = (),
    seed: int = 1,
) -> tuple[list[Record], list[Record]]:
    """(kept, dropped): drop rows whose word-`ngram` shingle set has Jaccard >= `threshold` with an `against`
    row or an earlier kept row. MinHash LSH (datasketch) finds the candidates; the exact Jaccard of the
    shingle sets decides, so nothing below the threshold is dropped. The method for large pools: 100k rows of
    60 words take about 30 s on one core (scripts/bench_dedup.py)."""
    _check_unit("threshold", threshold)
    if num_perm < 2 or ngram < 1:
        raise ValueError(f"minhash_dedup: num_perm must be >= 2 and ngram >= 1, got {num_perm} and {ngram}")
    pool = list(against) + list(rows)
    texts = _texts(against, field, "against") + _texts(rows, field, "input")
    sets = [_shingle_array(t, ngram) for t in texts]
    # The LSH bands are tuned to a threshold 0.15 lower than the decision one: tuned to 0.8 itself (9 bands
    # of 13), a pair at Jaccard 0.8 becomes a candidate only 40% of the time. The exact check then drops
    # the extra candidates.
    lsh = MinHashLSH(threshold=max(threshold - 0.15, 0.05), num_perm=num_perm)
    kept, dropped = [], []
    n_against = len(against)
    hashed = (arr.tolist() for arr in sets)
    for i, sketch in enumerate(MinHash.generator(hashed, num_perm=num_perm, seed=seed, hashfunc=_identity)):
        best, where = 0.0, -1
        for j in sorted(lsh.query(sketch)) if i >= n_against else ():
            jaccard = _jaccard(sets[i], sets[j])
            if jaccard > best:
                best, where = jaccard, j
        if where >= 0 and best >= threshold:
            first = ("against", where, pool[where], texts[where])
            if where >= n_against:
                first = ("input", where - n_against, pool[where], texts[where])
            detail = f"jaccard {best:.3f} >= {threshold} of {ngram}-word shingles with {first[0]} row "
            detail += row_id(first[2], first[1])
            dropped.append(_dropped(pool[i], i - n_against, "near-duplicate", "minhash", best, detail, first))
            continue
        lsh.insert(i, sketch, check_duplication=False)
        if i >= n_against:
            kept.append(dict(pool[i]))
    return kept, dropped


class _EvalIndex:
    """Evaluation rows indexed by their n-grams (exact check) and by shorter grams (near-copy candidates)."""

    def __init__(self, against: Mapping[str, Sequence[Record]], field: str | None, n: int, near_n: int) -> None:
        self.rows: list[tuple[str, int, Record, str]] = []
        self.words: list[list[str]] = []
        self.grams: dict[tuple[str, ...], list[int]] = defaultdict(list)
        near: dict[tuple[str, ...], list[int]] = defaultdict(list)
        for name, rows in against.items():
            for i, (row, text) in enumerate(zip(rows, _texts(rows, field, f"against {name!r}"), strict=True)):
                toks = words(text)
                g = len(self.rows)
                self.rows.append((name, i, row, text))
                self.words.append(toks)
                if not toks:
                    continue
                k = min(n, len(toks))  # a text shorter than n words is one gram: the whole text
                for gram in dict.fromkeys(tuple(toks[p : p + k]) for p in range(len(toks) - k + 1)):
                    self.grams[gram].append(g)
                if len(toks) >= near_n:
                    for gram in dict.fromkeys(tuple(toks[p : p + near_n]) for p in range(len(toks) - near_n + 1)):
                        near[gram].append(g)
        self.lengths = sorted({len(g) for g in self.grams}, reverse=True)
        self.near = {gram: ids for gram, ids in near.items() if len(ids) <= _COMMON_GRAM}
        self.near_n = near_n

    def shared_gram(self, toks: list[str]) -> tuple[int, tuple[str, ...]] | None:
        """(evaluation row, gram) of the first gram of `toks`, longest first, that an evaluation row holds."""
        for p in range(len(toks)):
            for k in self.lengths:
                ids = self.grams.get(tuple(toks[p : p + k])) if p + k <= len(toks) else None
                if ids:
                    return ids[0], tuple(toks[p : p + k])
        return None

    def candidates(self, toks: list[str]) -> list[int]:
        """Evaluation rows sharing a near-copy gram with `toks`, most shared grams first (ties by position)."""
        counts: Counter[int] = Counter()
        for gram in {tuple(toks[p : p + self.near_n]) for p in range(len(toks) - self.near_n + 1)}:
            for g in self.near.get(gram, ()):
                counts[g] += 1
        return sorted(counts, key=lambda g: (-counts[g], g))[:_MAX_CANDIDATES]

    def recall(self, g: int, toks: list[str]) -> float:
        """Share of evaluation row g's words found in order in the best window of `toks` (ROUGE-L recall)."""
        target = self.words[g]
        size = len(target)
        if not size:
            return 0.0
        if len(toks) <= 2 * size:
            return lcs_length(target, toks) / size
        # Windows of twice the evaluation text, half a text apart: a copy that is stretched by less than
        # half again its length fits in one, and chance matches spread over a long text do not add up.
        step = max(1, size // 2)
        starts = range(0, len(toks) - size + 1, step)
        return max(lcs_length(target, toks[s : s + 2 * size]) for s in starts) / size


def decontaminate(
    train_rows: Sequence[Record],
    against: Mapping[str, Sequence[Record]],
    n: int = 13,
    field: str | None = None,
    against_field: str | None = None,
    near_n: int = 5,
    near_threshold: float | None = 0.9,
) -> tuple[list[Record], list[Record]]:
    """(kept, dropped): drop training rows that contain an evaluation row of any set in `against`.

    Two checks, in this order. (1) n-gram: the row shares a run of n consecutive words with an evaluation
    row; an evaluation text shorter than n words must appear whole (so a restated short test question is
    caught, while a short training row is never dropped for a fragment of a long test text). (2) near copy,
    for small edits that break every n-gram (one changed word in a 20-word question leaves no 13-gram):
    among evaluation rows sharing a `near_n`-word gram, the row is dropped when some window of it holds
    at least `near_threshold` of an evaluation row's words in order (ROUGE-L recall on that row, not F1,
    so that extra words around a restated test question do not hide it). `near_threshold=None` turns
    (2) off; templated tasks whose items differ only in their numbers need that or a higher threshold.
    """
    if n < 1 or near_n < 1:
        raise ValueError(f"decontaminate: n and near_n must be >= 1, got {n} and {near_n}")
    if near_threshold is not None:
        _check_unit("near_threshold", near_threshold)
    index = _EvalIndex(against, against_field, n, near_n)
    kept, dropped = [], []
    for i, (row, text) in enumerate(zip(train_rows, _texts(train_rows, field, "train"), strict=True)):
        toks = words(text)
        hit = index.shared_gram(toks)
        if hit is not None:
            g, gram = hit
            matched = index.rows[g]
            detail = f"{len(gram)}-word run '{' '.join(gram)}' of {matched[0]} row {row_id(matched[2], matched[1])}"
            kind = f"{n}-gram" if len(gram) == n else "whole text"
            dropped.append(_dropped(row, i, "contaminated", kind, index.recall(g, toks), detail, matched))
            continue
        if near_threshold is not None:
            scored = [(index.recall(g, toks), -g) for g in index.candidates(toks)]
            best = max(scored, default=(0.0, 0))
            if best[0] >= near_threshold:
                g = -best[1]
                matched = index.rows[g]
                detail = (
                    f"near copy of {matched[0]} row {row_id(matched[2], matched[1])}: "
                    f"{best[0]:.0%} of its words in order (threshold {near_threshold:.0%})"
                )
                dropped.append(_dropped(row, i, "contaminated", "near-copy", best[0], detail, matched))
                continue
        kept.append(dict(row))
    return kept, dropped
