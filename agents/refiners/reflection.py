"""Selective Reflection-Tuning, teacher side: the chat model reflects on each answered item and writes variants.

Three variants of an item (Q, A), as in the reference (`reflection_code/`):

- `q`: instruction reflection. The model analyses why the instruction and its answer are weak, writes a new,
  harder instruction Q* in `[New Instruction] ... [End]` and answers it in `[New Answer] ... [End]`.
- `qa`: response reflection applied to `q`: a better answer A** to Q* in `[Better Answer] ... [End]`.
- `a`: response reflection applied to the original: a better answer A' to Q.

Parsing follows the reference: the text between a tag and `[End]` (or the next tag, or the end), a plain
`New Instruction:` style label as fallback, a trailing "\\n\\n3." cut, one retry when nothing parses. A parse
that is empty, still holds the placeholder (`your instruction`, `your answer`) or says `N/A` falls back to
the original, as the reference does, so that variant is simply absent. Two checks the reference lacks,
because gaploop's tasks can verify: a variant's answer is shaped as the task trains it (the task world keeps
the short answer), and where the task's code answers the question (the task world), a variant whose answer
it contradicts, or a new instruction it cannot answer, is left out. Which variant (if any) replaces the item
is the `selective_reflection` selector's choice, by the student's IFD and r-IFD.

Each item leaves with `reflection`: {"q": {...}, "qa": {...}, "a": {...}, "missing": {variant: why}}.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from pydantic import Field

from agents.llm.guides import REFLECT_INSTRUCTION, REFLECT_RESPONSE
from agents.llm.parsing import Parsed, ParseError, ask_parsed
from agents.llm.prompts import render
from agents.llm.types import ChatRequest, Sampling
from core.plugins import Inputs, Plugin, PluginConfig, register
from core.records import Record

VARIANTS = ("q", "qa", "a")
_TAIL = re.compile(r"\n\n3\.\s*$")
_PLACEHOLDERS = ("your instruction", "your answer")


class ReflectionConfig(PluginConfig):
    """Which reflections to ask for, and their decoding (the reference decodes greedily)."""

    instruction: bool = Field(True, description="reflect on the instruction: variants q and qa")
    response: bool = Field(True, description="reflect on the answer: variant a (and qa with instruction)")
    temperature: float = Field(0.0, ge=0, description="sampling temperature (the reference's 0.0)")
    max_tokens: int | None = Field(None, ge=16, description="new tokens per reflection; null: teacher.llm.max_tokens")
    tries: int = Field(2, ge=1, le=5, description="asks per reflection until it parses (the reference retries once)")


def _between(text: str, tag: str, ends: Sequence[str]) -> str | None:
    """The text after `[tag]` up to the first of `ends` (or the end); then after `tag:` the same way."""
    stop = "|".join(re.escape(e) for e in ends)
    for opener in (re.escape(f"[{tag}]"), re.escape(f"{tag}:")):
        m = re.search(rf"{opener}(.*?)(?:{stop}|$)", text, re.S)
        if m is not None:
            return _TAIL.sub("", m.group(1)).strip()
    return None


def parse_instruction_reflection(text: str) -> tuple[str, str]:
    """(new instruction, its answer) of an instruction reflection; ParseError when no new instruction is there."""
    instruction = _between(text, "New Instruction", ("[End]", "[New Answer]", "New Answer:"))
    if instruction is None:
        raise ParseError("no [New Instruction] ... [End]", text)
    return instruction, _between(text, "New Answer", ("[End]",)) or ""


def parse_response_reflection(text: str) -> str:
    """The better answer of a response reflection; ParseError when it is not there."""
    answer = _between(text, "Better Answer", ("[End]",))
    if answer is None:
        raise ParseError("no [Better Answer] ... [End]", text)
    return answer


def unusable(text: str) -> str | None:
    """Why a parsed instruction or answer falls back to the original (the reference's rules), or None."""
    if not text.strip():
        return "empty"
    low = text.lower()
    if any(p in low for p in _PLACEHOLDERS):
        return "the format's placeholder"
    if "N/A" in text:
        return "N/A"
    return None


@register
class ReflectionRefiner(Plugin):
    """Selective Reflection's teacher step: a harder instruction with its answer, and better answers."""

    name = "reflection"
    kind = "refiner"
    Config = ReflectionConfig
    needs = frozenset({"chat"})
    config: ReflectionConfig

    def refine(self, items: Sequence[Record], inputs: Inputs) -> list[Record]:
        """Every item with its `reflection` variants (none of its own fields changed)."""
        c = self.config
        found: list[dict[str, object]] = [{"missing": {}} for _ in items]
        if c.instruction:
            asked = self._ask([self._request("instruction", i) for i in items], parse_instruction_reflection)
            for item, got, out in zip(items, asked, found, strict=True):
                self._take(item, "q", got.value, got.error, out)
        if c.response:
            pending = [(k, "a", item) for k, item in enumerate(items)]
            pending += [(k, "qa", {**items[k], **out["q"]}) for k, out in enumerate(found) if "q" in out]  # type: ignore[dict-item]
            asked = self._ask([self._request("response", base) for _, _, base in pending], parse_response_reflection)
            for (k, variant, base), got in zip(pending, asked, strict=True):
                pair = (str(base["instruction"]), got.value) if got.value is not None else None
                self._take(base, variant, pair, got.error, found[k])
        for out in found:
            if c.instruction and c.response and "q" not in out:
                out["missing"].setdefault("qa", "no new instruction to answer")  # type: ignore[attr-defined]
            for variant in VARIANTS:
                if variant not in out and variant not in out["missing"]:  # type: ignore[operator]
                    out["missing"][variant] = "not asked"  # type: ignore[index]
        return [{**item, "reflection": out} for item, out in zip(items, found, strict=True)]

    def _request(self, which: str, item: Record) -> ChatRequest:
        c, p = self.config, self.parts
        values = {"instruction": item["instruction"], "input": item.get("input") or "", "output": item["output"]}
        guide = REFLECT_INSTRUCTION if which == "instruction" else REFLECT_RESPONSE
        sampling = Sampling(c.temperature, max_tokens=c.max_tokens or p.max_tokens, guide=guide)
        messages = [
            {"role": "system", "content": render(f"reflect_{which}_system")},
            {"role": "user", "content": render(f"reflect_{which}", **values)},
        ]
        return ChatRequest(messages, sampling, f"reflection-{which}")

    def _ask(self, requests: list[ChatRequest], parse) -> list[Parsed]:  # type: ignore[no-untyped-def]
        return ask_parsed(self.parts.client, requests, parse, self.config.tries) if requests else []

    def _take(
        self, base: Record, variant: str, pair: tuple[str, str] | None, error: str | None, out: dict[str, object]
    ) -> None:
        """Record `variant` = (instruction, answer) in `out`, or why it is missing."""
        missing: dict[str, str] = out["missing"]  # type: ignore[assignment]
        if pair is None:
            missing[variant] = f"unparsed: {error}"
            return
        instruction, answer = pair
        why = unusable(instruction) or unusable(answer)
        if why is not None:
            missing[variant] = f"fell back to the original: {why}"
            return
        row: Record = {**base, "instruction": instruction, "output": answer}
        if variant != "a":
            row["input"] = ""  # the reference drops the input of a reflected instruction
        task = self.parts.task
        if task is not None:
            if variant != "a":
                row = task.shape_candidate({**row, "reference": None})
            row = task.shape_answer(row)
            why = self._unverified(task, row, base if variant == "a" else None)
            if why is not None:
                missing[variant] = why
                return
        keys = ("instruction", "input", "output", "knowledge_point", "skill", "facet", "asked_point", "teacher_reply")
        out[variant] = {k: row[k] for k in keys if row.get(k) is not None}

    @staticmethod
    def _unverified(task: object, row: Record, original: Record | None) -> str | None:
        """Why the task's code rejects a variant, or None (also where it cannot tell)."""
        question, answer = str(row["instruction"]), str(row["output"])
        gold = task.oracle(question) if getattr(task, "has_oracle", False) else None  # type: ignore[attr-defined]
        if gold is None and original is None and getattr(task, "has_oracle", False):
            return "the task's code cannot answer the new instruction"
        reference = gold if gold is not None else (original or {}).get("reference")
        if reference is None:
            return None
        ok = task.verifier(answer, str(reference), row)  # type: ignore[attr-defined]
        return "the task's code contradicts its answer" if ok is False else None
