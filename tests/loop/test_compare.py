"""`gaploop compare`: runs side by side, grouped by strategy or seed; the numbers agree with the runs' summary.json
files, unfinished rounds and bad folders are said, the command writes its page and plots, and
scripts/bench_ablation.py prints through the same tables."""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from loop.compare import CompareError, Run, load, strategy_labels
from loop.config import dump_config, load_config
from loop.runner import Runner, start_run
from loop.store import RunStore
from tests.helpers import TINY, rows

ROOT = Path(__file__).resolve().parents[2]
RUNS = ("weakness-s0", "weakness-s1", "random-s0")  # the names bench_ablation gives (strategy, seed) runs
WEAKNESS, RANDOM = "weakness x generator", "random x generator"


def _stamp(run: Path, index: int) -> None:
    """Give every round of a run test accuracies of its own. At this size the tiny student scores 0 on every
    point (measured), which would let a mix-up of runs, rounds or points pass unseen; compare reads accuracy from
    summary.json alone, so the values are set there: overall, per skill and per point."""
    for path in sorted(run.glob("round_*/summary.json")):
        summary = json.loads(path.read_text())
        m, r = summary["metrics"], summary["round"]
        points = sorted(k for k in m if k.startswith("test/point/"))
        for j, key in enumerate(points):
            m[key] = ((3 * index + 2 * j + r) % 9) / 10
        m["test/accuracy"] = statistics.fmean(m[k] for k in points)
        path.write_text(json.dumps(summary))


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three 1-round runs in one folder: weakness seeds 0 and 1, random seed 0 (it shares weakness-s0's round 0,
    as test_plugins' strategy runs do, to save one training)."""
    root = tmp_path_factory.mktemp("compare")
    base = root / "base"
    start_run(load_config(None, [*TINY, "rounds.max_rounds=0", f"run_dir={base}"]))
    for name, plan in (("weakness-s0", "weakness"), ("random-s0", "random")):
        run = root / "runs" / name
        shutil.copytree(base, run)
        cfg = load_config(None, [*TINY, "rounds.max_rounds=1", f"synthesis.plan={plan}", f"run_dir={run}"])
        (run / "config.yaml").write_text(dump_config(cfg))
        Runner(cfg, RunStore(run)).execute()
    start_run(load_config(None, [*TINY, "rounds.max_rounds=1", "seed=1", f"run_dir={root / 'runs' / 'weakness-s1'}"]))
    for index, name in enumerate(RUNS):
        _stamp(root / "runs" / name, index)
    return root / "runs"


def _metrics(run: Path) -> list[dict[str, float]]:
    return [json.loads(p.read_text())["metrics"] for p in sorted(run.glob("round_*/summary.json"))]


def _mean_std(values: list[float]) -> tuple[float, float | None]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


def test_groups_by_strategy_agree_with_the_summaries(runs: Path) -> None:
    got = load([runs], baseline=RANDOM)
    groups = {g["group"]: g for g in got["groups"]}
    assert {g: groups[g]["runs"] for g in groups} == {WEAKNESS: ["weakness-s0", "weakness-s1"], RANDOM: ["random-s0"]}
    members = {WEAKNESS: ["weakness-s0", "weakness-s1"], RANDOM: ["random-s0"]}
    for label, names in members.items():
        metrics = [_metrics(runs / n) for n in names]
        g = groups[label]
        for key, i in (("first", 0), ("final", -1)):
            mean, std = _mean_std([m[i]["test/accuracy"] for m in metrics])
            assert g[key]["mean"] == pytest.approx(mean) and g[key]["std"] == pytest.approx(std)
        assert [x["round"] for x in g["by_round"]] == [0, 1]
        for x in g["by_round"]:
            mean, _ = _mean_std([m[x["round"]]["test/accuracy"] for m in metrics])
            assert (x["mean"], x["n"]) == (pytest.approx(mean), len(names))
        written = [sum(r.get("synth/candidates", 0) for r in m) for m in metrics]
        kept = [sum(r.get("synth/kept", 0) for r in m) for m in metrics]
        assert (g["written"]["mean"], g["kept"]["mean"]) == (
            pytest.approx(statistics.fmean(written)),
            pytest.approx(statistics.fmean(kept)),
        )
        assert g["tokens"]["n"] == 0, "no LLM answered, so no teacher tokens"
        for p in got["points"]:
            cell = p["groups"][label]
            mean, std = _mean_std([m[-1][f"test/point/{p['point']}"] for m in metrics])
            assert cell["final"]["mean"] == pytest.approx(mean) and cell["final"]["std"] == pytest.approx(std)
            items = [rows(runs / n / "round_001" / "items.jsonl") for n in names]
            counted = [Counter(i["knowledge_point"] for i in its if i["kept"])[p["point"]] for its in items]
            assert cell["kept"] == pytest.approx(statistics.fmean(counted))
    # The stamped values, by hand: weakness 0.3 -> 0.4 (seed 0) and 0.375 -> 0.475 (seed 1); random 0.45 -> 0.325.
    assert groups[WEAKNESS]["final"]["mean"] == pytest.approx(0.4375)
    assert groups[WEAKNESS]["final"]["std"] == pytest.approx(statistics.stdev([0.4, 0.475]))
    assert groups[RANDOM]["final"]["std"] is None  # one run: no spread to state
    assert groups[WEAKNESS]["vs_baseline"] == pytest.approx(0.4375 - 0.325)
    assert groups[WEAKNESS]["gain"] == pytest.approx(0.4375 - 0.3375)


def test_grouped_by_seed(runs: Path) -> None:
    got = load([runs / "weakness-s0", runs / "weakness-s1", runs / "random-s0"], by="seed")
    assert {g["group"]: g["runs"] for g in got["groups"]} == {
        "seed 0": ["weakness-s0", "random-s0"],
        "seed 1": ["weakness-s1"],
    }
    assert {r["run"]: r["strategy"] for r in got["runs"]}["random-s0"] == RANDOM
    with pytest.raises(CompareError, match="--by 'plan': one of strategy, seed"):
        load([runs], by="plan")
    with pytest.raises(CompareError, match="--baseline 'random': not a group; the groups are 'seed 0', 'seed 1'"):
        load([runs], by="seed", baseline="random")


def test_settings_that_differ_split_a_strategy() -> None:
    def run(plan: dict, budget: int) -> Run:
        cfg = {"synthesis": {"plan": plan, "writer": {"name": "generator"}, "budget_per_round": budget}}
        return Run(Path("x"), cfg, "finished")

    flat, curriculum = run({"name": "frontier", "curriculum": False}, 8), run({"name": "frontier"}, 8)
    labels = strategy_labels([flat, curriculum, run({"name": "random"}, 16)])
    assert labels == [
        "frontier x generator (plan.curriculum=false)",
        "frontier x generator (plan.curriculum=unset)",
        "random x generator",
    ]


def test_bad_folders_and_unfinished_rounds_are_named(runs: Path, tmp_path: Path) -> None:
    with pytest.raises(CompareError, match="is not a run directory \\(no manifest.json\\) nor a folder of runs"):
        load([tmp_path])
    with pytest.raises(CompareError, match="nowhere: no such folder"):
        load([tmp_path / "nowhere"])
    cut = tmp_path / "cut"
    shutil.copytree(runs / "weakness-s1", cut)
    (cut / "round_001" / "summary.json").unlink()  # round 1 cut short before its summary
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    shutil.copy(runs / "weakness-s0" / "manifest.json", fresh)
    shutil.copy(runs / "weakness-s0" / "config.yaml", fresh)
    got = load([runs / "weakness-s0", cut, fresh])
    assert "cut: round 1 not finished (no summary.json): skipped" in got["notes"]
    assert any(n.startswith("fresh: no round finished yet") and n.endswith("left out") for n in got["notes"])
    row = {r["run"]: r for r in got["runs"]}["cut"]
    assert row["rounds"] == [0] and row["final"] == _metrics(cut)[0]["test/accuracy"]
    (g,) = got["groups"]
    assert g["by_round"][1]["n"] == 1, "round 1's mean is over the one run that finished it"
    assert any("its runs end at rounds 0, 1" in n for n in got["notes"])
    (cut / "round_000" / "summary.json").write_text("{cut short")
    with pytest.raises(CompareError, match="round_000/summary.json: cannot be read \\(JSONDecodeError"):
        load([cut])
    empty = tmp_path / "empty"
    empty.mkdir()
    cli = [sys.executable, "-m", "loop.cli", "compare", str(runs), str(empty)]
    bad = subprocess.run(cli, capture_output=True, text=True, timeout=120, check=False)
    assert bad.returncode == 2 and f"{empty} is not a run directory" in bad.stderr


def test_the_command_prints_and_writes_its_page_and_plots(runs: Path, tmp_path: Path) -> None:
    out = tmp_path / "cmp"
    cli = [sys.executable, "-m", "loop.cli", "compare", str(runs), "--by", "seed", "--out", str(out)]
    done = subprocess.run(cli, capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr
    assert "seed 0" in done.stdout and "seed 1" in done.stdout and f"wrote {out / 'compare.html'}" in done.stdout
    plots = {p.name for p in out.glob("*.png")}
    assert plots == {"accuracy_by_round.png", "final_accuracy.png", "points.png", "items.png"}
    assert all((out / p).stat().st_size > 10_000 for p in plots)
    page = (out / "compare.html").read_text()
    assert page.count("src='data:image/png;base64,") == len(plots) and "src='http" not in page
    data = json.loads((out / "compare.json").read_text())
    assert data == json.loads(json.dumps(load([runs], by="seed"), default=str))


def test_bench_ablation_prints_through_compare(runs: Path, tmp_path: Path) -> None:
    """Its runs are all there and finished, so the script only reads them back and prints."""
    script = [sys.executable, str(ROOT / "scripts" / "bench_ablation.py"), "--out", str(runs)]
    done = subprocess.run(
        [*script, "--seeds", "0", "--strategies", "weakness", "random"],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert "held-out test accuracy, mean ± std over each group's runs" in text and "vs random" in text
    assert "weak points" in text and "per knowledge point" in text
    # seed 0 alone: weakness-s0's final against random-s0's, as their summaries hold.
    weakness, random = (_metrics(runs / n)[-1]["test/accuracy"] for n in ("weakness-s0", "random-s0"))
    assert f"{weakness - random:+.3f}" in text and f"{random:.3f}" in text
    assert (runs / "compare" / "compare.html").is_file()
    shutil.rmtree(runs / "compare")  # the other tests read `runs` as a folder of runs only
