"""OpenAIBackend against a local fake chat-completions server (retries, errors, concurrency, keys) and,
where vLLM is installed, against a real `vllm` OpenAI server of a tiny model."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from agents.llm.backends import LLMCallError, OpenAIBackend, TransformersBackend, chat_prompt_ids, make_backend
from agents.llm.types import ChatRequest, Sampling
from core.children import free_port
from tests.agents.llm.conftest import VLLM_MISSING, VLLM_SKIP_REASON
from tests.helpers import vllm_server as serve_vllm

KEY_ENV = "GAPLOOP_TEST_OPENAI_KEY"
Reply = tuple[int, dict[str, str], dict[str, object]]


class FakeOpenAI:
    """A chat-completions server on a free loopback port: replies from `script` first, then echoes.

    The echo answers choice i with "echo <last user message> #i" (choices sent in reverse order, so
    the client must sort them), and `delay(body)` seconds later, to make requests overlap.
    """

    def __init__(self) -> None:
        self.script: list[Reply] = []
        self.bodies: list[dict[str, object]] = []
        self.auth: list[str] = []
        self.delay: Callable[[dict[str, object]], float] = lambda body: 0.0
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with fake._lock:
                    fake.bodies.append(body)
                    fake.auth.append(self.headers.get("Authorization", ""))
                    reply = fake.script.pop(0) if fake.script else None
                    fake.in_flight += 1
                    fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
                try:
                    time.sleep(fake.delay(body))
                    status, headers, payload = reply or (200, {}, fake.echo(body))
                    data = json.dumps(payload).encode()
                    self.send_response(status)
                    for name, value in {"Content-Type": "application/json", **headers}.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client timed out and hung up, as a test meant it to
                finally:
                    with fake._lock:
                        fake.in_flight -= 1

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    @staticmethod
    def echo(body: dict[str, object]) -> dict[str, object]:
        user = body["messages"][-1]["content"]  # type: ignore[index]
        n = int(body.get("n", 1))  # type: ignore[arg-type]
        choices = [
            {"index": i, "message": {"role": "assistant", "content": f"echo {user} #{i}"}, "finish_reason": "stop"}
            for i in reversed(range(n))
        ]
        usage = {"prompt_tokens": 11, "completion_tokens": 3 * n, "total_tokens": 11 + 3 * n}
        return {
            "id": "c",
            "object": "chat.completion",
            "created": 0,
            "model": body["model"],
            "choices": choices,
            "usage": usage,
        }

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def error(status: int, message: str, headers: dict[str, str] | None = None) -> Reply:
    return status, headers or {}, {"error": {"message": message, "type": "test", "code": None}}


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    server = FakeOpenAI()
    yield server
    server.close()


@pytest.fixture(autouse=True)
def api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, "sk-test-123")


def backend(fake: FakeOpenAI, **kw: object) -> OpenAIBackend:
    options: dict[str, object] = {"api_key_env": KEY_ENV, "backoff": 0.01, "timeout": 5.0, **kw}
    return OpenAIBackend("teacher-model", base_url=fake.url, **options)  # type: ignore[arg-type]


def ask(text: str, **sampling: object) -> ChatRequest:
    return ChatRequest([{"role": "user", "content": text}], Sampling(**sampling), agent="teacher")  # type: ignore[arg-type]


def test_sampling_is_passed_and_usage_read(fake: FakeOpenAI) -> None:
    sampling = {"temperature": 0.7, "top_p": 0.9, "max_tokens": 17, "n": 3, "stop": ("\n", "###"), "seed": 5}
    [result] = backend(fake).chat([ask("hi", **sampling)])
    assert result.texts == ["echo hi #0", "echo hi #1", "echo hi #2"]
    assert (result.prompt_tokens, result.completion_tokens, result.cached) == (11, 9, False)
    body = fake.bodies[0]
    assert body["model"] == "teacher-model" and body["messages"] == [{"role": "user", "content": "hi"}]
    assert {k: body[k] for k in ("temperature", "top_p", "max_tokens", "n", "stop", "seed")} == {
        **sampling,
        "stop": ["\n", "###"],
    }
    backend(fake).chat([ask("defaults")])
    assert "seed" not in fake.bodies[1] and "stop" not in fake.bodies[1]


def test_rate_limit_is_retried_after_the_servers_retry_after(fake: FakeOpenAI) -> None:
    fake.script = [error(429, "slow down", {"retry-after": "0.3"})]
    t0 = time.perf_counter()
    # A backoff of 5 s would show if retry-after were ignored.
    [result] = backend(fake, backoff=5.0).chat([ask("q")])
    elapsed = time.perf_counter() - t0
    assert result.texts == ["echo q #0"] and len(fake.bodies) == 2
    assert 0.3 <= elapsed < 2.5


def test_server_errors_and_timeouts_are_retried(fake: FakeOpenAI) -> None:
    fake.script = [error(500, "boom"), error(503, "busy")]
    assert backend(fake).chat([ask("q")])[0].texts == ["echo q #0"]
    assert len(fake.bodies) == 3
    # The first request answers after the client's timeout; the retry is answered at once.
    fake.delay = lambda body: 1.0 if len(fake.bodies) == 4 else 0.0
    assert backend(fake, timeout=0.3).chat([ask("slow")])[0].texts == ["echo slow #0"]
    assert len(fake.bodies) == 5


def test_retries_are_bounded(fake: FakeOpenAI) -> None:
    fake.script = [error(502, "down")] * 3
    with pytest.raises(LLMCallError, match=r"after 3 attempts.*502"):
        backend(fake, max_retries=2).chat([ask("q")])
    assert len(fake.bodies) == 3
    port = free_port()  # nobody listens on it
    closed = OpenAIBackend(
        "m", base_url=f"http://127.0.0.1:{port}/v1", api_key_env=KEY_ENV, max_retries=1, backoff=0.01
    )
    with pytest.raises(LLMCallError, match=r"after 2 attempts; last error APIConnectionError"):
        closed.chat([ask("q")])


def test_a_client_error_is_not_retried_and_names_status_model_and_message(fake: FakeOpenAI) -> None:
    fake.script = [error(400, "max_tokens is too large")]
    with pytest.raises(LLMCallError) as info:
        backend(fake, backoff=5.0).chat([ask("q")])
    message = str(info.value)
    assert "HTTP 400" in message and "max_tokens is too large" in message
    assert "teacher-model" in message and fake.url in message
    assert len(fake.bodies) == 1


def test_requests_run_concurrently_within_the_bound_and_come_back_in_order(fake: FakeOpenAI) -> None:
    # Earlier requests answer later, so completion order is the reverse of request order.
    fake.delay = lambda body: 0.05 * (12 - int(str(body["messages"][-1]["content"])))  # type: ignore[index]
    results = backend(fake, max_concurrency=3).chat([ask(str(i)) for i in range(12)])
    assert [r.texts[0] for r in results] == [f"echo {i} #0" for i in range(12)]
    assert fake.max_in_flight == 3


def test_the_key_comes_from_the_environment_only(fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    backend(fake).chat([ask("q")])
    assert fake.auth[-1] == "Bearer sk-test-123"
    monkeypatch.delenv(KEY_ENV)
    backend(fake).chat([ask("q")])  # loopback without a key: the dummy key
    assert fake.auth[-1] == "Bearer EMPTY"
    with pytest.raises(ValueError, match=f"environment variable {KEY_ENV}.*not set"):
        OpenAIBackend("gpt-x", base_url="https://api.example.com/v1", api_key_env=KEY_ENV)
    with pytest.raises(ValueError, match="unknown option.*api_key"):
        make_backend("openai", "gpt-x", api_key="sk-in-a-config")
    with pytest.raises(ValueError, match="unknown chat backend kind 'anthropic'; allowed: transformers, vllm, openai"):
        make_backend("anthropic", "claude")


@pytest.fixture(scope="module")
def vllm_server(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`python -m vllm.entrypoints.openai.api_server` of the tiny model on a free loopback port."""
    log = tmp_path_factory.mktemp("vllm_server") / "server.log"
    with serve_vllm(tiny_model_dir, "tiny", log, "--gpu-memory-utilization", "0.1", "--max-model-len", "256") as url:
        yield url


@pytest.mark.vllm
@pytest.mark.skipif(VLLM_MISSING, reason=VLLM_SKIP_REASON)
def test_a_real_vllm_server(vllm_server: str, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV)
    client = OpenAIBackend("tiny", base_url=vllm_server, api_key_env=KEY_ENV, max_concurrency=4)
    greedy = [ask(q, max_tokens=8) for q in ("What is 6 times 5?", "Reverse the list 1 2 3", "hello")]
    sampled = ask("What is 7 times 8?", temperature=1.0, n=3, seed=11, max_tokens=6)
    results = client.chat([*greedy, sampled])
    assert [len(r.texts) for r in results] == [1, 1, 1, 3]
    assert results[3].texts == client.chat([sampled])[0].texts, "a seeded request repeats"
    local = TransformersBackend(tiny_model_dir)
    for req, res in zip([*greedy, sampled], results, strict=True):
        # The server applies the same chat template and adds no second start token.
        assert res.prompt_tokens == len(chat_prompt_ids(local.tokenizer, req.messages, "tiny"))
        assert 0 < res.completion_tokens <= req.sampling.max_tokens * req.sampling.n
    assert [r.texts for r in results[:3]] == [r.texts for r in local.chat(greedy)]
    client.close()
