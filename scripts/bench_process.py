"""The cost of running the student's inference and IFD scoring in a child process (the GPU process model)
against running them in the orchestrator: one evaluate phase of the default config, and one IFD scoring of a
round's budget of candidates (synthesis.budget_per_round), side by side in one run.

    .venv/bin/python scripts/bench_process.py [--model DIR] [--repeats 2]

Without --model, a tiny default student is built (untrained: the timing does not depend on its answers, but
its answer lengths do; pass a trained one, e.g. a run's round_000/model, for the default loop's numbers).
Prints seconds per variant; the child pays a process start, imports and a model load each time.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from agents.tasks.world import generate_items, points_for
from loop.config import load_config
from loop.parts import score_ifd
from loop.student import build_student, evaluate
from loop.tasks import WorldTask


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    cfg = load_config()
    task = WorldTask(cfg)
    data = task.make_data()
    items = task.probes(1, set()) + data.test  # what one evaluate phase answers: probes + test
    points = points_for()
    per_point = -(-cfg.synthesis.budget_per_round // len(points))
    candidates = generate_items("bench", dict.fromkeys(points, per_point))[: cfg.synthesis.budget_per_round]
    times: dict[str, list[float]] = {f"{p} {m}": [] for p in ("evaluate", "ifd") for m in ("inline", "child")}
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or build_student(cfg, Path(tmp) / "model", task.tokenizer_texts(data))
        for _ in range(args.repeats):
            for mode in ("inline", "child"):  # alternated, so drift on a shared machine hits both
                run_cfg = load_config(overrides=[f"student.inference_process={mode}"])
                t0 = time.perf_counter()
                evaluate(run_cfg, model, items, f"{mode} evaluate", stop=task.stop)
                times[f"evaluate {mode}"].append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                score_ifd(run_cfg, model, candidates)
                times[f"ifd {mode}"].append(time.perf_counter() - t0)
    print(f"\nevaluate: {len(items)} items ({len(points)} points); ifd: {len(candidates)} candidates")
    print(f"{args.repeats} repeats each")
    print(f"{'variant':<16} {'median s':>9} {'runs':>20}")
    for name, ts in times.items():
        print(f"{name:<16} {statistics.median(ts):>9.2f} {' '.join(f'{t:.2f}' for t in ts):>20}")
    for phase in ("evaluate", "ifd"):
        child, inline = statistics.median(times[f"{phase} child"]), statistics.median(times[f"{phase} inline"])
        print(f"{phase}: child - inline {child - inline:.2f} s, child / inline {child / inline:.2f}x")


if __name__ == "__main__":
    main()
