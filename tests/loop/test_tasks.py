"""The task interface the runner uses: grading, verification, voting, stop strings and taxonomy per kind,
and GSM8K itself through the dataset path (when ../shared/data is there)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loop.config import CONFIG_DIR, load_config
from loop.tasks import DatasetTask, WorldTask, make_task

LABELS = ["negative", "positive"]
GSM8K = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def _task(tmp_path: Path, **dataset: object) -> DatasetTask:
    spec = {"source": str(tmp_path / "a.jsonl"), "test_source": str(tmp_path / "b.jsonl"), **dataset}
    cfg = load_config(overrides=["task.name=dataset", f"task.dataset={json.dumps(spec)}", "rounds.max_rounds=0"])
    task = make_task(cfg)
    assert isinstance(task, DatasetTask)
    return task


def test_classification_grades_by_the_label_named_and_stops_at_the_line_end(tmp_path: Path) -> None:
    task = _task(tmp_path, kind="classification", labels=LABELS, fields={"instruction": "t", "label": "l"})
    assert task.stop == ("\n",)
    rows = [{"label": "positive", "prediction": p} for p in ("Positive.", "positive", "negative", "", "not positive")]
    assert [(g["correct"], g["error_type"]) for g in task.grade(rows)] == [
        (True, None),
        (True, None),
        (False, "wrong label"),
        (False, "empty"),
        (False, "no label"),
    ]
    assert task.verifier("It is Positive", "positive", {}) is True
    assert task.verifier("negative", "positive", {}) is False
    assert task.verifier("negative", "dunno", {}) is None  # the proposed answer names no label: cannot tell
    assert task.extract("POSITIVE!") == "positive"
    prompt = "Classify the text. Answer with one of: negative, positive.\n\nText: a dull film"
    for written in ("a dull film", prompt, "Some preamble\nText: a dull film"):
        assert task.shape_candidate({"instruction": written})["instruction"] == prompt
    shaped = task.shape_answer({"output": "The sentiment is Negative.", "knowledge_point": "positive"})
    assert (shaped["output"], shaped["label"], shaped["knowledge_point"]) == ("negative", "negative", "negative")
    assert task.shape_answer({"output": "no idea"})["output"] == ""  # the Assessor drops it as malformed
    records = [{"knowledge_point": k} for k in ("positive", "negative", "positive")]
    assert [p["id"] for p in task.taxonomy(records)] == ["positive", "negative"]


def test_math_grades_and_votes_by_the_final_number_and_runs_to_the_end_token(tmp_path: Path) -> None:
    task = _task(tmp_path, kind="math")
    assert task.stop == () and task.teacher_system == "teacher_system_math"
    rows = [
        {"answer": "1200", "prediction": "Step 1: 600 * 2 = 1,200\n#### 1,200"},
        {"answer": "1200", "prediction": "She pays $1200.00 in all."},
        {"answer": "1200", "prediction": "#### 120"},
        {"answer": "1200", "prediction": "I do not know"},
    ]
    assert [(g["correct"], g["error_type"]) for g in task.grade(rows)] == [
        (True, None),
        (True, None),
        (False, "wrong number"),
        (False, "no number"),
    ]
    assert task.verifier("so 3 + 4 = 7\n#### 7", "#### 7", {}) is True
    assert task.verifier("#### 8", "7", {}) is False
    assert task.verifier("#### 8", "no number here", {}) is None
    assert task.extract("a\n#### 1,000") == "1000"
    assert task.shape_answer({"output": "2 * 3 = 6\n#### 6"})["answer"] == "6"
    assert task.shape_candidate({"instruction": "Q?"}) == {"instruction": "Q?"}


def test_open_tasks_are_left_to_the_judge(tmp_path: Path) -> None:
    cfg = {"kind": "open", "source": str(tmp_path / "a.jsonl"), "test_source": str(tmp_path / "b.jsonl")}
    over = ["task.name=dataset", f"task.dataset={json.dumps(cfg)}", "rounds.max_rounds=0", "teacher.kind=llm"]
    over += ["teacher.llm.backend=openai", "teacher.llm.model=m"]
    task = make_task(load_config(overrides=over))
    assert task.stop == () and task.verifier("any", "thing", {}) is None
    with pytest.raises(RuntimeError, match="LLM judge"):
        task.grade([{"prediction": "x", "output": "y"}])


def test_the_world_task_keeps_the_embedded_default() -> None:
    task = make_task(load_config())
    assert isinstance(task, WorldTask) and task.stop == ("\n",) and task.fresh_probes
    data = task.make_data()
    assert not {r["instruction"] for r in data.seed} & {r["instruction"] for r in data.test}
    probes = task.probes(1, {str(r["instruction"]) for r in data.test})
    assert probes and not {r["instruction"] for r in probes} & {r["instruction"] for r in data.test}
    graded = task.grade([{**probes[0], "prediction": probes[0]["output"]}, {**probes[1], "prediction": "zz"}])
    assert [g["correct"] for g in graded] == [True, False]


def test_a_chat_teachers_worded_world_answer_is_cut_to_its_short_answer() -> None:
    task = make_task(load_config())
    # Replies SmolLM2-135M-Instruct gave as the teacher; the reply is kept beside the short answer.
    worded = {"instruction": "What is 78 - 9?", "output": "First, 78 - 9 = 69.\n\nThe answer is 69."}
    shaped = task.shape_answer(worded)
    assert shaped["output"] == "69" and shaped["teacher_reply"] == worded["output"]
    assert task.shape_answer({"output": "So, 4 times 1 = 4."})["output"] == "4"
    assert task.shape_answer({"output": "The answer is **t**."})["output"] == "t"
    assert task.shape_answer({"output": "odd"}) == {"output": "odd"}  # already short: left alone
    # No answer phrase: the first line stays, and the oracle then judges it (here: wrong).
    shaped = task.shape_answer({"instruction": "Is 583 even or odd?", "output": "583 is odd.\nIt ends in 3."})
    assert shaped["output"] == "583 is odd." and task.verifier(shaped["output"], "", shaped) is False
    assert task.extract("Let me see.\nThe answer is: 12.") == "12"


def test_a_question_of_another_point_is_counted_for_the_point_it_tests() -> None:
    import random

    from agents.tasks.world import KNOWLEDGE_POINTS, point_of, sample_item

    rng = random.Random(0)
    for kp in KNOWLEDGE_POINTS:  # every generated question is read back as its own point, at every level
        assert all(point_of(sample_item(rng, kp.id, d)[0]) == kp.id for d in (1, 2, 3) for _ in range(30)), kp.id
    task = make_task(load_config())
    # Self-Instruct on SmolLM2, asked for cmp.min, wrote an addition (seen in a real run).
    asked = {"instruction": "What is 13 + 1?", "reference": None, "knowledge_point": "cmp.min", "facet": "x"}
    shaped = task.shape_candidate(asked)
    assert (shaped["knowledge_point"], shaped["skill"], shaped["asked_point"]) == (
        "add.no_carry",
        "addition",
        "cmp.min",
    )
    assert shaped["reference"] == "14" and shaped["facet"] == "operands < 6"
    same = {"instruction": "Which is smaller, 23 or 27?", "reference": "23", "knowledge_point": "cmp.min"}
    assert task.shape_candidate(same) == same  # asked and written for the same point: untouched
    other = {"instruction": "Plan a party.", "reference": None, "knowledge_point": "cmp.min"}
    assert task.shape_candidate(other) == other  # not a world question: left to the filters


@pytest.mark.skipif(not (GSM8K / "gsm8k_train.jsonl").exists(), reason="optional: ../shared/data/gsm8k_*.jsonl absent")
def test_gsm8k_splits_one_percent_seed_with_probe_and_test_apart() -> None:
    spec = {
        "kind": "math",
        "source": str(GSM8K / "gsm8k_train.jsonl"),
        "test_source": str(GSM8K / "gsm8k_test.jsonl"),
        "test_count": 200,
    }
    task = make_task(
        load_config(overrides=["task.name=dataset", f"task.dataset={json.dumps(spec)}", "rounds.max_rounds=0"])
    )
    data = task.make_data()
    assert data.counts["train_rows"] == 7473 and len(data.seed) == len(data.probe) == round(
        0.01 * data.counts["train_unique"]
    )
    assert len(data.test) == 200
    texts = [{r["instruction"] for r in rows} for rows in (data.seed, data.probe, data.test)]
    assert not (texts[0] & texts[1] or texts[0] & texts[2] or texts[1] & texts[2])
    # Every gold solution grades as right against its own gold number.
    graded = task.grade([{**r, "prediction": r["output"]} for r in [*data.seed, *data.test]])
    assert all(g["correct"] for g in graded)
    assert data.seed == task.make_data().seed  # the same seed draws the same split


# Columns and label encodings of each preset's hub dataset, as its dataset card gives them (checked when the
# presets were written); the hub itself is out of reach here, so a fake `load_dataset` serves such rows.
PRESET_ROWS = {
    "sst2": {"idx": 0, "sentence": "a gripping , funny film", "label": 1},
    "trec": {"text": "How far is it from Denver to Aspen ?", "coarse_label": 5, "fine_label": 40},
    "snips": {"text": "play some jazz by miles davis", "category": "PlayMusic"},
    "casehold": {"context": "The court held <HOLDING>.", "endings": ["a", "b", "c", "d", "e"], "label": 2},
}
PRESET_GOLD = {"sst2": "positive", "trec": "number", "snips": "PlayMusic", "casehold": "2"}


@pytest.mark.parametrize("preset", sorted(PRESET_ROWS))
def test_classification_presets_read_their_sources_columns(preset: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    cfg = load_config(CONFIG_DIR / f"{preset}.yaml")
    ds = cfg.task.dataset
    assert ds is not None and ds.kind == "classification"
    calls: list[tuple[str, dict[str, object]]] = []

    def fake_load_dataset(path: str, **kwargs: object) -> datasets.Dataset:
        calls.append((path, kwargs))
        n = 400 if kwargs["split"] == ds.train_split else 50
        rows = [{**PRESET_ROWS[preset]} for _ in range(n)]
        for i, row in enumerate(rows):  # distinct texts, so nothing is dropped as a duplicate
            key = "context" if preset == "casehold" else ("sentence" if preset == "sst2" else "text")
            row[key] = f"{row[key]} ({kwargs['split']} {i})"
        return datasets.Dataset.from_list(rows)

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    data = make_task(cfg).make_data()
    assert [c[0] for c in calls] == [ds.source, ds.source]
    assert [c[1]["split"] for c in calls] == [ds.train_split, ds.test_split]
    assert all(c[1]["name"] == ds.config and c[1].get("revision") == ds.revision for c in calls)
    record = data.test[0]
    assert record["label"] == record["output"] == record["knowledge_point"] == PRESET_GOLD[preset]
    assert record["instruction"].startswith(f"{ds.instruction} Answer with one of: ")
    if preset == "casehold":
        assert "Which holding fills the <HOLDING> mask?\n0: a\n1: b\n2: c\n3: d\n4: e" in record["instruction"]
