"""The records every chat backend takes and returns; backends, cache and agents share only these."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from core.generation import Guide, Sampling

__all__ = ["ChatBackend", "ChatRequest", "ChatResult", "Guide", "LLMCallError", "Message", "PartialBatch", "Sampling"]

Message = dict[str, str]  # {"role": "system" | "user" | "assistant", "content": "..."}


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
