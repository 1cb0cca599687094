"""A scripted chat backend for unit tests only: answers come from a table, never from a model."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from agents.llm.template import PreQuery, pre_query
from agents.llm.types import ChatRequest, ChatResult

Rule = tuple[str, str | Callable[[ChatRequest], str]]
CUT = "<CUT>"  # a scripted reply ending with this counts as cut by max_tokens (finished False)
# SmolLM2's chat template, reduced to what a pre-query render needs: ChatML with a default system prompt.
CHATML = (
    "{% for m in messages %}{% if loop.first and m['role'] != 'system' %}<|im_start|>system\n"
    "You are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n{% endif %}"
    "<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


class _TemplateTokenizer:
    """Just enough of a tokenizer to render a chat template: its specials are <|im_start|> and <|im_end|>."""

    all_special_tokens = ("<|im_start|>", "<|im_end|>")
    eos_token = "<|im_end|>"

    def __init__(self, template: str) -> None:
        self.chat_template = template

    def apply_chat_template(self, messages: list[dict[str, str]], tokenize: bool, add_generation_prompt: bool) -> str:
        import jinja2

        env = jinja2.Environment(undefined=jinja2.StrictUndefined)
        template = env.from_string(self.chat_template)
        return template.render(messages=messages, add_generation_prompt=add_generation_prompt)


class ScriptedBackend:
    """Replies by rule: the first (regex, reply) whose regex matches the last user message wins.

    A reply is a string or a function of the request. `calls` keeps every request it was given, so a
    test can assert what an agent asked. An unmatched request fails loudly: a test that forgot a rule
    must not pass on an empty answer. Token counts are whitespace word counts.
    """

    kind = "scripted"

    def __init__(self, rules: Sequence[Rule], model: str = "scripted", template: str = CHATML) -> None:
        self.rules = [(re.compile(pattern, re.S), reply) for pattern, reply in rules]
        self.model = model
        self.template = template  # the chat template `pre_query` derives from (ChatML, as SmolLM2's)
        self.calls: list[ChatRequest] = []

    @staticmethod
    def finished(text: str) -> bool:
        """A scripted reply ends on its own unless it ends with the marker CUT (a reply max_tokens cut)."""
        return not text.endswith(CUT)

    def pre_query(self, system: str | None = None, role_stop: bool = True) -> PreQuery:
        """The pre-query prompt of `template`, rendered with a minimal tokenizer stand-in."""
        return pre_query(_TemplateTokenizer(self.template), system, role_stop)

    def chat(self, requests: Sequence[ChatRequest]) -> list[ChatResult]:
        """One result per request, each with `sampling.n` texts."""
        results = []
        for req in requests:
            self.calls.append(req)
            user = req.prompt if req.prompt is not None else ""
            user = next((m["content"] for m in reversed(req.messages) if m["role"] == "user"), user)
            reply = self._reply(req, user)
            texts = [reply(req) if callable(reply) else reply for _ in range(req.sampling.n)]
            prompt_tokens = sum(len(m["content"].split()) for m in req.messages) + len((req.prompt or "").split())
            finished = [self.finished(t) for t in texts]
            results.append(ChatResult(texts, prompt_tokens, sum(len(t.split()) for t in texts), finished=finished))
        return results

    def _reply(self, req: ChatRequest, user: str) -> str | Callable[[ChatRequest], str]:
        for pattern, reply in self.rules:
            if pattern.search(user):
                return reply
        raise KeyError(f"scripted backend: no rule matches the user message {user[:200]!r} (agent {req.agent})")

    def close(self) -> None:
        """Nothing to release."""
