"""The student-side demo: build a tiny student, train it with DeepSpeed, evaluate, score IFD, log.

This is what `gaploop demo` runs on the embedded default; each step is a phase recorded in the run
directory's manifest, and every number it prints is also in metrics.jsonl and W&B.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from rich.table import Table

from core.ifd import select_by_ifd
from loop.config import RunConfig, dump_config
from loop.console import console, progress_bar
from loop.evaluate import accuracy_by, accuracy_metrics
from loop.store import RunStore, default_run_dir, write_jsonl
from loop.student import build_student, evaluate, resolve_device, train_student
from loop.tasks import make_task
from loop.tracking import Tracker
from trainers.ifd import score_ifd
from trainers.tiny import count_parameters, load_student


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
    """Build, train, evaluate, score IFD and log; print a summary table."""
    t_start = time.perf_counter()
    run_dir = default_run_dir(cfg)
    store = RunStore(run_dir)
    store.create(dump_config(cfg), cfg.name)
    console.print(f"[bold]gaploop demo[/] -> {run_dir}")
    tracker = Tracker(
        run_dir,
        cfg.model_dump(mode="json"),
        mode=cfg.tracking.wandb_mode,
        project=cfg.tracking.project,
        entity=cfg.tracking.entity,
        name=run_dir.name,
        tags=["demo", *cfg.tracking.tags],
    )
    store.set_field("wandb_run_id", tracker.run_id)
    times: dict[str, float] = {}
    try:
        t0 = time.perf_counter()
        task = make_task(cfg)
        if task.kind == "open":
            raise ValueError("gaploop demo grades by code; an open task needs the LLM judge of `gaploop run`")
        data = task.make_data()
        seed, test = data.seed, data.test
        for item in seed:
            item.update(source="seed", round=0)
        seed_path = store.path(0, "seed.jsonl")
        write_jsonl(seed_path, seed)
        write_jsonl(run_dir / "test.jsonl", test)
        store.mark_done(0, "data", "demo", outputs=["round_000/seed.jsonl", "test.jsonl"])
        base = build_student(cfg, run_dir / "base", task.tokenizer_texts(data))
        model, _ = load_student(base)
        n_params = count_parameters(model)
        del model
        store.mark_done(0, "build", "demo", outputs=["base"], stats={"parameters": n_params})
        times["data+build"] = time.perf_counter() - t0
        console.print(f"student: {n_params / 1e6:.2f}M parameters; {len(seed)} seed items; {len(test)} test items")

        t0 = time.perf_counter()
        before = task.grade(evaluate(cfg, base, test, "evaluate base", stop=task.stop))
        times["evaluate base"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        train_stats = train_student(cfg, base, seed_path, store.round_dir(0) / "train", tracker)
        student = store.round_dir(0) / "train" / "model"
        store.mark_done(0, "train", "demo", outputs=["round_000/train/model"], stats=train_stats)
        times["train"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        after = task.grade(evaluate(cfg, student, test, "evaluate student", stop=task.stop))
        write_jsonl(store.path(0, "eval_test.jsonl"), after)
        store.mark_done(0, "evaluate", "demo", outputs=["round_000/eval_test.jsonl"])
        times["evaluate"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        ifd_rows = score_seed_ifd(cfg, student, seed)
        write_jsonl(store.path(0, "ifd_seed.jsonl"), ifd_rows)
        store.mark_done(0, "ifd", "demo", outputs=["round_000/ifd_seed.jsonl"])
        times["ifd"] = time.perf_counter() - t0

        acc_before = accuracy_metrics(before, "test")["test/accuracy"]
        metrics = accuracy_metrics(after, "test")
        ifds = [float(r["ifd"]) for r in ifd_rows if r["ifd"] is not None]
        kept = sum(bool(r["ifd_kept"]) for r in ifd_rows)
        metrics.update(
            {
                "test/accuracy_base": acc_before,
                "ifd/mean": statistics.fmean(ifds) if ifds else float("nan"),
                "ifd/median": statistics.median(ifds) if ifds else float("nan"),
                "ifd/share_below_1": sum(v < 1 for v in ifds) / len(ifds) if ifds else 0.0,
                "ifd/kept": kept,
                "train/first_loss": train_stats["first_loss"],
                "train/last_loss": train_stats["last_loss"],
                "train/tokens_per_s": train_stats["tokens_per_s"],
                **{f"time/{k.replace(' ', '_')}": v for k, v in times.items()},
            }
        )
        tracker.log(metrics, round=0)
        tracker.log_histogram("ifd/hist", ifds, round=0)
        tracker.log_table("test/failures", [r for r in after if not r["correct"]][:200], round=0)
        tracker.summary(metrics)
        print_summary(cfg, after, acc_before, metrics, times, train_stats)
        store.set_field("status", "finished")
    finally:
        tracker.finish()
    console.print(f"run directory: {run_dir}  (metrics.jsonl, manifest.json, round_000/, wandb/)")
    return DemoResult(
        run_dir=run_dir,
        accuracy_before=acc_before,
        accuracy_after=metrics["test/accuracy"],
        first_loss=train_stats["first_loss"],
        last_loss=train_stats["last_loss"],
        ifd_mean=metrics["ifd/mean"],
        seconds=time.perf_counter() - t_start,
    )


def score_seed_ifd(cfg: RunConfig, student: Path, seed: list[dict[str, object]]) -> list[dict[str, object]]:
    """IFD of each seed item by the trained student, and whether the configured selection keeps it."""
    model, tokenizer = load_student(student, device=resolve_device(cfg.student.device))
    with progress_bar() as bar:
        task = bar.add_task("IFD", total=None, info="")
        scores = score_ifd(
            model,
            tokenizer,
            seed,
            template=cfg.student.template,
            max_length=cfg.student.max_length,
            batch_size=cfg.ifd.batch_size,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
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
    cfg: RunConfig,
    after: list[dict[str, object]],
    acc_before: float,
    metrics: dict[str, float],
    times: dict[str, float],
    train_stats: dict[str, float],
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
    head.add_row("test accuracy (base -> trained)", f"{acc_before:.3f} -> {metrics['test/accuracy']:.3f}")
    head.add_row("train loss (first -> last 10%)", f"{train_stats['first_loss']:.3f} -> {train_stats['last_loss']:.3f}")
    head.add_row("train steps, tokens/s", f"{train_stats['steps']}, {train_stats['tokens_per_s']:.0f}")
    head.add_row(
        "IFD mean / median / share < 1",
        f"{metrics['ifd/mean']:.3f} / {metrics['ifd/median']:.3f} / {metrics['ifd/share_below_1']:.2f}",
    )
    head.add_row("IFD selection kept", f"{int(metrics['ifd/kept'])}")
    for k, v in times.items():
        head.add_row(f"time: {k}", f"{v:.1f}s")
    console.print(head)
