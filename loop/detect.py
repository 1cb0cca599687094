"""`gaploop detect`: a capability-gap investigation of a student model, without training it.

    student (a model folder, a run's student, or the embedded tiny default trained here)
    iteration 0:  every knowledge point asked `per_node` items at the task level -> graded
    iteration k:  every point asked `per_node` more, each from the cell (level x facet) the search
                  thinks fails most (agents/search.py) -> graded
    report:       per point failure rate with a 95% interval, per-iteration trajectory, facet splits,
                  error types, the weakest points with their worst examples -> report.json, report.html,
                  PNG plots, items.jsonl, W&B

The Examiner's statistics and facet refinement are the loop's own (agents/examiner.py); grading is the
task's (loop/tasks.py). Items are written after every iteration, so an interrupted investigation keeps
what it asked.
"""

from __future__ import annotations

import json
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

from rich.table import Table

from agents.examiner import WorldExaminer, node_stats
from agents.search import WorldSearch
from agents.tasks.world import get_point
from loop.config import RunConfig
from loop.console import console
from loop.store import read_jsonl, write_jsonl, write_text_atomic
from loop.student import build_student, evaluate, train_student
from loop.tasks import WorldTask
from loop.tracking import Tracker

Record = dict[str, object]


class DetectError(ValueError):
    """A detect option or input that cannot be used; the message names it."""


@dataclass
class DetectOptions:
    """What `gaploop detect` investigates and how hard it searches."""

    model: str | None = None  # an HF model folder
    run: str | None = None  # a gaploop run directory: its student of `round` (the latest by default)
    round: int | None = None
    iterations: int = 3  # search iterations after iteration 0
    per_node: int = 20  # items per knowledge point and iteration
    out: str | None = None  # the report folder (default runs/detect-<time>)
    weakest: int = 5  # points shown with their worst examples
    examples: int = 5  # worst examples per weak point


def run_detect(cfg: RunConfig, opts: DetectOptions) -> Path:
    """Investigate the student, write the report, return its folder."""
    _check(cfg, opts)
    out = Path(opts.out) if opts.out else Path(cfg.runs_dir) / f"detect-{time.strftime('%Y%m%d-%H%M%S')}"
    if (out / "report.json").exists():
        raise DetectError(f"--out {out}: a report is already there; choose another folder")
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    tracker = Tracker(
        out,
        {**cfg.model_dump(mode="json"), "detect": asdict(opts)},
        mode=cfg.tracking.wandb_mode,
        project=cfg.tracking.project,
        entity=cfg.tracking.entity,
        name=out.name,
        tags=["detect", *cfg.tracking.tags],
    )
    try:
        task = WorldTask(cfg)
        student, known, origin = resolve_student(cfg, opts, out, tracker)
        console.print(f"[bold]gaploop detect[/] {origin} -> {out}")
        search = WorldSearch(task.points, cfg.seed, cfg.task.difficulty, opts.per_node)
        search.remember(known)
        graded: list[Record] = []
        seconds: dict[str, float] = {}
        for it in range(opts.iterations + 1):
            t0 = time.perf_counter()
            batch = search.initial() if it == 0 else search.next_items(graded, it)
            if not batch:
                console.print(f"iteration {it}: the search has no new item left to ask; stopping")
                break
            answered = evaluate(cfg, student, batch, f"iteration {it}: student answers", stop=task.stop)
            got = task.grade(answered)
            graded += got
            write_jsonl(out / "items.jsonl", graded)
            seconds[f"iteration {it}"] = time.perf_counter() - t0
            rate = sum(not g["correct"] for g in got) / len(got)
            console.print(f"iteration {it}: {len(got)} items, failure rate {rate:.3f}")
            tracker.log({"detect/failure_rate": rate, "detect/items": len(got)}, round=it)
        report = build_report(graded, cfg, opts, origin, seconds, time.perf_counter() - t_start)
        write_text_atomic(out / "report.json", json.dumps(report, indent=1))
        from loop.detect_report import write_html, write_plots

        plots = write_plots(report, out)
        write_html(report, plots, out / "report.html")
        tracker.log_table("detect/points", [_point_row(p) for p in report["points"]])
        tracker.log_table("detect/worst", [ex for p in report["weakest"] for ex in p["examples"]])
        tracker.log_images({f"detect/{path.stem}": path for path in plots})
        tracker.summary({"detect/failure_rate": report["overall"]["failure_rate"], "detect/items": len(graded)})
    finally:
        tracker.finish()
    print_summary(report, out)
    return out


