"""The cost of running the student's inference in a child process (the GPU process model) against running it
in the orchestrator, for one evaluate phase of the default config, side by side in one run.

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

from agents.tasks.world import points_for
from loop.config import load_config
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
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or build_student(cfg, Path(tmp) / "model", task.tokenizer_texts(data))
        times: dict[str, list[float]] = {"inline": [], "child": []}
        for _ in range(args.repeats):
            for mode in ("inline", "child"):  # alternated, so drift on a shared machine hits both
                run_cfg = load_config(overrides=[f"student.inference_process={mode}"])
                t0 = time.perf_counter()
                evaluate(run_cfg, model, items, f"{mode} evaluate", stop=task.stop)
                times[mode].append(time.perf_counter() - t0)
    print(f"\none evaluate phase: {len(items)} items ({len(points_for())} points), {args.repeats} repeats each")
    print(f"{'variant':<8} {'median s':>9} {'runs':>20}")
    for mode, ts in times.items():
        print(f"{mode:<8} {statistics.median(ts):>9.2f} {' '.join(f'{t:.2f}' for t in ts):>20}")
    ratio = statistics.median(times["child"]) / statistics.median(times["inline"])
    print(f"child / inline: {ratio:.2f}x")


if __name__ == "__main__":
    main()
