"""Instruction back-translation (Humpback): a backward model, the student fine-tuned on its own pairs turned
around (output -> instruction), writes an instruction for each unlabelled document of a corpus; the document is
the item's answer. Self-curation (the `quality` curator, with its fallbacks) then keeps the good pairs.

Departures from the paper, each on purpose (`docs/strategies.md`):
- Targeted: each weak node (or failed probe) of the round's plan gets the unused documents most similar (TF-IDF
  cosine) to its failed probes, so the corpus is read where the student fails; `target: false` samples
  documents at random, as Humpback does.
- The backward model is retrained each round from the base (or the last student) on the reversed pairs of the
  seed (Humpback's M_yx) or of the whole kept pool (`pairs`), through the run's DeepSpeed trainer and the
  student's template, and sampled at T 0.7, top-p 0.9 as in the reimplementation.
- A document is never used twice in a run (the writer's state), nor one that is already an answer of the pool
  or of the evaluation sets (a back-translated probe answer would leak the probe into training).
Instructions outside 10-800 characters, empty, repeating a known question or copying their document are
dropped, each with its reason.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Literal

from pydantic import Field

from agents.proposal import Ask, Proposal, Written, candidate_record, failed_examples, node_asks, rejection
from agents.similarity import TfidfIndex, rouge_l
from core.generation import Sampling
from core.plugins import Inputs, Plugin, PluginConfig, register
from core.records import Record
from core.text import question_key


class BacktranslationConfig(PluginConfig):
    """The backward model, its sampling and the instruction filters (defaults: Humpback's reimplementation)."""

    start: Literal["base", "student"] = Field(
        "base", description="fine-tune the backward model from the run's base model or from the last round's student"
    )
    pairs: Literal["seed", "pool"] = Field(
        "seed", description="train it on the seed's pairs turned around (Humpback), or on every kept item so far"
    )
    train_steps: int = Field(60, ge=1, description="optimizer steps of the backward model's fine-tuning")
    temperature: float = Field(0.7, ge=0, description="sampling temperature of the instructions")
    top_p: float = Field(0.9, gt=0, le=1, description="sampling nucleus of the instructions")
    max_tokens: int = Field(128, ge=4, description="new tokens per instruction")
    min_chars: int = Field(10, ge=1, description="instructions shorter than this are dropped")
    max_chars: int = Field(800, ge=1, description="instructions longer than this are dropped")
    max_rouge_to_document: float = Field(
        0.9, gt=0, le=1, description="an instruction whose ROUGE-L to its own document exceeds this copies it"
    )
    target: bool = Field(
        True,
        description="documents nearest to each weak node's failed probes (TF-IDF); false: at random (Humpback)",
    )
    examples: int = Field(5, ge=1, description="failed probes per node that make its query")


@register
class BacktranslationWriter(Plugin):
    """Instructions for a corpus's documents by a backward model trained on the student's own pairs."""

    name = "backtranslation"
    kind = "writer"
    Config = BacktranslationConfig
    needs = frozenset({"trainer", "corpus"})
    reads = ("pool", "evaluation", "failures", "taxonomy", "known", "state")
    config: BacktranslationConfig

    def __init__(self, config: PluginConfig, parts: object) -> None:
        super().__init__(config, parts)  # type: ignore[arg-type]
        self.used: list[int] = []

    def load_state(self, state: dict | None) -> None:
        """The documents earlier rounds used."""
        self.used = [int(i) for i in (state or {}).get("used", [])]

    def state(self) -> dict | None:
        """The documents used so far (never used again)."""
        return {"used": sorted(self.used)}

    def write(
        self, proposal: Proposal, budget: int, round: int, rng: random.Random, inputs: Inputs, strategy: str
    ) -> Written:
        """One candidate per chosen document, its instruction written by the backward model."""
        c, docs = self.config, self.parts.corpus
        answers = {question_key(r.get("output")) for r in inputs["pool"]}
        answers |= {question_key(r.get("output")) for rows in inputs["evaluation"].values() for r in rows}
        free = [i for i in range(len(docs)) if i not in set(self.used) and question_key(docs[i]) not in answers]
        chosen = self._choose(proposal, budget, rng, inputs, free)
        if not chosen:
            return Written([], [rejection("corpus", "the corpus has no unused document left")] if budget else [])
        pool = inputs["pool"]
        pairs = [r for r in pool if c.pairs == "pool" or r.get("source") == "seed"]
        backward = [{"instruction": str(r["output"]), "output": str(r["instruction"])} for r in pairs]
        model = self.parts.trainer.finetune(backward, "backward", c.start, c.train_steps)
        samplings = [
            Sampling(c.temperature, c.top_p, c.max_tokens, seed=self.parts.seed * 1_000_003 + round * 10_007 + i)
            for i, _, _ in chosen
        ]
        written = self.parts.trainer.complete(model, [docs[i] for i, _, _ in chosen], samplings)
        self.used += [i for i, _, _ in chosen]
        known = {question_key(q) for q in inputs["known"]}
        items: list[Record] = []
        rejected: list[Record] = []
        for (i, ask, why), texts in zip(chosen, written, strict=True):
            instruction = texts[0].strip()
            problem = self._problem(instruction, docs[i], known)
            if problem:
                rejected.append(rejection(ask.parent["id"], f"{problem} (document {i})", instruction))
                continue
            known.add(question_key(instruction))
            items.append(self._item(ask, why, i, instruction, docs[i], round, strategy, len(items)))
        return Written(items, rejected)

    def _choose(
        self, proposal: Proposal, budget: int, rng: random.Random, inputs: Inputs, free: Sequence[int]
    ) -> list[tuple[int, Ask, str]]:
        """(document, ask, why) for the budget: per ask, the unused documents nearest its failed probes."""
        c, docs = self.config, self.parts.corpus
        asks = proposal.asks or node_asks(proposal, budget, inputs["taxonomy"], inputs["failures"], c.examples)
        if not c.target or not asks:
            corpus = Ask({"id": "corpus"}, budget, "a document at random (untargeted, as Humpback)")
            return [(i, corpus, corpus.why) for i in sorted(rng.sample(list(free), min(budget, len(free))))]
        index = TfidfIndex([docs[i] for i in free])
        taken: set[int] = set()
        out: list[tuple[int, Ask, str]] = []
        for ask in asks:
            shown = failed_examples(ask)[: c.examples]
            query = "\n".join(f"{e.get('instruction', '')}\n{e.get('output', '')}" for e in shown)
            near = index.nearest(query, k=len(free), exclude_same=False) if query.strip() else []
            ranked = [(free[j], f"{ask.why}; the document nearest its failed probes (cosine {s:.2f})") for j, s in near]
            rest = [i for i in free if i not in taken]
            rng.shuffle(rest)  # where too few documents share a word with the failures, random ones fill the share
            ranked += [(i, f"{ask.why}; a document at random (too few share a word with its failures)") for i in rest]
            mine = 0
            for i, why in ranked:
                if len(out) == budget or mine == ask.n:
                    break
                if i not in taken:
                    taken.add(i)
                    out.append((i, ask, why))
                    mine += 1
        return out

    def _problem(self, instruction: str, document: str, known: set[str]) -> str | None:
        c = self.config
        if not instruction:
            return "empty instruction"
        if not c.min_chars <= len(instruction) <= c.max_chars:
            return f"instruction of {len(instruction)} characters, outside {c.min_chars}-{c.max_chars}"
        if question_key(instruction) in known:
            return "repeats a known question"
        if rouge_l(instruction, document) > c.max_rouge_to_document:
            return f"copies its document (ROUGE-L > {c.max_rouge_to_document:g})"
        return None

    def _item(
        self, ask: Ask, why: str, doc: int, instruction: str, document: str, round: int, strategy: str, k: int
    ) -> Record:
        """A candidate whose answer is its document (`answered`: the answer stage keeps it; `reference`: on the
        world, verify compares it with the oracle's answer to the instruction)."""
        item = candidate_record(ask, instruction, document, "", round, k, strategy, self.name)
        return {**item, "output": document, "answered": True, "teacher": "corpus", "document": doc, "why": why}
