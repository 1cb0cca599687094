"""Real tasks as data: rows read through `datasets` (a hub dataset or a local file), split into seed, probe
and test records of the project's record shape.

Three kinds of task: `math` (GSM8K style; the gold number is checked numerically), `classification` (a fixed
label set; the gold label is the knowledge point, so per-label accuracy is the taxonomy) and `open` (free text;
a judge decides). The seed and probe are drawn from the source's train split, the test is its test split.
"""

from __future__ import annotations

import random
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import jinja2

from agents.llm.prompts import render
from agents.tasks.math import extract_answer, numbers_equal
from core.jsonl import iter_jsonl
from core.text import question_key

if TYPE_CHECKING:
    from datasets import Dataset

Kind = Literal["math", "classification", "open"]
KINDS: tuple[str, ...] = ("math", "classification", "open")
# Record fields a source column can fill; `answer` is for math sources that keep the gold number apart.
FIELDS: tuple[str, ...] = ("instruction", "output", "label", "knowledge_point", "answer")
FORMATS: dict[str, str] = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".csv": "csv"}
DEFAULT_SEED_SHARE = 0.01  # LLM2LLM's low-data regime starts from about 1% of the train split
DEFAULT_TASK = "Classify the text."
DEFAULT_POINT = "general"
Record = dict[str, object]


class DataError(ValueError):
    """A source that cannot be read, lacks a column, or holds a row that does not fit its task kind."""


@dataclass
class TaskData:
    """A task's records by split, its kind and label set, and the counts of what splitting kept and removed."""

    seed: list[Record]
    probe: list[Record]
    test: list[Record]
    kind: Kind
    labels: list[str] | None = None
    counts: dict[str, int] = field(default_factory=dict)


# -- reading ----------------------------------------------------------------------------------------
def load_rows(
    source: str,
    split: str | None,
    fields: dict[str, str],
    data_files: str | Sequence[str] | dict[str, str | Sequence[str]] | None = None,
    *,
    config: str | None = None,
    cache_dir: str | None = None,
    revision: str | None = None,
    instruction_template: str | None = None,
) -> list[Record]:
    """One split's rows as `{field: value}` (`fields` maps record field -> source column) with a stable id
    `<source>-<split>-<row index>`; `source` is a local .json/.jsonl/.parquet/.csv file or a hub dataset name.

    `instruction_template` (Jinja over the row's columns) builds the instruction from several columns, e.g. a
    multiple-choice question from a context and a list of options; `fields` then need not map `instruction`.
    """
    unknown = sorted(set(fields) - set(FIELDS))
    if unknown or ("instruction" not in fields and instruction_template is None):
        raise DataError(
            f"fields {fields} must map 'instruction' (or give instruction_template) and only {', '.join(FIELDS)} "
            f"(unknown: {unknown})"
        )
    template = _compile(instruction_template) if instruction_template is not None else None
    dataset, where, name, split_name = _load(source, split, data_files, config, cache_dir, revision)
    if len(dataset) == 0:
        raise DataError(f"{where}: no rows")
    missing = [(f, c) for f, c in fields.items() if c not in dataset.column_names]
    if missing:
        wanted = ", ".join(f"{c!r} (for {f})" for f, c in missing)
        raise DataError(f"{where}: no column {wanted}; its columns are {', '.join(dataset.column_names)}")
    try:
        columns = (dataset if template else dataset.select_columns(sorted(set(fields.values())))).to_list()
    except UnicodeDecodeError as err:  # pyarrow takes bytes that are not UTF-8 and fails only when reading them
        raise DataError(f"{_first_bad_utf8(source) or where}: not valid UTF-8 ({err.reason})") from None
    rows: list[Record] = []
    for i, row in enumerate(columns):
        # A row without a mapped column comes back as None (JSON lines need not share their keys).
        absent = [c for c in fields.values() if row.get(c) is None]
        if absent:
            raise DataError(f"{where} row {name}-{split_name}-{i}: no value for {', '.join(repr(c) for c in absent)}")
        record: Record = {"id": f"{name}-{split_name}-{i}", **{f: row[c] for f, c in fields.items()}}
        if template is not None:
            record["instruction"] = _render_row(template, row, where, i, dataset.column_names)
        if not str(record["instruction"]).strip():
            raise DataError(f"{where} row {name}-{split_name}-{i}: the instruction is empty")
        rows.append(record)
    return rows


