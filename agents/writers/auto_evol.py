"""Auto Evol-Instruct as a writer: the evolving method itself is optimised, round after round, on the round's
failures, then used to evolve them (arXiv 2406.00770; EvolKit's procedure, docs/strategies.md).

The method is a list of steps ("Step 1: list methods that make the instruction more complex ... Step 4: review
and write the #Finally Rewritten Instruction#"). Each round, for `optimize_steps` steps:

1. the dev set (up to `dev_size` of the round's failed questions) is evolved with the current method;
2. each trajectory (Stage 0 -> Stage 1) is analysed: the chat model answers `### PASSED` or
   `### FAILED - Reason: ...` (`analysis: model`), and where its reply does not parse, or with
   `analysis: rules`, the elimination rules say why (no `#Finally Rewritten Instruction#` step, template
   leakage, no information gain, the task's code cannot answer it);
3. the optimiser writes `candidates` new methods from the feedback (a fenced "Optimized Method" block);
4. every well-formed candidate, and the current method, evolves the dev set at temperature 0.2 (and with
   `answer_dev`, the evolved questions are answered at 0.5); its failure rate is the share of dev questions
   whose evolution breaks an elimination rule or whose answer trips EvolKit's failure detector (a stagnant,
   an insufficient or a loss reply);
5. the method with the lowest failure rate is kept (the current one on a tie).

The method and the optimisation history are this plugin's state, so the next round starts from the method
this round chose and a resumed round from exactly the state the last round left. The chains then evolve as
Evol-Instruct's do (`epochs`, failed evolutions evolved again), with the chosen method in place of the
paper's fixed mutation prompts. Departures: the current method competes with its candidates (EvolKit keeps
only a candidate); the failure check adds the task's oracle where it has one.
"""

from __future__ import annotations

import random
import re
from dataclasses import replace
from typing import Literal

from pydantic import Field

from agents.llm.parsing import excerpt
from agents.llm.prompts import render
from agents.llm.types import ChatRequest, Guide, Sampling
from agents.proposal import Proposal, Written
from agents.similarity import Novelty
from agents.writers.evol import LEAKS, EvolBaseConfig, EvolWriter
from core.plugins import Inputs, register

_FINAL = re.compile(r"(?:step\s*\d+\s*:?\s*)?#?\s*finally\s+rewritten\s+instruction\s*#?\s*:?", re.IGNORECASE)
_NEXT_STEP = re.compile(r"\n\s*step\s*\d+\s*:|```", re.IGNORECASE)
_VERDICT = re.compile(r"###\s*(PASSED|FAILED)(?:\s*-?\s*(?:Reason\s*:)?\s*(.*))?", re.IGNORECASE)
_FENCE = re.compile(r"```[ \t]*(?:optimi[sz]ed\s+method)?[ \t]*\n?(.*?)(?:```|$)", re.IGNORECASE | re.DOTALL)
_STEP = re.compile(r"\bstep\s*(\d+)\s*:\s*(.*?)(?=\bstep\s*\d+\s*:|$)", re.IGNORECASE | re.DOTALL)
# EvolKit's failure detector on the answers to evolved instructions (its three patterns, case-insensitive).
FAILURE_PATTERNS = {
    "stagnant": re.compile(r"\b(understood|thank you|noted|got it|okay|alright)\b.*\?$", re.IGNORECASE),
    "insufficient": re.compile(
        r"\b(sure|certainly|of course|happy to help)\b.*\?$|what do you mean|could you explain", re.IGNORECASE
    ),
    "loss": re.compile(r"please provide|need more information|could you clarify|what exactly", re.IGNORECASE),
}
# Guided decoding shapes (used where teacher.llm.guided is on).
EVOLVE_GUIDE = Guide.regex(
    r"(Step [1-5]: [^\n]{1,200}\n){1,5}Step [2-6]: #Finally Rewritten Instruction#\n[^\n]{10,300}"
)
VERDICT_GUIDE = Guide.regex(r"### (PASSED|FAILED - Reason: [^\n]{1,160})")
METHOD_GUIDE = Guide.regex(
    r"```Optimized Method\n(Step [1-5]: [^\n]{1,200}\n){1,5}Step [2-6]: [^\n]{0,120}#Finally Rewritten Instruction#"
    r"[^\n]{0,80}\n```"
)
_SEEDS = 10**15  # the optimiser's requests are seeded apart from the chains' (which stay below this)


