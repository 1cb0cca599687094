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
from loop.config import RunConfig
from loop.student import resolve_device
from loop.tasks import Task

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


def make_questioner(cfg: RunConfig, client: LLMClient, taxonomy: list[Record]) -> LLMQuestioner:
    """The LLM Questioner for an LLM strategy, with the task's knowledge points as its taxonomy."""
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


def make_teacher(cfg: RunConfig, client: LLMClient, task: Task) -> LLMTeacher:
    """The LLM Teacher; with samples > 1 the majority of the task's extracted answers is kept."""
    t = cfg.teacher
    return LLMTeacher(
        client,
        samples=t.samples,
        extract=task.extract,
        min_agreement=t.min_agreement,
        max_tries=t.llm.max_tries,
        max_tokens=t.llm.max_tokens,
        system=task.teacher_system,
    )


def make_curator(cfg: RunConfig, client: LLMClient, task: Task) -> LLMAssessor:
    """The LLM Assessor that curates new items: the task's exact verification, then a 1-5 quality rating."""
    return LLMAssessor(
        client,
        verifier=task.verifier,
        min_quality=cfg.teacher.min_quality,
        max_tries=cfg.teacher.llm.max_tries,
        max_tokens=cfg.teacher.llm.max_tokens,
    )


def make_judge(cfg: RunConfig, client: LLMClient, task: Task) -> LLMAssessor:
    """The LLM Assessor that grades the student where code cannot (open tasks): MT-Bench-style 1-10 judge."""
    return LLMAssessor(client, verifier=task.verifier, max_tries=cfg.teacher.llm.max_tries)


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
