"""Real tasks inside the loop: a classification task from local JSONL files through a whole round with LLM
agents (a scripted chat backend in place of the served model), and a GSM8K-style math task through round 0
with multi-line answers graded by their final number."""

from __future__ import annotations

import itertools
import json
import random
import re
from pathlib import Path

import pytest
import yaml

from agents.llm.client import LLMClient
from agents.llm.scripted import ScriptedBackend
from agents.llm.types import ChatRequest
from agents.tasks.math import extract_answer, numbers_equal
from loop.config import ConfigError, load_config
from loop.runner import start_run

POSITIVE = ["great", "wonderful", "lovely", "superb", "excellent", "delightful", "brilliant", "charming"]
NEGATIVE = ["awful", "terrible", "boring", "dreadful", "poor", "dull", "horrible", "weak"]
SUBJECTS = ["the film", "the plot", "the acting", "the music", "the ending", "the cast", "the story", "the script"]
LABELS = ["negative", "positive"]


def _sentences(rng: random.Random, n: int, seen: set[str]) -> list[dict[str, object]]:
    rows = []
    while len(rows) < n:
        label = rng.randrange(2)
        words = POSITIVE if label else NEGATIVE
        text = f"{rng.choice(SUBJECTS)} was {rng.choice(words)} and {rng.choice(SUBJECTS)} was {rng.choice(words)}"
        if text not in seen:
            seen.add(text)
            rows.append({"sentence": text, "label": label})
    return rows


