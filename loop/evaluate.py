"""Evaluation of the student on task items: greedy answers, accuracy per skill and point (the task grades)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence

from trainers.inference import Generator, format_rows


def answer_items(
    generator: Generator,
    items: Sequence[dict[str, object]],
    template: str,
    max_new_tokens: int,
    stop: Sequence[str] = ("\n",),
    chunk: int = 128,
    progress: Callable[[int], None] | None = None,
) -> list[dict[str, object]]:
    """Each item with the student's `prediction` (cut at the first `stop` string), in input order."""
    prompts = format_rows(items, template, generator.tokenizer)
    out: list[dict[str, object]] = []
    for start in range(0, len(prompts), chunk):
        preds = generator.generate(prompts[start : start + chunk], max_new_tokens=max_new_tokens, stop=stop)
        for item, pred in zip(items[start : start + chunk], preds, strict=True):
            out.append({**item, "prediction": pred})
        if progress is not None:
            progress(len(preds))
    return out


def accuracy_by(records: Sequence[dict[str, object]], key: str) -> dict[str, float]:
    """Accuracy per value of `key` (e.g. skill, knowledge_point), sorted by that value."""
    hits: dict[str, list[bool]] = defaultdict(list)
    for r in records:
        hits[str(r[key])].append(bool(r["correct"]))
    return {k: sum(v) / len(v) for k, v in sorted(hits.items())}


def accuracy_metrics(records: Sequence[dict[str, object]], prefix: str) -> dict[str, float]:
    """`{prefix}/accuracy`, and per skill `{prefix}/accuracy/<skill>`."""
    if not records:
        return {}
    metrics = {f"{prefix}/accuracy": sum(bool(r["correct"]) for r in records) / len(records)}
    for skill, acc in accuracy_by(records, "skill").items():
        metrics[f"{prefix}/accuracy/{skill}"] = acc
    return metrics
