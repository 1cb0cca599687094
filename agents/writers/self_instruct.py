"""Self-Instruct (yizhongw/self-instruct): a model continues a numbered list of tasks, 8 in context, at item 9.

As in the reference, 6 of the 8 come from a pool of human-written tasks (the run's seed items, or the file
`seed_tasks`, e.g. the 175 seed tasks of the paper) and 2 from machine-written ones; in the loop the machine
slots hold the node's failed probes, which makes it a targeted writer (close to LLM2LLM). The prompt is a
raw completion (no chat template), so it needs a local model. Each continuation is split on its item
numbers; the items after the first repeat are dropped (small models repeat item 9 over and over), and so
is an item cut by max_tokens. The rule filters then drop tasks of 3 words or fewer or over 150, tasks
naming what a text model cannot use (images, files, ...), "Write a program", and a first character that is
punctuation or not ASCII; the ROUGE-L filter (> 0.7 to any known question, the seed tasks and the
questions already kept) uses an incremental index instead of the reference's full rescoring per candidate.
Left out: the classification test and the instance generation (input-first / output-first): here the
run's teacher answers every kept task in the answer stage.
"""

from __future__ import annotations

import math
import random
import re
from pathlib import Path

from pydantic import Field, field_validator

from agents.llm.prompts import render
from agents.llm.types import ChatRequest, Sampling
from agents.proposal import Ask, failed_examples
from agents.writers.completion import CompletionWriter, CompletionWriterConfig, Parsed
from core.jsonl import read_jsonl
from core.plugins import Inputs, register
from core.text import question_key

BLOCKLIST = ("image", "images", "graph", "graphs", "picture", "pictures", "file", "files", "map", "maps", "draw",
             "plot", "go to")  # fmt: skip
_ITEM = re.compile(r"(?:^|\n)\s*\d+\s?[.)]\s*")


class SelfInstructConfig(CompletionWriterConfig):
    """Self-Instruct's prompt, decoding and filters (defaults: the reference's, docs/strategies.md)."""

    seed_tasks: str | None = Field(
        None,
        description="a JSONL file of human-written tasks (an 'instruction' field each) for the human slots; "
        "null: the run's seed items",
    )
    rouge_max: float = Field(
        0.7,
        gt=0,
        le=1,
        description="drop a task whose ROUGE-L to a known one, a human task or a kept one is above this (the "
        "reference's 0.7; templated tasks such as the world's need ~0.95)",
    )
    human: int = Field(6, ge=1, description="in-context tasks from the human pool")
    machine: int = Field(2, ge=0, description="in-context slots for the node's failed probes (machine-written tasks)")
    temperature: float = Field(0.7, ge=0, description="sampling temperature")
    top_p: float = Field(0.5, gt=0, le=1, description="sampling nucleus")
    max_tokens: int = Field(128, ge=8, description="new tokens per continuation")
    per_request: float = Field(
        1.0,
        gt=0,
        le=8,
        description="new tasks a continuation is counted on for (requests = missing / this); GPT-3 wrote up to "
        "8, SmolLM2-135M about 1 (docs/strategies.md)",
    )
    min_words: int = Field(4, ge=1, description="drop a task of fewer words")
    max_words: int = Field(150, ge=1, description="drop a task of more words")
    blocklist: list[str] = Field(list(BLOCKLIST), description="drop a task naming one of these (whole words)")

    @field_validator("seed_tasks")
    @classmethod
    def _exists(cls, value: str | None) -> str | None:
        if value is not None and not Path(value).is_file():
            raise ValueError(f"no such file: {value}")
        return value


@register
class SelfInstructWriter(CompletionWriter):
    """New tasks continued from a numbered list of human tasks and the node's failures."""

    name = "self_instruct"
    Config = SelfInstructConfig
    reads = ("known", "failures", "taxonomy", "pool")
    config: SelfInstructConfig

    def begin(self, inputs: Inputs) -> None:
        """The human pool, which every new task must also differ from."""
        if self.config.seed_tasks is not None:
            rows = read_jsonl(Path(self.config.seed_tasks)).rows
            where = self.config.seed_tasks
        else:
            rows = [r for r in inputs["pool"] if r.get("source") == "seed"]
            where = "the run's seed items"
        self.human = [" ".join(str(r["instruction"]).split()).rstrip(":") for r in rows if r.get("instruction")]
        if not self.human:
            raise ValueError(f"writer self_instruct: no human tasks in {where}")
        self.novel.add(self.human)
        words = "|".join(re.escape(w) for w in self.config.blocklist)
        self._blocked = re.compile(rf"\b({words})\b", re.I) if words else None

    def prompt(self, ask: Ask, rng: random.Random) -> str:
        """8 tasks (human and the node's failures, shuffled), numbered, then the open item."""
        shown = failed_examples(ask)
        machine = [" ".join(str(e["instruction"]).split()).rstrip(":") for e in shown]  # type: ignore[index]
        machine = rng.sample(machine, min(self.config.machine, len(machine)))
        total = self.config.human + self.config.machine
        human = rng.sample(self.human, min(total - len(machine), len(self.human)))
        tasks = human + machine
        rng.shuffle(tasks)
        lines = [render("self_instruct_header")] + [f"{i}. {t}" for i, t in enumerate(tasks, 1)]
        return "\n".join(lines) + f"\n{len(tasks) + 1}."

    def requests(self, ask: Ask, missing: int, seed: int, attempt: int) -> list[ChatRequest]:
        """Enough continuations for the tasks still missing, each of its own in-context draw and seed."""
        out = []
        for k in range(min(math.ceil(missing / self.config.per_request), 16)):
            rng = random.Random(seed + k)
            prompt = self.prompt(ask, rng)
            n = prompt.count("\n")  # the open item's number
            stop = ("\n\n", f"\n{n + 7}", f"{n + 7}.", f"{n + 7} .")  # at most 8 new items, as the reference
            c = self.config
            sampling = Sampling(c.temperature, c.top_p, c.max_tokens, 1, stop, seed + k)
            out.append(ChatRequest([], sampling, "questioner", attempt, prompt=prompt))
        return out

    def parse(self, ask: Ask, text: str, finished: bool | None) -> list[Parsed]:
        """The tasks of one continuation, each kept or dropped with the rule that dropped it."""
        items = [" ".join(p.split()) for p in _ITEM.split(text)]
        if items and not items[0]:
            items = items[1:]
        cut = finished is False and bool(items)  # the last item may be half a task
        out: list[Parsed] = []
        seen: set[str] = set()
        for i, task in enumerate(items):
            if cut and i == len(items) - 1:
                out.append(("", "cut by max_tokens"))
                break
            key = question_key(task)
            if key in seen:
                out.append(("", f"repeats an item above; {len(items) - i - 1} later items dropped too"))
                break
            seen.add(key)
            out.append(self.check(task))
        return out

    def check(self, task: str) -> Parsed:
        """A task the rule filters keep, or why they drop it."""
        words = len(task.split())
        if not task:
            return "", "empty item"
        if words < self.config.min_words:
            return "", f"too short ({words} words)"
        if words > self.config.max_words:
            return "", f"too long ({words} words)"
        found = self._blocked.search(task) if self._blocked else None
        if found:
            return "", f"blocklist: {found.group(1).lower()}"
        if task.lower().startswith("write a program"):
            return "", "starts with 'Write a program'"
        if not task[0].isascii() or not task[0].isalnum():
            return "", "starts with punctuation or a non-ASCII character"
        return task, ""
