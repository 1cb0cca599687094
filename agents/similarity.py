"""Text similarity without dependencies: ROUGE-L (LLM2LLM's and Self-Instruct's novelty test), sentence BLEU
(Rainbow Teaming's filter against a mutation's parent) and a TF-IDF nearest-neighbour index (the contrast
retrieval of LLMs-as-Instructors).

Tokens are lowercase runs of letters and digits, as in the `rouge_score` package's default tokenizer
(which the references use), except that letters outside ASCII are kept rather than dropped.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence

from core.text import question_key

_TOKEN = re.compile(r"[^\W_]+")


def tokens(text: str) -> list[str]:
    """Lowercase word tokens (letters and digits; punctuation separates)."""
    return _TOKEN.findall(text.lower())


def _masks(a: Sequence[str]) -> dict[str, int]:
    masks: dict[str, int] = {}
    for i, tok in enumerate(a):
        masks[tok] = masks.get(tok, 0) | (1 << i)
    return masks


def _lcs(masks: dict[str, int], n: int, b: Sequence[str]) -> int:
    full = (1 << n) - 1
    v = full  # a 0 bit in v marks a position of `a` that is in the LCS found so far
    for tok in b:
        u = v & masks.get(tok, 0)
        v = ((v + u) | (v - u)) & full
    return n - v.bit_count()


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence of two token lists (bit-parallel, Hyyro 2004)."""
    return _lcs(_masks(a), len(a), b) if a and b else 0


def _f1(lcs: int, n: int, m: int) -> float:
    # ROUGE-L F1 = 2PR / (P + R) with P = lcs / m and R = lcs / n, which is 2 lcs / (n + m).
    return 2 * lcs / (n + m) if lcs else 0.0


def rouge_l(a: str, b: str) -> float:
    """ROUGE-L F-measure of two texts over lowercase word tokens (symmetric; 0 when either is empty)."""
    ta, tb = tokens(a), tokens(b)
    return _f1(lcs_length(ta, tb), len(ta), len(tb))


class RougeIndex:
    """Texts kept tokenised, with an inverted index, so `best` scans only texts that share a token and
    computes the exact LCS only where a bound (shared-token count) could still beat the best so far."""

    def __init__(self, texts: Iterable[str] = ()) -> None:
        self.texts: list[str] = []
        self._tokens: list[list[str]] = []
        self._counts: list[Counter[str]] = []
        self._postings: dict[str, list[int]] = defaultdict(list)
        for text in texts:
            self.add(text)

    def __len__(self) -> int:
        return len(self.texts)

    def add(self, text: str) -> None:
        """Index one more text."""
        toks = tokens(text)
        counts = Counter(toks)
        for tok in counts:
            self._postings[tok].append(len(self.texts))
        self.texts.append(text)
        self._tokens.append(toks)
        self._counts.append(counts)

    def best(self, text: str, stop_above: float | None = None) -> tuple[float, int | None]:
        """(highest ROUGE-L of `text` to an indexed text, its index); stops early once above `stop_above`."""
        query = tokens(text)
        masks = _masks(query)
        shared: Counter[int] = Counter()
        for tok, count in Counter(query).items():
            for i in self._postings.get(tok, ()):
                shared[i] += min(count, self._counts[i][tok])
        # The LCS is at most the shared-token count, so this F1 bound orders and prunes the candidates.
        bounds = sorted(((_f1(k, len(query), len(self._tokens[i])), i) for i, k in shared.items()), reverse=True)
        best, where = 0.0, None
        for bound, i in bounds:
            if bound <= best:
                break
            score = _f1(_lcs(masks, len(query), self._tokens[i]), len(query), len(self._tokens[i]))
            if score > best:
                best, where = score, i
                if stop_above is not None and best > stop_above:
                    break
        return best, where