def _first_bad_utf8(source: str) -> str | None:
    """`file:line` of the first line of a local JSON-lines file that is not UTF-8, else None."""
    if Path(source).suffix.lower() not in (".jsonl", ".json") or not Path(source).is_file():
        return None
    bad = (n for n, _, problem in iter_jsonl(source) if problem and problem.startswith("not valid UTF-8"))
    line = next(bad, None)
    return f"{source}:{line}" if line is not None else None


def _compile(text: str) -> jinja2.Template:
    try:
        return jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=False).from_string(text)
    except jinja2.TemplateSyntaxError as err:
        raise DataError(f"instruction_template line {err.lineno}: {err.message}") from err


def _render_row(template: jinja2.Template, row: Record, where: str, i: int, columns: Sequence[str]) -> str:
    try:
        return template.render(**row).strip()
    except jinja2.UndefinedError as err:
        raise DataError(f"{where} row {i}: instruction_template: {err.message}; columns: {', '.join(columns)}") from err


def _load(
    source: str,
    split: str | None,
    data_files: str | Sequence[str] | dict[str, str | Sequence[str]] | None,
    config: str | None,
    cache_dir: str | None,
    revision: str | None = None,
) -> tuple[Dataset, str, str, str]:
    """(dataset, where for messages, name for ids, split for ids) of a local file or a hub split."""
    # Imported here: `datasets` takes seconds to import, and checking answers or labels does not need it.
    import datasets

    suffix = Path(source).suffix.lower()
    if suffix in FORMATS:
        path = Path(source)
        if data_files is not None or revision is not None:
            raise DataError(f"{path}: a local file is its own data; data_files and revision are for hub datasets")
        if not path.is_file():
            raise DataError(f"{path}: no such file")
        if path.stat().st_size == 0:
            raise DataError(f"{path}: the file is empty")
        builder, where = FORMATS[suffix], str(path)
        # One local file is one split, which `datasets` calls "train"; `split` only names it in the ids.
        kwargs: dict[str, object] = {"data_files": str(path), "split": "train"}
        name, split_name = path.stem, split or "train"
    else:
        if split is None:
            raise DataError(f"hub dataset {source!r}: a split is needed (e.g. 'train' or 'test')")
        builder, where = source, f"hub dataset {source!r}" + (f" (config {config!r})" if config else "")
        where += f" split {split!r}"
        kwargs = {"name": config, "split": split, "data_files": data_files}
        if revision is not None:  # e.g. "refs/convert/parquet": the hub's parquet copy of a script dataset
            kwargs["revision"] = revision
            where += f" at revision {revision!r}"
        name, split_name = source.rstrip("/").rsplit("/", 1)[-1], split
    try:
        dataset = datasets.load_dataset(builder, cache_dir=cache_dir, **kwargs)
    except (datasets.exceptions.DatasetsError, OSError, ValueError) as err:
        # `datasets` wraps the parser's error; its cause says which line or value was bad.
        cause = f" ({err.__cause__})" if err.__cause__ else ""
        raise DataError(f"{where}: cannot read it as {builder}: {err}{cause}") from err
    return dataset, where, name, split_name


