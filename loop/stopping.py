"""Stopping rules: target accuracy, plateau, the agents' token or cost budget, the synthesis budget."""

from __future__ import annotations

from collections.abc import Sequence

from loop.config import RunConfig


def stop_reason(cfg: RunConfig, rounds: Sequence[dict[str, float]]) -> str | None:
    """The first rule that fires after the last of `rounds` (each round's metrics), or None."""
    rc, llm = cfg.rounds, cfg.teacher.llm
    last = rounds[-1]
    acc = last.get("test/accuracy", 0.0)
    if rc.target_accuracy is not None and acc >= rc.target_accuracy:
        return f"target accuracy {rc.target_accuracy} reached ({acc:.3f})"
    if len(rounds) > rc.plateau_rounds:
        best_before = max(x.get("test/accuracy", 0.0) for x in rounds[: -rc.plateau_rounds])
        recent = max(x.get("test/accuracy", 0.0) for x in rounds[-rc.plateau_rounds :])
        if recent < best_before + rc.plateau_delta:
            return f"plateau: no gain over {best_before:.3f} in {rc.plateau_rounds} rounds"
    chat = cfg.teacher.kind == "llm"
    spent_tokens, spent_cost = last.get("llm/total_tokens", 0.0), last.get("llm/total_cost", 0.0)
    if chat and llm.budget_tokens is not None and spent_tokens >= llm.budget_tokens:
        return f"LLM token budget spent ({int(spent_tokens)} >= {llm.budget_tokens})"
    if chat and llm.budget_cost is not None and spent_cost >= llm.budget_cost:
        return f"LLM cost budget spent (${spent_cost:.4f} >= ${llm.budget_cost})"
    total = sum(int(x.get("synth/kept", 0)) for x in rounds)
    if cfg.synthesis.max_total is not None and total >= cfg.synthesis.max_total:
        return f"synthesis budget spent ({total} >= {cfg.synthesis.max_total} items)"
    return None
