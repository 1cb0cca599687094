"""The call cache, usage accounting and budget of LLMClient, over the scripted backend."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from agents.llm.client import Budget, BudgetExceeded, LLMClient, Prices, Usage, cache_key
from agents.llm.scripted import ScriptedBackend
from agents.llm.types import ChatRequest, ChatResult, PartialBatch, Sampling

REPO = Path(__file__).resolve().parents[3]


class CountingBackend(ScriptedBackend):
    """Echoes the user message; records every batch it was sent (thread-safe)."""

    def __init__(self, model: str = "echo", delay: float = 0.0) -> None:
        super().__init__([(".*", lambda r: "echo " + r.messages[-1]["content"])], model=model)
        self.batches: list[list[str]] = []
        self.delay = delay
        self._guard = threading.Lock()

    def chat(self, requests: Sequence[ChatRequest]) -> list[ChatResult]:
        if self.delay:
            time.sleep(self.delay)
        with self._guard:
            self.batches.append([r.messages[-1]["content"] for r in requests])
            return super().chat(requests)


def ask(text: str, agent: str = "questioner", **sampling: object) -> ChatRequest:
    return ChatRequest([{"role": "user", "content": text}], Sampling(**sampling), agent=agent)  # type: ignore[arg-type]


def test_a_repeated_request_is_served_from_the_cache(tmp_path: Path) -> None:
    backend = CountingBackend()
    client = LLMClient(backend, tmp_path / "cache.sqlite")
    first = client.chat([ask("one two")])
    again = client.chat([ask("one two")])
    assert backend.batches == [["one two"]]
    assert first[0].texts == again[0].texts == ["echo one two"]
    assert not first[0].cached and again[0].cached
    assert (client.kind, client.model) == ("scripted", "echo")


def test_only_misses_go_to_the_backend_in_one_batch_and_order_is_kept(tmp_path: Path) -> None:
    backend = CountingBackend()
    client = LLMClient(backend, tmp_path / "cache.sqlite")
    client.chat([ask("b")])
    results = client.chat([ask("a"), ask("b"), ask("c"), ask("a")])
    # "a" twice in one batch is sent once; the repeat counts as a cache hit.
    assert backend.batches == [["b"], ["a", "c"]]
    assert [r.texts[0] for r in results] == ["echo a", "echo b", "echo c", "echo a"]
    assert [r.cached for r in results] == [False, True, False, True]


def test_the_key_changes_with_sampling_model_and_kind_but_not_with_the_agent() -> None:
    base = ask("q")
    key = cache_key("openai", "m", base)
    assert cache_key("openai", "m", ask("q", agent="assessor")) == key
    assert cache_key("openai", "m2", base) != key
    assert cache_key("vllm", "m", base) != key
    for change in ({"temperature": 0.7}, {"seed": 1}, {"n": 2}, {"max_tokens": 9}, {"top_p": 0.9}, {"stop": ("x",)}):
        assert cache_key("openai", "m", ask("q", **change)) != key, change


def test_another_model_on_the_same_file_misses(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite"
    LLMClient(CountingBackend("m1"), path).chat([ask("q")])
    other = CountingBackend("m2")
    assert not LLMClient(other, path).chat([ask("q")])[0].cached
    assert other.batches == [["q"]]


def test_cache_and_usage_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "runs" / "r1" / "llm_cache.sqlite"
    with LLMClient(CountingBackend(), path, prices=Prices(1.0, 2.0)) as client:
        client.chat([ask("one two three", temperature=0.5, seed=3)])
        spent = client.total()
    backend = CountingBackend()
    with LLMClient(backend, path) as again:
        assert again.chat([ask("one two three", temperature=0.5, seed=3)])[0].cached
        assert again.total() == spent + Usage(calls=1, cached_calls=1)
    assert backend.batches == []


def test_usage_is_counted_per_agent_and_round_with_cost_from_prices(tmp_path: Path) -> None:
    client = LLMClient(CountingBackend(), tmp_path / "cache.sqlite", prices=Prices(prompt=2.0, completion=10.0))
    client.round = 1
    # Scripted token counts are word counts: "a b c" -> 3 prompt tokens, "echo a b c" -> 4 completion tokens.
    client.chat([ask("a b c", agent="questioner"), ask("d", agent="assessor", n=2)])
    client.round = 2
    client.chat([ask("a b c", agent="questioner"), ask("e f", agent="questioner")])
    r1, r2 = client.usage(round=1), client.usage(round=2)
    assert r1 == {
        "assessor": Usage(1, 0, 1, 4, pytest.approx((1 * 2.0 + 4 * 10.0) / 1e6)),  # type: ignore[arg-type]
        "questioner": Usage(1, 0, 3, 4, pytest.approx((3 * 2.0 + 4 * 10.0) / 1e6)),  # type: ignore[arg-type]
    }
    assert r2 == {"questioner": Usage(2, 1, 2, 3, pytest.approx((2 * 2.0 + 3 * 10.0) / 1e6))}  # type: ignore[arg-type]
    everything = client.usage()
    assert everything["questioner"].calls == 3 and everything["questioner"].cached_calls == 1
    assert client.total().tokens == 3 + 4 + 1 + 4 + 2 + 3
    assert client.total(round=2).cost == pytest.approx(34 / 1e6)
    # Without prices tokens are counted and cost stays zero.
    free = LLMClient(CountingBackend())
    free.chat([ask("x y")])
    assert free.total() == Usage(1, 0, 2, 3, 0.0)


def test_budget_stops_new_calls_before_spending_but_serves_the_cache(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite"
    backend = CountingBackend()
    client = LLMClient(backend, path, budget=Budget(max_tokens=10))
    client.chat([ask("a b c d"), ask("e f g h")])  # 4 + 5 + 4 + 5 = 18 tokens, over the limit of 10
    with pytest.raises(BudgetExceeded, match=r"18 tokens used of a limit of 10"):
        client.chat([ask("a b c d"), ask("new")])
    assert backend.batches == [["a b c d", "e f g h"]], "nothing may be sent once the budget is spent"
    assert all(r.cached for r in client.chat([ask("e f g h"), ask("a b c d")]))
    # The spent budget is persisted: a resumed run stops too.
    resumed = LLMClient(CountingBackend(), path, budget=Budget(max_tokens=10))
    with pytest.raises(BudgetExceeded):
        resumed.chat([ask("new")])
    priced = LLMClient(CountingBackend(), path, prices=Prices(1e6, 0.0), budget=Budget(max_cost=5.0))
    priced.chat([ask("p q r s t u")])  # 6 prompt tokens at $1 each
    with pytest.raises(BudgetExceeded, match=r"\$6\.0000 used of a limit of \$5\.0000"):
        priced.chat([ask("more")])
    with pytest.raises(ValueError, match="negative"):
        Budget(max_tokens=-1)


def test_threads_share_the_cache(tmp_path: Path) -> None:
    backend = CountingBackend(delay=0.01)
    client = LLMClient(backend, tmp_path / "cache.sqlite")
    client.chat([ask(f"warm {i}") for i in range(20)])
    errors: list[BaseException] = []
    results: dict[int, list[ChatResult]] = {}

    def worker(t: int) -> None:
        try:
            for k in range(5):
                # Each thread re-asks the warm requests and adds its own fresh ones.
                reqs = [ask(f"warm {(t + k + j) % 20}", agent=f"t{t}") for j in range(4)]
                reqs.append(ask(f"fresh {t} {k}", agent=f"t{t}"))
                results.setdefault(t, []).extend(client.chat(reqs))
        except BaseException as err:  # collected and re-raised in the main thread
            errors.append(err)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors
    sent = [text for batch in backend.batches[1:] for text in batch]
    assert sorted(sent) == sorted(f"fresh {t} {k}" for t in range(8) for k in range(5)), "warm requests must hit"
    for t in range(8):
        assert len(results[t]) == 25 and all(r.texts[0].startswith("echo ") for r in results[t])
        assert sum(r.cached for r in results[t]) == 20
    usage = client.usage()
    assert all(usage[f"t{t}"] == Usage(25, 20, 15, 20, 0.0) for t in range(8))
    rows = sqlite3.connect(tmp_path / "cache.sqlite").execute("SELECT COUNT(*) FROM calls").fetchone()[0]
    assert rows == 20 + 40


WRITER = """
import sys
from agents.llm.client import LLMClient
from agents.llm.scripted import ScriptedBackend
from agents.llm.types import ChatRequest