class Novelty:
    """What a writer's new question must differ from: every known question by its key, and by ROUGE-L at
    most `rouge_max` (LLM2LLM, Self-Instruct); a kept question joins what the next must differ from."""

    def __init__(self, rouge_max: float, known: Iterable[object] = ()) -> None:
        self.rouge_max = rouge_max
        self._seen: set[str] = set()
        self.index = RougeIndex()
        self.add(known)

    def add(self, questions: Iterable[object]) -> None:
        """Remember questions (duplicates by key are indexed once)."""
        for q in questions:
            key = question_key(str(q))
            if key not in self._seen:
                self._seen.add(key)
                self.index.add(str(q))

    def problem(self, question: str) -> str | None:
        """Why a question is not new enough, or None when it is."""
        if not question:
            return "empty question"
        if question_key(question) in self._seen:
            return "repeat of a known question"
        score, where = self.index.best(question, stop_above=self.rouge_max)
        if score > self.rouge_max and where is not None:
            shown = " ".join(self.index.texts[where].split())
            shown = shown if len(shown) <= 80 else shown[:77] + "..."
            return f"too similar: ROUGE-L {score:.2f} > {self.rouge_max} to {shown!r}"
        return None


def max_rouge_l(text: str, corpus: Sequence[str] | RougeIndex) -> float:
    """Highest ROUGE-L of `text` against any text of `corpus` (0 for an empty corpus)."""
    index = corpus if isinstance(corpus, RougeIndex) else RougeIndex(corpus)
    return index.best(text)[0]


_BLEU_TOKEN = re.compile(r"\w+|[^\w\s]")


def sentence_bleu(candidate: str, reference: str, max_n: int = 4) -> float:
    """BLEU of one sentence against one reference: uniform weights over 1..max_n-grams, the brevity penalty,
    and add-one smoothing of the 2..max_n-gram precisions (Lin and Och 2004; "method 2" of Chen and Cherry
    2014), so a short question sharing no 4-gram still scores by its shorter matches. Tokens are lowercase
    words and single punctuation or operator marks: "7 + 5" and "7 - 5" differ."""
    cand, ref = _BLEU_TOKEN.findall(candidate.lower()), _BLEU_TOKEN.findall(reference.lower())
    if not cand or not ref:
        return 0.0
    logs = []
    for n in range(1, max_n + 1):
        grams = Counter(tuple(cand[i : i + n]) for i in range(len(cand) - n + 1))
        theirs = Counter(tuple(ref[i : i + n]) for i in range(len(ref) - n + 1))
        matched, total = sum((grams & theirs).values()), sum(grams.values())
        if n > 1:
            matched, total = matched + 1, total + 1
        if matched == 0:  # no unigram in common (or a candidate shorter than n with n == 1)
            return 0.0
        logs.append(math.log(matched / total))
    brevity = min(0.0, 1 - len(ref) / len(cand))
    return math.exp(brevity + sum(logs) / max_n)


def _ngrams(text: str) -> list[str]:
    toks = tokens(text)
    return toks + [f"{x} {y}" for x, y in zip(toks, toks[1:], strict=False)]


class TfidfIndex:
    """Cosine nearest neighbours over TF-IDF vectors of word unigrams and bigrams (smoothed idf)."""

    def __init__(self, texts: Sequence[str]) -> None:
        self.texts = list(texts)
        grams = [Counter(_ngrams(t)) for t in self.texts]
        df = Counter(g for counts in grams for g in counts)
        n = len(self.texts)
        self.idf = {g: math.log((1 + n) / (1 + d)) + 1 for g, d in df.items()}
        self._postings: dict[str, list[tuple[int, float]]] = defaultdict(list)
        for i, counts in enumerate(grams):
            for g, w in self._vector(counts).items():
                self._postings[g].append((i, w))

    def _vector(self, counts: Counter[str]) -> dict[str, float]:
        weights = {g: c * self.idf[g] for g, c in counts.items() if g in self.idf}
        norm = math.sqrt(sum(w * w for w in weights.values()))
        return {g: w / norm for g, w in weights.items()} if norm else {}

    def nearest(self, text: str, k: int = 2, exclude_same: bool = True) -> list[tuple[int, float]]:
        """Up to k (index, cosine) pairs, most similar first (ties by index); texts that share nothing
        with the query are never returned; `exclude_same` skips texts equal to the query after normalising."""
        scores: dict[int, float] = defaultdict(float)
        for g, w in self._vector(Counter(_ngrams(text))).items():
            for i, wi in self._postings.get(g, ()):
                scores[i] += w * wi
        same = question_key(text)
        ranked = sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))
        return [(i, s) for i, s in ranked if not (exclude_same and question_key(self.texts[i]) == same)][:k]
