"""Chat backends behind `ChatBackend`: a local transformers model, vLLM's offline engine, and any
OpenAI-compatible HTTP endpoint (OpenAI itself, or a `vllm` OpenAI server).

torch, transformers, vllm and openai are imported when a backend is built, not with this module, so the
light orchestrator process pays only for the backend it uses. A local model's name goes through
`core.models.resolve_model`, so a model alias or a GGUF file works wherever a folder does.
"""

from __future__ import annotations

import inspect
import ipaddress
import json
import os
import random
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from agents.llm.template import PreQuery, pre_query
from agents.llm.types import ChatBackend, ChatRequest, ChatResult, LLMCallError, Message, PartialBatch
from core.generation import TransformersDecoder, VLLMDecoder
from core.models import resolve_model
from core.secrets import redact, register

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase

BACKEND_KINDS: tuple[str, ...] = ("transformers", "vllm", "openai")
MAX_RETRY_DELAY_S = 60.0  # cap on backoff and on a server's retry-after, so a bad header cannot stall a run


class _MalformedReply(ValueError):
    """A 200 reply that is not a usable chat completion (asked again, like a 5xx)."""


def chat_prompt_ids(tokenizer: PreTrainedTokenizerBase, messages: list[Message], model: str) -> list[int]:
    """Token ids of `messages` rendered by the tokenizer's chat template, ready for the assistant's turn.

    The template writes its own start token, so the text is encoded without special tokens (as vLLM's
    chat endpoint does); both local backends go through here and see identical prompt ids.
    """
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(
            f"the tokenizer of model {model} has no chat template; chat backends need one "
            "(set tokenizer.chat_template and save the tokenizer again)"
        )
    from jinja2 import TemplateError

    try:
        text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    except TemplateError as err:  # e.g. a template that rejects a system message
        roles = [m.get("role") for m in messages]
        raise ValueError(f"the chat template of model {model} cannot render a chat with roles {roles}: {err}") from err
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def prompt_ids(tokenizer: PreTrainedTokenizerBase, request: ChatRequest, model: str) -> list[int]:
    """Token ids of a request: its raw prompt as it is (a raw completion), else its chat-templated messages.

    Raw text is encoded without special tokens too: a pre-query template carries its own start token, so
    the tokenizer must not add a second one.
    """
    if request.prompt is not None:
        return list(tokenizer(request.prompt, add_special_tokens=False)["input_ids"])
    return chat_prompt_ids(tokenizer, request.messages, model)


def _torch_dtype(dtype: torch.dtype | str | None) -> torch.dtype:
    import torch

    if dtype is None:
        return torch.float32
    if isinstance(dtype, str):
        value = getattr(torch, dtype, None)
        if not isinstance(value, torch.dtype):
            raise ValueError(f"unknown torch dtype {dtype!r} (e.g. 'float32', 'bfloat16', 'float16')")
        return value
    return dtype


class TransformersBackend:
    """A local HF causal LM through the project's one local decoder (`core.generation.TransformersDecoder`):
    chat-templated prompts, left-padded batches, greedy or seeded sampling, stops, guides."""

    kind = "transformers"

    def __init__(
        self,
        model_dir: str | Path,
        device: str = "cpu",
        dtype: torch.dtype | str | None = None,
        batch_size: int = 8,
    ) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.model = str(model_dir)  # the name as given: it is what the call cache and the reports key on
        self.path = resolve_model(model_dir)  # an alias or GGUF file becomes an HF folder (converted once)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.path)
            lm = AutoModelForCausalLM.from_pretrained(self.path, dtype=_torch_dtype(dtype))
        except OSError as err:
            raise FileNotFoundError(f"cannot load a chat model from {self.model}: {err}") from err
        if not getattr(self.tokenizer, "chat_template", None):
            raise ValueError(f"the tokenizer of model {self.model} has no chat template; chat backends need one")
        lm.to(device).eval()
        self.decoder = TransformersDecoder(lm, self.tokenizer, device, batch_size, self.model)

    def chat(self, requests: Sequence[ChatRequest]) -> list[ChatResult]:
        """One result per request with `sampling.n` texts; batches of `batch_size` sequences."""
        prompts = []
        for req in requests:
            ids = prompt_ids(self.tokenizer, req, self.model)
            if len(ids) + req.sampling.max_tokens > self.decoder.context:
                raise ValueError(
                    f"agent {req.agent}: a prompt of {len(ids)} tokens plus max_tokens={req.sampling.max_tokens} "
                    f"exceeds the context of {self.decoder.context} of model {self.model}"
                )
            prompts.append(ids)
        done = self.decoder.complete(prompts, [r.sampling for r in requests])
        return [ChatResult(c.texts, c.prompt_tokens, c.completion_tokens, finished=c.finished) for c in done]

    def pre_query(self, system: str | None = None, role_stop: bool = True) -> PreQuery:
        """The raw prompt that makes this model write a user turn (Magpie), and its stops."""
        return pre_query(self.tokenizer, system, role_stop)

    def close(self) -> None:
        """Drop the model and free accelerator memory."""
        self.decoder.close()