def parse_final(text: str) -> tuple[str, str]:
    """(the instruction of the last `#Finally Rewritten Instruction#` step, "") or ("", why not)."""
    found = list(_FINAL.finditer(text))
    if not found:
        return "", "no #Finally Rewritten Instruction# step"
    rest = text[found[-1].end() :]
    end = _NEXT_STEP.search(rest)
    body = (rest[: end.start()] if end else rest).strip().strip("\"'`").strip()
    if not body:
        return "", "empty #Finally Rewritten Instruction#"
    leak = next((w for w in (*LEAKS, "#instruction#", "#rewritten instruction#") if w in body.lower()), None)
    if leak:
        return "", f"template leakage ({leak!r})"
    return body, ""


def parse_verdict(text: str) -> tuple[bool, str] | None:
    """(passed, reason) from a trajectory analysis, or None when it says neither."""
    found = _VERDICT.search(text)
    if found is None:
        return None
    passed = found[1].upper() == "PASSED"
    return passed, "" if passed else (found[2] or "no reason given").strip()


def parse_method(text: str) -> str | None:
    """The steps of an "Optimized Method" block (or of the reply, unfenced), or None when it is not a method:
    at least two numbered steps, the last writing the #Finally Rewritten Instruction#."""
    fenced = _FENCE.search(text)
    body = fenced[1] if fenced and _STEP.search(fenced[1]) else text
    steps = [(int(n), " ".join(s.split()).rstrip(";")) for n, s in _STEP.findall(body)]  # one line each
    if len(steps) < 2 or "finally rewritten instruction" not in steps[-1][1].lower():
        return None
    return "\n".join(f"Step {i}: {s}" for i, (_, s) in enumerate(steps, 1))


def answer_failure(answer: str) -> str | None:
    """Which of EvolKit's failure patterns an answer trips, or None."""
    text = answer.strip()
    return next((name for name, pattern in FAILURE_PATTERNS.items() if pattern.search(text)), None)


class AutoEvolConfig(EvolBaseConfig):
    """Auto Evol-Instruct: the method optimiser's dev set, candidates and checks (defaults: docs/strategies.md)."""

    dev_size: int = Field(6, ge=1, le=64, description="failed questions of the round each method is tried on")
    candidates: int = Field(3, ge=1, le=16, description="new methods the optimiser writes per step (m)")
    optimize_steps: int = Field(1, ge=0, le=8, description="optimisation steps per round (0: evolve only)")
    analysis: Literal["model", "rules"] = Field(
        "model",
        description="who analyses a trajectory: the chat model (### PASSED / ### FAILED - Reason), falling back to "
        "the elimination rules where its reply does not parse; or the rules alone",
    )
    answer_dev: bool = Field(
        True, description="answer each evolved dev question (temperature 0.5) and count EvolKit's failure patterns"
    )


