"""Magpie (magpie-align/magpie): a chat model writes the user's question itself when it is given only what its
chat template puts before a user message (the pre-query), sampled; the question is then answered apart.

The pre-query is derived from the model's own template (agents/llm/template.py), with its default system
prompt: with it SmolLM2-135M wrote complete questions in 11 of 12 samples at temperature 0.7, with the bare
user header mostly code fragments (`docs/strategies.md`). Magpie is untargeted by design; here each
weighted node (or failed probe) steers it with a system prompt that says, in words, what the student fails
at and shows some of its failed questions, as Magpie's task-specific system prompts do. A question is kept
only where it ended on its own (not cut by max_tokens), survives the sanitiser (which cuts an answer the
model ran on into, a numbering prefix, a second question), does not end in ':', is new, and, on the task
world, is one the world's code can answer. Answers come from the run's teacher (the answer stage), checked
by the world's oracle where it can.
"""

from __future__ import annotations

import re

from pydantic import Field

from agents.llm.prompts import render
from agents.llm.types import ChatRequest, Sampling
from agents.proposal import Ask, failed_examples
from agents.writers.completion import CompletionWriter, CompletionWriterConfig, Parsed
from core.plugins import Inputs, register

# A question's leading label or numbering ("Question:", "**Task**", "## Problem:", "Q3.", "Part 2:", "1.", "a)").
_LABELS = (
    "Task|Prompt|Original Prompt|Question|The Problem|Problem|Scenario|Situation|Context|Challenge|Query|Request|"
    "Instructions|Instruction|Descriptions|Description"
)
_PREFIX = re.compile(
    rf"^\s*(?:\d+\.\s+|\w\)\s+|(?:#+\s*)?(?:{_LABELS})\s*:\s*|\*\*(?:{_LABELS})\*\*:?\s*|"
    r"Question \d+\s*[:.]\s*|Part \d+\s*:\s*|Q\d+\s*[.:]\s*)"
)
# Where a model that wrote the question went on to answer it.
_ANSWER_START = re.compile(
    r"Answer:|Answers:|The answer is|Correct answer|The correct answer|Answer is|Explanation:|Here are some|"
    r"Solution Approach:|Solution:|#+ Step 1"
)


def sanitize(text: str) -> tuple[str, str]:
    """The question in a sampled user turn, and which rule shaped it ("" when the text stood as it was)."""
    raw = text.strip()
    q = raw
    for _ in range(3):  # "1. Question: ..." carries two prefixes
        cut = _PREFIX.sub("", q, count=1)
        if cut == q:
            break
        q = cut.strip()
    marker = _ANSWER_START.search(q)
    if marker:
        q = q[: marker.start()].strip()  # at the start: an answer, not a question (left empty)
    rule = ""
    if not q:
        return "", "answer only"
    if q.startswith("*") and "?" in q:
        q, rule = q[: q.index("?") + 1].lstrip("* ").strip(), "bullet"
    elif q[:1] in "\"'“":
        body = q[1:]
        q = body[: body.index("?") + 1] if "?" in body else body.splitlines()[0]
        q, rule = q.strip().strip("\"'”").strip(), "quoted"
    else:
        lines = q.splitlines()
        if lines and lines[0].rstrip().endswith(":"):
            q = q.split("#", 1)[0].strip()  # an intro line and its list: keep until a markdown heading
            rule = "list"
        elif "?" in q:
            q = q[: q.index("?") + 1].strip()  # the first question (what a model adds after it is not asked)
            rule = "first question" if q != raw else ""
        elif len(lines) > 1:
            q, rule = lines[0].strip(), "first line"
    if q != raw and not rule:
        rule = "prefix or answer cut"
    return q, rule


class MagpieConfig(CompletionWriterConfig):
    """Magpie's sampling and filters (defaults: docs/strategies.md, measured on SmolLM2-135M-Instruct)."""

    temperature: float = Field(0.7, ge=0, description="question sampling temperature (Magpie: 0.6-1.0 by model)")
    top_p: float = Field(1.0, gt=0, le=1, description="question sampling nucleus")
    max_tokens: int = Field(96, ge=8, description="new tokens per question; a question cut by it is dropped")
    samples_per_item: int = Field(2, ge=1, le=16, description="questions sampled per question wanted")
    steer: bool = Field(
        True,
        description="a system prompt per node saying what the student fails and showing its failed questions; "
        "false: the template's own system prompt (untargeted, Magpie as published)",
    )
    stop_at_newline: bool = Field(False, description="stop a question at its first line break (Magpie's early stop)")
    role_stop: bool = Field(True, description="stop where the model starts writing the assistant's header word")
    sanitize: bool = Field(True, description="cut numbering, labels and an answer the model ran on into")


@register
class MagpieWriter(CompletionWriter):
    """Questions written by the model from its own pre-query template, steered by the node's failures."""

    name = "magpie"
    Config = MagpieConfig
    config: MagpieConfig

    def begin(self, inputs: Inputs) -> None:
        """Pre-query templates are built once per system prompt."""
        self._templates: dict[str | None, tuple[str, tuple[str, ...]]] = {}
        self._raw: dict[str, str] = {}  # a kept question -> the text it was cut from

    def system_prompt(self, ask: Ask) -> str | None:
        """The steering system prompt of an ask (None: the template's default)."""
        if not self.config.steer:
            return None
        context = ask.context
        shown = failed_examples(ask)
        examples = [str(e["instruction"]) for e in shown][: self.config.examples]  # type: ignore[index]
        return render(
            "magpie_steer",
            point=ask.parent.get("knowledge_point") or "general questions",
            description=str(context.get("description") or ""),
            examples=examples,
        )

    def template(self, system: str | None) -> tuple[str, tuple[str, ...]]:
        """The raw prompt and stop strings for a system prompt."""
        if system not in self._templates:
            pre = self.parts.client.pre_query(system, self.config.role_stop)
            stop = (*pre.stop, "\n") if self.config.stop_at_newline else pre.stop
            self._templates[system] = (pre.text, stop)
        return self._templates[system]

    def requests(self, ask: Ask, missing: int, seed: int, attempt: int) -> list[ChatRequest]:
        """One request per ask: `samples_per_item` questions for each still missing, all from one prompt."""
        prompt, stop = self.template(self.system_prompt(ask))
        c = self.config
        sampling = Sampling(c.temperature, c.top_p, c.max_tokens, missing * c.samples_per_item, stop, seed)
        return [ChatRequest([], sampling, "questioner", attempt, prompt=prompt)]

    def parse(self, ask: Ask, text: str, finished: bool | None) -> list[Parsed]:
        """The one question in a sampled user turn, or why it is dropped."""
        if finished is False:
            return [("", "not terminated (cut by max_tokens)")]
        question, _ = sanitize(text) if self.config.sanitize else (text.strip(), "")
        if not question:
            return [("", "empty after sanitising")]
        if question.endswith(":"):
            return [("", "incomplete (ends with ':')")]
        self._raw[question] = text
        return [(question, "")]

    def extra(self, ask: Ask, question: str) -> dict[str, object]:
        """The sampled text as it came, where the sanitiser changed it."""
        raw = self._raw.get(question, question)
        return {"raw_instruction": raw} if raw.strip() != question else {}
