"""Robust parsing of model output, and asking again with a changed request when it does not parse.

Models wrap JSON in prose and code fences, add trailing commas, and put ratings anywhere in a text.
The parsers accept all of that and raise `ParseError` (with an excerpt of the text) otherwise.
`ask_parsed` retries a batch of requests until each parses, at most `tries` times: a retry changes the
sampling seed (and a greedy temperature to a sampled one), because calls are cached by request and
the same request would bring back the same bad text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from itertools import chain
from typing import Generic, Protocol, TypeVar

from agents.llm.types import ChatRequest, ChatResult

T = TypeVar("T")

_FENCE = re.compile(r"```[ \t]*(?:json|JSON)?[ \t]*\n?(.*?)```", re.S)
_TRAILING_COMMA = re.compile(r",(\s*[}\]])")
_BRACKETED = re.compile(r"\[\[\s*(.*?)\s*\]\]", re.S)
_SINGLE_BRACKET_NUMBER = re.compile(r"\[\s*(\d+(?:\.\d+)?)\s*\]")
_SCORE = re.compile(r"score\s*[:=]?\s*\**\s*(\d+(?:\.\d+)?)", re.I)
# strict=False: a raw control character inside a string (a tab, a stray byte token a grammar engine let through)
# would otherwise void a reply whose structure is fine.
_DECODER = json.JSONDecoder(strict=False)


class ParseError(ValueError):
    """Model output that could not be parsed; `excerpt` holds a short piece of the text."""

    def __init__(self, what: str, text: str) -> None:
        self.excerpt = excerpt(text)
        super().__init__(f"{what}: {self.excerpt!r}")


def excerpt(text: str, limit: int = 160) -> str:
    """The start of a text on one line, cut to `limit` characters."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _json_values(text: str, opener: str) -> Iterator[object]:
    """Every JSON value that starts at an `opener` character (nested ones too), fenced blocks first,
    outer before inner; then the same with trailing commas removed (a slip that strict JSON rejects)."""
    sources = [m.group(1) for m in _FENCE.finditer(text)] + [text]
    for source in sources + [_TRAILING_COMMA.sub(r"\1", s) for s in sources]:
        start = source.find(opener)
        while start != -1:
            try:
                value, end = _DECODER.raw_decode(source, start)
            except json.JSONDecodeError:
                start = source.find(opener, start + 1)
                continue
            yield value
            start = source.find(opener, start + 1)  # values nested in this one come next


def parse_json(text: str, required: Sequence[str] = ()) -> dict[str, object]:
    """The first JSON object in `text` (fenced or bare, prose around it allowed) that has `required` keys.

    Failing that, an object broken after its fields (small models often write `{"question": "...",
    "answer": "..."` and then ramble) is salvaged: each required key's first well-formed string value."""
    for value in _json_values(text, "{"):
        if isinstance(value, dict) and all(k in value for k in required):
            return value
    if required and "{" in text:
        salvaged = {k: _string_field(text[text.index("{") :], k) for k in required}
        if all(v is not None for v in salvaged.values()):
            return salvaged  # type: ignore[return-value]
    keys = f" with keys {', '.join(required)}" if required else ""
    raise ParseError(f"no JSON object{keys}", text)


def _string_field(text: str, key: str) -> str | None:
    """The first `"key": "<JSON string>"` in text, decoded; None when there is none."""
    m = re.search(r'"' + re.escape(key) + r'"\s*:\s*("(?:[^"\\\n]|\\.)*")', text)
    if m is None:
        return None
    try:
        return str(_DECODER.decode(m.group(1)))
    except json.JSONDecodeError:
        return None


def parse_json_list(text: str, required: Sequence[str] = ()) -> list[dict[str, object]]:
    """The objects of the first JSON list in `text` whose items have `required` keys; a lone object,
    or an object wrapping one list (e.g. {"questions": [...]}), counts as a list too."""
    for value in chain(_json_values(text, "["), _json_values(text, "{")):
        items = value
        if isinstance(value, dict):
            lists = [v for v in value.values() if isinstance(v, list)]
            items = lists[0] if len(lists) == 1 else [value]
        if isinstance(items, list):
            good = [i for i in items if isinstance(i, dict) and all(k in i for k in required)]
            if good:
                return good
    keys = f" with keys {', '.join(required)}" if required else ""
    raise ParseError(f"no JSON list of objects{keys}", text)


def parse_bracketed(text: str) -> str:
    """The content of the last `[[...]]` in `text` (AutoDetect's [[Stop]], [[Yes]], [[7]])."""
    found = _BRACKETED.findall(text)
    if not found:
        raise ParseError("no [[...]] verdict", text)
    return found[-1]


def parse_rating(text: str, low: float = 1, high: float = 10) -> float:
    """An MT-Bench rating: the last `[[n]]` (or, failing that, `[n]`) with low <= n <= high."""
    for pattern in (_BRACKETED, _SINGLE_BRACKET_NUMBER):
        for raw in reversed(pattern.findall(text)):
            try:
                value = float(raw)
            except ValueError:
                continue
            if low <= value <= high:
                return value
    raise ParseError(f"no rating [[{low:g}-{high:g}]]", text)


def parse_score(text: str, low: float = 1, high: float = 5) -> float:
    """Humpback's self-curation rating: the last `Score: n` with low <= n <= high."""
    for raw in reversed(_SCORE.findall(text)):
        if low <= float(raw) <= high:
            return float(raw)
    raise ParseError(f"no 'Score: n' in {low:g}-{high:g}", text)


class Chat(Protocol):
    """Anything that answers a batch of chat requests (a backend, or the caching LLMClient)."""

    def chat(self, requests: Sequence[ChatRequest]) -> list[ChatResult]: ...


def retry_request(request: ChatRequest, attempt: int, temperature: float = 0.7) -> ChatRequest:
    """The request for retry number `attempt` (0 = the request itself): another seed, never greedy."""
    if attempt == 0:
        return request
    seed = attempt if request.sampling.seed is None else request.sampling.seed + attempt
    sampling = replace(request.sampling, seed=seed, temperature=max(request.sampling.temperature, temperature))
    return ChatRequest(request.messages, sampling, request.agent, attempt, request.prompt)


@dataclass
class Parsed(Generic[T]):
    """The outcome of asking until a reply parses: `value` (None when every try failed) and why not."""

    value: T | None
    text: str = ""
    error: str | None = None
    attempts: int = 0


def ask_parsed(client: Chat, requests: Sequence[ChatRequest], parse: Callable[[str], T], tries: int) -> list[Parsed[T]]:
    """Send `requests` in batches; re-ask (with `retry_request`) those whose first text does not parse."""
    out: list[Parsed[T]] = [Parsed(None) for _ in requests]
    pending = list(range(len(requests)))
    for attempt in range(max(1, tries)):
        if not pending:
            break
        results = client.chat([retry_request(requests[i], attempt) for i in pending])
        still = []
        for i, result in zip(pending, results, strict=True):
            text = result.texts[0] if result.texts else ""
            try:
                out[i] = Parsed(parse(text), text, None, attempt + 1)
            except ParseError as err:
                out[i] = Parsed(None, text, str(err), attempt + 1)
                still.append(i)
        pending = still
    return out
