"""What agents call: a chat backend behind a persistent call cache, with token / cost accounting and a budget.

Every call is cached in a sqlite file by the hash of (backend kind, model, messages, sampling), so a re-run
or a resumed run costs no new tokens. Usage is counted per agent and per round in the same file, in the
same transaction as the cached results, so a crash loses neither half an entry nor the record of what a
stored entry cost.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from agents.llm.template import PreQuery
from agents.llm.types import ChatBackend, ChatRequest, ChatResult, LLMCallError, PartialBatch

# Misses go to the backend this many at a time: a bar can follow a long batch, and a failure part way keeps the
# chunks that came back. Large enough that vLLM still schedules a full batch, and the OpenAI backend's pool fills.
SEND_CHUNK = 64
PROGRESS_FROM = 16  # a batch of this many calls or more shows its bar from the start

SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
    key TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    model TEXT NOT NULL,
    request TEXT NOT NULL,
    result TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS usage (
    round INTEGER NOT NULL,
    agent TEXT NOT NULL,
    calls INTEGER NOT NULL,
    cached_calls INTEGER NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    cost REAL NOT NULL,
    retries INTEGER NOT NULL DEFAULT 0,
    seconds REAL NOT NULL DEFAULT 0,
    server_retries INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (round, agent)
);
"""
# Columns added since the first schema: a cache file written before them gets them, zero-filled.
ADDED_COLUMNS = {
    "retries": "INTEGER NOT NULL DEFAULT 0",
    "seconds": "REAL NOT NULL DEFAULT 0",
    "server_retries": "INTEGER NOT NULL DEFAULT 0",
}
ADD_USAGE = """
INSERT INTO usage (
    round, agent, calls, cached_calls, prompt_tokens, completion_tokens, cost, retries, seconds, server_retries
)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (round, agent) DO UPDATE SET
    calls = calls + excluded.calls,
    retries = retries + excluded.retries,
    server_retries = server_retries + excluded.server_retries,
    seconds = seconds + excluded.seconds,
    cached_calls = cached_calls + excluded.cached_calls,
    prompt_tokens = prompt_tokens + excluded.prompt_tokens,
    completion_tokens = completion_tokens + excluded.completion_tokens,
    cost = cost + excluded.cost
"""


class BudgetExceeded(RuntimeError):
    """The token or cost budget is spent; the loop catches this to stop cleanly."""


@dataclass(frozen=True)
class Prices:
    """USD per 1M prompt tokens and per 1M completion tokens."""

    prompt: float
    completion: float

    def __post_init__(self) -> None:
        if self.prompt < 0 or self.completion < 0:
            raise ValueError(f"prices must not be negative, got prompt={self.prompt} completion={self.completion}")

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        """USD for these token counts."""
        return (prompt_tokens * self.prompt + completion_tokens * self.completion) / 1e6


@dataclass(frozen=True)
class Budget:
    """Limits on all tokens spent (prompt + completion) and on cost in USD; None means no limit."""

    max_tokens: int | None = None
    max_cost: float | None = None

    def __post_init__(self) -> None:
        if (self.max_tokens is not None and self.max_tokens < 0) or (self.max_cost is not None and self.max_cost < 0):
            raise ValueError(f"budget limits must not be negative, got {self}")


@dataclass
class Usage:
    """What calls cost: all calls, those served from the cache, tokens spent and USD (cache hits spend none);
    `retries`: calls that re-asked after an unusable reply; `seconds`: backend time of the calls not cached
    (a batch's time shared among its agents by completion tokens); `server_retries`: sends again after a
    transport fault of the server (429, 5xx, a reset, a timeout, a malformed body), HTTP backends only."""

    calls: int = 0
    cached_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    retries: int = 0
    seconds: float = field(default=0.0, compare=False)  # a measurement, not part of what was spent
    server_retries: int = 0

    @property
    def tokens_per_second(self) -> float | None:
        """Completion tokens per backend second, None where nothing was generated here."""
        return self.completion_tokens / self.seconds if self.seconds > 0 else None

    @property
    def tokens(self) -> int:
        """Prompt plus completion tokens."""
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.calls + other.calls,
            self.cached_calls + other.cached_calls,
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
            self.cost + other.cost,
            self.retries + other.retries,
            self.seconds + other.seconds,
            self.server_retries + other.server_retries,
        )