# -- splitting --------------------------------------------------------------------------------------
def make_splits(
    train_rows: Sequence[Record],
    test_rows: Sequence[Record],
    *,
    kind: Kind,
    seed: int,
    seed_share: float | None = None,
    seed_count: int | None = None,
    probe_share: float | None = None,
    probe_count: int | None = None,
    labels: Sequence[str] | None = None,
    task: str = DEFAULT_TASK,
    skill: str | None = None,
) -> TaskData:
    """Seed and probe drawn (with `seed`) from the deduplicated, decontaminated train rows; test = the test rows.

    Seed size: `seed_share` of the train rows (1% when neither is given) or `seed_count`; probe size likewise,
    the seed's size when neither is given. Seed and probe come from one shuffle, so they never share a row.
    """
    if kind not in KINDS:
        raise DataError(f"task kind {kind!r} is not one of {', '.join(KINDS)}")
    label_list = _check_labels(kind, labels)
    skill = skill or kind
    train = [_record(kind, row, label_list, task, skill) for row in train_rows]
    test = [_record(kind, row, label_list, task, skill) for row in test_rows]

    # Same text, different id is the same item to a student: drop train rows the test asks, then repeats.
    test_texts = {question_key(str(row["instruction"])) for row in test_rows}
    unique: list[Record] = []
    seen: set[str] = set()
    overlap = duplicates = 0
    for row, record in zip(train_rows, train, strict=True):
        text = question_key(str(row["instruction"]))
        if text in test_texts:
            overlap += 1
        elif text in seen:
            duplicates += 1
        else:
            seen.add(text)
            unique.append(record)

    n = len(unique)
    n_seed = _size("seed", seed_share, seed_count, n, DEFAULT_SEED_SHARE, None)
    n_probe = _size("probe", probe_share, probe_count, n, None, n_seed)
    if n_seed + n_probe > n:
        raise DataError(f"seed ({n_seed}) and probe ({n_probe}) need more than the {n} unique train rows")
    # One shuffle of all indices: the seed is the same whatever the probe size, and a larger seed count
    # extends a smaller one.
    order = list(range(n))
    random.Random(seed).shuffle(order)
    seed_part = [unique[i] for i in sorted(order[:n_seed])]
    probe_part = [unique[i] for i in sorted(order[n_seed : n_seed + n_probe])]
    counts = {
        "train_rows": len(train_rows),
        "test_overlap_removed": overlap,
        "duplicates_removed": duplicates,
        "train_unique": n,
        "seed": n_seed,
        "probe": n_probe,
        "unused": n - n_seed - n_probe,
        "test": len(test),
    }
    return TaskData(seed_part, probe_part, test, kind, label_list, counts)


def _size(
    what: str, share: float | None, count: int | None, n: int, default_share: float | None, default: int | None
) -> int:
    """Rows wanted for a split from a share of `n` or a count (not both); at least one row for a share."""
    if share is not None and count is not None:
        raise DataError(f"give {what}_share or {what}_count, not both ({share}, {count})")
    if count is not None:
        if count < 0:
            raise DataError(f"{what}_count must be >= 0, got {count}")
        return count
    share = share if share is not None else default_share
    if share is None:
        return default or 0
    if not 0 < share <= 1:
        raise DataError(f"{what}_share must be in (0, 1], got {share}")
    return max(1, round(share * n))


# -- records of each kind ---------------------------------------------------------------------------
def _check_labels(kind: str, labels: Sequence[str] | None) -> list[str] | None:
    if kind != "classification":
        return list(labels) if labels else None
    if not labels or isinstance(labels, str):
        raise DataError("a classification task needs `labels`, the list of label names")
    names = [str(label) for label in labels]
    keys = [_label_key(name) for name in names]
    if len(set(keys)) != len(keys) or "" in keys:
        raise DataError(f"labels {names} must be non-empty and distinct ignoring case and punctuation")
    return names


def _text(row: Record, key: str, kind: str) -> str:
    value = row.get(key)
    if not isinstance(value, str) or not value.strip():
        raise DataError(f"row {row.get('id')}: {kind} task needs a non-empty text {key!r}, got {value!r}")
    return value.strip()


def _record(kind: str, row: Record, labels: list[str] | None, task: str, skill: str) -> Record:
    """One row as a record of the task's kind; a row that does not fit fails with its id."""
    if "id" not in row:
        raise DataError(f"row {row!r} has no id (rows from load_rows have one)")
    instruction = _text(row, "instruction", kind)
    point = row.get("knowledge_point")
    record: Record = {
        "id": str(row["id"]),
        "instruction": instruction,
        "output": "",
        "knowledge_point": str(point) if point not in (None, "") else DEFAULT_POINT,
        "skill": skill,
        "difficulty": None,
        "facet": None,
    }
    if kind == "math":
        record["output"] = _text(row, "output", kind)
        record["answer"] = _gold_number(row, record["output"])
    elif kind == "classification":
        assert labels is not None  # _check_labels guarantees it
        label = _label_name(row, labels)
        record.update(
            instruction=render("task_classification", task=task, labels=labels, text=instruction),
            output=label,
            knowledge_point=label,
            label=label,
        )
    else:
        record["output"] = _text(row, "output", kind)
    return record


