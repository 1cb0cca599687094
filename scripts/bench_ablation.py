"""Targeted synthesis against the random control at the same budget.

Runs `gaploop run` for each strategy and seed (each run in its own process and run directory; a run
that already finished is read back, an interrupted one is resumed), then prints mean and spread of
round-0 and final held-out test accuracy per strategy, and each strategy's gain over `random`; and the
same over the weak points only (those whose round-0 test accuracy is below --weak-below, per run), with
each run's time in the loop's phases.

    .venv/bin/python scripts/bench_ablation.py [--seeds 0 1 2] [--strategies random llm2llm weakness frontier]
        [--out runs/ablation] [--jobs N] [CONFIG] [key=value ...]

A strategy may also be a labelled variant, `LABEL:key=value,key=value` (e.g.
`flat:synthesis.plan={name: frontier, curriculum: false}`), to ablate one part of a strategy.
With --jobs N > 1, N runs go at once, each limited to one torch thread (two runs of two threads on a
2-core machine were 7-15x slower than one). Accuracy does not depend on the thread count.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def final_metrics(run_dir: Path) -> dict[str, dict[str, float]] | None:
    """Round-0 and last-round metrics of a finished run, else None."""
    manifest = run_dir / "manifest.json"
    if not manifest.exists() or json.loads(manifest.read_text()).get("status") != "finished":
        return None
    rows = sorted(run_dir.glob("round_*/summary.json"))
    first, last = (json.loads(rows[i].read_text())["metrics"] for i in (0, -1))
    kept: dict[str, int] = {}
    for items in sorted(run_dir.glob("round_*/items.jsonl"))[1:]:
        for line in items.read_text().splitlines():
            row = json.loads(line)
            if row.get("kept") and row.get("knowledge_point"):
                kept[row["knowledge_point"]] = kept.get(row["knowledge_point"], 0) + 1
    seconds = sum(sum(json.loads(r.read_text()).get("times", {}).values()) for r in rows)
    return {"first": first, "last": last, "rounds": len(rows), "kept": kept, "seconds": seconds}


def weak_points(run: dict, below: float) -> tuple[float, float, int]:
    """Mean round-0 and final test accuracy over the points whose round-0 accuracy is below `below`."""
    keys = [k for k, v in run["first"].items() if k.startswith("test/point/") and v < below]
    if not keys:
        return float("nan"), float("nan"), 0
    return (
        statistics.fmean(run["first"][k] for k in keys),
        statistics.fmean(run["last"].get(k, 0.0) for k in keys),
        len(keys),
    )


def print_points(results: dict[str, list[dict]]) -> None:
    """Per knowledge point: round-0 and final test accuracy and synthetic items kept, mean over seeds."""
    points = sorted(k.split("/", 2)[2] for k in next(iter(results.values()))[0]["last"] if k.startswith("test/point/"))
    print("\nper knowledge point, mean over seeds: final test accuracy (synthetic items kept over all rounds)")
    print(f"{'point':16s} {'round 0':>8s} " + " ".join(f"{s:>16s}" for s in results))
    for point in points:
        key = f"test/point/{point}"
        first = statistics.fmean(r["first"].get(key, 0.0) for runs in results.values() for r in runs)
        cells = [
            f"{statistics.fmean(r['last'].get(key, 0.0) for r in runs):.2f} "
            f"({statistics.fmean(r['kept'].get(point, 0) for r in runs):5.0f})"
            for runs in results.values()
        ]
        print(f"{point:16s} {first:8.2f} " + " ".join(f"{c:>16s}" for c in cells))


def run_one(run_dir: Path, config: list[str], overrides: list[str], one_thread: bool) -> float:
    """Run (or resume) one configuration; returns wall seconds."""
    gaploop = str(Path(sys.executable).parent / "gaploop")
    env = {**os.environ, "WANDB_MODE": "disabled", "WANDB_SILENT": "true"}
    if one_thread:
        env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    if (run_dir / "manifest.json").exists():
        cmd = [gaploop, "resume", str(run_dir)]
    else:
        cmd = [gaploop, "run", *config, f"run_dir={run_dir}", "tracking.wandb_mode=disabled", *overrides]
    t0 = time.perf_counter()
    log = run_dir.with_suffix(".log")
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as fh:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"run failed ({proc.returncode}): {' '.join(cmd)}; see {log}")
    return time.perf_counter() - t0


def run_dir_of(args: argparse.Namespace, strategy: str, seed: int) -> Path:
    """Where one (strategy, seed) run lives."""
    return args.out / f"{strategy.split(':')[0]}-s{seed}"


def variant_overrides(spec: str) -> list[str]:
    """`frontier` -> [synthesis.plan=frontier]; `LABEL:a=1,b=2` -> [a=1, b=2]."""
    if ":" not in spec:
        return [f"synthesis.plan={spec}"]
    return [o for o in spec.split(":", 1)[1].split(",") if o]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--strategies", nargs="+", default=["random", "llm2llm", "weakness", "frontier"])
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "ablation")
    ap.add_argument("--jobs", type=int, default=1, help="runs at once (each then uses one thread)")
    ap.add_argument("--weak-below", type=float, default=0.5, help="a point is weak below this round-0 accuracy")
    ap.add_argument("rest", nargs="*", help="an optional config file, then key=value overrides")
    args = ap.parse_args()
    config = [a for a in args.rest[:1] if "=" not in a]
    overrides = [a for a in args.rest if "=" in a]

    jobs = [(s, seed) for seed in args.seeds for s in args.strategies]
    todo = [(s, seed) for s, seed in jobs if final_metrics(run_dir_of(args, s, seed)) is None]

    def work(job: tuple[str, int]) -> None:
        strategy, seed = job
        run_dir = run_dir_of(args, strategy, seed)
        extra = [f"seed={seed}", *variant_overrides(strategy), *overrides]
        secs = run_one(run_dir, config, extra, one_thread=args.jobs > 1)
        got = final_metrics(run_dir)
        assert got is not None, run_dir
        print(f"{strategy:9s} seed {seed}: {got['last']['test/accuracy']:.3f} ({secs:.0f}s)", flush=True)

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        list(pool.map(work, todo))
    results = {
        s.split(":")[0]: [final_metrics(run_dir_of(args, s, seed)) for seed in args.seeds] for s in args.strategies
    }

    def stats(values: list[float]) -> str:
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{statistics.fmean(values):.3f} ± {sd:.3f}"

    base = [r["last"]["test/accuracy"] for r in results.get("random", [])]
    print(f"\nfinal held-out test accuracy over seeds {args.seeds} ({', '.join(overrides) or 'default config'})")
    print(f"{'strategy':14s} {'round 0':>15s} {'final':>15s} {'min':>7s} {'max':>7s} {'vs random':>10s} {'per seed'}")
    for strategy, runs in results.items():
        first = [r["first"]["test/accuracy"] for r in runs]
        last = [r["last"]["test/accuracy"] for r in runs]
        gain = statistics.fmean(last) - statistics.fmean(base) if base else float("nan")
        per_seed = " ".join(f"{x:.3f}" for x in last)
        print(
            f"{strategy:14s} {stats(first):>15s} {stats(last):>15s} {min(last):7.3f} {max(last):7.3f} "
            f"{gain:+10.3f} {per_seed}"
        )
    print(f"\nweak points (round-0 test accuracy < {args.weak_below}), mean over their points, then over seeds")
    print(f"{'strategy':14s} {'points':>6s} {'round 0':>8s} {'final':>8s} {'gain':>7s} {'minutes':>8s}")
    for strategy, runs in results.items():
        weak = [weak_points(r, args.weak_below) for r in runs]
        first, last = statistics.fmean(w[0] for w in weak), statistics.fmean(w[1] for w in weak)
        minutes = statistics.fmean(r["seconds"] for r in runs) / 60
        points = statistics.fmean(w[2] for w in weak)
        print(f"{strategy:14s} {points:6.1f} {first:8.3f} {last:8.3f} {last - first:+7.3f} {minutes:8.1f}")
    print_points(results)


if __name__ == "__main__":
    main()
