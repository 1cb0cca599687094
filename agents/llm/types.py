"""The records every chat backend takes and returns; backends, cache and agents share only these."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Protocol

Message = dict[str, str]  # {"role": "system" | "user" | "assistant", "content": "..."}


@dataclass(frozen=True)
class Sampling:
    """Sampling parameters of one request (part of the cache key)."""

    temperature: float = 0.0
    top_p: float = 1.0
    max_tokens: int = 256
    n: int = 1
    stop: tuple[str, ...] = ()
    seed: int | None = None

    def to_json(self) -> dict[str, object]:
        """A JSON-able dict (stable key order, for hashing)."""
        return {**asdict(self), "stop": list(self.stop)}


@dataclass
class ChatRequest:
    """One chat call: the messages, the sampling, and which agent asks (for accounting only)."""

    messages: list[Message]
    sampling: Sampling = field(default_factory=Sampling)
    agent: str = "agent"
    attempt: int = 0  # 0 for a first ask, n for the n-th re-ask after an unusable reply (accounting only)


@dataclass
class ChatResult:
    """The n sampled texts of one request, with token counts; `cached` when no tokens were spent."""

    texts: list[str]
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached: bool = False
    # Log-probabilities of the prompt tokens after the first, when the backend was asked for them (vLLM only).
    prompt_logprobs: list[float] | None = None


class ChatBackend(Protocol):
    """A model behind a chat interface. `chat` takes a batch; backends batch or run it concurrently."""

    kind: str  # "vllm" | "openai" | "transformers" | "scripted"
    model: str

    def chat(self, requests: Sequence[ChatRequest]) -> list[ChatResult]: ...

    def close(self) -> None: ...