def _check(cfg: RunConfig, opts: DetectOptions) -> None:
    if cfg.task.name != "world" or cfg.teacher.kind != "world":
        raise DetectError(
            "gaploop detect searches the verifiable task world with exact grading; detect over a dataset or with "
            "an LLM Questioner and judge (task.name=dataset or teacher.kind=llm) is not built yet"
        )
    if opts.model and opts.run:
        raise DetectError("give --model or --run, not both")
    if opts.round is not None and not opts.run:
        raise DetectError("--round picks a round of --run; give --run too")
    if opts.iterations < 0 or opts.per_node < 1:
        raise DetectError(f"--iterations must be >= 0 and --per-node >= 1 (got {opts.iterations}, {opts.per_node})")


def resolve_student(cfg: RunConfig, opts: DetectOptions, out: Path, tracker: Tracker) -> tuple[Path, list[str], str]:
    """(model folder, questions it was trained on, where it came from)."""
    if opts.model:
        model = Path(opts.model)
        if not (model / "config.json").is_file():
            raise DetectError(f"--model {model}: not a Hugging Face model folder (no config.json in it)")
        return model, [], f"model {model}"
    if opts.run:
        return _run_student(Path(opts.run), opts.round)
    # The embedded default: round 0 of the loop (the tiny student trained on the world's seed), here.
    task = WorldTask(cfg)
    data = task.make_data()
    base = build_student(cfg, out / "student" / "base", task.tokenizer_texts(data))
    seed = out / "student" / "seed.jsonl"
    write_jsonl(seed, [{"instruction": r["instruction"], "output": r["output"]} for r in data.seed])
    train_student(cfg, base, seed, out / "student" / "sft", tracker, label="train the default student")
    known = [str(r["instruction"]) for r in data.seed]
    return out / "student" / "sft" / "model", known, f"the default tiny student, trained on {len(data.seed)} seed items"


def _run_student(run: Path, round: int | None) -> tuple[Path, list[str], str]:
    if not (run / "manifest.json").is_file():
        raise DetectError(f"--run {run}: not a gaploop run directory (no manifest.json)")
    models = sorted(p.parent for p in run.glob("round_*/model/config.json"))
    if not models:
        raise DetectError(f"--run {run}: no trained student in it yet (no round_NNN/model)")
    if round is None:
        model = models[-1]
    else:
        model = run / f"round_{round:03d}" / "model"
        if model not in models:
            have = ", ".join(m.parent.name for m in models)
            raise DetectError(f"--run {run} --round {round}: no student of that round (there are: {have})")
    r = int(model.parent.name.split("_")[1])
    known = [
        str(row["instruction"])
        for k in range(r + 1)
        if (run / f"round_{k:03d}" / "items.jsonl").exists()
        for row in read_jsonl(run / f"round_{k:03d}" / "items.jsonl").rows
        if row.get("kept")
    ]
    return model, known, f"the round-{r} student of {run}"


