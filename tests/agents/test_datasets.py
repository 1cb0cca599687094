from __future__ import annotations

import json
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from agents.tasks.datasets import (
    DataError,
    is_correct_for,
    load_rows,
    make_splits,
    normalize_label,
)

# The shared real-data folder beside the repository (as tests/agents/test_math.py finds it); optional.
DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
SENTIMENT = ["negative", "positive"]


@pytest.fixture
def cache(tmp_path: Path) -> str:
    # `datasets` converts every file it reads into its cache; keep that out of the user's home.
    return str(tmp_path / "hf-cache")


def _write_jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def _words(text: str) -> str:
    return " ".join(re.findall(r"\w+", text.casefold()))


def _math_rows(n: int, split: str) -> list[dict[str, object]]:
    return [
        {"id": f"toy-{split}-{i}", "instruction": f"What is {i} + 1?", "output": f"{i} + 1 = {i + 1}\n#### {i + 1}"}
        for i in range(n)
    ]


# -- load_rows ----------------------------------------------------------------------------------------
def test_jsonl_parquet_and_csv_give_the_same_rows(tmp_path: Path, cache: str) -> None:
    rows = [{"text": "great film", "sentiment": 1, "extra": "x"}, {"text": "dull, long", "sentiment": 0, "extra": "y"}]
    _write_jsonl(tmp_path / "sst.jsonl", rows)
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "sst.parquet")
    (tmp_path / "sst.csv").write_text('text,sentiment,extra\ngreat film,1,x\n"dull, long",0,y\n', encoding="utf-8")
    fields = {"instruction": "text", "label": "sentiment"}
    expected = [
        {"id": "sst-train-0", "instruction": "great film", "label": 1},
        {"id": "sst-train-1", "instruction": "dull, long", "label": 0},
    ]
    for suffix in ("jsonl", "parquet", "csv"):
        assert load_rows(str(tmp_path / f"sst.{suffix}"), None, fields, cache_dir=cache) == expected, suffix
    # the split names the rows of a local file in their ids
    got = load_rows(str(tmp_path / "sst.jsonl"), "test", fields, cache_dir=cache)
    assert [r["id"] for r in got] == ["sst-test-0", "sst-test-1"]


