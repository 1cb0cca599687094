"""The Rainbow archive against `gaploop detect`'s search over the task world, at an equal item budget: the
failure rate of the items the student was asked, and how many distinct cells with a failure each found.

    .venv/bin/python scripts/bench_rainbow.py --run RUN_DIR [--round 0] [--per-node 10] [--iterations 3]
        [--mutations 10] [--seeds 0 1 2]

The student is a run's (RUN_DIR/round_NNN/model); no question of the run's training pool or test is asked.
Both methods start from the same sweep, detect's iteration 0 (--per-node items of every point at the task
level). Detect then runs --iterations search iterations of --per-node items per point (Thompson sampling over
level x facet cells, agents/search.py). Rainbow offers the sweep's graded items to its (point, plain) cells and
spends exactly as many further items in MAP-Elites steps of --mutations candidates (agents/plans/rainbow.py with
every style); a candidate dropped before the student sees it (BLEU, a known question) costs nothing.

Counted per method: items asked; the failure rate of all of them and of those after the shared sweep; the
distinct knowledge points, (point, facet) pairs and (point, style) pairs with at least one failure; and the
failing cells of the method's own grid (detect: point x level x facet; Rainbow: point x style) over the cells
it asked in. Prints one table row per method and seed, then the means.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from agents.plans.rainbow import RainbowPlan
from agents.search import WorldSearch, cell_stats
from agents.tasks.styles import STYLES
from core.jsonl import read_jsonl
from core.plugins import Inputs, Parts
from core.records import Record
from loop.config import load_config
from loop.parts import score_ifd
from loop.student import evaluate
from loop.tasks import WorldTask


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="a run directory of the task world")
    parser.add_argument("--round", type=int, default=0, help="whose student (round_NNN/model)")
    parser.add_argument("--per-node", type=int, default=10, help="items per point and detect iteration")
    parser.add_argument("--iterations", type=int, default=3, help="detect's search iterations after the sweep")
    parser.add_argument("--mutations", type=int, default=10, help="Rainbow's candidates per MAP-Elites step")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    cfg = load_config(args.run / "config.yaml", ["tracking.wandb_mode=disabled"])
    model = args.run / f"round_{args.round:03d}" / "model"
    task = WorldTask(cfg)
    known = [str(r["instruction"]) for k in range(args.round + 1) for r in _rows(args.run, k, "items.jsonl")]
    known += [str(r["instruction"]) for r in read_jsonl(args.run / "test.jsonl").rows]

    def ask(items: Sequence[Record]) -> list[Record]:
        return task.grade(evaluate(cfg, model, list(items), "student answers", stop=task.stop))

    budget = args.per_node * len(task.points) * (args.iterations + 1)
    print(f"student {model}; {len(task.points)} points; budget {budget} items per method and seed")
    rows = []
    for seed in args.seeds:
        search = WorldSearch(task.points, seed, cfg.task.difficulty, args.per_node)
        search.remember(known)
        sweep = ask(search.initial())
        t0 = time.perf_counter()
        graded = list(sweep)
        for it in range(1, args.iterations + 1):
            graded += ask(search.next_items(graded, it))
        rows.append(_row("detect", seed, graded, len(sweep), time.perf_counter() - t0, cells=_detect_cells(graded)))
        t0 = time.perf_counter()
        graded, plan = _rainbow(cfg, model, task, known, sweep, ask, budget, args.mutations, seed)
        rows.append(_row("rainbow", seed, graded, len(sweep), time.perf_counter() - t0, cells=_rainbow_cells(graded)))
        rows[-1]["qd_score"], rows[-1]["coverage"] = plan.archive.qd_score(), plan.archive.coverage()
    _print(rows)


def _rows(run: Path, r: int, name: str) -> list[Record]:
    path = run / f"round_{r:03d}" / name
    return read_jsonl(path).rows if path.exists() else []


def _rainbow(
    cfg: object,
    model: Path,
    task: WorldTask,
    known: list[str],
    sweep: list[Record],
    ask: Callable[[Sequence[Record]], list[Record]],
    budget: int,
    mutations: int,
    seed: int,
) -> tuple[list[Record], RainbowPlan]:
    """The archive seeded by the sweep, then MAP-Elites steps until it has asked `budget` items in all."""
    asked: list[Record] = []

    def answers(items: Sequence[Record]) -> list[Record]:
        got = ask(items)
        asked.extend(got)
        return got

    taxonomy = task.taxonomy()
    values = {
        "taxonomy": taxonomy,
        "probes": [{**s, "style": "plain"} for s in sweep],
        "known": known,
        "answers": answers,
        "student": lambda items, reverse=False: score_ifd(cfg, model, items, reverse),  # type: ignore[arg-type]
        "state": None,
    }
    config = RainbowPlan.Config(name="rainbow", styles=list(STYLES), mutations=mutations)
    plan = RainbowPlan(config, Parts(seed=seed, difficulty=cfg.task.difficulty))  # type: ignore[attr-defined]
    plan.load_state(None)
    plan.begin(Inputs(RainbowPlan, {k: (lambda v=v: v) for k, v in values.items()}), 1)
    rng, left, step = random.Random(f"{seed}:bench-rainbow"), budget - len(sweep), 0
    while len(asked) < left and step < 50 * budget:
        plan.step(rng, step, min(mutations, left - len(asked)))
        step += 1
    plan.end()
    return [{**s, "style": "plain"} for s in sweep] + asked, plan


def _detect_cells(graded: Sequence[Record]) -> tuple[int, int]:
    cells = cell_stats(graded)
    return sum(c.failed > 0 for c in cells), len(cells)


def _rainbow_cells(graded: Sequence[Record]) -> tuple[int, int]:
    cells = {(g["knowledge_point"], g["style"]) for g in graded}
    return len({(g["knowledge_point"], g["style"]) for g in graded if not g["correct"]}), len(cells)


def _row(
    method: str, seed: int, graded: Sequence[Record], sweep: int, seconds: float, cells: tuple[int, int]
) -> dict[str, object]:
    failed = [g for g in graded if not g["correct"]]
    after = graded[sweep:]
    return {
        "method": method,
        "seed": seed,
        "asked": len(graded),
        "failure_rate": len(failed) / len(graded),
        "after_sweep": sum(not g["correct"] for g in after) / len(after) if after else 0.0,
        "points": len({g["knowledge_point"] for g in failed}),
        "point_facets": len({(g["knowledge_point"], g["facet"]) for g in failed}),
        "point_styles": len({(g["knowledge_point"], g.get("style", "plain")) for g in failed}),
        "own_cells": f"{cells[0]}/{cells[1]}",
        "seconds": seconds,
    }


def _print(rows: list[dict[str, object]]) -> None:
    columns = ["method", "seed", "asked", "failure_rate", "after_sweep", "points", "point_facets", "point_styles"]
    columns += ["own_cells", "seconds"]
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in rows:
        print("| " + " | ".join(_fmt(row[c]) for c in columns) + " |")
    for method in ("detect", "rainbow"):
        mine = [r for r in rows if r["method"] == method]
        means = {
            c: f"{statistics.fmean(float(r[c]) for r in mine):.3f}"  # type: ignore[arg-type]
            + (f" ± {statistics.stdev(float(r[c]) for r in mine):.3f}" if len(mine) > 1 else "")  # type: ignore[arg-type]
            for c in ("failure_rate", "after_sweep", "points", "point_facets", "point_styles")
        }
        extra = ""
        if method == "rainbow":
            qd = statistics.fmean(float(r["qd_score"]) for r in mine)  # type: ignore[arg-type]
            cov = statistics.fmean(float(r["coverage"]) for r in mine)  # type: ignore[arg-type]
            extra = f"; archive QD-score {qd:.1f}, coverage {cov:.3f}"
        print(f"{method} mean over {len(mine)} seeds: " + ", ".join(f"{k} {v}" for k, v in means.items()) + extra)


def _fmt(value: object) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


if __name__ == "__main__":
    main()
