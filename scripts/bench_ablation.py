"""Targeted synthesis against the random control at the same budget.

Runs `gaploop run` for each strategy and seed (each run in its own process and run directory; a run
that already finished is read back, an interrupted one is resumed), then prints, through `gaploop compare`'s
tables (loop/compare.py), mean and spread of round-0 and final held-out test accuracy per strategy, each
strategy's gain over `random`, accuracy by round, the same over the weak points only (those whose round-0
test accuracy is below --weak-below, per run), each point's final accuracy and items kept, and each run's
minutes; the plots and a page go to OUT/compare/.

    .venv/bin/python scripts/bench_ablation.py [--seeds 0 1 2] [--strategies random llm2llm weakness frontier]
        [--out runs/ablation] [--jobs N] [CONFIG] [key=value ...]

A strategy may also be a labelled variant, `LABEL:key=value,key=value` (e.g.
`flat:synthesis.plan={name: frontier, curriculum: false}`; commas inside {} or [] belong to the value), to
ablate one part of a strategy or to run a writer, refiner or selector under the config's plan: `LABEL:` with
nothing after the colon runs the config as it is.
With --share-round0, round 0 (train on the seed, evaluate), which does not depend on the strategy, runs once
per seed (OUT/round0-sN, `rounds.max_rounds=0`); each strategy's run starts as a copy of it and resumes with
its own config, so the loop's fingerprints redo any round-0 step the strategy's config does change.
With --jobs N > 1, N runs go at once, each limited to one torch thread (two runs of two threads on a
2-core machine were 7-15x slower than one). Accuracy does not depend on the thread count.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from loop.compare import compare, load_run, print_comparison, write_page
from loop.config import ConfigError, dump_config, load_config

ROOT = Path(__file__).resolve().parent.parent


def finished(run_dir: Path) -> bool:
    """Whether the run directory holds a run that ran to its end."""
    manifest = run_dir / "manifest.json"
    return manifest.exists() and json.loads(manifest.read_text()).get("status") == "finished"


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


def start_from_round0(base: Path, run_dir: Path, config: list[str], overrides: list[str]) -> None:
    """A run directory for `overrides` that holds `base`'s round 0: a copy of it with the run's own config."""
    cfg = load_config(config[0] if config else None, [*overrides, f"run_dir={run_dir}"])
    part = run_dir.with_name(run_dir.name + ".part")  # renamed into place whole: a stop never leaves half a copy
    shutil.rmtree(part, ignore_errors=True)
    shutil.copytree(base, part)
    (part / "config.yaml").write_text(dump_config(cfg))
    manifest = json.loads((part / "manifest.json").read_text())
    for key in ("status", "stop_reason", "wandb_run_id"):
        manifest.pop(key, None)
    manifest["run"] = cfg.name
    (part / "manifest.json").write_text(json.dumps(manifest, indent=1))
    (part / "manifest.json.bak").unlink(missing_ok=True)
    part.rename(run_dir)


def synthesis_rows(runs: dict[str, list[Path]]) -> list[str]:
    """Per strategy, summed over its runs' synthesis rounds: candidates, kept, drops by reason (the most
    frequent first), teacher-model tokens, and the mean seconds per run of the question phase and of the rounds."""
    lines = [
        f"{'strategy':16s} {'candidates':>10s} {'kept':>6s} {'LLM tokens':>11s} {'question s':>10s} {'round s':>8s}"
        "  dropped by reason"
    ]
    for label, dirs in runs.items():
        cand = kept = tokens = 0
        question = rounds = 0.0
        reasons: dict[str, int] = {}
        for d in dirs:
            for summary in sorted(d.glob("round_*/summary.json")):
                row = json.loads(summary.read_text())
                if row["round"] == 0:
                    continue
                m = row["metrics"]
                cand += int(m.get("synth/candidates", 0))
                kept += int(m.get("synth/kept", 0))
                tokens += int(m.get("llm/tokens", 0))
                question += m.get("time/question", 0.0)
                rounds += m.get("time/round", 0.0)
                for reason, n in row.get("reasons", {}).items():
                    reasons[reason] = reasons.get(reason, 0) + n
        why = ", ".join(f"{r} {n}" for r, n in sorted(reasons.items(), key=lambda kv: -kv[1]))
        n = max(len(dirs), 1)
        lines.append(
            f"{label:16s} {cand:10d} {kept:6d} {tokens:11d} {question / n:10.0f} {rounds / n:8.0f}  {why or '-'}"
        )
    return lines


def label_of(strategy: str) -> str:
    """`frontier` -> frontier; `LABEL:a=1,b=2` -> LABEL."""
    return strategy.split(":")[0]


def run_dir_of(args: argparse.Namespace, strategy: str, seed: int) -> Path:
    """Where one (strategy, seed) run lives."""
    return args.out / f"{label_of(strategy)}-s{seed}"


def variant_overrides(spec: str) -> list[str]:
    """`frontier` -> [synthesis.plan=frontier]; `LABEL:a=1,b={c: 2, d: 3}` -> [a=1, b={c: 2, d: 3}]."""
    if ":" not in spec:
        return [f"synthesis.plan={spec}"]
    parts, depth, current = [], 0, ""
    for ch in spec.split(":", 1)[1]:
        depth += (ch in "{[") - (ch in "}]")
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    if depth != 0:
        raise SystemExit(f"strategy {spec!r}: unbalanced brackets")
    return [o.strip() for o in [*parts, current] if o.strip()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--strategies", nargs="+", default=["random", "llm2llm", "weakness", "frontier"])
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "ablation")
    ap.add_argument("--jobs", type=int, default=1, help="runs at once (each then uses one thread)")
    ap.add_argument("--check", action="store_true", help="check every run's config, then stop")
    ap.add_argument("--share-round0", action="store_true", help="run round 0 once per seed (see above)")
    ap.add_argument("--weak-below", type=float, default=0.5, help="a point is weak below this round-0 accuracy")
    ap.add_argument("rest", nargs="*", help="an optional config file, then key=value overrides")
    args = ap.parse_args()
    config = [a for a in args.rest[:1] if "=" not in a]
    overrides = [a for a in args.rest if "=" in a]

    labels = [label_of(s) for s in args.strategies]
    if len(set(labels)) != len(labels) or "round0" in labels:
        raise SystemExit(f"--strategies: each needs its own label, and not `round0` (given: {' '.join(labels)})")
    for spec in args.strategies:  # a malformed variant or a bad config fails here, before any run
        for seed in args.seeds:
            try:
                load_config(config[0] if config else None, [f"seed={seed}", *variant_overrides(spec), *overrides])
            except ConfigError as err:
                raise SystemExit(f"strategy {label_of(spec)!r}: {err}") from None
    if args.check:
        print(f"{len(args.strategies)} strategies x {len(args.seeds)} seeds: every config is valid")
        return
    jobs = [(s, seed) for seed in args.seeds for s in args.strategies]
    todo = [(s, seed) for s, seed in jobs if not finished(run_dir_of(args, s, seed))]
    if args.share_round0:
        for seed in sorted({seed for _, seed in todo}):
            base = args.out / f"round0-s{seed}"
            if not finished(base):
                secs = run_one(base, config, [f"seed={seed}", *overrides, "rounds.max_rounds=0"], one_thread=False)
                print(f"round 0  seed {seed}: {load_run(base).accuracy(0):.3f} ({secs:.0f}s)", flush=True)

    def work(job: tuple[str, int]) -> None:
        strategy, seed = job
        run_dir = run_dir_of(args, strategy, seed)
        extra = [f"seed={seed}", *variant_overrides(strategy), *overrides]
        if args.share_round0 and not (run_dir / "manifest.json").exists():
            start_from_round0(args.out / f"round0-s{seed}", run_dir, config, extra)
        secs = run_one(run_dir, config, extra, one_thread=args.jobs > 1)
        final = load_run(run_dir).accuracy(-1)
        print(f"{label_of(strategy):12s} seed {seed}: {final:.3f} ({secs:.0f}s)", flush=True)

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        list(pool.map(work, todo))
    # One group per strategy label, its runs in seed order (the tables' "final per run" is then per seed).
    groups = {label_of(s): [load_run(run_dir_of(args, s, seed)) for seed in args.seeds] for s in args.strategies}
    print(f"\nstrategies over seeds {args.seeds} ({', '.join(overrides) or 'default config'})")
    result = compare(groups, args.weak_below, "random" if "random" in groups else None, by="strategy label")
    print_comparison(result)
    dirs = {label_of(s): [run_dir_of(args, s, seed) for seed in args.seeds] for s in args.strategies}
    print(f"\nsynthesis over seeds {args.seeds}, rounds after round 0 (sums; seconds: mean per run)")
    print("\n".join(synthesis_rows(dirs)))
    print(f"plots and page: {write_page(result, args.out / 'compare')}")


if __name__ == "__main__":
    main()