def test_hub_name_goes_to_load_dataset_with_config_split_and_files(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    calls: list[tuple[str, dict[str, object]]] = []

    def fake_load_dataset(path: str, **kwargs: object) -> datasets.Dataset:
        calls.append((path, kwargs))
        return datasets.Dataset.from_dict({"question": ["Q1", "Q2"], "answer": ["#### 1", "#### 2"]})

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    rows = load_rows("openai/gsm8k", "test", {"instruction": "question", "output": "answer"}, config="main")
    assert rows == [
        {"id": "gsm8k-test-0", "instruction": "Q1", "output": "#### 1"},
        {"id": "gsm8k-test-1", "instruction": "Q2", "output": "#### 2"},
    ]
    assert calls == [("openai/gsm8k", {"name": "main", "split": "test", "data_files": None, "cache_dir": None})]
    load_rows("json", "train", {"instruction": "question"}, data_files={"train": "a.jsonl"})
    assert calls[-1] == (
        "json",
        {"name": None, "split": "train", "data_files": {"train": "a.jsonl"}, "cache_dir": None},
    )


def test_revision_goes_to_the_hub_and_a_template_builds_multiple_choice_instructions(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, cache: str
) -> None:
    import datasets

    calls: list[dict[str, object]] = []
    table = {"context": ["The court held <HOLDING>."], "endings": [["a duty", "no duty"]], "label": [1]}

    def fake_load_dataset(path: str, **kwargs: object) -> datasets.Dataset:
        calls.append(kwargs)
        return datasets.Dataset.from_dict(table)

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    template = "{{ context }}\nWhich holding?\n{% for e in endings %}{{ loop.index0 }}: {{ e }}\n{% endfor %}"
    rows = load_rows(
        "coastalcph/lex_glue",
        "train",
        {"label": "label"},
        config="case_hold",
        revision="refs/convert/parquet",
        instruction_template=template,
    )
    assert calls[0]["revision"] == "refs/convert/parquet" and calls[0]["name"] == "case_hold"
    assert rows == [
        {
            "id": "lex_glue-train-0",
            "label": 1,
            "instruction": "The court held <HOLDING>.\nWhich holding?\n0: a duty\n1: no duty",
        }
    ]
    with pytest.raises(DataError, match=r"instruction_template: 'question' is undefined; columns: context, endings"):
        load_rows("x/y", "train", {"label": "label"}, instruction_template="{{ question }}")
    with pytest.raises(DataError, match="instruction_template line 1"):
        load_rows("x/y", "train", {"label": "label"}, instruction_template="{% for %}")
    with pytest.raises(DataError, match="must map 'instruction'"):
        load_rows("x/y", "train", {"label": "label"})
    local = _write_jsonl(tmp_path / "a.jsonl", [{"q": "x"}])
    with pytest.raises(DataError, match="data_files and revision are for hub datasets"):
        load_rows(str(local), None, {"instruction": "q"}, revision="main", cache_dir=cache)


def test_hub_errors_name_the_dataset(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    with pytest.raises(DataError, match=r"hub dataset 'openai/gsm8k': a split is needed"):
        load_rows("openai/gsm8k", None, {"instruction": "question"})

    def unreachable(path: str, **kwargs: object) -> datasets.Dataset:
        raise ConnectionError(f"Couldn't reach '{path}' on the Hub (OfflineModeIsEnabled)")

    monkeypatch.setattr(datasets, "load_dataset", unreachable)
    with pytest.raises(DataError, match=r"hub dataset 'openai/gsm8k' \(config 'main'\) split 'train': cannot read"):
        load_rows("openai/gsm8k", "train", {"instruction": "question"}, config="main")


def test_missing_column_names_the_file_the_column_and_the_columns(tmp_path: Path, cache: str) -> None:
    path = _write_jsonl(tmp_path / "gsm.jsonl", [{"question": "Q", "answer": "#### 1"}])
    with pytest.raises(DataError) as err:
        load_rows(str(path), "train", {"instruction": "problem", "output": "answer"}, cache_dir=cache)
    assert str(err.value) == f"{path}: no column 'problem' (for instruction); its columns are question, answer"


def test_missing_empty_and_unreadable_files_name_the_path(tmp_path: Path, cache: str) -> None:
    fields = {"instruction": "q"}
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(DataError, match=f"^{re.escape(str(missing))}: no such file$"):
        load_rows(str(missing), "train", fields, cache_dir=cache)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(DataError, match=f"^{re.escape(str(empty))}: the file is empty$"):
        load_rows(str(empty), "train", fields, cache_dir=cache)
    blank = tmp_path / "blank.csv"
    blank.write_text("q\n")  # a header and no rows
    with pytest.raises(DataError, match=f"^{re.escape(str(blank))}: "):
        load_rows(str(blank), "train", fields, cache_dir=cache)
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"q": "fine"}\nnot json at all\n')
    with pytest.raises(DataError, match=f"^{re.escape(str(broken))}: cannot read it as json"):
        load_rows(str(broken), "train", fields, cache_dir=cache)


def test_fields_must_map_instruction_and_known_names(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"unknown: \['question'\]"):
        load_rows(str(tmp_path / "x.jsonl"), "train", {"instruction": "q", "question": "q"})
    with pytest.raises(DataError, match="data_files and revision are for hub datasets"):
        load_rows(str(tmp_path / "x.jsonl"), "train", {"instruction": "q"}, data_files="y.jsonl")
    with pytest.raises(DataError, match="must map 'instruction'"):
        load_rows(str(tmp_path / "x.jsonl"), "train", {"output": "a"})


# -- make_splits --------------------------------------------------------------------------------------
def test_splits_are_seeded_disjoint_deduplicated_and_decontaminated() -> None:
    train = _math_rows(400, "train")
    # two repeats inside train (case and spacing differ) and three train questions that the test asks
    train += [{**train[5], "id": "toy-train-400", "instruction": "what is 5 +  1"}, {**train[6], "id": "toy-train-401"}]
    test = _math_rows(3, "test") + [{"id": "toy-test-3", "instruction": "Who?", "output": "#### 7"}]
    data = make_splits(train, test, kind="math", seed=7, probe_count=50)
    assert data.counts == {
        "train_rows": 402,
        "test_overlap_removed": 3,
        "duplicates_removed": 2,
        "train_unique": 397,
        "seed": 4,  # 1% of 397
        "probe": 50,
        "unused": 343,
        "test": 4,
    }
    assert [r["id"] for r in data.test] == ["toy-test-0", "toy-test-1", "toy-test-2", "toy-test-3"]
    seed_ids, probe_ids = {r["id"] for r in data.seed}, {r["id"] for r in data.probe}
    assert not seed_ids & probe_ids
    texts = [_words(str(r["instruction"])) for r in data.seed + data.probe]
    assert len(set(texts)) == len(texts)
    assert not set(texts) & {_words(str(r["instruction"])) for r in data.test}
    assert {"toy-train-0", "toy-train-1", "toy-train-2", "toy-train-400", "toy-train-401"}.isdisjoint(
        seed_ids | probe_ids
    )
    # same seed, same rows; another seed, other rows
    again = make_splits(train, test, kind="math", seed=7, probe_count=50)
    assert [r["id"] for r in again.seed] == [r["id"] for r in data.seed]
    assert [r["id"] for r in again.probe] == [r["id"] for r in data.probe]
    assert {r["id"] for r in make_splits(train, test, kind="math", seed=8, probe_count=50).seed} != seed_ids
    record = data.seed[0]
    n = int(re.findall(r"\d+", str(record["instruction"]))[0])
    assert record == {
        "id": f"toy-train-{n}",
        "instruction": f"What is {n} + 1?",
        "output": f"{n} + 1 = {n + 1}\n#### {n + 1}",
        "knowledge_point": "general",
        "skill": "math",
        "difficulty": None,
        "facet": None,
        "answer": str(n + 1),
    }


def test_split_sizes_from_shares_and_counts() -> None:
    train, test = _math_rows(1000, "train"), _math_rows(0, "test")
    base = make_splits(train, test, kind="math", seed=1)
    assert (len(base.seed), len(base.probe)) == (10, 10)  # 1%, and a probe as large as the seed
    shares = make_splits(train, test, kind="math", seed=1, seed_share=0.05, probe_share=0.2)
    assert (len(shares.seed), len(shares.probe)) == (50, 200)
    # one shuffle: a larger seed extends a smaller one, and the probe size does not move the seed
    assert {r["id"] for r in base.seed} < {r["id"] for r in shares.seed}
    counted = make_splits(train, test, kind="math", seed=1, seed_count=10, probe_count=0)
    assert [r["id"] for r in counted.seed] == [r["id"] for r in base.seed] and counted.probe == []
    with pytest.raises(DataError, match="give seed_share or seed_count, not both"):
        make_splits(train, test, kind="math", seed=1, seed_share=0.1, seed_count=3)
    with pytest.raises(DataError, match=r"seed \(600\) and probe \(500\) need more than the 1000 unique train rows"):
        make_splits(train, test, kind="math", seed=1, seed_count=600, probe_count=500)
    with pytest.raises(DataError, match=r"probe_share must be in \(0, 1\], got 1.5"):
        make_splits(train, test, kind="math", seed=1, probe_share=1.5)


def test_math_gold_is_extracted_or_the_row_fails_by_id() -> None:
    rows = _math_rows(3, "train")
    rows[1] = {**rows[1], "output": "It is 1 + 1 = 2, then 2 more: 4 in all."}
    with pytest.raises(
        DataError, match=r"^row toy-train-1: no gold number in its solution ending .*no '#### <number>'"
    ):
        make_splits(rows, [], kind="math", seed=0)
    boxed = [{"id": "b-0", "instruction": "Q", "output": r"So $\boxed{1{,}250}$ in 4 days."}]
    assert make_splits(boxed, [], kind="math", seed=0, seed_count=1, probe_count=0).seed[0]["answer"] == "1250"
    # a source that keeps the gold number in its own column
    apart = [{"id": "s-0", "instruction": "Q", "output": "12 + 3 = 15 and 4 more", "answer": 19.0}]
    assert make_splits(apart, [], kind="math", seed=0, seed_count=1, probe_count=0).seed[0]["answer"] == "19"
    with pytest.raises(DataError, match="^row s-0: no gold number in its answer None"):
        make_splits([{**apart[0], "answer": None}], [], kind="math", seed=0, seed_count=1, probe_count=0)


def test_classification_maps_integer_and_named_labels_into_a_prompt() -> None:
    train = [
        {"id": "sst2-train-0", "instruction": "A gripping, tender film.", "label": 1},
        {"id": "sst2-train-1", "instruction": "Two hours I will not get back.", "label": "NEGATIVE"},
        {"id": "sst2-train-2", "instruction": "Fine.", "label": "0"},
    ]
    test = [{"id": "sst2-test-0", "instruction": "Loved it", "label": 1.0}]
    data = make_splits(
        train,
        test,
        kind="classification",
        seed=0,
        seed_count=3,
        probe_count=0,
        labels=SENTIMENT,
        task="Classify the sentiment of the movie review.",
        skill="sst2",
    )
    assert data.labels == SENTIMENT and data.kind == "classification"
    assert data.seed[0] == {
        "id": "sst2-train-0",
        "instruction": "Classify the sentiment of the movie review. Answer with one of: negative, positive.\n\n"
        "Text: A gripping, tender film.",
        "output": "positive",
        "knowledge_point": "positive",
        "skill": "sst2",
        "difficulty": None,
        "facet": None,
        "label": "positive",
    }
    assert [r["label"] for r in data.seed + data.test] == ["positive", "negative", "negative", "positive"]
    assert [r["knowledge_point"] for r in data.seed] == ["positive", "negative", "negative"]


def test_classification_rejects_labels_outside_the_set() -> None:
    row = {"id": "sst2-test-9", "instruction": "unlabelled", "label": -1}
    with pytest.raises(DataError, match=r"^row sst2-test-9: label -1 is not an index of the 2 labels"):
        make_splits([], [row], kind="classification", seed=0, seed_count=0, labels=SENTIMENT)
    with pytest.raises(DataError, match=r"^row sst2-test-9: label 'neutral' is none of \['negative', 'positive'\]"):
        make_splits([], [{**row, "label": "neutral"}], kind="classification", seed=0, seed_count=0, labels=SENTIMENT)
    with pytest.raises(DataError, match="needs `labels`"):
        make_splits([], [row], kind="classification", seed=0, seed_count=0)
    with pytest.raises(DataError, match="distinct"):
        make_splits([], [row], kind="classification", seed=0, seed_count=0, labels=["Yes", "yes!"])


def test_open_records_keep_the_output_and_a_knowledge_point() -> None:
    rows = [
        {"id": "si-train-0", "instruction": "Write a haiku.", "output": "Leaves fall...", "knowledge_point": "poetry"},
        {"id": "si-train-1", "instruction": "Name a prime.", "output": "7"},
    ]
    data = make_splits(rows, [], kind="open", seed=0, seed_count=2, probe_count=0)
    assert [(r["knowledge_point"], r["output"], r["skill"]) for r in data.seed] == [
        ("poetry", "Leaves fall...", "open"),
        ("general", "7", "open"),
    ]
    with pytest.raises(DataError, match=r"^row si-train-1: open task needs a non-empty text 'output', got ''"):
        make_splits([rows[0], {**rows[1], "output": ""}], [], kind="open", seed=0, seed_count=1)


# -- answers --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("prediction", "labels", "expected"),
    [
        ("positive", SENTIMENT, "positive"),
        ("  Positive.", SENTIMENT, "positive"),
        ('"NEGATIVE"', SENTIMENT, "negative"),
        ("negative\nThe reviewer is bored throughout.", SENTIMENT, "negative"),
        ("The sentiment of this review is positive.", SENTIMENT, "positive"),
        ("Answer: negative", SENTIMENT, "negative"),
        ("It is not negative.", SENTIMENT, None),  # a negated label is not an answer
        ("positive or negative, hard to say", SENTIMENT, None),  # two labels: ambiguous
        ("I cannot tell.", SENTIMENT, None),
        ("", SENTIMENT, None),
        (None, SENTIMENT, None),
        ("positive " + "word " * 30, SENTIMENT, None),  # a long reply is not read for label words
        ("very positive", ["negative", "positive", "very positive"], "very positive"),
        ("I'd say very positive!", ["negative", "positive", "very positive"], "very positive"),
        ("play music", ["PlayMusic", "GetWeather"], "PlayMusic"),
        ("The intent is GetWeather.", ["PlayMusic", "GetWeather"], "GetWeather"),
        ("abbr", ["ABBR", "ENTY", "NUM"], "ABBR"),
        ("positively", SENTIMENT, None),  # whole words only
    ],
)
def test_normalize_label(prediction: str | None, labels: list[str], expected: str | None) -> None:
    assert normalize_label(prediction, labels) == expected