class VLLMBackend:
    """vLLM's offline engine (`core.generation.VLLMDecoder`), started at the first chat; build it under
    `if __name__ == "__main__":` (vLLM spawns worker processes that re-import the main module).

    `prompt_logprobs` (None or a count k >= 0, as in vLLM) adds each result's prompt-token log-probabilities.
    """

    kind = "vllm"

    def __init__(self, model: str | Path, prompt_logprobs: int | None = None, **engine_kwargs: object) -> None:
        self.model = str(model)  # the name as given: it is what the call cache and the reports key on
        # Converted here rather than at the first chat, so a missing package fails before any work.
        self.path = resolve_model(model)
        self.prompt_logprobs = prompt_logprobs
        # Guided JSON without free whitespace: a weak model otherwise fills max_tokens with newlines inside the
        # object (seen with vLLM 0.32's xgrammar backend, which reads this only from the engine's config).
        engine_kwargs = {
            "structured_outputs_config": {"backend": "xgrammar", "disable_any_whitespace": True},
            **engine_kwargs,
        }
        self.decoder = VLLMDecoder(self.path, self.model, prompt_logprobs, **engine_kwargs)
        self.engine_kwargs = self.decoder.engine

    def pre_query(self, system: str | None = None, role_stop: bool = True) -> PreQuery:
        """The raw prompt that makes this model write a user turn (Magpie), and its stops; needs only the
        tokenizer, so the engine is not started for it."""
        return pre_query(self.decoder.tokenizer, system, role_stop)

    def start(self) -> None:
        """Start the engine now (else the first chat does): callers that time generation call this first."""
        self.decoder.start()

    def chat(self, requests: Sequence[ChatRequest]) -> list[ChatResult]:
        """One result per request with `sampling.n` texts, from one `generate` call for the whole batch."""
        if not requests:
            return []
        self.decoder.start()
        prompts = [prompt_ids(self.decoder.tokenizer, r, self.model) for r in requests]
        done = self.decoder.complete(prompts, [r.sampling for r in requests])
        return [
            ChatResult(
                c.texts, c.prompt_tokens, c.completion_tokens, prompt_logprobs=c.prompt_logprobs, finished=c.finished
            )
            for c in done
        ]

    def close(self) -> None:
        """Shut the engine and its worker processes down."""
        self.decoder.close()


