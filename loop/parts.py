"""The parts a run is built from, made once from the config and handed to the stages: the task, the LLM
client (backend + call cache + token/cost accounting + budget), the teacher and the judge, the student's
IFD scorer, and the plugins the config names.

The cache lives in the run directory (`llm_cache.sqlite`), so a resumed or repeated phase costs no new
tokens, and the spent totals survive a crash, so a budget holds across resumes. Tests inject their own
client and task (`Runner(cfg, store, client=..., task=...)`) instead of patching.
"""

from __future__ import annotations

import functools
import tempfile
from collections.abc import Sequence
from pathlib import Path

from agents.llm.assessor import LLMAssessor
from agents.llm.backends import make_backend
from agents.llm.client import Budget, LLMClient, Prices, Usage
from agents.llm.parsing import Chat
from agents.llm.teacher import LLMTeacher
from agents.teacher import OracleFirst, WorldOracle
from core import plugins
from core.corpus import read_corpus
from core.ifd import IFDScore
from core.jobs import run_job
from core.jsonl import read_jsonl, write_jsonl
from core.plugins import Parts, PluginConfig, Trainer
from core.records import Record
from loop.config import CorpusConfig, RunConfig
from loop.console import CallProgress, progress_bar
from loop.student import in_child, resolve_device
from loop.tasks import Task


def make_client(cfg: RunConfig, root: Path, model: str) -> LLMClient:
    """The configured backend for `model`, behind a cache in the run directory, with prices and budget."""
    llm = cfg.teacher.llm
    options: dict[str, object]
    kind = chat_backend(cfg)
    if kind == "transformers":
        options = {"device": resolve_device(llm.device)}
    elif kind == "vllm":
        options = dict(llm.engine)
    else:
        options = {
            "base_url": llm.base_url,
            "api_key_env": llm.api_key_env,
            "max_concurrency": llm.max_concurrency,
            "timeout": llm.timeout,
            "max_retries": llm.max_retries,
        }
    backend = make_backend(kind, model, **options)
    priced = llm.price_prompt is not None or llm.price_completion is not None
    prices = Prices(llm.price_prompt or 0.0, llm.price_completion or 0.0) if priced else None
    limited = llm.budget_tokens is not None or llm.budget_cost is not None
    budget = Budget(llm.budget_tokens, llm.budget_cost) if limited else None
    client = LLMClient(backend, cache_path=root / "llm_cache.sqlite", prices=prices, budget=budget, guided=llm.guided)
    client.progress = CallProgress()  # a bar for every batch of calls longer than one chunk
    return client


def chat_backend(cfg: RunConfig) -> str:
    """The chat backend a run uses: `auto` is vllm where vLLM is installed, else transformers."""
    from trainers.inference import vllm_installed

    backend = cfg.teacher.llm.backend
    if backend == "auto":
        return "vllm" if vllm_installed() else "transformers"
    return backend


def make_teacher(cfg: RunConfig, client: Chat, task: Task) -> LLMTeacher:
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


def make_judge(cfg: RunConfig, client: Chat, task: Task) -> LLMAssessor:
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
                f"llm/{agent}/retries": u.retries,
                f"llm/{agent}/server_retries": u.server_retries,
                f"llm/{agent}/seconds": u.seconds,
            }
        )
        if u.tokens_per_second is not None:
            metrics[f"llm/{agent}/tokens_per_s"] = u.tokens_per_second
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


def plugin_parts(cfg: RunConfig, task: Task, client: Chat | None, trainer: Trainer | None = None) -> Parts:
    """What every plugin of this run is built with (`trainer`: the student's trainer for the round, where the
    caller has one)."""
    llm = cfg.teacher.llm
    domain = cfg.task.dataset.domain if cfg.task.dataset is not None else None
    corpus = cfg.synthesis.corpus
    return Parts(
        seed=cfg.seed,
        task=task,
        client=client,
        difficulty=cfg.task.difficulty if cfg.task.name == "world" else None,
        max_tries=llm.max_tries,
        max_tokens=llm.max_tokens,
        temperature=llm.temperature,
        domain=domain or "",
        corpus=corpus_documents(corpus) if corpus is not None else (),
        trainer=trainer,
    )


def corpus_documents(corpus: CorpusConfig) -> tuple[str, ...]:
    """The documents of the run's corpus, read once per process (a bad file is a named error; `create_run` reads
    it before the run directory exists)."""
    return _read_corpus(corpus.path, corpus.field, corpus.min_chars, corpus.max_chars)


@functools.cache
def _read_corpus(path: str, field: str, min_chars: int, max_chars: int | None) -> tuple[str, ...]:
    return tuple(read_corpus(path, field, min_chars, max_chars))


def build(kind: str, config: PluginConfig, parts: Parts) -> plugins.Plugin:
    """The plugin a config names, built with the run's parts."""
    return plugins.build(kind, config, parts)


def teacher_for(cfg: RunConfig, client: Chat | None, task: Task) -> LLMTeacher | WorldOracle | OracleFirst:
    """Who answers new items: the chat model, the task world's oracle, or the oracle first and the model after."""
    if client is None:
        return WorldOracle()
    teacher = make_teacher(cfg, client, task)
    return OracleFirst(teacher) if cfg.teacher.answers == "oracle_first" else teacher


def score_ifd(cfg: RunConfig, model_dir: Path | str, items: Sequence[Record], reverse: bool = False) -> list[IFDScore]:
    """IFD (or r-IFD) of items by a student: in a child process on GPUs (student.inference_process), else here."""
    from trainers.ifd import IFDJob
    from trainers.ifd import score_ifd as score
    from trainers.tiny import load_student

    s = cfg.student
    if in_child(cfg):
        with tempfile.TemporaryDirectory(prefix="gaploop-ifd-") as tmp:
            data, out = Path(tmp) / "in.jsonl", Path(tmp) / "out.jsonl"
            fields = ("instruction", "input", "output")
            write_jsonl(data, [{f: i[f] for f in fields if f in i} for i in items])
            job = IFDJob(
                model=str(model_dir),
                data=str(data),
                out=str(out),
                template=s.template,
                max_length=s.max_length,
                batch_size=cfg.ifd.batch_size,
                device=resolve_device(s.device),
                reverse=reverse,
            )
            run_job("trainers.ifd", job, Path(tmp), "IFD scoring")
            rows = read_jsonl(out).rows
        pre = "r" if reverse else ""
        fields = (f"{pre}loss_cond", f"{pre}loss_alone", f"{pre}ifd")
        return [IFDScore(*(r[f] for f in fields), r.get(f"{pre}ifd_reason")) for r in rows]
    model, tokenizer = load_student(model_dir, device=resolve_device(s.device))
    with progress_bar() as bar:
        task = bar.add_task("r-IFD" if reverse else "IFD", total=None, info=f"{len(items)} items")
        scores = score(
            model,
            tokenizer,
            items,
            template=s.template,
            max_length=s.max_length,
            batch_size=cfg.ifd.batch_size,
            reverse=reverse,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    del model
    return scores
