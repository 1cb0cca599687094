"""`gaploop detect` end to end on a tiny model: the report's numbers agree with the items it asked, the HTML
carries its plots, a run's student is investigated without re-asking its training items, and every bad
option is named."""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agents.tasks.world import generate_items
from loop.cli import app
from loop.config import load_config
from loop.student import build_student

SMALL = ["task.points=[add.carry, seq.reverse, cmp.max, num.parity]", "student.tiny.hidden_size=32"]
SMALL += ["student.tiny.num_layers=1", "student.tiny.intermediate_size=64", "student.tiny.vocab_size=128"]


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained tiny student: it answers badly, which is all an investigation needs to have things to find."""
    cfg = load_config(overrides=SMALL)
    texts = [f"{i['instruction']}\n{i['output']}" for i in generate_items(0, {"add.carry": 50, "seq.reverse": 50})]
    return build_student(cfg, tmp_path_factory.mktemp("detect") / "model", texts)


def _detect(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["detect", *SMALL, *args])
    return result.exit_code, result.output + (str(result.exception) if result.exception else "")


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_detect_writes_a_report_that_agrees_with_its_items(model: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    code, output = _detect(
        "tracking.wandb_mode=offline", "--model", str(model), "--iterations", "2", "--per-node", "5", "--out", str(out)
    )
    assert code == 0, output
    items = _rows(out / "items.jsonl")
    report = json.loads((out / "report.json").read_text())
    assert len(items) == 4 * 5 * 3 and len({i["instruction"] for i in items}) == len(items)
    assert [r["items"] for r in report["iterations"]] == [20, 20, 20]
    assert report["overall"]["failed"] == sum(not i["correct"] for i in items)
    for p in report["points"]:
        mine = [i for i in items if i["knowledge_point"] == p["point"]]
        assert p["items"] == len(mine) == 15 and p["failed"] == sum(not i["correct"] for i in mine)
        assert p["ci_low"] <= p["failure_rate"] <= p["ci_high"]
        first = [i for i in mine if i["iteration"] == 0]
        assert p["sweep_failure_rate"] == sum(not i["correct"] for i in first) / len(first)
    rates = [p["failure_rate"] for p in report["points"]]
    assert rates == sorted(rates, reverse=True)  # weakest first
    for weak in report["weakest"]:
        assert weak["examples"] and all(
            x["point"] == weak["point"] and x["answer"] != x["expected"] for x in weak["examples"]
        )
    # The page stands alone: every plot is embedded, and each is a real PNG file beside it.
    page = (out / "report.html").read_text()
    pngs = sorted(out.glob("*.png"))
    assert {p.stem for p in pngs} >= {"failure_by_point", "search_trajectory", "failure_by_level"}
    for png in pngs:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert base64.b64encode(png.read_bytes()).decode() in page
    assert "http" not in page.split("<body>")[1].split("Everything on this page")[0]  # no outside assets
    assert list((out / "wandb").glob("offline-run-*/run-*.wandb"))  # W&B, offline without a key
    assert "weakest points" in output and "(and report.json)" in output  # the summary table, the path
    # The same folder is not overwritten.
    code, output = _detect("--model", str(model), "--out", str(out))
    assert code == 2 and "a report is already there" in output


def test_a_runs_student_is_investigated_without_its_training_items(model: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / "round_001").mkdir(parents=True)
    (run / "manifest.json").write_text("{}")
    shutil.copytree(model, run / "round_001" / "model")
    pool = generate_items(0, {"add.carry": 40, "cmp.max": 40}, 2, split="seed")
    (run / "round_000").mkdir()
    (run / "round_000" / "items.jsonl").write_text("".join(json.dumps({**r, "kept": True}) + "\n" for r in pool))
    out = tmp_path / "report"
    code, output = _detect(
        "tracking.wandb_mode=disabled", "--run", str(run), "--iterations", "1", "--per-node", "8", "--out", str(out)
    )
    assert code == 0, output
    report = json.loads((out / "report.json").read_text())
    assert report["student"] == f"the round-1 student of {run}"
    asked = {i["instruction"] for i in _rows(out / "items.jsonl")}
    assert len(asked) == 64 and not asked & {str(r["instruction"]) for r in pool}
    code, output = _detect("--run", str(run), "--round", "0", "--out", str(tmp_path / "x"))
    assert code == 2 and "no student of that round (there are: round_001)" in output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "/nonexistent"], "not a Hugging Face model folder"),
        (["--run", "/nonexistent"], "not a gaploop run directory"),
        (["--round", "2"], "--round picks a round of --run"),
        (["--model", "a", "--run", "b"], "give --model or --run, not both"),
        (["--per-node", "0"], "--per-node >= 1"),
        (["task.name=dataset"], "task.dataset section"),
        (["teacher.kind=llm"], "not built yet"),
    ],
)
def test_bad_options_are_named(args: list[str], message: str, tmp_path: Path) -> None:
    code, output = _detect(*args, "--out", str(tmp_path / "r"), "tracking.wandb_mode=disabled")
    assert code == 2 and message in output, output