# -- the report ---------------------------------------------------------------------------------------
def build_report(
    graded: list[Record], cfg: RunConfig, opts: DetectOptions, origin: str, seconds: dict[str, float], total: float
) -> dict[str, object]:
    """Everything the HTML page, the plots and W&B show, as plain data."""
    by_point: dict[str, list[bool]] = defaultdict(list)
    by_skill: dict[str, list[bool]] = defaultdict(list)
    for g in graded:
        by_point[str(g["knowledge_point"])].append(bool(g["correct"]))
        by_skill[str(g["skill"])].append(bool(g["correct"]))
    points = []
    for s in node_stats(by_point, {}, 1.0):
        mine = [g for g in graded if g["knowledge_point"] == s.point]
        iterations = sorted({int(g["iteration"]) for g in mine})  # type: ignore[call-overload]
        trajectory = [_rate([g for g in mine if g["iteration"] == it]) for it in iterations]
        cells = Counter((int(g["difficulty"]), str(g["facet"])) for g in mine)  # type: ignore[call-overload]
        failed_cells = Counter((int(g["difficulty"]), str(g["facet"])) for g in mine if not g["correct"])  # type: ignore[call-overload]
        worst_cell = max(cells, key=lambda c: (failed_cells[c] / cells[c], cells[c]))
        points.append(
            {
                "point": s.point,
                "skill": get_point(s.point).skill,
                "description": get_point(s.point).description,
                "items": s.n,
                "failed": s.n - s.correct,
                "failure_rate": 1 - s.accuracy,
                "ci_low": 1 - s.ci_high,
                "ci_high": 1 - s.ci_low,
                "trajectory": trajectory,
                "sweep_failure_rate": _rate([g for g in mine if g["iteration"] == 0]),
                "by_level": {
                    str(lv): _rate([g for g in mine if g["difficulty"] == lv])
                    for lv in sorted({int(g["difficulty"]) for g in mine})  # type: ignore[call-overload]
                },
                "worst_cell": {
                    "difficulty": worst_cell[0],
                    "facet": worst_cell[1],
                    "items": cells[worst_cell],
                    "failed": failed_cells[worst_cell],
                },
                "error_types": dict(Counter(str(g["error_type"]) for g in mine if not g["correct"]).most_common()),
            }
        )
    points.sort(key=lambda p: (-p["failure_rate"], -p["ci_low"], p["point"]))  # type: ignore[operator]
    refinements = WorldExaminer().examine(graded, 0, None).refinements
    weakest = [
        {
            "point": p["point"],
            "failure_rate": p["failure_rate"],
            "examples": _worst_examples([g for g in graded if g["knowledge_point"] == p["point"]], opts.examples),
        }
        for p in points[: opts.weakest]
        if p["failed"]
    ]
    iterations = sorted({int(g["iteration"]) for g in graded})  # type: ignore[call-overload]
    return {
        "student": origin,
        "config": {"task": cfg.task.model_dump(mode="json"), "seed": cfg.seed, "template": cfg.student.template},
        "options": asdict(opts),
        "overall": {
            "items": len(graded),
            "failed": sum(not g["correct"] for g in graded),
            "failure_rate": _rate(graded),
        },
        "iterations": [{"iteration": it, **_counts([g for g in graded if g["iteration"] == it])} for it in iterations],
        "skills": {k: {"items": len(v), "failure_rate": 1 - sum(v) / len(v)} for k, v in sorted(by_skill.items())},
        "points": points,
        "facet_splits": refinements,
        "weakest": weakest,
        "error_types": dict(Counter(str(g["error_type"]) for g in graded if not g["correct"]).most_common()),
        "seconds": {**seconds, "total": total},
    }


def _rate(records: list[Record]) -> float:
    return sum(not g["correct"] for g in records) / len(records) if records else 0.0


def _counts(records: list[Record]) -> dict[str, object]:
    return {"items": len(records), "failed": sum(not g["correct"] for g in records), "failure_rate": _rate(records)}


def _worst_examples(records: list[Record], n: int) -> list[Record]:
    """Failures on the easiest items first: a slip at level 1 says more than one at level 3."""
    failed = sorted((g for g in records if not g["correct"]), key=lambda g: (g["difficulty"], str(g["id"])))
    keys = ("point", "difficulty", "facet", "question", "expected", "answer", "error_type", "iteration")
    return [
        dict(
            zip(
                keys,
                (
                    g["knowledge_point"],
                    g["difficulty"],
                    g["facet"],
                    g["instruction"],
                    g["output"],
                    g["prediction"],
                    g["error_type"],
                    g["iteration"],
                ),
                strict=True,
            )
        )
        for g in failed[:n]
    ]


def _point_row(p: dict[str, object]) -> Record:
    keys = ("point", "skill", "items", "failed", "failure_rate", "ci_low", "ci_high", "sweep_failure_rate")
    return {k: p[k] for k in keys}


def print_summary(report: dict[str, object], out: Path) -> None:
    """The weakest points first, then where the report is."""
    table = Table(title=f"weakest points ({report['student']})")
    for col in ("point", "failure rate (95% CI)", "first sweep", "items", "worst cell", "top error"):
        table.add_column(col)
    for p in report["points"][:10]:  # type: ignore[index]
        cell = p["worst_cell"]
        errors = p["error_types"]
        table.add_row(
            p["point"],
            f"{p['failure_rate']:.2f} ({p['ci_low']:.2f}-{p['ci_high']:.2f})",
            f"{p['sweep_failure_rate']:.2f}",
            str(p["items"]),
            f"level {cell['difficulty']}, {cell['facet']}: {cell['failed']}/{cell['items']}",
            next(iter(errors), "-"),
        )
    console.print(table)
    overall = report["overall"]
    console.print(
        f"{overall['items']} items, failure rate {overall['failure_rate']:.3f}, "  # type: ignore[index]
        f"{len(report['facet_splits'])} facet splits; report: {out / 'report.html'} (and report.json)"  # type: ignore[arg-type]
    )
