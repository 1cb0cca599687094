"""`gaploop detect` end to end on a tiny model: the report's numbers agree with the items it asked, the HTML
carries its plots, a run's student is investigated without re-asking its training items, and every bad
option is named."""

from __future__ import annotations

import base64
import itertools
import json
import re
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agents.llm.client import LLMClient
from agents.llm.scripted import ScriptedBackend
from agents.llm.types import ChatRequest
from agents.tasks.world import generate_items
from loop.cli import app
from loop.config import dump_config, load_config
from loop.detect import DetectOptions, run_detect
from loop.student import build_student
from loop.tracking import find_wandb_files, read_wandb_file

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
    if result.exc_info and not isinstance(result.exception, SystemExit):
        import traceback

        traceback.print_exception(*result.exc_info)
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
        for it, rate in p["trajectory"].items():
            asked = [i for i in mine if i["iteration"] == int(it)]
            assert rate == sum(not i["correct"] for i in asked) / len(asked)
    rates = [p["failure_rate"] for p in report["points"]]
    assert rates == sorted(rates, reverse=True)  # weakest first
    assert sum(c["asked"] for c in report["cells"]) == len(items)
    for c in report["cells"]:
        mine = [
            i
            for i in items
            if (i["knowledge_point"], i["difficulty"], i["facet"]) == (c["point"], c["difficulty"], c["facet"])
        ]
        assert c["asked"] == len(mine) and c["failed"] == sum(not i["correct"] for i in mine)
    for weak in report["weakest"]:
        assert weak["examples"] and all(
            x["point"] == weak["point"] and x["answer"] != x["expected"] for x in weak["examples"]
        )
    # The page stands alone: every plot is embedded, and each is a real PNG file beside it.
    page = (out / "report.html").read_text()
    pngs = sorted(out.glob("*.png"))
    assert {p.stem for p in pngs} >= {"failure_by_point", "search_trajectory", "failure_by_level", "failure_by_cell"}
    for png in pngs:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert base64.b64encode(png.read_bytes()).decode() in page
    assert "http" not in page.split("<body>")[1].split("Everything on this page")[0]  # no outside assets
    # W&B, offline without a key: the tables, histograms and plots are in the run's file.
    (wandb_file,) = find_wandb_files(out)
    logged = {k for row in read_wandb_file(wandb_file)["history"] for k in row}  # type: ignore[union-attr]
    for key in ("detect/points", "detect/worst", "detect/cell_failure_rate", "detect/failure_by_point"):
        assert f"{key}/_type" in logged, key
    assert "detect/failure_rate" in logged
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
    # With the run's own config.yaml and no config given, detect takes the run's (here: two points).
    run_cfg = load_config(overrides=[*SMALL[1:], "task.points=[cmp.max, seq.reverse]"])
    (run / "config.yaml").write_text(dump_config(run_cfg))
    got = CliRunner().invoke(app, ["detect", "tracking.wandb_mode=disabled", "--run", str(run), "--iterations", "0",
                                   "--per-node", "4", "--out", str(tmp_path / "own")])  # fmt: skip
    assert got.exit_code == 0, got.output
    assert {i["knowledge_point"] for i in _rows(tmp_path / "own" / "items.jsonl")} == {"cmp.max", "seq.reverse"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "/nonexistent"], "not a Hugging Face model folder"),
        (["--run", "/nonexistent"], "not a gaploop run directory"),
        (["--round", "2"], "--round picks a round of --run"),
        (["--model", "a", "--run", "b"], "give --model or --run, not both"),
        (["--per-node", "0"], "--per-node >= 1"),
        (["task.name=dataset"], "task.dataset section"),
        (["teacher.kind=llm", "teacher.llm.backend=openai"], "served model's name"),
        (["--domain", "arithmetic"], "need an LLM to write and judge"),
    ],
)
def test_bad_options_are_named(args: list[str], message: str, tmp_path: Path) -> None:
    code, output = _detect(*args, "--out", str(tmp_path / "r"), "tracking.wandb_mode=disabled")
    assert code == 2 and message in output, output


POINTS = [
    {"id": "two_digit_sums", "category": "arithmetic", "description": "adding two-digit numbers"},
    {"id": "letter_reversal", "category": "strings", "description": "reversing a few letters"},
]


def _answer(req: ChatRequest) -> str:
    q = req.messages[-1]["content"]
    m = re.match(r"What is (\d+) \+ (\d+)\?", q)
    return str(int(m[1]) + int(m[2])) if m else " ".join(reversed(q[len("Reverse ") : -1].split()))


def _toy_model(extra: list[tuple[str, object]] = ()) -> ScriptedBackend:  # type: ignore[assignment]
    """A scripted chat model for detect over a toy domain: it proposes POINTS, writes sums and reversals,
    answers them and judges the student's answers against its own."""
    counter = itertools.count()

    def write_test(req: ChatRequest) -> str:
        text, k = req.messages[-1]["content"], next(counter)
        if "two_digit_sums" in text or "three_digit" in text:
            return json.dumps({"key_point": "sums", "prompt": f"What is {10 + k} + {20 + k}?"})
        return json.dumps({"key_point": "reversal", "prompt": f"Reverse {'abcdefgh'[k % 8]} x {k}."})

    def judge(req: ChatRequest) -> str:
        text = req.messages[-1]["content"]
        reference = text.split("[The Start of Reference Answer]")[1].split("[The End")[0].strip()
        given = text.split("[The Start of Assistant's Answer]")[1].split("[The End")[0].strip()
        return "Rating: [[9]]" if given == reference else "Rating: [[2]]"

    return ScriptedBackend(
        [
            *extra,
            (
                r"build a taxonomy of test points for finding the weaknesses of a language model in toy",
                json.dumps(POINTS),
            ),
            (r"This task is to write test cases", write_test),
            (r"\[Question\]", judge),
            (r"^(What is|Reverse)", _answer),
        ]
    )


