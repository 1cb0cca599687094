"""The Rainbow archive in the real loop (tiny student, task world, DeepSpeed on CPU): the archive is kept in
the round's state, its elites are asked as probes after training and seed the `perturb` writer, its QD-score
and coverage reach metrics.jsonl, and a run killed in the middle of a round (SIGKILL, at the test hook) resumes
to the same archive, items and probes as a run that was never stopped."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agents.tasks.world import point_of, solve
from loop.config import load_config
from loop.runner import start_run
from tests.helpers import TINY_STUDENT, kill_when_held, rows, start

RAINBOW = [
    "task.points=[add.carry, seq.first, cmp.max, word.sub]",
    "task.seed_per_point=30",
    "task.seed_overrides={word.sub: 3}",
    "task.test_per_point=8",
    "task.probe_per_point=8",
    *TINY_STUDENT,
    "rounds.max_rounds=2",
    "rounds.plateau_rounds=5",
    "synthesis.plan={name: rainbow, iterations: 3, mutations: 6}",
    "synthesis.writer=perturb",
    "synthesis.budget_per_round=12",
    "tracking.wandb_mode=disabled",
]
STATE = "state/plan-rainbow.json"


def _outputs(run: Path) -> dict[str, object]:
    """What must not depend on a crash: each round's archive, items and probes."""
    return {
        f"round {r}": {
            "archive": json.loads((run / f"round_{r:03d}" / STATE).read_text()),
            "items": [
                (i["id"], i["instruction"], i["kept"], i.get("drop_reason"))
                for i in rows(run / f"round_{r:03d}/items.jsonl")
            ],
            "probes": [
                (p["id"], p["instruction"], p["correct"]) for p in rows(run / f"round_{r:03d}/eval_probe.jsonl")
            ],
        }
        for r in (1, 2)
    }


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("rainbow") / "run"
    _, rounds = start_run(load_config(overrides=[*RAINBOW, f"run_dir={run}"]))
    assert len(rounds) == 3
    return run


def test_the_archive_persists_becomes_probes_and_seeds_and_is_logged(reference: Path) -> None:
    run = reference
    first = json.loads((run / "round_001" / STATE).read_text())
    second = json.loads((run / "round_002" / STATE).read_text())
    assert [h["round"] for h in second["history"]] == [1, 2] and second["history"][0] == first["history"][0]
    assert first["elites"] and second["made"] > first["made"]
    # every elite is valid by the oracle and sits in the cell of its point and style
    for row in second["elites"]:
        item = row["item"]
        assert solve(item["instruction"]) == item["output"] and point_of(item["instruction"]) == row["cell"][0]
        assert item["style"] == row["cell"][1]
    # the elites of round r are asked as probes after round r's training
    for r, state in ((1, first), (2, second)):
        probes = [p for p in rows(run / f"round_{r:03d}/eval_probe.jsonl") if p.get("source") == "archive"]
        assert [p["id"] for p in probes] == [row["item"]["id"] for row in state["elites"]]
        assert all(p["output"] == solve(p["instruction"]) and "correct" in p for p in probes)
    # the writer wrote new items from the failing elites, in their style, never an elite or a probe
    items = [i for i in rows(run / "round_002/items.jsonl") if i["instruction"]]
    parents = {row["item"]["id"]: row["item"] for row in second["elites"]}
    assert items and all(i["writer"] == "perturb" and i["parent_id"] in parents for i in items)
    assert all(i["style"] == parents[i["parent_id"]]["style"] for i in items)
    asked = {p["instruction"] for r in (0, 1, 2) for p in rows(run / f"round_{r:03d}/eval_probe.jsonl")}
    assert not asked & {i["instruction"] for i in items if i["kept"]}, "a probe reached training"
    assert any(i["kept"] for i in items)
    # the round's metrics carry the archive's QD-score and coverage
    metrics = {m["round"]: m for m in rows(run / "metrics.jsonl") if "test/accuracy" in m}
    for r, state in ((1, first), (2, second)):
        log = state["history"][-1]
        assert metrics[r]["archive/qd_score"] == log["qd_score"] and metrics[r]["archive/coverage"] == log["coverage"]
    assert "archive/qd_score" not in metrics[0]


def test_killed_in_the_middle_of_rounds_then_resumed_gives_the_same_archive(reference: Path, tmp_path: Path) -> None:
    run, log = tmp_path / "run", tmp_path / "log.txt"
    log.write_text("")
    # Killed after round 1's archive was built but before it was written; then in round 2 after the
    # archive of round 2 and the training on its items, before the elites are asked as probes.
    proc = start(["run", *RAINBOW, f"run_dir={run}"], "round_001/question", log)
    kill_when_held(proc, log, "round_001/question")
    assert not (run / "round_001" / STATE).exists()
    proc = start(["resume", str(run)], "round_002/evaluate", log)
    kill_when_held(proc, log, "round_002/evaluate")
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["phases"]["round_002/evaluate"]["status"] == "running"
    assert manifest["phases"]["round_002/question"]["status"] == "done"
    proc = start(["resume", str(run)], None, log)
    assert proc.wait(timeout=600) == 0, log.read_text()[-3000:]
    assert _outputs(run) == _outputs(reference)
    got = [m["round"] for m in rows(run / "metrics.jsonl") if "test/accuracy" in m]
    assert got == [0, 1, 2], "a round was logged twice or not at all"
