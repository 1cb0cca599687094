"""The LLM Teacher: a model answers every candidate, optionally by self-consistency voting.

With `samples=1` the answer is greedy. With `samples=k>1` the model samples k answers at `temperature`;
each votes with its final answer (`extract`, e.g. the last number; the whole text, case and spacing
ignored, when no `extract` is given); the majority answer is kept only if its share of all k samples reaches
`min_agreement` and no other answer ties it. Otherwise `output` is "" and `teacher_note` says why, so
the Assessor drops the item as malformed. With one sample, an empty reply is asked again (another
seed) at most `max_tries` times; with k samples there is no retry (an empty sample just does not vote).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence

from agents.llm.parsing import Chat, ParseError, ask_parsed
from agents.llm.prompts import render
from agents.llm.types import ChatRequest, Sampling
from agents.roles import Record

Extract = Callable[[str], "str | None"]


def _non_empty(text: str) -> str:
    if not text.strip():
        raise ParseError("empty answer", text)
    return text.strip()


class LLMTeacher:
    """Teacher backed by a chat model (adds `output`, `teacher`, and with voting `votes`/`agreement`)."""

    def __init__(
        self,
        client: Chat,
        samples: int = 1,
        temperature: float = 0.7,
        extract: Extract | None = None,
        min_agreement: float = 0.5,
        max_tries: int = 2,
        max_tokens: int = 1024,
        name: str | None = None,
        system: str | None = "teacher_system",
    ) -> None:
        if samples < 1:
            raise ValueError(f"LLMTeacher: samples must be >= 1, got {samples}")
        self.client = client
        self.samples = samples
        self.temperature = temperature
        self.extract = extract
        self.min_agreement = min_agreement
        self.max_tries = max_tries
        self.max_tokens = max_tokens
        self.name = name or str(getattr(client, "model", type(client).__name__))
        self.system = system  # a template name, or None for no system message

    def answer(self, candidates: Sequence[Record]) -> list[Record]:
        """Each candidate with `output` ("" when no answer could be had) and `teacher`."""
        requests = [self.request(c) for c in candidates]
        if self.samples == 1:
            got = ask_parsed(self.client, requests, _non_empty, self.max_tries)
            return [self._single(c, g.value, g.error) for c, g in zip(candidates, got, strict=True)]
        results = self.client.chat(requests)
        return [{**c, **self.vote(r.texts), "teacher": self.name} for c, r in zip(candidates, results, strict=True)]

    def request(self, candidate: Record) -> ChatRequest:
        """The chat request that answers one candidate."""
        messages = [{"role": "system", "content": render(self.system)}] if self.system else []
        messages.append({"role": "user", "content": str(candidate["instruction"])})
        if self.samples == 1:
            sampling = Sampling(temperature=0.0, max_tokens=self.max_tokens)
        else:
            sampling = Sampling(temperature=self.temperature, max_tokens=self.max_tokens, n=self.samples, seed=0)
        return ChatRequest(messages, sampling, "teacher")

    def _single(self, candidate: Record, text: str | None, error: str | None) -> Record:
        out = {**candidate, "output": text or "", "teacher": self.name}
        if text is None:
            out["teacher_note"] = f"no answer after {self.max_tries} tries: {error}"
        return out

    def vote(self, texts: Sequence[str]) -> Record:
        """`output`, `votes` and `agreement` from k sampled texts (output "" with `teacher_note` when no majority)."""
        finals = [self._final(t) for t in texts]
        votes = Counter(f for f in finals if f is not None)
        record: Record = {"votes": dict(votes.most_common()), "agreement": 0.0}
        if not votes:
            return {**record, "output": "", "teacher_note": f"no final answer in any of {len(texts)} samples"}
        (top, count), *rest = votes.most_common()
        share = count / len(texts)
        record["agreement"] = round(share, 4)
        if rest and rest[0][1] == count:
            return {**record, "output": "", "teacher_note": f"tie between {top!r} and {rest[0][0]!r} ({count} each)"}
        if share < self.min_agreement:
            note = f"agreement {share:.2f} < {self.min_agreement} (majority {top!r}, {count} of {len(texts)})"
            return {**record, "output": "", "teacher_note": note}
        return {**record, "output": texts[finals.index(top)].strip()}

    def _final(self, text: str) -> str | None:
        if not text.strip():
            return None
        if self.extract is None:
            return " ".join(text.lower().split())
        value = self.extract(text)
        return None if value is None or not str(value).strip() else str(value).strip()
