"""Self-Instruct: the exact completion prompt (human tasks and the node's failures, numbered, item 9 open),
and what the parse and the rule filters make of real-looking continuations, the repeating ones included."""

from __future__ import annotations

import random
from pathlib import Path
from types import SimpleNamespace

import pytest

from agents.llm.scripted import CUT, ScriptedBackend
from agents.proposal import Proposal
from agents.writers.self_instruct import SelfInstructWriter
from core.plugins import Inputs, Parts

SEED_TASKS = Path(__file__).resolve().parents[4] / "shared" / "data" / "self_instruct_seed_tasks.jsonl"
HUMAN = [f"Human task number {i} asks for something" for i in range(6)]
FAILED = ["What is 48 + 37?", "What is 29 + 64?"]
KEY = ("add.carry", None, 2)


def _writer(replies: list[str], **options: object) -> tuple[SelfInstructWriter, ScriptedBackend]:
    it = iter(replies)
    backend = ScriptedBackend([(".", lambda r: next(it))])
    task = SimpleNamespace(has_oracle=False)
    parts = Parts(client=backend, task=task, max_tries=1)
    return SelfInstructWriter(SelfInstructWriter.Config(name="self_instruct", **options), parts), backend


def _inputs(writer: SelfInstructWriter, human: list[str] = HUMAN) -> Inputs:
    values = {
        "known": [],
        "failures": [{"instruction": q, "knowledge_point": "add.carry", "facet": None} for q in FAILED],
        "taxonomy": [{"id": "add.carry", "description": "addition with a carry"}],
        "pool": [{"instruction": h, "source": "seed"} for h in human]
        + [{"instruction": "x y z w", "source": "synthetic"}],
    }
    return Inputs(type(writer), {k: (lambda v=v: v) for k, v in values.items()})


def _write(writer: SelfInstructWriter, n: int, inputs: Inputs) -> object:
    proposal = Proposal(weights={KEY: 1.0}, reasons={KEY: "fails 9/10"})
    return writer.write(proposal, n, 1, random.Random(0), inputs, "weakness")


def test_the_prompt_numbers_six_human_tasks_and_two_failures_then_leaves_item_nine_open() -> None:
    writer, backend = _writer([" Name three rivers of Europe and their lengths."])
    _write(writer, 1, _inputs(writer))
    (request,) = backend.calls
    assert request.messages == [] and request.sampling.top_p == 0.5 and request.sampling.temperature == 0.7
    assert request.sampling.stop == ("\n\n", "\n16", "16.", "16 .")
    lines = request.prompt.split("\n")  # type: ignore[union-attr]
    assert lines[0] == "Think of a list of new tasks, each different from the others:" and lines[-1] == "9."
    assert [line.split(". ", 1)[0] for line in lines[1:-1]] == [str(i) for i in range(1, 9)]
    assert sorted(line.split(". ", 1)[1] for line in lines[1:-1]) == sorted(HUMAN + FAILED)
    # One human task and no machine slot: the whole prompt, exactly.
    writer, backend = _writer([" Name three rivers of Europe and their lengths."], human=1, machine=0)
    _write(writer, 1, _inputs(writer, human=["Sort these words:"]))
    assert (
        backend.calls[0].prompt
        == "Think of a list of new tasks, each different from the others:\n1. Sort these words\n2."
    )


def test_a_continuation_is_split_filtered_and_cut_at_its_first_repeat() -> None:
    reply = (
        " Tell me a story about a time when you overcame a difficult challenge.\n"
        "10. Plot the function y = x^2 for x from 0 to 5.\n"  # blocklist
        "11. Hi there\n"  # too short
        "12. Write a program that prints the primes below 100.\n"
        "13. - list the planets in order from the sun\n"  # punctuation first
        "14) Human task number 3 asks for something\n"  # a seed task copied (ROUGE-L)
        "15. Tell me a story about a time when you overcame a difficult challenge.\n"  # the repeat
        "16. Explain why the sky is blue in two sentences."
    )
    writer, _ = _writer([reply], per_request=8)
    written = _write(writer, 3, _inputs(writer))
    assert [i["instruction"] for i in written.items] == [  # type: ignore[attr-defined]
        "Tell me a story about a time when you overcame a difficult challenge."
    ]
    assert [r["reason"] for r in written.rejected] == [  # type: ignore[attr-defined]
        "self_instruct: blocklist: plot",
        "self_instruct: too short (2 words)",
        "self_instruct: starts with 'Write a program'",
        "self_instruct: starts with punctuation or a non-ASCII character",
        "self_instruct: repeat of a known question",
        "self_instruct: repeats an item above; 1 later items dropped too",
        "self_instruct: kept 1 of 3 after 1 tries",
    ]


def test_an_item_cut_by_max_tokens_is_dropped_and_the_ones_before_it_kept() -> None:
    cut = " Describe how a bicycle gear works.\n10. Give two reasons why cats purr when they" + CUT
    writer, _ = _writer([cut], per_request=2)
    written = _write(writer, 2, _inputs(writer))
    assert [i["instruction"] for i in written.items] == ["Describe how a bicycle gear works."]  # type: ignore[attr-defined]
    assert written.rejected[0]["reason"] == "self_instruct: cut by max_tokens"  # type: ignore[attr-defined]


@pytest.mark.skipif(not SEED_TASKS.exists(), reason="the 175 seed tasks of the paper are not in ../shared/data")
def test_the_papers_seed_tasks_fill_the_human_slots() -> None:
    writer, backend = _writer([" Suggest a name for a bakery that sells only bread."], seed_tasks=str(SEED_TASKS))
    written = _write(writer, 1, _inputs(writer))
    assert len(writer.human) == 175
    lines = backend.calls[0].prompt.split("\n")[1:-1]  # type: ignore[union-attr]
    assert len(lines) == 8 and sum(line.split(". ", 1)[1] in writer.human for line in lines) == 6
    assert written.items  # type: ignore[attr-defined]


def test_a_missing_seed_file_is_a_config_error() -> None:
    with pytest.raises(ValueError, match="no such file: /nowhere.jsonl"):
        SelfInstructWriter.Config(name="self_instruct", seed_tasks="/nowhere.jsonl")