def _is_loopback_url(url: str) -> bool:
    host = (urlparse(url).hostname or "").lower()
    if host in ("localhost", "0.0.0.0"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds a server asked us to wait (`retry-after-ms` or `retry-after` in seconds), if it said."""
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is not None:
            try:
                return max(0.0, float(value) * scale)
            except ValueError:
                continue  # an HTTP date; fall back to our own backoff
    return None


class OpenAIBackend:
    """Any OpenAI-compatible chat-completions endpoint, with our own retries and a bounded thread pool.

    429, 408, 5xx, connection errors, timeouts, bodies cut off or not JSON, and a choice list of the wrong
    length are retried with exponential backoff plus jitter (a `retry-after` header wins); other 4xx fail
    at once. Each result says how many times it was sent again (`server_retries`). The API key comes only
    from the environment variable `api_key_env`; a loopback `base_url` without one gets the dummy key "EMPTY".
    """

    kind = "openai"

    def __init__(
        self,
        model: str,
        base_url: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        max_concurrency: int = 8,
        timeout: float = 60.0,
        max_retries: int = 5,
        backoff: float = 1.0,
    ) -> None:
        import openai

        if max_concurrency < 1 or max_retries < 0 or timeout <= 0 or backoff < 0:
            raise ValueError(
                f"OpenAI backend for {model}: need max_concurrency >= 1, max_retries >= 0, timeout > 0, backoff >= 0; "
                f"got {max_concurrency}, {max_retries}, {timeout}, {backoff}"
            )
        self.model = model
        self.max_concurrency = max_concurrency
        self.max_retries = max_retries
        self.backoff = backoff
        key = os.environ.get(api_key_env)
        if not key:
            if base_url is None or not _is_loopback_url(base_url):
                raise ValueError(
                    f"OpenAI backend for model {model} at {base_url or 'the default OpenAI endpoint'}: the environment "
                    f"variable {api_key_env} holding the API key is not set (keys are read from the environment only)"
                )
            key = "EMPTY"  # local servers (vllm serve) accept any key
        register(key)  # masked in every error this process reports, also when a server quotes it back
        # The client's own retries are off: ours decide what is retried and honour retry-after.
        self._client = openai.OpenAI(api_key=key, base_url=base_url, timeout=timeout, max_retries=0)
        self.base_url = str(self._client.base_url)

    def chat(self, requests: Sequence[ChatRequest]) -> list[ChatResult]:
        """One result per request, in request order; up to `max_concurrency` requests in flight."""
        if len(requests) <= 1:
            return [self._call(r) for r in requests]
        with ThreadPoolExecutor(min(self.max_concurrency, len(requests)), thread_name_prefix="openai") as pool:
            futures: list[Future[ChatResult]] = [pool.submit(self._call, r) for r in requests]
            try:
                return [f.result() for f in futures]
            except LLMCallError as err:
                for f in futures:
                    f.cancel()  # no new calls once one has failed for good; those in flight finish
                failure = err
            except BaseException:
                for f in futures:
                    f.cancel()
                raise
        # The pool has waited for the calls in flight: what they returned was paid for and is handed back.
        done = [f.result() if f.done() and not f.cancelled() and f.exception() is None else None for f in futures]
        raise PartialBatch(str(failure), done) from failure

    def _call(self, req: ChatRequest) -> ChatResult:
        import openai

        if req.prompt is not None:
            # A server applies its own chat template around whatever it is sent (magpie#15), so a raw
            # continuation of a pre-query prompt cannot be asked for; config validation refuses it first.
            raise LLMCallError(
                f"agent {req.agent} asked model {self.model} for a raw completion; the openai backend only chats "
                "(use teacher.llm.backend transformers, vllm or auto)"
            )
        s = req.sampling
        kwargs: dict[str, object] = {
            "model": self.model,
            "messages": req.messages,
            "n": s.n,
            "temperature": s.temperature,
            "top_p": s.top_p,
            "max_tokens": s.max_tokens,
        }
        if s.stop:
            kwargs["stop"] = list(s.stop)
        if s.seed is not None:
            kwargs["seed"] = s.seed
        if s.guide is not None:
            # A JSON schema as the standard response_format (OpenAI, vLLM, SGLang, ...); a regex only as vLLM's
            # structured_outputs extension (a server without it refuses the request: a clear 400).
            if s.guide.kind == "json":
                schema = {"name": "reply", "schema": json.loads(s.guide.spec), "strict": True}
                kwargs["response_format"] = {"type": "json_schema", "json_schema": schema}
            else:
                kwargs["extra_body"] = {"structured_outputs": {"regex": s.guide.spec}}
        where = f"model {self.model} at {self.base_url} (agent {req.agent})"
        for attempt in range(self.max_retries + 1):
            delay: float | None = None
            try:
                resp = self._client.chat.completions.create(**kwargs)  # type: ignore[call-overload]
                choices = sorted(resp.choices or [], key=lambda c: c.index)
                if len(choices) != s.n:  # an empty or short list: a server glitch, asked again
                    raise _MalformedReply(f"asked for n={s.n} choices and got {len(choices)}")
                break
            except openai.APIStatusError as err:
                status = err.status_code
                if not (status in (408, 429) or status >= 500):
                    message = redact(f"chat call to {where} failed with HTTP {status}: {err.message}")
                    raise LLMCallError(message) from err
                last: Exception = err
                delay = _retry_after(err.response.headers)
            except openai.APIConnectionError as err:  # also timeouts (APITimeoutError) and cut-off bodies
                last = err
            except (json.JSONDecodeError, openai.APIResponseValidationError, _MalformedReply) as err:
                last = err  # a 200 whose body is not a chat completion
            if attempt == self.max_retries:
                error = f"{type(last).__name__}: {last}"
                raise LLMCallError(
                    redact(f"chat call to {where} failed after {attempt + 1} attempts; last error {error}")
                ) from last
            if delay is None:
                delay = self.backoff * 2**attempt + random.uniform(0, self.backoff)
            time.sleep(min(delay, MAX_RETRY_DELAY_S))
        usage = resp.usage
        return ChatResult(
            [c.message.content or "" for c in choices],
            usage.prompt_tokens if usage else 0,
            usage.completion_tokens if usage else 0,
            server_retries=attempt,
        )

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._client.close()


_CONSTRUCTORS: dict[str, type] = {
    "transformers": TransformersBackend,
    "vllm": VLLMBackend,
    "openai": OpenAIBackend,
}


def make_backend(kind: str, model: str, **options: object) -> ChatBackend:
    """The backend `kind` for `model`; `options` are its constructor's keyword arguments."""
    if kind not in _CONSTRUCTORS:
        raise ValueError(f"unknown chat backend kind {kind!r}; allowed: {', '.join(BACKEND_KINDS)}")
    cls = _CONSTRUCTORS[kind]
    params = inspect.signature(cls.__init__).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    unknown = sorted(set(options) - set(params) - {"self"})
    if unknown and not takes_any:
        allowed = list(params)[2:]  # after self and the model
        raise ValueError(
            f"chat backend {kind!r}: unknown option(s) {', '.join(unknown)}; allowed: {', '.join(allowed)}"
        )
    return cls(model, **options)