def _detect_with(client_backend: ScriptedBackend, model: Path, out: Path, *overrides: str, **options: object) -> Path:
    """`gaploop detect` with an injected chat client (what the CLI builds from the config)."""
    llm = ["teacher.kind=llm", "teacher.llm.backend=openai", "teacher.llm.model=m", "teacher.llm.base_url=http://x/v1"]
    cfg = load_config(overrides=[*SMALL, *llm, "tracking.wandb_mode=disabled", *overrides])
    opts = DetectOptions(model=str(model), out=str(out), domain="toy skills", **options)  # type: ignore[arg-type]
    client = LLMClient(client_backend, out.parent / "calls.sqlite")
    try:
        return run_detect(cfg, opts, client=client)
    finally:
        client.close()


def test_with_an_llm_the_model_proposes_the_taxonomy_writes_the_tests_and_judges(model: Path, tmp_path: Path) -> None:
    backend = _toy_model()
    out = _detect_with(backend, model, tmp_path / "report", iterations=1, per_node=3)
    answer = _answer
    items = _rows(out / "items.jsonl")
    report = json.loads((out / "report.json").read_text())
    assert [p["id"] for p in report["taxonomy"]] == ["two_digit_sums", "letter_reversal"]
    assert len(items) == 2 * 3 * 2 and {i["knowledge_point"] for i in items} == {"two_digit_sums", "letter_reversal"}
    for i in items:
        assert i["output"] == answer(ChatRequest([{"role": "user", "content": i["instruction"]}], None, "t"))  # type: ignore[arg-type]
        assert i["score"] in (9, 2) and i["correct"] == (i["score"] == 9) == (i["prediction"].strip() == i["output"])
    # Iteration 1 searched from the past items of each point (AutoDetect's history prompt).
    searches = [r for r in backend.calls if "Previous prompts on this test point" in r.messages[-1]["content"]]
    assert len(searches) == 6
    assert sum(report["scores"].values()) == 12 and (out / "judge_scores.png").exists()
    assert not (out / "failure_by_level.png").exists()  # free-text points have no levels
    assert report["cells"] == [] and not (out / "failure_by_cell.png").exists()
    assert all(p["worst_cell"] is None and 2 <= p["mean_score"] <= 9 for p in report["points"])


def test_the_autodetect_examiner_grows_the_taxonomy_between_iterations(model: Path, tmp_path: Path) -> None:
    """AutoDetect's Examiner in detect: after iteration 0 the model proposes a point, the judge accepts it, the
    examiner writes its first items (asked in iteration 1 beside the search's), and iteration 2 searches it like
    the others; the next proposal is [[Stop]], which ends growth."""
    proposals = iter(
        [json.dumps({"name": "three digit sums", "category": "arithmetic", "description": "adding 3-digit numbers"})]
    )
    backend = _toy_model(
        [
            (r"^This task is to map the weaknesses", lambda req: next(proposals, "[[Stop]]")),
            (r"^This task is to keep a taxonomy", "The point is new and testable. [[Yes]]"),
        ]
    )
    out = _detect_with(
        backend,
        model,
        tmp_path / "report",
        "examiner=autodetect",
        "examiner.new_point_probes=2",
        iterations=2,
        per_node=2,
    )
    items = _rows(out / "items.jsonl")
    report = json.loads((out / "report.json").read_text())
    assert [p["id"] for p in report["taxonomy"]] == ["two_digit_sums", "letter_reversal", "three_digit_sums"]
    per_iteration = [[i["knowledge_point"] for i in items if i["iteration"] == it] for it in range(3)]
    assert sorted(set(per_iteration[0])) == ["letter_reversal", "two_digit_sums"] and len(per_iteration[0]) == 4
    # The new point's first items come from the examiner (2), the old points' from the search (2 each).
    assert per_iteration[1].count("three_digit_sums") == 2 and len(per_iteration[1]) == 6
    first = [i for i in items if i["knowledge_point"] == "three_digit_sums" and i["iteration"] == 1]
    assert all(i.get("written_by") == "examiner" and i["output"] == _answer_of(i) for i in first)
    # Iteration 2: the search covers all three points; the second proposal was [[Stop]] (two proposals in all).
    assert per_iteration[2].count("three_digit_sums") == 2 and len(per_iteration[2]) == 6
    proposed = [r for r in backend.calls if r.messages[-1]["content"].startswith("This task is to map the weaknesses")]
    assert len(proposed) == 2
    assert any(p["point"] == "three_digit_sums" for p in report["points"])


def _answer_of(item: dict) -> str:
    return _answer(ChatRequest([{"role": "user", "content": item["instruction"]}], None, "t"))  # type: ignore[arg-type]