def test_is_correct_for_each_kind() -> None:
    math = {"id": "m", "answer": "1200"}
    assert is_correct_for("math", "So 2 * 600 = 1,200.\n#### 1,200", math) is True
    assert is_correct_for("math", "The answer is 1100.", math) is False
    assert is_correct_for("math", None, math) is False
    label = {"id": "c", "label": "positive"}
    assert is_correct_for("classification", "Positive!", label, SENTIMENT) is True
    assert is_correct_for("classification", "negative", label, SENTIMENT) is False
    assert is_correct_for("classification", "no idea", label, SENTIMENT) is False
    with pytest.raises(DataError, match="checking classification record c needs the label set"):
        is_correct_for("classification", "positive", label)
    assert is_correct_for("open", "anything", {"id": "o"}) is None
    with pytest.raises(DataError, match="task kind 'qa' is not one of math, classification, open"):
        is_correct_for("qa", "x", {"id": "q"})


# -- real GSM8K (optional shared data) --------------------------------------------------------------------
def test_real_gsm8k_one_percent_seed(cache: str) -> None:
    train_path, test_path = DATA / "gsm8k_train.jsonl", DATA / "gsm8k_test.jsonl"
    if not (train_path.is_file() and test_path.is_file()):
        pytest.skip(f"optional real data {DATA}/gsm8k_*.jsonl is absent; the toy-file tests cover the same code")
    fields = {"instruction": "question", "output": "answer"}
    train = load_rows(str(train_path), "train", fields, cache_dir=cache)
    test = load_rows(str(test_path), "test", fields, cache_dir=cache)
    assert (len(train), len(test)) == (7473, 1319)
    assert (train[12]["id"], test[0]["id"]) == ("gsm8k_train-train-12", "gsm8k_test-test-0")
    data = make_splits(train, test, kind="math", seed=0, probe_count=500)
    assert 74 <= len(data.seed) <= 75 and len(data.probe) == 500 and len(data.test) == 1319
    assert data.counts["train_unique"] == 7473 - data.counts["test_overlap_removed"] - data.counts["duplicates_removed"]
    again = make_splits(train, test, kind="math", seed=0, probe_count=500)
    assert [r["id"] for r in again.seed] == [r["id"] for r in data.seed]
    other = make_splits(train, test, kind="math", seed=1, probe_count=500)
    assert len({r["id"] for r in other.seed} & {r["id"] for r in data.seed}) < 10
    ids = [{r["id"] for r in part} for part in (data.seed, data.probe, data.test)]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    texts = [{_words(str(r["instruction"])) for r in part} for part in (data.seed, data.probe, data.test)]
    assert not (texts[0] & texts[1] or texts[0] & texts[2] or texts[1] & texts[2])
    for record in data.seed + data.probe + data.test:
        tail = str(record["output"]).rsplit("####", 1)[1].strip().replace(",", "")
        assert record["answer"] == tail, record["id"]
