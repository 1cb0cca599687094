"""`gaploop demo`: round 0 of the loop (data, build, train with DeepSpeed, evaluate, log), then the two numbers a
first look wants beside it: the untrained base's test accuracy and the trained student's IFD over the seed.

Round 0 is the loop's own (`Runner.run_round(0)`), so the demo's run directory is a loop run's; the two extra
steps go through the same step executor (recorded in the manifest, skipped when done), and every number the
demo prints is also in metrics.jsonl and W&B.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from rich.table import Table

from core.ifd import select_by_ifd
from loop import files as F
from loop.config import RunConfig
from loop.console import console, progress_bar
from loop.evaluate import accuracy_by, accuracy_metrics
from loop.parts import score_ifd
from loop.runner import Runner, create_run
from loop.steps import Out
from loop.student import evaluate
from loop.tasks import make_task

BASE_EVAL = "eval_test_base.jsonl"  # round 0: the untrained base's answers to the test
SEED_IFD = "ifd_seed.jsonl"  # round 0: the seed with its IFD by the trained student


@dataclass
class DemoResult:
    """Where the demo wrote its run and the headline numbers."""

    run_dir: Path
    accuracy_before: float
    accuracy_after: float
    first_loss: float
    last_loss: float
    ifd_mean: float
    seconds: float


def run_demo(cfg: RunConfig) -> DemoResult:
    """Round 0 of the loop, the base's accuracy, the seed's IFD; logs them and prints a summary table."""
    t_start = time.perf_counter()
    task = make_task(cfg)
    if task.kind == "open":
        raise ValueError("gaploop demo grades by code; an open task needs the LLM judge of `gaploop run`")
    cfg = cfg.model_copy(update={"rounds": cfg.rounds.model_copy(update={"max_rounds": 0})})
    store, task = create_run(cfg, task)
    console.print(f"[bold]gaploop demo[/] -> {store.root}  (round 0 of the loop, then the base's accuracy and IFD)")
    runner = Runner(cfg, store, task=task)
    files, stages = runner.files, runner.stages
    with runner.session(tags=["demo"]) as tracker:
        round0 = runner.run_round(0)

        def evaluate_base() -> Out:
            base = stages.base_model()
            graded = task.grade(evaluate(cfg, base, files.test(), "evaluate the untrained base", stop=task.stop))
            return Out(files={files.at(0, BASE_EVAL): graded}, stats={"test": len(graded)})

        def seed_ifd() -> Out:
            rows = score_seed_ifd(cfg, files.at(0, F.MODEL), files.rows(0, F.ITEMS))
            return Out(files={files.at(0, SEED_IFD): rows}, stats={"rows": len(rows)})

        run = runner.steps.run
        run(0, "evaluate_base", [*runner.sections("student"), files.root / F.TEST, files.root / "base"], evaluate_base)
        run(0, "ifd", [*runner.sections("student", "synthesis"), files.at(0, F.WEIGHTS)], seed_ifd)
        before = files.rows(0, BASE_EVAL)
        ifd_rows = files.rows(0, SEED_IFD)
        ifds = [float(r["ifd"]) for r in ifd_rows if r["ifd"] is not None]
        train = (store.phase(0, "train") or {}).get("stats", {})
        extras = {
            "demo/test_accuracy_base": accuracy_metrics(before, "test")["test/accuracy"],
            "demo/ifd_mean": statistics.fmean(ifds) if ifds else float("nan"),
            "demo/ifd_median": statistics.median(ifds) if ifds else float("nan"),
            "demo/ifd_share_below_1": sum(v < 1 for v in ifds) / len(ifds) if ifds else 0.0,
            "demo/ifd_kept": sum(bool(r["ifd_kept"]) for r in ifd_rows),
        }
        tracker.log(extras)
        tracker.log_histogram("demo/ifd_hist", ifds)
        tracker.summary({**round0.metrics, **extras})
        store.set_field("status", "finished")
    after = files.rows(0, F.EVAL_TEST)
    print_summary(after, round0.metrics, extras, round0.times, train)
    console.print(f"run directory: {store.root}  (metrics.jsonl, manifest.json, round_000/, wandb/)")
    return DemoResult(
        run_dir=store.root,
        accuracy_before=float(extras["demo/test_accuracy_base"]),
        accuracy_after=float(round0.metrics["test/accuracy"]),
        first_loss=float(train.get("first_loss", float("nan"))),
        last_loss=float(train.get("last_loss", float("nan"))),
        ifd_mean=float(extras["demo/ifd_mean"]),
        seconds=time.perf_counter() - t_start,
    )


def score_seed_ifd(cfg: RunConfig, student: Path, seed: list[dict[str, object]]) -> list[dict[str, object]]:
    """IFD of each seed item by the trained student (as the loop scores it: in a child on GPUs), and whether the
    configured IFD selection keeps it."""
    with progress_bar() as bar:
        bar.add_task("IFD of the seed", total=None, info=f"{len(seed)} items")
        scores = score_ifd(cfg, student, seed)
    # The configured IFD selection (the selector with a threshold and share), else no selection: keep IFD < 1.
    chosen = next((c for c in cfg.synthesis.select or [] if hasattr(c, "top_share")), None)
    top_share, threshold = (chosen.top_share, chosen.threshold) if chosen is not None else (1.0, 1.0)  # type: ignore[attr-defined]
    selection = select_by_ifd(scores, top_share, threshold)
    kept = set(selection.kept)
    return [
        {
            **item,
            "loss_cond": s.loss_cond,
            "loss_alone": s.loss_alone,
            "ifd": s.ifd,
            "ifd_kept": i in kept,
            "drop_reason": selection.dropped.get(i),
        }
        for i, (item, s) in enumerate(zip(seed, scores, strict=True))
    ]


def print_summary(
    after: list[dict[str, object]],
    metrics: dict[str, float],
    extras: dict[str, float],
    times: dict[str, float],
    train: dict[str, object],
) -> None:
    """Accuracy per knowledge point, then the headline numbers and phase times."""
    table = Table(title="held-out test accuracy by knowledge point", show_lines=False)
    table.add_column("knowledge point")
    table.add_column("skill")
    table.add_column("accuracy", justify="right")
    skills = {str(r["knowledge_point"]): str(r["skill"]) for r in after}
    for point, acc in accuracy_by(after, "knowledge_point").items():
        table.add_row(point, skills[point], f"{acc:.2f}")
    console.print(table)
    head = Table(title="summary", show_header=False)
    head.add_column("what")
    head.add_column("value", justify="right")
    head.add_row(
        "test accuracy (base -> trained)", f"{extras['demo/test_accuracy_base']:.3f} -> {metrics['test/accuracy']:.3f}"
    )
    head.add_row(
        "train loss (first -> last 10%)",
        f"{train.get('first_loss', float('nan')):.3f} -> {train.get('last_loss', float('nan')):.3f}",
    )
    head.add_row("train steps, tokens/s", f"{train.get('steps')}, {float(train.get('tokens_per_s', 0.0)):.0f}")
    head.add_row(
        "IFD mean / median / share < 1",
        f"{extras['demo/ifd_mean']:.3f} / {extras['demo/ifd_median']:.3f} / {extras['demo/ifd_share_below_1']:.2f}",
    )
    head.add_row("IFD selection kept", f"{int(extras['demo/ifd_kept'])}")
    for k, v in times.items():
        head.add_row(f"time: {k}", f"{v:.1f}s")
    console.print(head)