def _write(path: Path, rows: list[dict[str, object]]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _label_of(text: str) -> str:
    return "positive" if any(w in text.split() for w in POSITIVE) else "negative"


def _config(tmp_path: Path, task: dict, **sections: dict) -> Path:
    data = {
        "name": "dataset-test",
        "run_dir": str(tmp_path / "run"),
        "student": {
            "tiny": {"vocab_size": 256, "hidden_size": 64, "num_layers": 2, "num_heads": 4, "intermediate_size": 128},
            "max_length": 192,
        },
        "task": {"name": "dataset", "dataset": task},
        "training": {"max_steps": 80, "micro_batch_size": 16, "lr": 3e-3},
        "ifd": {"batch_size": 16, "threshold": 100.0},  # a barely trained student finds every label hard
        "tracking": {"wandb_mode": "disabled"},
        **sections,
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _scripted() -> ScriptedBackend:
    """Plays the served model: writes llm2llm items from the failure's answer key, answers, rates."""
    counter = itertools.count()

    def new_item(req: ChatRequest) -> str:
        user = req.messages[-1]["content"]
        label = re.search(r"The answer key says:\s*(\w+)", user).group(1)  # type: ignore[union-attr]
        words = POSITIVE if label == "positive" else NEGATIVE
        k = next(counter)
        text = f"honestly {SUBJECTS[k % 8]} felt {words[k % 8]} to me, take {k}"
        # Half the time the whole prompt, half the time only the text: the task puts both in its own prompt.
        question = f"Classify the text. Answer with one of: negative, positive.\n\nText: {text}" if k % 2 else text
        return json.dumps({"question": question, "answer": label})

    return ScriptedBackend(
        [
            (r"Rate it on this 5-point scale", "Clear and correct.\nScore: 5"),
            (r"The student was given this question", new_item),
            (r"^Classify the text", lambda req: f"It is {_label_of(req.messages[-1]['content'].split('Text:')[-1])}."),
        ],
        model="scripted-teacher",
    )


def test_a_classification_dataset_runs_a_whole_round_with_llm_agents(tmp_path: Path) -> None:
    rng, seen = random.Random(0), set()
    train = _write(tmp_path / "train.jsonl", _sentences(rng, 300, seen))
    test = _write(tmp_path / "test.jsonl", _sentences(rng, 40, seen))
    task = {
        "kind": "classification",
        "source": train,
        "test_source": test,
        "fields": {"instruction": "sentence", "label": "label"},
        "labels": LABELS,
        "seed_count": 24,
        "probe_count": 40,
    }
    teacher = {"kind": "llm", "llm": {"backend": "openai", "model": "served", "base_url": "http://127.0.0.1:9/v1"}}
    cfg = load_config(
        _config(
            tmp_path,
            task,
            teacher=teacher,
            rounds={"max_rounds": 1, "plateau_rounds": 3},
            synthesis={"strategy": "llm2llm", "budget_per_round": 10},
        )
    )
    backend = _scripted()
    run, rounds = start_run(cfg, client=LLMClient(backend, tmp_path / "calls.sqlite"))

    seed, probe, test_rows = (
        _rows(run / "round_000" / "items.jsonl"),
        _rows(run / "probe.jsonl"),
        _rows(run / "test.jsonl"),
    )
    assert (len(seed), len(probe), len(test_rows)) == (24, 40, 40)
    texts = [{r["instruction"] for r in rows} for rows in (seed, probe, test_rows)]
    assert not (texts[0] & texts[1] or texts[0] & texts[2] or texts[1] & texts[2])  # disjoint by construction
    assert all(r["knowledge_point"] == r["label"] == r["output"] and r["label"] in LABELS for r in seed)
    assert all(r["instruction"].startswith("Classify the text. Answer with one of: negative, positive.") for r in seed)

    # The probe split is the same every round; grading is by the label the answer names.
    for r in (0, 1):
        graded = _rows(run / f"round_{r:03d}" / "eval_probe.jsonl")
        assert [g["id"] for g in graded] == [p["id"] for p in probe]
        for g in _rows(run / f"round_{r:03d}" / "eval_test.jsonl"):
            named = g["prediction"].strip().lower()
            assert g["correct"] == (named == g["label"]), g
    failures = [g for g in _rows(run / "round_000" / "eval_probe.jsonl") if not g["correct"]]
    assert failures, "the tiny student got every probe right; the round has nothing to augment"

    # Round 1: one llm2llm item per failed probe (up to the budget), answered and rated by the model.
    items = _rows(run / "round_001" / "items.jsonl")
    synthetic = [i for i in items if i["source"] == "synthetic"]
    assert len(synthetic) == min(len(failures), 10)
    assert {i["parent_id"] for i in synthetic} <= {f["id"] for f in failures}
    for item in synthetic:
        # In the task's prompt form whatever the Questioner wrote; the teacher's sentence cut to its label.
        assert item["instruction"].startswith("Classify the text. Answer with one of: negative, positive.\n\nText: ")
        assert item["output"] == _label_of(item["instruction"].split("Text:")[-1]) == item["reference"]
        assert item["knowledge_point"] == item["label"] == item["output"]
        assert item["kept"] or item["drop_reason"], item
    kept = [i for i in synthetic if i["kept"]]
    assert kept and all(i["quality"] == 5 for i in kept)
    agents = {req.agent for req in backend.calls}
    assert agents == {"questioner", "teacher", "assessor"}
    metrics = [m for m in _rows(run / "metrics.jsonl") if m.get("round") == 1 and "test/accuracy" in m][-1]
    assert metrics["synth/kept"] == len(kept) and metrics["pool/size"] == 24 + len(kept)
    assert {"test/point/negative", "test/point/positive"} <= set(metrics)
    assert metrics["llm/questioner/calls"] >= 1 and rounds[-1].index == 1


def _problem(rng: random.Random) -> dict[str, str]:
    a, b = rng.randrange(2, 40), rng.randrange(2, 40)
    return {
        "question": f"Tom has {a} apples and buys {b} more. How many apples does he have?",
        "answer": f"{a} + {b} = {a + b}\n#### {a + b}",
    }


def test_a_math_dataset_trains_and_grades_multi_line_answers_by_their_final_number(tmp_path: Path) -> None:
    rng = random.Random(1)
    train = _write(tmp_path / "train.jsonl", [_problem(rng) for _ in range(400)])
    test = _write(tmp_path / "test.jsonl", [_problem(rng) for _ in range(60)])
    task = {
        "kind": "math",
        "source": train,
        "test_source": test,
        "seed_count": 200,
        "probe_count": 20,
        "test_count": 30,
    }
    cfg = load_config(
        _config(tmp_path, task, rounds={"max_rounds": 0}), ["student.max_new_tokens=24", "training.max_steps=150"]
    )
    run, _ = start_run(cfg)
    graded = _rows(run / "round_000" / "eval_test.jsonl")
    assert len(graded) == 30 and len(_rows(run / "probe.jsonl")) == 20
    for g in graded:
        assert g["correct"] == numbers_equal(extract_answer(g["prediction"]), g["answer"]), g
    # Math answers are not cut at the first line: the worked step and the '####' line both come back.
    assert any("\n" in g["prediction"] and "####" in g["prediction"] for g in graded), [g["prediction"] for g in graded]


def test_dataset_configs_fail_early_with_the_field_named(tmp_path: Path) -> None:
    base = {"kind": "classification", "source": "x.jsonl", "test_source": "y.jsonl", "labels": LABELS}
    base["fields"] = {"instruction": "sentence", "label": "label"}
    MATH = {**base, "kind": "math", "fields": {"instruction": "q", "output": "a"}}  # noqa: N806
    cases = [
        ({**base, "labels": None}, {}, "needs labels"),
        ({**base, "test_source": None}, {}, "set test_source"),
        ({**base, "fields": {"instruction": "sentence"}}, {}, "needs fields.label"),
        ({**base, "seed_share": 0.1, "seed_count": 5}, {}, "seed_share or seed_count"),
        (base, {"rounds": {"max_rounds": 2}}, "set teacher.kind=llm"),
        (
            {**base, "kind": "open", "fields": {"instruction": "q", "output": "a"}},
            {"rounds": {"max_rounds": 0}},
            "LLM judge",
        ),
        ({**base, "taxonomy": "llm", "domain": "films"}, {}, "taxonomy is its labels"),
        ({**MATH, "taxonomy": "llm"}, {}, "needs the domain"),
        ({**MATH, "domain": "x"}, {}, "for taxonomy 'llm'"),
        ({**MATH, "taxonomy": "llm", "domain": "x"}, {}, "needs the LLM Examiner"),
    ]
    for task, sections, message in cases:
        with pytest.raises(ConfigError, match=message):
            load_config(_config(tmp_path, task, **({"rounds": {"max_rounds": 0}} | sections)))
    with pytest.raises(ConfigError, match="task.dataset is set"):
        load_config(overrides=[f"task.dataset={json.dumps(base)}"])
    with pytest.raises(ConfigError, match="synthesis.writer 'generator' needs the task world's generator"):
        teacher = {"kind": "llm", "llm": {"backend": "openai", "model": "m", "base_url": "http://x/v1"}}
        load_config(_config(tmp_path, base, teacher=teacher, synthesis={"strategy": "weakness"}))


def test_an_open_task_is_graded_by_the_judge(tmp_path: Path) -> None:
    rng = random.Random(2)
    rows = [{"q": f"Describe {s} in a few words.", "a": f"{s} was {rng.choice(POSITIVE)}"} for s in SUBJECTS * 8]
    for i, row in enumerate(rows):
        row["q"] += f" ({i})"
    train, test = _write(tmp_path / "train.jsonl", rows[:48]), _write(tmp_path / "test.jsonl", rows[48:])
    task = {"kind": "open", "source": train, "test_source": test, "fields": {"instruction": "q", "output": "a"}}
    task.update(seed_count=24, probe_count=8, taxonomy="llm", domain="film criticism", taxonomy_points=3)
    teacher = {"kind": "llm", "llm": {"backend": "openai", "model": "served", "base_url": "http://127.0.0.1:9/v1"}}
    cfg = load_config(_config(tmp_path, task, teacher=teacher, rounds={"max_rounds": 0}))
    points = [
        {"id": "Sound", "category": "craft", "description": "music and sound"},
        {"id": "story", "category": "craft", "description": "plot, story, script and ending"},
        {"id": "people", "category": "craft", "description": "acting and cast"},
    ]
    where = {"music": "sound", "plot": "story", "story": "story", "script": "story", "ending": "story"}
    where.update({"acting": "people", "cast": "people", "film": "no_such_point"})  # 'film' is never placed

    def assign(req: ChatRequest) -> str:
        subject = re.search(r"Describe the (\w+)", req.messages[-1]["content"]).group(1)  # type: ignore[union-attr]
        return f"It tests [[{where[subject]}]]"

    # The judge likes answers that name the subject the question asks about.
    backend = ScriptedBackend(
        [
            (r"build a taxonomy of test points for .* film criticism", json.dumps(points)),
            (r"Which single test point", assign),
            (r"\[Question\]", lambda req: "[[8]]" if _names_subject(req.messages[-1]["content"]) else "[[2]]"),
        ]
    )
    run, _ = start_run(cfg, client=LLMClient(backend, tmp_path / "calls.sqlite"))
    graded = _rows(run / "round_000" / "eval_test.jsonl")
    judged = [req for req in backend.calls if req.agent == "assessor"]
    assert len(graded) == 16 and len(judged) == 16 + 8  # every test and probe answer judged once
    # The LLM Examiner's taxonomy: proposed once, every seed, probe and test item placed (or 'unassigned').
    assert json.loads((run / "taxonomy.json").read_text())[0]["id"] == "sound"  # ids are slugged
    examiner = [req for req in backend.calls if req.agent == "examiner"]
    placed = [*_rows(run / "round_000" / "items.jsonl"), *_rows(run / "probe.jsonl"), *_rows(run / "test.jsonl")]
    films = sum("Describe the film" in r["instruction"] for r in placed)
    assert len(placed) == 48 and films > 0
    assert len(examiner) == 1 + 48 + 2 * films  # the proposal, one ask per item, 2 more tries for the unplaceable
    assert {r["knowledge_point"] for r in placed} == {"sound", "story", "people", "unassigned"}
    for g in graded:
        subject = re.search(r"Describe the (\w+)", g["instruction"]).group(1)  # type: ignore[union-attr]
        assert g["knowledge_point"] == ("unassigned" if subject == "film" else where[subject]), g
    for g in graded:
        assert g["score"] in (8, 2) and g["correct"] == (g["score"] == 8), g
    metrics = [m for m in _rows(run / "metrics.jsonl") if "test/accuracy" in m][-1]
    assert metrics["test/accuracy"] == sum(g["correct"] for g in graded) / 16
    assert metrics["llm/assessor/calls"] == 24
    assert {"test/point/sound", "test/point/story", "test/point/people"} <= set(metrics)


def _names_subject(judge_prompt: str) -> bool:
    subject = re.search(r"Describe (the \w+)", judge_prompt)
    answer = judge_prompt.split("[The Start of Assistant's Answer]")[-1].split("[The End of Assistant's Answer]")[0]
    return bool(subject) and subject.group(1) in answer  # type: ignore[union-attr]
