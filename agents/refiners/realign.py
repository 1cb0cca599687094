"""ReAlign as a refiner: the chat model rewrites each answer into the format of its task type, where that fits.

The steps are ReAlign's (GAIR-NLP/ReAlign `code/`), with the task formats in our own words
(`realign_formats.yaml`):

1. **Task type.** Where the task knows its items' kind it decides (the task world and a math dataset:
   `math_puzzles`; a classification dataset: `classification`); otherwise, or with `classify: model`, the chat
   model picks one from the list (`realign_classify.j2`, greedy, 50 tokens); a name not in the list is `default`.
2. **Adaptive rewrite.** Tasks without a format (and `default`, as in ReAlign) are left alone. Otherwise the
   model first judges whether the format fits the question and copies the response if not
   (`realign_system.j2`; `adaptive: false` takes the ablation without that rule), then writes
   "Reasoning: ..." and "Revised response: ...". `samples` (2) are drawn at temperature 0.3 and the longest
   revision, in tokens, is kept. A reply without "Revised response:" is asked again, at most `tries` times.
3. **Post-filters**, exactly ReAlign's: a one-character answer (a choice letter) must survive as a standalone
   token; "True" / "False" passes; code (a fenced block, or both `def ` and `return `) must be in both or neither;
   the rewrite must keep more than half the tokens (len - 1 > 0.5 x (len - 1)); no template leakage
   (`### Instruction:`, `### Response:`, `Revised response`); a `planning` rewrite needs " plan" / " Plan" in
   the question. One filter ReAlign lacks: where the task's code can check an answer (the task world's oracle,
   a math dataset's final number), the rewritten answer must still be right.

A rewrite that passes replaces `output` (the original stays in `original_output`); one that fails keeps the
original, as ReAlign does. Every item leaves with `realign`: {"task", "tag": rewrite | original, "why"}, `why`
naming the filter or the reason nothing was rewritten. Tokens are counted as words and punctuation marks
(ReAlign counts Llama-2 tokens). Retrieval for knowledge tasks (ReAlign's Google search) is not built.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field

from agents.llm.guides import REALIGN_REWRITE
from agents.llm.parsing import ParseError, ask_parsed, retry_request
from agents.llm.prompts import render
from agents.llm.types import ChatRequest, Sampling
from core.plugins import Inputs, Plugin, PluginConfig, register
from core.records import Record

FORMATS = Path(__file__).with_name("realign_formats.yaml")
_TOKEN = re.compile(r"\w+|[^\w\s]")
_LEAKS = ("### Instruction:", "### Response:", "Revised response")


@cache
def task_formats() -> dict[str, dict[str, str | None]]:
    """Task name -> {description, format} (format None: never rewritten)."""
    return yaml.safe_load(FORMATS.read_text(encoding="utf-8"))


class ReAlignConfig(PluginConfig):
    """ReAlign's classifier, rewrite and decoding (defaults: the reference's)."""

    classify: Literal["auto", "model"] = Field(
        "auto", description="auto: the task's kind where it knows it, else the chat model; model: always the model"
    )
    adaptive: bool = Field(True, description="the model may keep the response when the format does not fit")
    samples: int = Field(2, ge=1, le=8, description="revisions drawn per item; the longest is kept (ReAlign's 2)")
    temperature: float = Field(0.3, ge=0, description="sampling temperature of the rewrite (ReAlign's 0.3)")
    max_tokens: int | None = Field(None, ge=16, description="new tokens per revision; null: teacher.llm.max_tokens")
    tries: int = Field(2, ge=1, le=5, description="asks until a reply has 'Revised response:'")
    length_ratio: float = Field(0.5, gt=0, lt=1, description="a rewrite must keep more than this share of tokens")


def tokens(text: str) -> int:
    """Words and punctuation marks: the length the selection and the length filter count."""
    return len(_TOKEN.findall(text))


def has_code(text: str) -> bool:
    """ReAlign's test: a fenced block, or both `def ` and `return `."""
    return bool(re.search(r"```.*?```", text, re.S)) or ("def " in text and "return " in text)


def parse_revision(text: str) -> str:
    """The text after 'Revised response:'; ParseError when it is missing or empty."""
    if "Revised response:" not in text:
        raise ParseError("no 'Revised response:'", text)
    revised = text.split("Revised response:", 1)[1].strip()
    if not revised:
        raise ParseError("an empty revised response", text)
    return revised


def filter_rewrite(original: str, rewrite: str, question: str, task: str, ratio: float = 0.5) -> str | None:
    """Why ReAlign's post-filters keep the original instead of `rewrite`, or None when the rewrite stands."""
    answer = original.strip()
    if len(answer) == 1:
        pattern = rf"(?<![a-zA-Z]){re.escape(answer)}(?![a-zA-Z])"
        return None if re.search(pattern, rewrite) else "the one-letter answer is lost"
    if answer in ("True", "False"):
        return None
    if any(leak in rewrite for leak in _LEAKS):
        return "template words leaked into the rewrite"
    if task == "planning" and " plan" not in question and " Plan" not in question:
        return "a planning format for a question that asks for no plan"
    if has_code(original) != has_code(rewrite):
        return "code in only one of original and rewrite"
    if tokens(rewrite) - 1 <= ratio * (tokens(original) - 1):
        return f"the rewrite keeps {ratio:g} of the tokens or fewer"
    return None