if __name__ == "__main__":
    client = LLMClient(ScriptedBackend([(".*", "word " * 200)]), sys.argv[1])
    print("ready", flush=True)
    i = 0
    while True:
        client.chat([ChatRequest([{"role": "user", "content": f"q {i} {j}"}]) for j in range(50)])
        i += 1
"""


def test_a_killed_writer_leaves_only_whole_entries_with_their_usage(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite"
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, str(script), str(path)], stdout=subprocess.PIPE, env=env, cwd=REPO)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
        time.sleep(1.0)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    db = sqlite3.connect(path)
    entries = db.execute("SELECT result FROM calls").fetchall()
    calls = db.execute("SELECT SUM(calls) FROM usage").fetchone()[0]
    assert entries, "the writer stored nothing before it was killed"
    assert len(entries) % 50 == 0 and calls == len(entries), "a batch and its usage are stored together"
    assert all(json.loads(r)["texts"] == ["word " * 200] for (r,) in entries)


def test_re_asks_and_backend_seconds_are_counted_per_agent(tmp_path: Path) -> None:
    client = LLMClient(CountingBackend(delay=0.05), tmp_path / "cache.sqlite")
    first = ask("a b", agent="teacher")
    retry = ChatRequest(first.messages, Sampling(seed=1), "teacher", attempt=1)
    client.chat([first, retry, ask("c", agent="assessor")])
    got = client.usage()
    assert (got["teacher"].calls, got["teacher"].retries, got["assessor"].retries) == (2, 1, 0)
    # The batch's time is shared by completion tokens: "echo a b" twice (3 + 3) against "echo c" (2).
    assert got["teacher"].seconds == pytest.approx(3 * got["assessor"].seconds, rel=1e-6)
    assert got["teacher"].seconds + got["assessor"].seconds >= 0.05
    assert got["teacher"].tokens_per_second == pytest.approx(6 / got["teacher"].seconds)
    client.chat([first])  # a cache hit spends no backend time
    assert client.usage()["teacher"].seconds == pytest.approx(got["teacher"].seconds)


def test_a_cache_file_from_before_the_retry_columns_opens_and_counts(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    old_schema = (
        "CREATE TABLE calls (key TEXT PRIMARY KEY, kind TEXT NOT NULL, model TEXT NOT NULL, request TEXT NOT NULL,"
        " result TEXT NOT NULL, created REAL NOT NULL);"
        "CREATE TABLE usage (round INTEGER NOT NULL, agent TEXT NOT NULL, calls INTEGER NOT NULL,"
        " cached_calls INTEGER NOT NULL, prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL,"
        " cost REAL NOT NULL, PRIMARY KEY (round, agent));"
        "INSERT INTO usage VALUES (0, 'teacher', 4, 1, 10, 20, 0.0);"
    )
    with sqlite3.connect(path) as db:
        db.executescript(old_schema)
    client = LLMClient(CountingBackend(), path)
    assert client.usage()["teacher"] == Usage(4, 1, 10, 20, 0.0, 0)
    client.chat([ChatRequest([{"role": "user", "content": "x"}], Sampling(seed=2), "teacher", attempt=2)])
    assert client.usage()["teacher"] == Usage(5, 1, 11, 22, 0.0, 1)


def test_a_guide_is_sent_and_keyed_only_when_guided_decoding_is_on(tmp_path: Path) -> None:
    from agents.llm.types import Guide

    guided = ask("q", guide=Guide.regex("[a-z]+"))
    assert cache_key("openai", "m", ask("q")) != cache_key("openai", "m", guided)
    # An unguided request keeps the key it had before guides existed (no "guide" in its sampling JSON).
    assert "guide" not in ask("q").sampling.to_json()
    for on in (False, True):
        seen: list[ChatRequest] = []
        backend = CountingBackend()
        backend.chat = lambda reqs, b=backend, s=seen: (s.extend(reqs), ScriptedBackend.chat(b, reqs))[1]  # type: ignore[method-assign]
        client = LLMClient(backend, tmp_path / f"cache{on}.sqlite", guided=on)
        client.chat([guided])
        assert (seen[0].sampling.guide is not None) is on
        assert client.key(guided) == (cache_key("scripted", "echo", guided if on else ask("q")))


def test_a_batch_that_fails_part_way_keeps_the_calls_that_came_back(tmp_path: Path) -> None:
    class HalfDown(CountingBackend):
        def chat(self, requests: Sequence[ChatRequest]) -> list[ChatResult]:
            got = super().chat(requests)
            raise PartialBatch("the endpoint went away", [got[0], None])

    client = LLMClient(HalfDown(), tmp_path / "cache.sqlite")
    with pytest.raises(PartialBatch, match="went away"):
        client.chat([ask("kept"), ask("lost")])
    assert client.usage()["questioner"].calls == 1  # the one that came back, paid for once
    again = CountingBackend()
    results = LLMClient(again, tmp_path / "cache.sqlite").chat([ask("kept"), ask("lost")])
    assert again.batches == [["lost"]] and [r.cached for r in results] == [True, False]


def test_a_long_batch_goes_in_chunks_that_report_progress_and_a_failure_keeps_the_chunks_done(tmp_path: Path) -> None:
    from agents.llm.client import PROGRESS_FROM, SEND_CHUNK
    from agents.llm.types import LLMCallError

    n = 2 * SEND_CHUNK + 5
    backend, seen = CountingBackend(), []
    client = LLMClient(backend, tmp_path / "cache.sqlite")
    client.progress = lambda label, done, total: seen.append((label, done, total))
    results = client.chat([ask(f"q{i}") for i in range(n)])
    assert [r.texts for r in results] == [[f"echo q{i}"] for i in range(n)]  # in order across chunks
    assert [len(b) for b in backend.batches] == [SEND_CHUNK, SEND_CHUNK, 5]
    label = "round 0: questioner calls"
    assert seen == [(label, 0, n), (label, SEND_CHUNK, n), (label, 2 * SEND_CHUNK, n), (label, n, n), (label, n, n)]
    seen.clear()
    client.chat([ask(f"new {i}") for i in range(PROGRESS_FROM - 1)])  # a short batch: only the closing report
    assert seen == [(label, PROGRESS_FROM - 1, PROGRESS_FROM - 1)] * 2  # after the chunk, then on the way out

    class DownAfterOne(CountingBackend):
        def chat(self, requests: Sequence[ChatRequest]) -> list[ChatResult]:
            if self.batches:
                raise LLMCallError("the endpoint went away")
            return super().chat(requests)

    seen.clear()
    failing = LLMClient(DownAfterOne(), tmp_path / "cache2.sqlite")
    failing.progress = lambda label, done, total: seen.append((done, total))
    with pytest.raises(LLMCallError, match="went away"):
        failing.chat([ask(f"q{i}") for i in range(n)])
    assert failing.usage()["questioner"].calls == SEND_CHUNK  # the first chunk came back and is kept
    assert seen == [(0, n), (SEND_CHUNK, n), (n, n)]  # the bar ends on the failure too
