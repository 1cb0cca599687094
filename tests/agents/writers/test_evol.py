"""Evol-Instruct: the exact rewriting prompt, the parse of real-looking replies (labels, quotes, leaked
template words, answers instead of rewrites), the elimination rules as named drops, chains that go deeper
when an evolution is kept and stay put when it fails, and the answer-side rules of the `eliminate` curator."""

from __future__ import annotations

import random
from types import SimpleNamespace

import pytest

from agents.curators.eliminate import EliminateCurator
from agents.llm.scripted import ScriptedBackend
from agents.proposal import Ask, Proposal
from agents.tasks.world import solve
from agents.writers.evol import METHODS, EvolWriter, parse_evolved
from core.plugins import Inputs, Parts

KEY = ("add.carry", None, 2)


def _writer(replies: list[str], oracle: bool = True, **options: object) -> tuple[EvolWriter, ScriptedBackend]:
    it = iter(replies)
    backend = ScriptedBackend([(".", lambda r: next(it))])
    task = SimpleNamespace(has_oracle=True, oracle=solve) if oracle else SimpleNamespace(has_oracle=False)
    parts = Parts(client=backend, task=task, max_tries=1)
    return EvolWriter(EvolWriter.Config(name="evol_instruct", **options), parts), backend


def _inputs(writer: EvolWriter, failed: list[str]) -> Inputs:
    values = {
        "known": failed,
        "failures": [{"instruction": q, "knowledge_point": "add.carry", "facet": None} for q in failed],
        "taxonomy": [{"id": "add.carry", "description": "addition with a carry"}],
    }
    return Inputs(type(writer), {k: (lambda v=v: v) for k, v in values.items()})


def _weighted(writer: EvolWriter, n: int, failed: list[str]) -> object:
    proposal = Proposal(weights={KEY: 1.0}, reasons={KEY: "fails 9/10"})
    return writer.write(proposal, n, 1, random.Random(0), _inputs(writer, failed), "weakness")


def test_the_rewriting_prompt_is_exact_and_each_request_has_its_own_seed() -> None:
    writer, backend = _writer(["What is 148 + 37?"], epochs=1, mutations=["constraints"])
    written = _weighted(writer, 1, ["What is 48 + 37?"])
    (request,) = backend.calls
    assert request.messages[0] == {"role": "system", "content": "You are a helpful assistant."}
    user = request.messages[1]["content"]
    assert user.startswith("Act as a prompt rewriter. Rewrite the prompt below into a harder version")
    assert f"Make it harder by this method:\n{METHODS['constraints']}\n" in user
    assert user.endswith("#The Given Prompt#:\nWhat is 48 + 37?\n#Rewritten Prompt#:")
    assert (request.sampling.temperature, request.sampling.top_p, request.sampling.max_tokens) == (1.0, 0.95, 160)
    (item,) = written.items  # type: ignore[attr-defined]
    assert item["instruction"] == "What is 148 + 37?" and item["writer"] == "evol_instruct"
    assert (item["evolved_from"], item["mutation"], item["epoch"]) == ("What is 48 + 37?", "constraints", 1)
    writer, backend = _writer(["x"] * 6, mutations=["breadth"], epochs=3)
    _weighted(writer, 6, ["What is 48 + 37?", "What is 29 + 64?"])
    assert backend.calls[0].messages[1]["content"].endswith("#Given Prompt#:\nWhat is 48 + 37?\n#Created Prompt#:")
    seeds = [c.sampling.seed for c in backend.calls]
    assert len(seeds) == 6 and len(set(seeds)) == 6  # 2 chains x 3 epochs


@pytest.mark.parametrize(
    ("reply", "question", "why"),
    [
        ("What is 48 + 37 + 15?", "What is 48 + 37 + 15?", ""),
        ("#Rewritten Prompt#:\nWhat is 48 + 37 + 15?", "What is 48 + 37 + 15?", ""),
        ('"Add 48, 37 and 15, then tell me the total."', "Add 48, 37 and 15, then tell me the total.", ""),
        ("Rewritten prompt: What is 48 + 37 + 15?", "What is 48 + 37 + 15?", ""),
        ("Here is the rewritten prompt: what is 48 + 37 + 15?", "", "template leakage ('rewritten prompt')"),
        ("#The Given Prompt# asks for a sum, so the answer is 85.", "", "template leakage ('given prompt')"),
        ("   ", "", "empty reply"),
    ],
)
def test_a_reply_is_read_after_its_last_prompt_label_and_leaked_template_words_are_named(
    reply: str, question: str, why: str
) -> None:
    assert parse_evolved(reply) == (question, why)


