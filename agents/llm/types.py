"""The records every chat backend takes and returns; backends, cache and agents share only these."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Literal, Protocol

Message = dict[str, str]  # {"role": "system" | "user" | "assistant", "content": "..."}


@dataclass(frozen=True)
class Guide:
    """The shape a reply must have, enforced token by token where the backend can (guided decoding): a JSON
    schema (`spec` is its JSON text) or a regular expression the whole reply matches."""

    kind: Literal["json", "regex"]
    spec: str

    def __post_init__(self) -> None:
        if self.kind not in ("json", "regex"):
            raise ValueError(f"a guide is 'json' or 'regex', not {self.kind!r}")

    @classmethod
    def schema(cls, schema: dict[str, object]) -> Guide:
        """A JSON-schema guide."""
        return cls("json", json.dumps(schema))  # key order kept: it is the order the model writes fields in

    @classmethod
    def regex(cls, pattern: str) -> Guide:
        """A regular-expression guide."""
        return cls("regex", pattern)


@dataclass(frozen=True)
class Sampling:
    """Sampling parameters of one request (part of the cache key)."""

    temperature: float = 0.0
    top_p: float = 1.0
    max_tokens: int = 256
    n: int = 1
    stop: tuple[str, ...] = ()
    seed: int | None = None
    guide: Guide | None = None  # dropped by the client where the run's guided decoding is off

    def to_json(self) -> dict[str, object]:
        """A JSON-able dict (stable key order, for hashing); an unguided request keeps its old key."""
        out = {**asdict(self), "stop": list(self.stop)}
        if self.guide is None:
            del out["guide"]
        return out


@dataclass
class ChatRequest:
    """One chat call: the messages, the sampling, and which agent asks (for accounting only).

    With `prompt` set the call is a raw completion instead: the text is continued as it is, with no chat
    template around it (Magpie's pre-query prompts, Self-Instruct's numbered lists); `messages` is then empty.
    Only the local backends (transformers, vLLM) complete raw text.
    """

    messages: list[Message]
    sampling: Sampling = field(default_factory=Sampling)
    agent: str = "agent"
    attempt: int = 0  # 0 for a first ask, n for the n-th re-ask after an unusable reply (accounting only)
    prompt: str | None = None

    def __post_init__(self) -> None:
        if self.prompt is not None and self.messages:
            raise ValueError(f"agent {self.agent}: a request has either messages or a raw prompt, not both")


@dataclass
class ChatResult:
    """The n sampled texts of one request, with token counts; `cached` when no tokens were spent."""

    texts: list[str]
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached: bool = False
    # Log-probabilities of the prompt tokens after the first, when the backend was asked for them (vLLM only).
    prompt_logprobs: list[float] | None = None
    # Per text: True when it ended on an end-of-turn token or a stop string, False when max_tokens cut it;
    # None where the backend does not say (Magpie drops instructions that did not end on their own).
    finished: list[bool] | None = None
    # Times the request was sent again after a transport fault (429, 5xx, a reset, a timeout, a malformed body).
    server_retries: int = 0


class ChatBackend(Protocol):
    """A model behind a chat interface. `chat` takes a batch; backends batch or run it concurrently."""

    kind: str  # "vllm" | "openai" | "transformers" | "scripted"
    model: str

    def chat(self, requests: Sequence[ChatRequest]) -> list[ChatResult]: ...

    def close(self) -> None: ...


class LLMCallError(RuntimeError):
    """A chat call that failed for good: a non-retryable HTTP status, or retries exhausted."""


class PartialBatch(LLMCallError):
    """Some calls of a batch failed for good; `done` holds the results of those that did not (None elsewhere),
    in request order, so the caller can keep what was paid for."""

    def __init__(self, message: str, done: list[ChatResult | None]) -> None:
        super().__init__(message)
        self.done = done