def cache_key(kind: str, model: str, request: ChatRequest, extra: dict[str, object] | None = None) -> str:
    """sha256 of the JSON of (kind, model, messages, sampling[, raw prompt][, extra]); the agent is not part of it."""
    parts: list[object] = [kind, model, request.messages, request.sampling.to_json()]
    if request.prompt is not None:  # only raw completions add it, so every chat call keeps its old key
        parts.append({"prompt": request.prompt})
    if extra:
        parts.append(extra)
    text = json.dumps(parts, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class LLMClient:
    """A `ChatBackend` with a cache, accounting and a budget in front; agents call this, not the backend.

    Only cache misses reach the backend, in one batch; identical requests within a batch are sent once.
    Set `round` (the loop does) to count usage per round. The budget is checked before each batch of
    misses against everything recorded in the file, so a run overshoots by at most the batch in flight.
    Two threads that miss on the same request at the same moment both send it (the first stored wins).
    """

    def __init__(
        self,
        backend: ChatBackend,
        cache_path: str | Path | None = None,
        prices: Prices | None = None,
        budget: Budget | None = None,
        guided: bool = False,
    ) -> None:
        self.backend = backend
        # Guided decoding: requests keep the shape their agent attached (a JSON schema, a regex) only when on;
        # off, the guide is dropped before the cache key is made, so unguided runs keep their keys.
        self.guided = guided
        self.cache_path = Path(cache_path) if cache_path is not None else None
        self.prices = prices
        self.budget = budget
        self.round = 0
        # Called as (label, done, total) while a batch of misses is sent (the loop shows a bar), then with done = total.
        self.progress: Callable[[str, int, int], None] | None = None
        self._lock = threading.Lock()  # one connection shared by all threads, used one at a time
        try:
            if self.cache_path is not None:
                self.cache_path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                str(self.cache_path) if self.cache_path else ":memory:", timeout=60.0, check_same_thread=False
            )
            if self.cache_path is not None:
                # WAL: readers in other processes never block the writer, and a crash rolls back cleanly.
                self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(SCHEMA)
            have = {row[1] for row in self._db.execute("PRAGMA table_info(usage)")}
            with self._db:
                for column, decl in ADDED_COLUMNS.items():
                    if column not in have:
                        self._db.execute(f"ALTER TABLE usage ADD COLUMN {column} {decl}")
        except sqlite3.Error as err:
            raise RuntimeError(f"cannot open the LLM call cache {self.cache_path}: {err}") from err

    @property
    def kind(self) -> str:
        """The backend's kind."""
        return self.backend.kind

    @property
    def model(self) -> str:
        """The backend's model."""
        return self.backend.model

    def pre_query(self, system: str | None = None, role_stop: bool = True) -> PreQuery:
        """The backend's pre-query prompt (agents/llm/template.py); only local backends can give one."""
        make = getattr(self.backend, "pre_query", None)
        if make is None:
            raise ValueError(
                f"backend {self.kind}:{self.model} cannot complete raw text (no local tokenizer): "
                "use teacher.llm.backend transformers, vllm or auto"
            )
        return make(system, role_stop)

    def _guide(self, request: ChatRequest) -> ChatRequest:
        if request.sampling.guide is None or self.guided:
            return request
        return replace(request, sampling=replace(request.sampling, guide=None))

    def key(self, request: ChatRequest) -> str:
        """The cache key of `request` for this backend."""
        # Results with prompt logprobs differ from results without, so the setting joins the key when on.
        request = self._guide(request)
        logprobs = getattr(self.backend, "prompt_logprobs", None)
        extra: dict[str, object] | None = {"prompt_logprobs": logprobs} if logprobs is not None else None
        return cache_key(self.kind, self.model, request, extra)

    def chat(self, requests: Sequence[ChatRequest]) -> list[ChatResult]:
        """One result per request, in order; hits come from the cache (`cached=True`), misses from the backend."""
        requests = [self._guide(r) for r in requests]
        round_ = self.round
        keys = [self.key(r) for r in requests]
        found = self._lookup(set(keys))
        misses: dict[str, ChatRequest] = {}
        for key, req in zip(keys, requests, strict=True):
            if key not in found and key not in misses:
                misses[key] = req
        fresh: dict[str, ChatResult] = {}
        batch_seconds = 0.0
        if misses:
            self._check_budget()
            start = getattr(self.backend, "start", None)
            if start is not None:
                start()  # an engine's start-up is not generation time
            t0 = time.perf_counter()
            got = self._send(list(misses.items()), round_, t0)
            batch_seconds = time.perf_counter() - t0
            for (key, req), res in zip(misses.items(), got, strict=True):
                if len(res.texts) != req.sampling.n:
                    raise RuntimeError(
                        f"backend {self.kind}:{self.model} returned {len(res.texts)} texts for n={req.sampling.n} "
                        f"(agent {req.agent})"
                    )
                fresh[key] = res
        spent = self._spent([(k, misses[k], fresh[k]) for k in misses], batch_seconds)
        found.update(fresh)
        results: list[ChatResult] = []
        for key, req in zip(keys, requests, strict=True):
            if key in fresh:
                del fresh[key]  # the first asker pays (counted by _spent); a repeat in the same batch is a cache hit
                results.append(replace(found[key], texts=list(found[key].texts)))
                continue
            use = spent.setdefault(req.agent, Usage())
            use.calls += 1
            use.retries += req.attempt > 0
            use.cached_calls += 1
            results.append(replace(found[key], texts=list(found[key].texts), cached=True))
        self._record(round_, [(k, misses[k], found[k]) for k in misses], spent)
        return results

    def _send(self, sent: list[tuple[str, ChatRequest]], round_: int, t0: float) -> list[ChatResult]:
        """The backend's results for the misses, `SEND_CHUNK` at a time so `progress` can follow a long batch; a
        failure part way records what came back first (a resume pays only for the rest) and is raised again."""
        got: list[ChatResult] = []
        label = f"round {round_}: {sent[0][1].agent} calls"
        if self.progress is not None and len(sent) >= PROGRESS_FROM:
            # Shown before the first chunk comes back: on a CPU model one chunk of long replies takes minutes.
            self.progress(label, 0, len(sent))
        try:
            for first in range(0, len(sent), SEND_CHUNK):
                part = [req for _, req in sent[first : first + SEND_CHUNK]]
                try:
                    answers = self.backend.chat(part)
                except LLMCallError as err:
                    done = got + list(err.done if isinstance(err, PartialBatch) else [])
                    kept = [(k, r, res) for (k, r), res in zip(sent, done, strict=False) if res is not None]
                    if kept:
                        self._record(round_, kept, self._spent(kept, time.perf_counter() - t0))
                    raise
                if len(answers) != len(part):
                    raise RuntimeError(
                        f"backend {self.kind}:{self.model} returned {len(answers)} results for {len(part)} requests"
                    )
                got += answers
                if self.progress is not None:
                    self.progress(label, len(got), len(sent))
        finally:
            if self.progress is not None:
                self.progress(label, len(sent), len(sent))  # the bar ends, also on a failure
        return got

    def _spent(self, entries: list[tuple[str, ChatRequest, ChatResult]], seconds: float) -> dict[str, Usage]:
        """Usage per agent of fresh results, the batch's `seconds` shared by completion tokens."""
        spent: dict[str, Usage] = {}
        total = sum(res.completion_tokens for _, _, res in entries)
        for _, req, res in entries:
            use = spent.setdefault(req.agent, Usage())
            use.calls += 1
            use.retries += req.attempt > 0
            use.prompt_tokens += res.prompt_tokens
            use.completion_tokens += res.completion_tokens
            use.server_retries += res.server_retries
            use.cost += self.prices.cost(res.prompt_tokens, res.completion_tokens) if self.prices else 0.0
            use.seconds += seconds * (res.completion_tokens / total if total else 1 / len(entries))
        return spent

    def _lookup(self, keys: set[str]) -> dict[str, ChatResult]:
        if not keys:
            return {}
        found: dict[str, ChatResult] = {}
        ordered = sorted(keys)
        with self._lock:
            # sqlite caps the number of bound parameters; look up in chunks.
            for start in range(0, len(ordered), 500):
                chunk = ordered[start : start + 500]
                marks = ",".join("?" * len(chunk))
                for key, result in self._db.execute(f"SELECT key, result FROM calls WHERE key IN ({marks})", chunk):
                    data = json.loads(result)
                    found[key] = ChatResult(
                        list(data["texts"]),
                        int(data["prompt_tokens"]),
                        int(data["completion_tokens"]),
                        prompt_logprobs=data.get("prompt_logprobs"),
                        finished=data.get("finished"),
                    )
        return found

    def _record(self, round_: int, entries: list[tuple[str, ChatRequest, ChatResult]], spent: dict[str, Usage]) -> None:
        now = time.time()
        rows = [
            (
                key,
                self.kind,
                self.model,
                json.dumps(
                    {"messages": req.messages, "sampling": req.sampling.to_json(), "prompt": req.prompt},
                    ensure_ascii=False,
                ),
                json.dumps(
                    {
                        "texts": res.texts,
                        "prompt_tokens": res.prompt_tokens,
                        "completion_tokens": res.completion_tokens,
                        "prompt_logprobs": res.prompt_logprobs,
                        "finished": res.finished,
                    },
                    ensure_ascii=False,
                ),
                now,
            )
            for key, req, res in entries
        ]
        usage_rows = [
            (round_, agent, u.calls, u.cached_calls, u.prompt_tokens, u.completion_tokens, u.cost, u.retries, u.seconds)
            + (u.server_retries,)
            for agent, u in spent.items()
        ]
        with self._lock:
            try:
                # One transaction: results and their cost are stored together or not at all.
                with self._db:
                    self._db.executemany("INSERT OR IGNORE INTO calls VALUES (?, ?, ?, ?, ?, ?)", rows)
                    self._db.executemany(ADD_USAGE, usage_rows)
            except sqlite3.Error as err:
                raise RuntimeError(
                    f"storing {len(rows)} LLM results and usage in the cache {self.cache_path} failed: {err}"
                ) from err

    def _check_budget(self) -> None:
        if self.budget is None:
            return
        spent = self.total()
        b = self.budget
        if b.max_tokens is not None and spent.tokens >= b.max_tokens:
            raise BudgetExceeded(
                f"LLM token budget spent: {spent.tokens} tokens used of a limit of {b.max_tokens} "
                f"(model {self.model}); cached calls are still served"
            )
        if b.max_cost is not None and spent.cost >= b.max_cost:
            raise BudgetExceeded(
                f"LLM cost budget spent: ${spent.cost:.4f} used of a limit of ${b.max_cost:.4f} "
                f"(model {self.model}); cached calls are still served"
            )

    def usage(self, round: int | None = None) -> dict[str, Usage]:
        """Usage per agent, of one round or (None) of all rounds, as recorded in the cache file."""
        sql = "SELECT agent, SUM(calls), SUM(cached_calls), SUM(prompt_tokens), SUM(completion_tokens), SUM(cost),"
        sql += " SUM(retries), SUM(seconds), SUM(server_retries)"
        sql += " FROM usage" + (" WHERE round = ?" if round is not None else "") + " GROUP BY agent ORDER BY agent"
        with self._lock:
            rows = self._db.execute(sql, () if round is None else (round,)).fetchall()
        usage = {}
        for agent, calls, cached, prompt, completion, cost, retries, seconds, server_retries in rows:
            usage[agent] = Usage(int(calls), int(cached), int(prompt), int(completion), float(cost))
            usage[agent].retries, usage[agent].seconds = int(retries), float(seconds)
            usage[agent].server_retries = int(server_retries)
        return usage

    def total(self, round: int | None = None) -> Usage:
        """Usage of all agents together, of one round or (None) of all rounds."""
        return sum(self.usage(round).values(), Usage())

    def close(self) -> None:
        """Close the backend and the cache file."""
        self.backend.close()
        with self._lock:
            self._db.close()

    def __enter__(self) -> LLMClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
