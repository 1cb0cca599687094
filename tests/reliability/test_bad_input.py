"""Bad input, swept: every config field given a wrong type and, where it has bounds, a value out of range
(generated from the schema, not listed by hand), and data files with the faults users' files have. Each gets
an error naming what was wrong and where, before any run directory exists, or is read as meant."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
import types
import typing
from pathlib import Path

import annotated_types
import pytest
from pydantic import BaseModel
from typer.testing import CliRunner

from agents.tasks.datasets import DataError, load_rows
from core.jsonl import DataFileError, read_jsonl
from core.models import (
    ModelConversionError,
    ModelFolderError,
    ModelNotFoundError,
    alias_path,
    check_model,
)
from loop.cli import app
from loop.config import ConfigError, RunConfig, load_config
from loop.runner import start_run

WRONG_TYPE = object()


def _model_in(annotation: object) -> type[BaseModel] | None:
    """The config section an annotation holds (X or X | None), else None (a list of sections is a leaf: its
    items cannot be set one field at a time; `tests/loop/test_config.py` covers `synthesis.mix`'s)."""
    if typing.get_origin(annotation) not in (None, typing.Union, types.UnionType):
        return None
    args = [a for a in typing.get_args(annotation) if a is not type(None)] or [annotation]
    if len(args) == 1 and isinstance(args[0], type) and issubclass(args[0], BaseModel):
        return args[0]
    return None


def _leaves(model: type[BaseModel], prefix: str = "") -> list[tuple[str, object, list[object]]]:
    """(dotted path, annotation, constraints) of every scalar field under `model`."""
    out = []
    for name, field in model.model_fields.items():
        if field.deprecated or (field.description or "").startswith("deprecated"):
            continue
        section = _model_in(field.annotation)
        if section is not None:
            out += _leaves(section, f"{prefix}{name}.")
        else:
            out.append((f"{prefix}{name}", field.annotation, list(field.metadata)))
    return out


def _wrong_value(annotation: object) -> str | None:
    """An override value (YAML) of the wrong type for `annotation`; None where every type is allowed."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        kinds = {_wrong_value(a) for a in args if a is not type(None)}
        return kinds.pop() if len(kinds) == 1 else None  # a value wrong for every member, or skip
    if origin is typing.Literal:
        return "no_such_choice_zz"
    if annotation is bool:
        return "maybe"
    if annotation in (int, float):
        return "not-a-number"
    if annotation in (str, Path):
        return "{a: 1}"
    if origin in (list, tuple, set) or annotation in (list, tuple):
        return "7"
    if origin is dict or annotation is dict:
        return "[1, 2]"
    return None


def _out_of_range(metadata: list[object], annotation: object) -> str | None:
    is_int = annotation is int or int in typing.get_args(annotation)
    step = 1 if is_int else 0.5
    for m in metadata:
        if isinstance(m, annotated_types.Ge):
            return str(m.ge - step)
        if isinstance(m, annotated_types.Gt):
            return str(m.gt)
        if isinstance(m, annotated_types.Le):
            return str(m.le + step)
        if isinstance(m, annotated_types.Lt):
            return str(m.lt)
    return None


CASES = []
for _path, _annotation, _metadata in _leaves(RunConfig):
    # A field of several types (a plugin given by name or by its options) gets a name that names nothing.
    value = _wrong_value(_annotation) or "no_such_plugin_zz"
    CASES.append(pytest.param(_path, value, id=f"{_path}=type"))
    if (value := _out_of_range(_metadata, _annotation)) is not None:
        CASES.append(pytest.param(_path, value, id=f"{_path}=range"))


def test_the_sweep_covers_the_schema() -> None:
    leaves = _leaves(RunConfig)
    assert len(leaves) > 80 and len(CASES) > 100, (len(leaves), len(CASES))


@pytest.mark.parametrize(("path", "value"), CASES)
def test_every_field_refuses_a_wrong_value_naming_it(path: str, value: str, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    with pytest.raises(ConfigError) as err:
        load_config(None, [f"{path}={value}"] + ([f"run_dir={run_dir}"] if path != "run_dir" else []))
    assert path in str(err.value), str(err.value)
    assert not run_dir.exists()  # refused before any work


BAD_ROWS = {
    "missing field": ('{"instruction": "a", "output": "b"}\n{"instruction": "c"}\n', ":2: missing field(s) output"),
    "empty field": (
        '{"instruction": "a", "output": "b"}\n{"instruction": "  ", "output": "d"}\n',
        ":2: empty field(s) instruction",
    ),
    "not JSON": ('{"instruction": "a", "output": "b"}\n{"instruction": "c", \n', ":2: not valid JSON"),
    "not an object": ('{"instruction": "a", "output": "b"}\n["c", "d"]\n', ":2: expected a JSON object, got list"),
}


@pytest.mark.parametrize("case", sorted(BAD_ROWS))
def test_a_bad_row_is_named_by_file_and_line_or_skipped_and_counted(case: str, tmp_path: Path) -> None:
    text, message = BAD_ROWS[case]
    path = tmp_path / "data.jsonl"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DataFileError, match=f"{path}{message}".replace("(", r"\(").replace(")", r"\)")):
        read_jsonl(path, required=("instruction", "output"), non_empty=("instruction", "output"))
    report = read_jsonl(path, ("instruction", "output"), ("instruction", "output"), skip_malformed=True)
    assert [r["instruction"] for r in report.rows] == ["a"] and [n for n, _ in report.skipped] == [2]


def test_invalid_utf8_is_named_by_line(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    path.write_bytes(b'{"instruction": "a", "output": "b"}\n{"instruction": "\xff\xfe", "output": "d"}\n')
    with pytest.raises(DataFileError, match=rf"{path}:2: not valid UTF-8 \(byte 0xff at byte 18 of the line\)"):
        read_jsonl(path, required=("instruction", "output"))


def test_a_bom_crlf_line_ends_and_a_10_mb_row_are_read_as_meant(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    big = "x" * 10_000_000
    rows = [{"instruction": "a", "output": "b"}, {"instruction": "c", "output": big}]
    path.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(json.dumps(r) for r in rows).encode() + b"\r\n")
    report = read_jsonl(path, required=("instruction", "output"))
    assert report.rows == rows and report.skipped == []


DATASET_FAULTS = {
    "not UTF-8": (b'{"q": "a", "a": "1"}\n{"q": "\xff", "a": "2"}\n', r"bad.jsonl:2: not valid UTF-8"),
    "a missing column": (b'{"q": "a", "a": "1"}\n{"q": "b"}\n', r"bad.jsonl row bad-train-1: no value for 'a'"),
    "an empty instruction": (
        b'{"q": "a", "a": "1"}\n{"q": " ", "a": "2"}\n',
        r"row bad-train-1: the instruction is empty",
    ),
    "not JSON": (b'{"q": "a", "a": "1"}\n{"q": \n', r"bad.jsonl: cannot read it as json"),
}


@pytest.mark.parametrize("case", sorted(DATASET_FAULTS))
def test_a_bad_dataset_file_is_named_before_the_run_directory_exists(case: str, tmp_path: Path) -> None:
    data, message = DATASET_FAULTS[case]
    bad, good = tmp_path / "bad.jsonl", tmp_path / "good.jsonl"
    bad.write_bytes(data)
    good.write_text('{"q": "What is 2 + 2?", "a": "#### 4"}\n', encoding="utf-8")
    run_dir = tmp_path / "run"
    overrides = [f"task.dataset.source={bad}", f"task.dataset.test_source={good}", f"run_dir={run_dir}"]
    overrides += ["task.dataset.fields={instruction: q, output: a}", "tracking.wandb_mode=disabled"]
    cfg = load_config("configs/smollm2_gsm8k.yaml", overrides)
    with pytest.raises(DataError, match=message):
        start_run(cfg)
    assert not run_dir.exists()


def test_a_bom_and_crlf_dataset_file_reads_as_meant(tmp_path: Path) -> None:
    path = tmp_path / "win.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"q": "a", "a": "1"}\r\n{"q": "b", "a": "2"}\r\n')
    rows = load_rows(str(path), None, {"instruction": "q", "output": "a"})
    assert [(r["instruction"], r["output"]) for r in rows] == [("a", "1"), ("b", "2")]


def _model_folder(root: Path, fault: str) -> Path:
    """A folder that looks like a small Llama model, with one fault."""
    from transformers import LlamaConfig

    folder = root / f"model_{fault.replace(' ', '_')}"
    folder.mkdir()
    config = LlamaConfig(
        vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2
    )
    config.save_pretrained(folder)
    (folder / "tokenizer.json").write_text("{}")
    if fault == "no config":
        (folder / "config.json").unlink()
    elif fault == "config not JSON":
        (folder / "config.json").write_text('{"model_type": "llama", ')
    elif fault == "unknown model type":
        (folder / "config.json").write_text('{"model_type": "no_such_architecture_zz"}')
    elif fault == "no tokenizer":
        (folder / "tokenizer.json").unlink()
    return folder


MODEL_FAULTS = {
    "no config": "no config.json, so not an HF model folder",
    "config not JSON": "config.json: cannot be read as a model config",
    "unknown model type": "config.json: cannot be read as a model config",
    "no tokenizer": "no tokenizer",
}


@pytest.mark.parametrize("fault", sorted(MODEL_FAULTS))
def test_a_broken_model_folder_is_named_before_the_run_directory_exists(fault: str, tmp_path: Path) -> None:
    folder, run_dir = _model_folder(tmp_path, fault), tmp_path / "run"
    for field in ("student.model", "ifd.model"):
        cfg = load_config(None, [f"{field}={folder}", f"run_dir={run_dir}", "tracking.wandb_mode=disabled"])
        with pytest.raises(ModelFolderError, match=f"^{field} .*{MODEL_FAULTS[fault]}"):
            start_run(cfg)
        assert not run_dir.exists()


def test_a_model_path_that_does_not_exist_is_named_and_a_hub_name_is_left_to_the_loader(tmp_path: Path) -> None:
    with pytest.raises(ModelFolderError, match=f"^student.model {tmp_path}/nowhere: no such folder"):
        check_model(str(tmp_path / "nowhere"))
    check_model("HuggingFaceTB/SmolLM2-135M-Instruct")  # not here: a hub name, fetched (or not) when loaded
    check_model(_model_folder(tmp_path, "none"))  # a whole folder passes


def _not_a_gguf(root: Path, kind: str) -> Path:
    """x.gguf that is no GGUF model."""
    rng = random.Random(0)
    if kind == "random bytes":
        data = rng.randbytes(4096)
    elif kind == "the GGUF magic, then random bytes":
        data = b"GGUF" + rng.randbytes(4096)
    else:  # the first 4 KB of a real one, as a download cut short leaves it
        try:
            with open(alias_path("smollm2-135m-instruct"), "rb") as fh:
                data = fh.read(4096)
        except ModelNotFoundError as err:
            pytest.skip(f"no real GGUF file to cut short here: {err}")
    path = root / "x.gguf"
    path.write_bytes(data)
    return path


NOT_GGUF = {
    "random bytes": (ModelNotFoundError, r"x.gguf is not a GGUF file \(it starts with b'"),
    # Before, the GGUF reader's own struct.error (and, in a fuzz of 80 damaged files, an OverflowError) escaped.
    "the GGUF magic, then random bytes": (ModelConversionError, r"transformers cannot load the GGUF file .*x.gguf"),
    "a real GGUF cut short": (ModelConversionError, r"x.gguf \(cut short, or not a GGUF model\): error: unpack_from"),
}


@pytest.mark.parametrize("kind", sorted(NOT_GGUF))
def test_a_gguf_that_is_not_one_is_named_before_any_folder_is_made(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GAPLOOP_CACHE", str(tmp_path / "cache"))
    gguf, run_dir, out = _not_a_gguf(tmp_path, kind), tmp_path / "run", tmp_path / "detect"
    error, message = NOT_GGUF[kind]
    for field in ("student.model", "ifd.model"):
        cfg = load_config(None, [f"{field}={gguf}", f"run_dir={run_dir}", "tracking.wandb_mode=disabled"])
        with pytest.raises(error, match=message):
            start_run(cfg)
        assert not run_dir.exists()
    got = CliRunner().invoke(app, ["detect", "tracking.wandb_mode=disabled", "--model", str(gguf), "--out", str(out)])
    assert got.exit_code == 2 and "--model: " in got.output, got.output
    assert not out.exists()  # before: the report folder was made, then the model named


def test_a_dataset_file_with_a_10_mb_row_is_read_and_trained_on_in_bounded_memory(tmp_path: Path) -> None:
    """One question of 10 MB in the train split of a dataset task: round 0 takes it into the seed, trains on it
    (cut to student.max_length tokens) and finishes; no hang, no memory blow-up."""
    rows = [{"q": f"Tom has {a} apples and buys {a + 1} more. How many?", "a": f"#### {2 * a + 1}"} for a in range(35)]
    big = " ".join(random.Random(0).choice(["apples", "pears", "costs", "many"]) for _ in range(2_000_000))
    rows[3]["q"] = big + " How many apples?"
    train, test = tmp_path / "train.jsonl", tmp_path / "test.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in rows[:25]))  # every row is drawn: 20 seed, 5 probes
    test.write_text("".join(json.dumps(r) + "\n" for r in rows[25:]))
    assert train.stat().st_size > 10_000_000
    run = tmp_path / "run"
    args = ["configs/smollm2_gsm8k.yaml", "student.model=tiny", "student.template=plain", "student.max_length=64"]
    args += ["student.max_new_tokens=8", "rounds.max_rounds=0", f"task.dataset.source={train}"]
    args += [f"task.dataset.test_source={test}", "task.dataset.seed_count=20", "task.dataset.probe_count=5"]
    args += ["task.dataset.test_count=10", "training.epochs=null", "training.max_steps=5", "training.grad_accum=1"]
    args += ["teacher.llm.backend=openai", "teacher.llm.model=unused", "teacher.llm.base_url=http://127.0.0.1:9/v1"]
    args += ["task.dataset.fields={instruction: q, output: a}", "tracking.wandb_mode=disabled", f"run_dir={run}"]
    log = tmp_path / "log.txt"
    t0 = time.monotonic()
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "loop.cli", "run", *args], stdout=out, stderr=subprocess.STDOUT)
    _, status, usage = os.wait4(proc.pid, 0)  # the peak RSS of the run and of every child it waited for
    proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.monotonic() - t0
    assert proc.returncode == 0, log.read_text()[-3000:]
    drawn = {
        f: [json.loads(x)["instruction"] for x in (run / f).read_text().splitlines()]
        for f in ("round_000/items.jsonl", "probe.jsonl")
    }
    where = [f for f, questions in drawn.items() if big + " How many apples?" in questions]
    assert where, "the 10 MB row was cut or skipped"
    peak_gb = usage.ru_maxrss / 1024**2
    print(f"10 MB row: {seconds:.0f} s, peak RSS {peak_gb:.2f} GB, in {where[0]}")
    assert peak_gb < 4, f"peak RSS {peak_gb:.2f} GB for a 10 MB row"
