"""The LLM Assessor: grades student answers and curates synthetic items with a model as judge.

- `grade`: the task's `verifier(prediction, reference, record) -> bool | None` decides where it can
  (an exact check beats any judge); otherwise an MT-Bench judge (AutoDetect's Assessor) compares the
  answer with the reference and rates it [[1-10]] at temperature 0; `correct` = score >= weak_score.
- `quality_request` (Humpback self-curation): the model rates an item on a 5-point scale ("Score: n");
  the `quality` curator (agents/curators/quality.py) drops those below its `min_quality`. Humpback keeps
  only 5s (>= 4.5); the default 4 there is looser, since a stricter bar suits a large unlabelled pool
  more than a targeted batch.
Unparsable judge output is asked again (another seed) at most `max_tries` times.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from agents.llm.guides import RATING, SCORE
from agents.llm.parsing import Chat, ask_parsed, excerpt, parse_rating
from agents.llm.prompts import render
from agents.llm.types import ChatRequest, Sampling
from agents.roles import Record

Verifier = Callable[[str, str, Record], "bool | None"]


class LLMAssessor:
    """Assessor backed by a chat model, with an optional exact verifier."""

    def __init__(
        self,
        client: Chat,
        verifier: Verifier | None = None,
        weak_score: float = 3.1,
        max_tries: int = 2,
        max_tokens: int = 1024,
        excerpt_chars: int = 300,
    ) -> None:
        self.client = client
        self.verifier = verifier
        self.weak_score = weak_score
        self.max_tries = max_tries
        self.max_tokens = max_tokens
        self.excerpt_chars = excerpt_chars

    # -- grading ------------------------------------------------------------------------------------
    def grade(self, records: Sequence[Record]) -> list[Record]:
        """Each record with `correct`, `score` (judge's 1-10, None when verified), `judge`, `error_type`."""
        verdicts = [self._verify(str(r.get("prediction", "")), r.get("output"), r) for r in records]
        ask = [i for i, v in enumerate(verdicts) if v is None]
        got = ask_parsed(self.client, [self.judge_request(records[i]) for i in ask], parse_rating, self.max_tries)
        judged = dict(zip(ask, got, strict=True))
        out = []
        for i, r in enumerate(records):
            if verdicts[i] is not None:
                ok = bool(verdicts[i])
                out.append({**r, "correct": ok, "score": None, "judge": "verifier", "error_type": _error(ok, "wrong")})
                continue
            g = judged[i]
            text = excerpt(g.text, self.excerpt_chars)
            if g.value is None:
                out.append({**r, "correct": False, "score": None, "judge": text, "error_type": "unjudged"})
            else:
                ok = g.value >= self.weak_score
                err = _error(ok, f"judged {g.value:g} < {self.weak_score:g}")
                out.append({**r, "correct": ok, "score": g.value, "judge": text, "error_type": err})
        return out

    def _verify(self, answer: str, reference: object, record: Record) -> bool | None:
        if self.verifier is None or reference is None or not str(reference).strip():
            return None
        return self.verifier(answer, str(reference), record)

    def judge_request(self, record: Record) -> ChatRequest:
        """The MT-Bench-style 1-10 judge request for one graded record."""
        question, answer, reference = record["instruction"], record.get("prediction", ""), record.get("output")
        if reference is not None and str(reference).strip():
            user = render("judge_reference", question=question, answer=answer, reference=reference)
        else:
            user = render("judge", question=question, answer=answer)
        messages = [{"role": "system", "content": render("judge_system")}, {"role": "user", "content": user}]
        return ChatRequest(messages, Sampling(temperature=0.0, max_tokens=self.max_tokens, guide=RATING), "assessor")

    # -- curation -----------------------------------------------------------------------------------
    def quality_request(self, item: Record) -> ChatRequest:
        """The Humpback-style 5-point rating request for one item."""
        user = render("quality", instruction=item["instruction"], output=item["output"])
        sampling = Sampling(0.0, max_tokens=self.max_tokens, guide=SCORE)
        return ChatRequest([{"role": "user", "content": user}], sampling, "assessor")


def _error(ok: bool, label: str) -> str | None:
    return None if ok else label
