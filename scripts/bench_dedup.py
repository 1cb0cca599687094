"""Benchmark near-duplicate removal: MinHash LSH (and exact, and optionally ROUGE-L on a subset) on synthetic
instructions with planted near duplicates.

    OMP_NUM_THREADS=1 python scripts/bench_dedup.py [--rows 100000] [--dup-share 0.1] [--seed 0] [--rouge-rows 0]

Rows are templated sentences (5-6 a row, about 60 words) filled from a seeded vocabulary of made-up words,
so unrelated rows share no 5-word shingle by chance. A `--dup-share` of the rows are copies of an earlier
original with one small edit: none (exact copy), case and punctuation, one to three words replaced, one
word inserted, or one word deleted. Recall counts the planted copies that were dropped, over all of them
and over those whose true shingle Jaccard reaches the threshold (the ones the method is asked to find);
precision counts the dropped rows that were planted copies.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agents.hygiene import Record, exact_dedup, minhash_dedup, rouge_dedup, shingles  # noqa: E402

TEMPLATES = (
    "Write a {a} {w} about the {w} of {w} for {w} readers.",
    "Explain how {w} changes the {w} of {w} in {num} steps.",
    "Mention the {a} {w} near {w} and compare it with {w}.",
    "Keep it under {num} words and end with a question about {w}.",
    "Use a {a} tone, avoid the word {w}, and cite {w} twice.",
    "Start from the {w} of {w} then move to {w} and {w}.",
    "Give {num} {a} examples involving {w}, {w} and a {w}.",
    "Summarise what {w} said about {w} during the {w} of {w}.",
    "List the {a} differences between {w} and {w} in {w}.",
    "Translate the {w} into {w} and keep every {w} intact.",
)
EDITS = ("copy", "case", "replace", "insert", "delete")


def vocabulary(rng: random.Random, size: int) -> list[str]:
    """`size` distinct made-up words of two to four syllables."""
    syllables = [c + v for c in "bcdfghjklmnprstvz" for v in ("a", "e", "i", "o", "u", "ai", "ou")]
    words: set[str] = set()
    while len(words) < size:
        words.add("".join(rng.choice(syllables) for _ in range(rng.randint(2, 4))))
    return sorted(words)


def original(rng: random.Random, vocab: list[str], adjectives: list[str]) -> str:
    """One templated instruction of 5 or 6 sentences."""
    sentences = []
    for template in rng.sample(TEMPLATES, rng.randint(5, 6)):
        text = template
        while "{w}" in text:
            text = text.replace("{w}", rng.choice(vocab), 1)
        sentences.append(text.replace("{a}", rng.choice(adjectives)).replace("{num}", str(rng.randint(2, 99))))
    return " ".join(sentences)


def edit(rng: random.Random, text: str, kind: str, vocab: list[str]) -> str:
    """`text` with one small edit of the given kind."""
    toks = text.split()
    i = rng.randrange(len(toks))
    if kind == "case":
        return text.upper().replace(".", "!").replace(",", " ;")
    if kind == "replace":  # one to three words, so that some copies fall below the threshold
        for j in rng.sample(range(len(toks)), rng.randint(1, 3)):
            toks[j] = rng.choice(vocab)
    elif kind == "insert":
        toks.insert(i, rng.choice(vocab))
    elif kind == "delete":
        del toks[i]
    return " ".join(toks)


def make_rows(n: int, dup_share: float, seed: int) -> tuple[list[Record], dict[int, int]]:
    """(rows, planted): `n` rows, of which about `dup_share` are edited copies; planted maps copy -> original."""
    rng = random.Random(seed)
    vocab = vocabulary(rng, 5000)
    adjectives = vocabulary(rng, 300)
    rows: list[Record] = []
    originals: list[int] = []
    planted: dict[int, int] = {}
    for i in range(n):
        if originals and rng.random() < dup_share:
            source = rng.choice(originals)
            text = edit(rng, str(rows[source]["instruction"]), rng.choice(EDITS), vocab)
            planted[i] = source
        else:
            text = original(rng, vocab, adjectives)
            originals.append(i)
        rows.append({"id": i, "instruction": text})
    return rows, planted


def measure(
    name: str, fn: Callable[[list[Record]], tuple[list[Record], list[Record]]], rows: list[Record], findable: set[int]
) -> dict[str, object]:
    """Run one method and score its dropped rows against the planted copies."""
    planted = {i for i in range(len(rows)) if rows[i].get("planted_from") is not None}
    t0 = time.perf_counter()
    kept, dropped = fn(rows)
    seconds = time.perf_counter() - t0
    found = {int(d["id"]) for d in dropped}  # type: ignore[arg-type]
    hits = found & planted
    return {
        "method": name,
        "rows": len(rows),
        "seconds": seconds,
        "rows/s": len(rows) / seconds,
        "dropped": len(found),
        "recall (all planted)": len(hits) / max(len(planted), 1),
        "recall (J>=t)": len(found & findable) / max(len(findable), 1),
        "precision": len(hits) / max(len(found), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--dup-share", type=float, default=0.1, help="share of rows that are edited copies")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threshold", type=float, default=0.8, help="MinHash Jaccard threshold")
    parser.add_argument("--num-perm", type=int, default=128)
    parser.add_argument("--ngram", type=int, default=5)
    parser.add_argument("--rouge-rows", type=int, default=0, help="also run ROUGE-L dedup (0.7) on this many rows")
    args = parser.parse_args()

    t0 = time.perf_counter()
    base, planted = make_rows(args.rows, args.dup_share, args.seed)
    rows = [{**r, "planted_from": planted.get(i)} for i, r in enumerate(base)]
    # The planted copies a method at this threshold should find: true Jaccard of the shingle sets >= t.
    findable = set()
    for i, source in planted.items():
        a = shingles(str(rows[i]["instruction"]), args.ngram)
        b = shingles(str(rows[source]["instruction"]), args.ngram)
        if len(a & b) / len(a | b) >= args.threshold:
            findable.add(i)
    words = sum(len(str(r["instruction"]).split()) for r in rows) / len(rows)
    print(
        f"{len(rows)} rows (mean {words:.0f} words), {len(planted)} planted copies, {len(findable)} with "
        f"Jaccard >= {args.threshold}; generated in {time.perf_counter() - t0:.1f}s"
    )

    results = [
        measure("exact", exact_dedup, rows, findable),
        measure(
            f"minhash t={args.threshold} perm={args.num_perm} {args.ngram}-gram",
            lambda r: minhash_dedup(r, args.threshold, args.num_perm, args.ngram),
            rows,
            findable,
        ),
    ]
    if args.rouge_rows:
        subset = rows[: args.rouge_rows]
        sub_findable = {i for i in findable if i < args.rouge_rows}
        results.append(measure("rouge-l > 0.7", lambda r: rouge_dedup(r, 0.7), subset, sub_findable))

    columns = list(results[0])
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for res in results:
        cells = [
            f"{v:,.0f}"
            if k == "rows/s"
            else f"{v:.1f}"
            if k == "seconds"
            else f"{v:.3f}"
            if isinstance(v, float)
            else str(v)
            for k, v in res.items()
        ]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
