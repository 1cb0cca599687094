"""The LLM side of a run: one client (backend + call cache + token/cost accounting + budget) and the
LLM Questioner, Teacher and Assessor built on it from the config.

The cache lives in the run directory (`llm_cache.sqlite`), so a resumed or repeated phase costs no new
tokens, and the spent totals survive a crash, so a budget holds across resumes.
"""

from __future__ import annotations

from pathlib import Path

from agents.llm.assessor import LLMAssessor
from agents.llm.backends import make_backend
from agents.llm.client import Budget, LLMClient, Prices, Usage
from agents.llm.questioner import LLMQuestioner
from agents.llm.teacher import LLMTeacher
from agents.roles import Record
from agents.tasks.world import get_point, is_correct, normalize_answer, points_for, solve
from loop.config import RunConfig
from loop.student import resolve_device

LLM_STRATEGIES = ("llm2llm", "autodetect", "instructors")


def make_client(cfg: RunConfig, root: Path, model: str) -> LLMClient:
    """The configured backend for `model`, behind a cache in the run directory, with prices and budget."""
    llm = cfg.teacher.llm
    options: dict[str, object]
    if llm.backend == "transformers":
        options = {"device": resolve_device(llm.device)}
    elif llm.backend == "vllm":
        options = dict(llm.engine)
    else:
        options = {
            "base_url": llm.base_url,
            "api_key_env": llm.api_key_env,
            "max_concurrency": llm.max_concurrency,
            "timeout": llm.timeout,
            "max_retries": llm.max_retries,
        }
    backend = make_backend(llm.backend, model, **options)
    priced = llm.price_prompt is not None or llm.price_completion is not None
    prices = Prices(llm.price_prompt or 0.0, llm.price_completion or 0.0) if priced else None
    limited = llm.budget_tokens is not None or llm.budget_cost is not None
    budget = Budget(llm.budget_tokens, llm.budget_cost) if limited else None
    return LLMClient(backend, cache_path=root / "llm_cache.sqlite", prices=prices, budget=budget)


def world_verifier(answer: str, reference: str, record: Record) -> bool | None:
    """Exact check of a teacher's answer: the world's oracle where it can solve the question, else the
    answer the Questioner proposed."""
    gold = solve(str(record.get("instruction", ""))) or reference
    return is_correct(answer, gold)


def make_questioner(cfg: RunConfig, client: LLMClient) -> LLMQuestioner:
    """The LLM Questioner for an LLM strategy, with the task world's points as its taxonomy."""
    points = cfg.task.points or points_for()
    taxonomy = [{"id": p, "category": get_point(p).skill, "description": get_point(p).description} for p in points]
    llm = cfg.teacher.llm
    return LLMQuestioner(
        client,
        cfg.synthesis.strategy,
        max_tries=llm.max_tries,
        taxonomy=taxonomy,
        contrast=cfg.synthesis.contrast,
        temperature=llm.temperature,
        max_tokens=llm.max_tokens,
        seed=cfg.seed,
    )


def make_teacher(cfg: RunConfig, client: LLMClient) -> LLMTeacher:
    """The LLM Teacher; with samples > 1 the majority of normalised answers is kept."""
    t = cfg.teacher
    return LLMTeacher(
        client,
        samples=t.samples,
        extract=normalize_answer,
        min_agreement=t.min_agreement,
        max_tries=t.llm.max_tries,
        max_tokens=t.llm.max_tokens,
    )


def make_curator(cfg: RunConfig, client: LLMClient) -> LLMAssessor:
    """The LLM Assessor that curates new items: exact verification, then a 1-5 quality rating."""
    return LLMAssessor(
        client,
        verifier=world_verifier,
        min_quality=cfg.teacher.min_quality,
        max_tries=cfg.teacher.llm.max_tries,
        max_tokens=cfg.teacher.llm.max_tokens,
    )


def usage_metrics(client: LLMClient, round: int) -> dict[str, float]:
    """Tokens, calls and cost per agent for one round, and the run's totals so far."""
    metrics: dict[str, float] = {}
    per_agent = client.usage(round=round)
    for agent, u in sorted(per_agent.items()):
        metrics.update(
            {
                f"llm/{agent}/calls": u.calls,
                f"llm/{agent}/cached_calls": u.cached_calls,
                f"llm/{agent}/prompt_tokens": u.prompt_tokens,
                f"llm/{agent}/completion_tokens": u.completion_tokens,
                f"llm/{agent}/cost": u.cost,
            }
        )
    this_round = sum(per_agent.values(), Usage())
    total = client.total()
    metrics.update(
        {
            "llm/tokens": this_round.tokens,
            "llm/cost": this_round.cost,
            "llm/total_tokens": total.tokens,
            "llm/total_cost": total.cost,
        }
    )
    return metrics
