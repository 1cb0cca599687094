"""A scripted chat backend for unit tests only: answers come from a table, never from a model."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from agents.llm.types import ChatRequest, ChatResult

Rule = tuple[str, str | Callable[[ChatRequest], str]]


class ScriptedBackend:
    """Replies by rule: the first (regex, reply) whose regex matches the last user message wins.

    A reply is a string or a function of the request. `calls` keeps every request it was given, so a
    test can assert what an agent asked. An unmatched request fails loudly: a test that forgot a rule
    must not pass on an empty answer. Token counts are whitespace word counts.
    """

    kind = "scripted"

    def __init__(self, rules: Sequence[Rule], model: str = "scripted") -> None:
        self.rules = [(re.compile(pattern, re.S), reply) for pattern, reply in rules]
        self.model = model
        self.calls: list[ChatRequest] = []

    def chat(self, requests: Sequence[ChatRequest]) -> list[ChatResult]:
        """One result per request, each with `sampling.n` texts."""
        results = []
        for req in requests:
            self.calls.append(req)
            user = next((m["content"] for m in reversed(req.messages) if m["role"] == "user"), "")
            reply = self._reply(req, user)
            texts = [reply(req) if callable(reply) else reply for _ in range(req.sampling.n)]
            prompt_tokens = sum(len(m["content"].split()) for m in req.messages)
            results.append(ChatResult(texts, prompt_tokens, sum(len(t.split()) for t in texts)))
        return results

    def _reply(self, req: ChatRequest, user: str) -> str | Callable[[ChatRequest], str]:
        for pattern, reply in self.rules:
            if pattern.search(user):
                return reply
        raise KeyError(f"scripted backend: no rule matches the user message {user[:200]!r} (agent {req.agent})")

    def close(self) -> None:
        """Nothing to release."""