def _gold_number(row: Record, output: str) -> str:
    """The gold number: from a separate `answer` column when mapped, else the solution's `####` or box."""
    if "answer" in row:
        gold = extract_answer(str(row["answer"])) if row["answer"] is not None else None
        source = f"answer {row['answer']!r}"
    else:
        # extract_answer falls back to the last number of any text; a gold solution must state its answer.
        gold = extract_answer(output) if ("####" in output or "\\boxed" in output) else None
        source = f"solution ending {output[-80:]!r} (no '#### <number>' line or \\boxed{{}})"
    if gold is None:
        raise DataError(f"row {row['id']}: no gold number in its {source}")
    return gold


def _label_name(row: Record, labels: list[str]) -> str:
    """The label name of a row's `label`: an index into `labels` or a name (case and punctuation aside)."""
    value, where = row.get("label"), f"row {row['id']}"
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # CSV and pandas turn integer columns with gaps into floats
    if isinstance(value, str) and value.strip() not in labels and value.strip().lstrip("-").isdigit():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        if 0 <= value < len(labels):
            return labels[value]
        raise DataError(f"{where}: label {value} is not an index of the {len(labels)} labels {labels}")
    if isinstance(value, str):
        by_key = {_label_key(name): name for name in labels}
        if _label_key(value) in by_key:
            return by_key[_label_key(value)]
    raise DataError(f"{where}: label {value!r} is none of {labels} (nor an index into them)")


# -- checking answers -------------------------------------------------------------------------------
_NEGATIONS = frozenset({"not", "no", "never", "t"})  # "t" is what is left of "isn't" after splitting words


def _words(text: str) -> list[str]:
    return re.findall(r"[^\W_]+", unicodedata.normalize("NFKC", text).casefold())


def _label_words(label: str) -> list[str]:
    """'PlayMusic' -> ['play', 'music']; 'ABBR' -> ['abbr']: intent names are written as one camel-case word."""
    return _words(re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", label))


def _label_key(text: str) -> str:
    return "".join(_words(text))


def _mentioned(words: list[str], labels: Sequence[str]) -> set[str]:
    """Labels named in `words`, not negated, a label inside a longer named label ('positive' in 'very positive')
    not counted."""
    spans: list[tuple[int, int, str]] = []
    for label in labels:
        phrase, key = _label_words(label), _label_key(label)
        for i in range(len(words)):
            if words[i : i + len(phrase)] == phrase:
                end = i + len(phrase)
            elif words[i] == key:
                end = i + 1
            else:
                continue
            if i == 0 or words[i - 1] not in _NEGATIONS:
                spans.append((i, end, label))
    return {
        label
        for start, end, label in spans
        if not any(s <= start and end <= e and (e - s) > (end - start) for s, e, _ in spans)
    }


def normalize_label(prediction: str | None, labels: Sequence[str], max_words: int = 20) -> str | None:
    """The label a model's reply names (case, punctuation and camel case aside, or the one label named in a
    short reply), else None (no label, several, or a long reply)."""
    if not prediction or not prediction.strip():
        return None
    by_key = {_label_key(label): label for label in labels}
    text = prediction.strip()
    first = next(line for line in text.splitlines() if line.strip())
    for candidate in (text, first):
        if _label_key(candidate) in by_key:
            return by_key[_label_key(candidate)]
    for candidate in (first, text):
        words = _words(candidate)
        if len(words) <= max_words:
            named = _mentioned(words, labels)
            if named:
                return named.pop() if len(named) == 1 else None
    return None


def is_correct_for(
    kind: str, prediction: str | None, record: Record, labels: Sequence[str] | None = None
) -> bool | None:
    """Whether `prediction` answers `record` correctly: math by number, classification by label; None for open
    tasks, where a judge must decide."""
    if kind == "math":
        return numbers_equal(extract_answer(prediction), str(record["answer"]))
    if kind == "classification":
        if not labels:
            raise DataError(f"checking classification record {record.get('id')} needs the label set")
        return normalize_label(prediction, labels) == record["label"]
    if kind == "open":
        return None
    raise DataError(f"task kind {kind!r} is not one of {', '.join(KINDS)}")