def task_type_of(task: object) -> str | None:
    """The ReAlign task type a run's task implies for all its items, or None where items differ."""
    if getattr(task, "has_oracle", False) or getattr(task, "kind", None) == "math":
        return "math_puzzles"
    if getattr(task, "kind", None) == "classification":
        return "classification"
    return None


@register
class ReAlignRefiner(Plugin):
    """ReAlign: answers rewritten into their task's format where it fits, kept only through its filters."""

    name = "realign"
    kind = "refiner"
    Config = ReAlignConfig
    needs = frozenset({"chat"})
    config: ReAlignConfig

    def refine(self, items: Sequence[Record], inputs: Inputs) -> list[Record]:
        """Every item, its answer rewritten or not, with `realign` saying which and why."""
        kinds = self.classify(items)
        formats = task_formats()
        todo = [k for k, t in enumerate(kinds) if t != "default" and formats[t]["format"] and items[k].get("output")]
        revisions = self._rewrite([items[k] for k in todo], [kinds[k] for k in todo])
        found = dict(zip(todo, revisions, strict=True))
        out = []
        for k, (item, kind) in enumerate(zip(items, kinds, strict=True)):
            if k not in found:
                why = "no answer" if not item.get("output") else f"task {kind!r} is not rewritten"
                out.append({**item, "realign": {"task": kind, "tag": "original", "why": why}})
                continue
            rewrite, why = found[k]
            if rewrite is not None:
                why = filter_rewrite(
                    str(item["output"]), rewrite, str(item["instruction"]), kind, self.config.length_ratio
                )
            if why is None and rewrite is not None:
                why = self._unverified(item, rewrite)
            if why is None and rewrite is not None and self.parts.task is not None:
                # The task decides what is trained on: the task world keeps its short answer, so there the
                # rewrite is only kept beside it.
                shaped = self.parts.task.shape_answer({**item, "output": rewrite})
                if str(shaped["output"]).strip() == str(item["output"]).strip():
                    why = "the task trains on the short answer, which the rewrite leaves as it was"
                    item = {**item, "realign_rewrite": rewrite}
            if why is not None or rewrite is None:
                out.append({**item, "realign": {"task": kind, "tag": "original", "why": why}})
            else:
                mark = {"task": kind, "tag": "rewrite", "why": None}
                out.append({**item, "output": rewrite, "original_output": item["output"], "realign": mark})
        return out

    def classify(self, items: Sequence[Record]) -> list[str]:
        """Each item's task type: the task's where it knows, else the chat model's pick (unknown -> default)."""
        known = task_type_of(self.parts.task) if self.config.classify == "auto" else None
        if known is not None:
            return [known] * len(items)
        tasks = [(name, spec["description"]) for name, spec in task_formats().items()]
        requests = [
            ChatRequest(
                [{"role": "user", "content": render("realign_classify", tasks=tasks, query=i["instruction"])}],
                Sampling(0.0, max_tokens=50),
                "realign-classify",
            )
            for i in items
        ]
        replies = ask_parsed(self.parts.client, requests, lambda text: text, 1) if requests else []
        names = {name.lower(): name for name, _ in tasks}
        out = []
        for reply in replies:
            first = (reply.value or "").strip().splitlines()[0] if (reply.value or "").strip() else ""
            out.append(names.get(first.strip(" .:`*\"'").lower(), "default"))
        return out

    def _rewrite(self, items: Sequence[Record], kinds: Sequence[str]) -> list[tuple[str | None, str | None]]:
        """(longest revision, None) per item, or (None, why) where no reply had one."""
        c, p = self.config, self.parts
        system = render("realign_system" if c.adaptive else "realign_system_fixed")
        requests = []
        for item, kind in zip(items, kinds, strict=True):
            user = render(
                "realign_rewrite",
                question=item["instruction"],
                response=item["output"],
                format=task_formats()[kind]["format"],
            )
            sampling = Sampling(
                c.temperature, max_tokens=c.max_tokens or p.max_tokens, n=c.samples, guide=REALIGN_REWRITE
            )
            requests.append(
                ChatRequest(
                    [{"role": "system", "content": system}, {"role": "user", "content": user}], sampling, "realign"
                )
            )
        out: list[tuple[str | None, str | None]] = [(None, "unparsed: no 'Revised response:'")] * len(requests)
        pending = list(range(len(requests)))
        for attempt in range(c.tries):  # all `samples` texts of a reply count; a reply with none is asked again
            if not pending:
                break
            results = p.client.chat([retry_request(requests[k], attempt) for k in pending])
            still = []
            for k, result in zip(pending, results, strict=True):
                revisions = []
                for text in result.texts:
                    try:
                        revisions.append(parse_revision(text))
                    except ParseError:
                        continue
                if revisions:
                    out[k] = (max(revisions, key=tokens), None)
                else:
                    still.append(k)
            pending = still
        return out

    def _unverified(self, item: Record, rewrite: str) -> str | None:
        """Why the task's code says the rewritten answer is wrong, or None (right, or it cannot tell)."""
        task = self.parts.task
        if task is None:
            return None
        question = str(item["instruction"])
        gold = task.oracle(question) if getattr(task, "has_oracle", False) else None
        reference = gold if gold is not None else str(item["output"])
        ok = task.verifier(rewrite, reference, item)
        return "the task's code finds the rewritten answer wrong" if ok is False else None
