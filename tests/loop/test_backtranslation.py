"""Instruction back-translation in the real loop: the backward model is the tiny student fine-tuned through
DeepSpeed on the seed turned around, it writes an instruction for each chosen document, the documents come back
as the items' answers (not re-answered), every item is kept or dropped with its reason, and round 2 uses none of
round 1's documents. A corpus that cannot be read fails before the run directory exists."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agents.tasks.world import generate_items
from core.jsonl import DataFileError
from loop.config import ConfigError, load_config
from loop.runner import start_run
from tests.helpers import POINTS, TINY, rows

BACK = ["synthesis.writer={name: backtranslation, train_steps: 5}", "synthesis.curate=[verify]"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Answers of the world's points (a corpus the project makes): the backward model writes their questions."""
    items = generate_items(7, {p: 12 for p in POINTS}, split="probe")
    path = tmp_path_factory.mktemp("corpus") / "answers.jsonl"
    path.write_text("".join(json.dumps({"text": f"The answer is {i['output']}."}) + "\n" for i in items))
    return path


def test_two_rounds_of_back_translation(corpus: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    cfg = load_config(
        overrides=[*TINY, *BACK, f"synthesis.corpus={{path: {corpus}}}", "rounds.max_rounds=2", f"run_dir={run}"]
    )
    start_run(cfg)
    docs = {json.loads(line)["text"] for line in corpus.read_text().splitlines()}
    used = []
    for r in (1, 2):
        rd = run / f"round_{r:03d}"
        assert (rd / "backward" / "sft" / "model" / "config.json").is_file(), "the backward model was trained"
        backward = rows(rd / "backward" / "train.jsonl")
        seed = rows(run / "round_000" / "items.jsonl")
        assert backward == [{"instruction": s["output"], "output": s["instruction"]} for s in seed]
        candidates = rows(rd / "candidates.jsonl")
        answered = rows(rd / "answered.jsonl")
        # The document is the answer, not re-answered (the world cuts a worded answer to its short form, as it does
        # a teacher's: "The answer is 90." -> "90").
        assert [a["teacher"] for a in answered] == ["corpus"] * len(candidates)
        assert all(f"The answer is {a['output']}." == c["output"] for a, c in zip(answered, candidates, strict=True))
        assert all(c["answered"] and c["teacher"] == "corpus" and c["output"] in docs for c in candidates)
        items = rows(rd / "items.jsonl")
        assert items and all(i["kept"] == (i["drop_reason"] is None) for i in items)
        assert all(i["strategy"] == "weakness" and i["source"] == "synthetic" for i in items)
        written = [i for i in items if i["instruction"]]
        assert all(i["writer"] == "backtranslation" and "document" in i for i in written)
        state = json.loads((rd / "state" / "writer-backtranslation.json").read_text())
        used.append(set(state["used"]))
    assert used[0] < used[1], "round 2 kept round 1's documents as used and took new ones"


def test_a_corpus_that_cannot_be_read_fails_before_the_run_directory(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"body": "no text field"}\n')
    run = tmp_path / "run"
    cfg = load_config(overrides=[*TINY, *BACK, f"synthesis.corpus={{path: {bad}}}", f"run_dir={run}"])
    with pytest.raises(DataFileError, match=r"bad.jsonl:1: missing field.s. text"):
        start_run(cfg)
    assert not run.exists()
    missing = load_config(overrides=[*TINY, *BACK, f"synthesis.corpus={{path: {tmp_path / 'none'}}}", f"run_dir={run}"])
    with pytest.raises(DataFileError, match="corpus not found"):
        start_run(missing)
    assert not run.exists()
    with pytest.raises(ConfigError, match="'backtranslation' needs a corpus of unlabelled texts"):
        load_config(overrides=[*TINY, *BACK])