@register
class AutoEvolWriter(EvolWriter):
    """Evol-Instruct with an evolving method that an optimiser improves on the round's failures."""

    name = "auto_evol_instruct"
    Config = AutoEvolConfig
    reads = ("known", "failures", "taxonomy", "state")
    config: AutoEvolConfig

    def load_state(self, state: dict | None) -> None:
        """The method the last round chose, and the history of every optimisation step so far."""
        self.method = str(state["method"]) if state else render("auto_evol_method")
        self.history: list[dict[str, object]] = list(state["history"]) if state else []

    def state(self) -> dict | None:
        """The method to start the next round from, and the history."""
        return {"method": self.method, "history": self.history}

    def write(
        self, proposal: Proposal, budget: int, round: int, rng: random.Random, inputs: Inputs, strategy: str
    ) -> Written:
        """Optimise the method on the round's failures, then evolve with it (EvolWriter's chains)."""
        if not hasattr(self, "method"):
            self.load_state(None)
        self.novel = Novelty(self.config.rouge_max, inputs["known"])  # the dev evolutions are checked like any
        failed = list(dict.fromkeys(str(f["instruction"]) for f in inputs["failures"]))
        dev = random.Random(f"auto-evol-dev:{round}").sample(failed, min(self.config.dev_size, len(failed)))
        for step in range(self.config.optimize_steps if dev else 0):
            self._optimize(dev, round, step)
        return super().write(proposal, budget, round, rng, inputs, strategy)

    # -- the chains use the optimised method ------------------------------------------------------
    def mutation(self, seed: int) -> str:
        """Every evolution uses the one method."""
        return "auto"

    def read_reply(self, mutation: str, text: str) -> tuple[str, str]:
        """The last step's instruction."""
        return parse_final(text)

    def request(self, question: str, mutation: str, seed: int, method: str | None = None) -> ChatRequest:
        """The chat that evolves `question` with the current method (or `method`)."""
        c = self.config
        sampling = Sampling(c.temperature, c.top_p, c.max_tokens, seed=seed, guide=EVOLVE_GUIDE)
        user = render("auto_evol_evolve", method=method or self.method, instruction=question)
        return ChatRequest([{"role": "user", "content": user}], sampling, "questioner")

    # -- one optimisation step -----------------------------------------------------------------------
    def _seed(self, round: int, step: int, phase: int, i: int) -> int:
        return _SEEDS + ((round * 10 + step) * 10 + phase) * 100_000 + i

    def _why(self, before: str, text: str, cut: bool) -> str:
        """The elimination rule an evolution breaks ("" when none): the rules' form of the analysis."""
        return self._problem(before, "auto", text, cut)[1]

    def _optimize(self, dev: list[str], round: int, step: int) -> None:
        client, c = self.parts.client, self.config
        evolved = client.chat([self.request(q, "auto", self._seed(round, step, 0, i)) for i, q in enumerate(dev)])
        texts = [r.texts[0] if r.texts else "" for r in evolved]
        rules = [
            self._why(q, t, bool(r.finished and r.finished[0] is False))
            for q, t, r in zip(dev, texts, evolved, strict=True)
        ]
        feedback, unparsed = rules, 0
        if c.analysis == "model":
            asks = [
                ChatRequest(
                    [{"role": "user", "content": render("auto_evol_analyze", before=q, after=parse_final(t)[0] or t)}],
                    Sampling(0.2, max_tokens=96, seed=self._seed(round, step, 1, i), guide=VERDICT_GUIDE),
                    "examiner",
                )
                for i, (q, t) in enumerate(zip(dev, texts, strict=True))
            ]
            feedback = []
            for rule, result in zip(rules, client.chat(asks), strict=True):
                verdict = parse_verdict(result.texts[0] if result.texts else "")
                if verdict is None:
                    unparsed += 1
                    feedback.append(rule)
                else:
                    feedback.append("" if verdict[0] else verdict[1])
        lines = [f"FAILED - Reason: {f}" if f else "PASSED" for f in feedback]
        optimize = ChatRequest(
            [
                {
                    "role": "user",
                    "content": render(
                        "auto_evol_optimize", method=self.method, feedback=lines, passed=not any(feedback)
                    ),
                }
            ],
            Sampling(0.5, max_tokens=320, n=c.candidates, seed=self._seed(round, step, 2, 0), guide=METHOD_GUIDE),
            "examiner",
        )
        drafts = client.chat([optimize])[0].texts
        methods = [self.method, *dict.fromkeys(m for m in map(parse_method, drafts) if m and m != self.method)]
        rates = [self._failure_rate(m, dev, round, step, k) for k, m in enumerate(methods)]
        best = min(range(len(methods)), key=lambda k: (rates[k], k))
        self.history.append(
            {
                "round": round,
                "step": step,
                "dev": len(dev),
                "feedback_failed": sum(bool(f) for f in feedback),
                "analysis_unparsed": unparsed,
                "drafts": len(drafts),
                "valid_methods": len(methods) - 1,
                "failure_rates": rates,  # the current method's first
                "chosen": best,
                "method": methods[best],
                "draft_excerpts": [excerpt(d) for d in drafts],
            }
        )
        self.method = methods[best]

    def _failure_rate(self, method: str, dev: list[str], round: int, step: int, k: int) -> float:
        """The share of dev questions that `method` fails to evolve (temperature 0.2), or whose answer fails."""
        client = self.parts.client
        asks = []
        for i, q in enumerate(dev):
            ask = self.request(q, "auto", self._seed(round, step, 3, k * 1000 + i), method)
            asks.append(replace(ask, sampling=replace(ask.sampling, temperature=0.2, top_p=0.95)))
        results = client.chat(asks)
        failed = 0
        answerable: list[tuple[int, str]] = []
        for i, (q, r) in enumerate(zip(dev, results, strict=True)):
            text = r.texts[0] if r.texts else ""
            if self._why(q, text, bool(r.finished and r.finished[0] is False)):
                failed += 1
            else:
                answerable.append((i, parse_final(text)[0]))
        if self.config.answer_dev and answerable:
            answers = client.chat(
                [
                    ChatRequest(
                        [{"role": "user", "content": q}],
                        Sampling(0.5, max_tokens=96, seed=self._seed(round, step, 4, k * 1000 + i)),
                        "teacher",
                    )
                    for i, q in answerable
                ]
            )
            failed += sum(answer_failure(a.texts[0] if a.texts else "") is not None for a in answers)
        return failed / len(dev)