def test_eliminated_evolutions_are_named_and_their_chain_evolves_the_same_question_again() -> None:
    replies = [
        # epoch 1, chains 1-4 (budget 8 over 2 epochs: 4 chains, cycling over 2 failed questions)
        "What is 48 + 37?",  # the same question back: no information gain
        "Here is the rewritten prompt: what is 29 + 640?",  # leaked template words
        "What is 148 + 37?",  # kept: chain 3 goes deeper
        "Plan a birthday party for 48 guests with 37 balloons.",  # the task's code cannot answer it
        # epoch 2
        "What is 48 + 370?",  # chain 1 again evolves "What is 48 + 37?": kept
        "What is 290 + 64?",  # chain 2 again evolves "What is 29 + 64?": kept
        "What is 148 + 937?",  # chain 3 evolves its kept question: kept, depth 2
        "What is 148 + 37?",  # a repeat of a question kept in epoch 1
    ]
    writer, backend = _writer(replies, mutations=["constraints"])
    written = _weighted(writer, 8, ["What is 48 + 37?", "What is 29 + 64?"])
    given = [c.messages[1]["content"].rsplit("#The Given Prompt#:\n", 1)[1].split("\n")[0] for c in backend.calls]
    assert given[4:] == ["What is 48 + 37?", "What is 29 + 64?", "What is 148 + 37?", "What is 29 + 64?"]
    items = written.items  # type: ignore[attr-defined]
    assert [(i["instruction"], i["epoch"]) for i in items] == [
        ("What is 148 + 37?", 1),
        ("What is 48 + 370?", 2),
        ("What is 290 + 64?", 2),
        ("What is 148 + 937?", 2),
    ]
    assert all(solve(i["instruction"]) is not None for i in items)
    reasons = [r["reason"] for r in written.rejected]  # type: ignore[attr-defined]
    assert reasons == [
        "evol_instruct: constraints: no information gain (too close to the question it evolved from)",
        "evol_instruct: constraints: template leakage ('rewritten prompt')",
        "evol_instruct: constraints: the task's code cannot answer it",
        "evol_instruct: constraints: repeat of a known question",
        "evol_instruct: kept 4 of 8 after 2 epochs",
    ]


def test_an_explicit_ask_evolves_its_failure_and_a_dataset_task_keeps_what_the_code_cannot_check() -> None:
    writer, _ = _writer(["Plan a birthday party for 12 guests, with a budget of 80 dollars."], oracle=False, epochs=1)
    ask = Ask({"id": "p1", "instruction": "Plan a birthday party.", "knowledge_point": "planning"}, 1, "failed")
    written = writer.write(Proposal(asks=[ask]), 1, 2, random.Random(0), _inputs(writer, []), "llm2llm")
    assert [i["parent_id"] for i in written.items] == ["p1"]  # type: ignore[attr-defined]
    writer, _ = _writer([], epochs=1)
    node = Ask({"id": "n", "knowledge_point": "x"}, 2, "weak", context={"examples": []})
    written = writer.write(Proposal(asks=[node]), 2, 2, random.Random(0), _inputs(writer, []), "weakness")
    assert written.rejected == [
        {"parent_id": "n", "reason": "evol_instruct: no failed question to evolve", "excerpt": ""}
    ]


def test_a_cut_reply_is_dropped_and_an_unknown_mutation_is_a_config_error() -> None:
    from agents.llm.scripted import CUT

    writer, _ = _writer(["What is 148 + 37 and" + CUT], epochs=1)
    written = _weighted(writer, 1, ["What is 48 + 37?"])
    assert written.rejected[0]["reason"].endswith(": not terminated (cut by max_tokens)")  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="mutations"):
        EvolWriter.Config(name="evol_instruct", mutations=["harder"])


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        ("85", None),
        ("no", None),
        ("I'm sorry, but I cannot help with that.", "sorry and short (under 80 words)"),
        ("Sorry " + "word " * 90, None),  # long enough to be an answer that apologises
        ("It is, and so it was.", "only punctuation and stop words"),
        ("...", "only punctuation and stop words"),
    ],
)
def test_the_eliminate_curator_drops_short_refusals_and_stop_word_replies(answer: str, why: str | None) -> None:
    curator = EliminateCurator(EliminateCurator.Config(name="eliminate"), Parts())
    kept, dropped = curator.curate([{"id": "a", "output": answer}], Inputs(EliminateCurator, {}))
    assert (dropped[0]["drop_reason"] if dropped else None) == (f"eliminate: {why}" if why else None)
    assert len(kept) + len(dropped) == 1
