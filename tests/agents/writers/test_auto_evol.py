"""Auto Evol-Instruct: the parse of evolutions, verdicts and optimised methods (ugly ones included), and one
round of the optimiser choosing the method with the lowest failure rate on the round's failures, keeping it
as state for the next round, and evolving the chains with it."""

from __future__ import annotations

import itertools
import random
from types import SimpleNamespace

import pytest

from agents.llm.prompts import render
from agents.llm.scripted import ScriptedBackend
from agents.proposal import Proposal
from agents.tasks.world import solve
from agents.writers.auto_evol import AutoEvolWriter, answer_failure, parse_final, parse_method, parse_verdict
from core.plugins import Inputs, Parts

KEY = ("add.carry", None, 2)
FAILED = ["What is 48 + 37?", "What is 29 + 64?"]


@pytest.mark.parametrize(
    ("reply", "question", "why"),
    [
        (
            "Step 1: #Methods List#\n- bigger numbers\nStep 2: #Plan#\nuse three digits\n"
            "Step 3: #Rewritten Instruction#\nWhat is 148 + 37?\nStep 4: #Finally Rewritten Instruction#\n"
            "What is 148 + 637?",
            "What is 148 + 637?",
            "",
        ),
        (
            "```Optimized Instruction\nStep 4: #Finally Rewritten Instruction#: What is 148 + 637?\n```",
            "What is 148 + 637?",
            "",
        ),
        ("#Finally Rewritten Instruction#\n\"Add 148 and 637.\"", "Add 148 and 637.", ""),
        ("The answer is 85.", "", "no #Finally Rewritten Instruction# step"),
        ("Step 4: #Finally Rewritten Instruction#\n", "", "empty #Finally Rewritten Instruction#"),
        (
            "Step 4: #Finally Rewritten Instruction#\nRewrite the #Instruction# as asked",
            "",
            "template leakage ('#instruction#')",
        ),
    ],
)  # fmt: skip
def test_the_last_step_is_the_evolved_instruction(reply: str, question: str, why: str) -> None:
    assert parse_final(reply) == (question, why)


def test_verdicts_methods_and_failed_answers_are_read_as_evolkit_writes_them() -> None:
    assert parse_verdict("### PASSED") == (True, "")
    assert parse_verdict("Analysis...\n### FAILED - Reason: it answers the question") == (
        False,
        "it answers the question",
    )
    assert parse_verdict("The evolution looks fine to me.") is None
    steps = "Step 1: list methods\nStep 2: use larger numbers\nStep 3: write the #Finally Rewritten Instruction#"
    assert parse_method(f"```Optimized Method\n{steps}\n```") == steps
    assert parse_method(f"```Optimized Method\n  step 1:   list methods\n{steps[21:]}```") == steps
    assert (
        parse_method("Step 1: list methods\nStep 2: write the #Finally Rewritten Instruction#") is not None
    )  # unfenced
    assert parse_method("```Optimized Method\nStep 1: list methods\nStep 2: answer it\n```") is None  # no final step
    assert parse_method("Sure! Here is a better method.") is None
    # SmolLM2 wrote a method's steps on one line, separated by ';' (seen in a real run): still a method.
    assert parse_method(steps.replace("\n", "; ")) == steps
    assert answer_failure("Could you clarify what you mean by the numbers?") == "loss"
    assert answer_failure("Sure, what numbers would you like me to add?") == "insufficient"
    assert answer_failure("185") is None
    assert render("auto_evol_method").splitlines()[-1].endswith("write the #Finally Rewritten Instruction#.")


GOOD = "Step 1: use larger numbers\nStep 2: write the #Finally Rewritten Instruction# with MAGIC numbers"


def _backend() -> ScriptedBackend:
    bigger = itertools.count(100)

    def evolve(req: object) -> str:
        user = req.messages[-1]["content"]  # type: ignore[attr-defined]
        if "MAGIC" not in user:  # the initial method makes the model answer instead of rewriting
            return "The answer is 85."
        return f"Step 1: #Numbers#\nthree digits\nStep 2: #Finally Rewritten Instruction#\nWhat is {next(bigger)} + 37?"

    drafts = iter(
        [
            f"```Optimized Method\n{GOOD}\n```",
            "I would improve it by being clearer.",
            "Step 1: just answer\nStep 2: answer",
        ]
    )
    return ScriptedBackend(
        [
            ("You are an instruction rewriter", evolve),
            ("expert at analysing how instructions evolve", "### FAILED - Reason: Stage 1 answers Stage 0"),
            ("You improve a method", lambda r: next(drafts)),
            (r"^What is \d+ \+ \d+\?$", lambda r: str(solve(r.messages[-1]["content"]))),  # answers to dev evolutions
        ]
    )  # fmt: skip


def test_a_round_chooses_the_method_that_fails_least_keeps_it_and_evolves_with_it() -> None:
    backend = _backend()
    task = SimpleNamespace(has_oracle=True, oracle=solve)
    config = AutoEvolWriter.Config(name="auto_evol_instruct", epochs=1, dev_size=2, candidates=3)
    writer = AutoEvolWriter(config, Parts(client=backend, task=task, max_tries=1))
    writer.load_state(None)
    values = {
        "known": FAILED,
        "failures": [{"instruction": q, "knowledge_point": "add.carry", "facet": None} for q in FAILED],
        "taxonomy": [{"id": "add.carry", "description": "addition with a carry"}],
        "state": None,
    }
    inputs = Inputs(AutoEvolWriter, {k: (lambda v=v: v) for k, v in values.items()})
    proposal = Proposal(weights={KEY: 1.0}, reasons={KEY: "fails 9/10"})
    written = writer.write(proposal, 2, 1, random.Random(0), inputs, "weakness")
    (step,) = writer.history
    assert step["valid_methods"] == 1 and step["drafts"] == 3  # one draft of three is a method
    assert step["failure_rates"] == [1.0, 0.0] and step["chosen"] == 1 and step["feedback_failed"] == 2
    assert writer.state()["method"] == GOOD  # type: ignore[index]
    items = written.items
    assert [i["mutation"] for i in items] == ["auto", "auto"] and all(solve(i["instruction"]) for i in items)
    evolving = [c for c in backend.calls if "instruction rewriter" in c.messages[-1]["content"]]
    assert "MAGIC" in evolving[-1].messages[-1]["content"]  # the chains evolve with the chosen method
    seeds = [c.sampling.seed for c in backend.calls]
    assert len(seeds) == len(set(seeds))  # every request its own seed
    # The next round starts from the state this one left.
    again = AutoEvolWriter(config, Parts(client=_backend(), task=task, max_tries=1))
    again.load_state(writer.state())
    assert again.method == GOOD and len(again.history) == 1
