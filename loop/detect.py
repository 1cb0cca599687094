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
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from rich.table import Table

from agents.examiner import WorldExaminer, node_stats
from agents.llm.assessor import LLMAssessor
from agents.llm.client import LLMClient
from agents.llm.examiner import load_taxonomy, propose_taxonomy
from agents.llm.parsing import Chat
from agents.llm.teacher import LLMTeacher
from agents.plans import autodetect
from agents.roles import WeaknessProfile
from agents.search import WorldSearch, cell_stats
from core.models import ModelConversionError, ModelNotFoundError, resolve_model
from core.plugins import Inputs
from loop import files as F
from loop.config import RunConfig
from loop.console import console
from loop.detect_report import describe_cell, write_html, write_plots
from loop.parts import build, make_client, make_teacher, plugin_parts
from loop.runner import Runner, create_run
from loop.store import read_jsonl, write_jsonl, write_text_atomic
from loop.student import evaluate
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
    domain: str | None = None  # LLM mode: the domain the model's taxonomy covers
    taxonomy: str | None = None  # LLM mode: a JSON/YAML taxonomy file instead of a proposed one
    points: int = 8  # LLM mode: test points the model proposes for `domain`


def run_detect(cfg: RunConfig, opts: DetectOptions, client: Chat | None = None) -> Path:
    """Investigate the student, write the report, return its folder. `client` (tests, notebooks) replaces the
    chat model the config names; it is the caller's to close."""
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
    own = client is None and cfg.teacher.kind == "llm"
    try:
        task = WorldTask(cfg)
        student, known, origin = resolve_student(cfg, opts, out)
        if cfg.teacher.kind == "llm":
            client = client or make_client(cfg, out, cfg.teacher.llm.model)
            search: WorldSearch | LLMSearch = LLMSearch(cfg, opts, client, task, known)
        else:
            search = WorldSearch(task.points, cfg.seed, cfg.task.difficulty, opts.per_node)
            search.remember(known)
        stop = search.stop if isinstance(search, LLMSearch) else task.stop
        console.print(f"[bold]gaploop detect[/] {origin} -> {out}")
        graded: list[Record] = []
        seconds: dict[str, float] = {}
        for it in range(opts.iterations + 1):
            t0 = time.perf_counter()
            batch = search.initial() if it == 0 else search.next_items(graded, it)
            if isinstance(search, LLMSearch):
                batch += search.grown  # first items of points the examiner added after the last iteration
            if not batch:
                console.print(f"iteration {it}: the search has no new item left to ask; stopping")
                break
            answered = evaluate(cfg, student, batch, f"iteration {it}: student answers", stop=stop)
            got = search.grade(answered) if isinstance(search, LLMSearch) else task.grade(answered)
            graded += got
            write_jsonl(out / "items.jsonl", graded)
            seconds[f"iteration {it}"] = time.perf_counter() - t0
            rate = sum(not g["correct"] for g in got) / len(got)
            console.print(f"iteration {it}: {len(got)} items, failure rate {rate:.3f}")
            if isinstance(search, LLMSearch) and it < opts.iterations:
                for point in search.grow(graded, it + 1):
                    console.print(f"iteration {it}: the examiner added the point {point['id']}: {point['description']}")
            tracker.log({"detect/failure_rate": rate, "detect/items": len(got)}, round=it)
        describe = {str(p["id"]): p for p in (search.taxonomy if isinstance(search, LLMSearch) else task.taxonomy())}
        if client is not None:
            usage = client.total()
            seconds["llm_tokens"] = float(usage.tokens)
        report = build_report(graded, cfg, opts, origin, seconds, time.perf_counter() - t_start, describe)
        write_text_atomic(out / "report.json", json.dumps(report, indent=1))
        plots = write_plots(report, out)
        write_html(report, plots, out / "report.html")
        tracker.log_table("detect/points", [_point_row(p) for p in report["points"]])
        tracker.log_table("detect/worst", [ex for p in report["weakest"] for ex in p["examples"]])
        tracker.log_images({f"detect/{path.stem}": path for path in plots})
        tracker.log_histogram("detect/point_failure_rate", [p["failure_rate"] for p in report["points"]])
        tracker.log_histogram("detect/cell_failure_rate", [c["failure_rate"] for c in report["cells"]])
        tracker.log_histogram("detect/judge_score", [float(g["score"]) for g in graded if g.get("score") is not None])
        tracker.summary({"detect/failure_rate": report["overall"]["failure_rate"], "detect/items": len(graded)})
    finally:
        tracker.finish()
        if own and isinstance(client, LLMClient):
            client.close()
    print_summary(report, out)
    return out


def _check(cfg: RunConfig, opts: DetectOptions) -> None:
    if cfg.task.name != "world":
        raise DetectError(
            "gaploop detect over a dataset is not built yet: investigate the task world, or a domain with an LLM "
            "(teacher.kind=llm --domain '...')"
        )
    if cfg.teacher.kind != "llm" and (opts.domain or opts.taxonomy):
        raise DetectError("--domain and --taxonomy need an LLM to write and judge the test cases: set teacher.kind=llm")
    if opts.domain and opts.taxonomy:
        raise DetectError("give --domain (the model proposes the taxonomy) or --taxonomy FILE, not both")
    if opts.model and opts.run:
        raise DetectError("give --model or --run, not both")
    if opts.model:
        _model_folder(opts.model)  # before the report folder is made
    if opts.round is not None and not opts.run:
        raise DetectError("--round picks a round of --run; give --run too")
    if opts.iterations < 0 or opts.per_node < 1:
        raise DetectError(f"--iterations must be >= 0 and --per-node >= 1 (got {opts.iterations}, {opts.per_node})")


class LLMSearch:
    """AutoDetect with a model: a taxonomy (proposed for a domain, read from a file, or the world's points),
    `per_node` seed prompts per point, then per point `per_node` search prompts each iteration aimed at a
    lower score from 5 past items; reference answers by the teacher; the student graded by the judge (or
    exactly, by the world's oracle, on the world's points)."""

    def __init__(self, cfg: RunConfig, opts: DetectOptions, client: Chat, task: WorldTask, known: list[str]) -> None:
        llm = cfg.teacher.llm
        if opts.taxonomy:
            self.taxonomy = load_taxonomy(opts.taxonomy)
        elif opts.domain:
            self.taxonomy = propose_taxonomy(client, opts.domain, opts.points, llm.max_tries)
        else:
            self.taxonomy = task.taxonomy()
        self.world = not (opts.taxonomy or opts.domain)
        self.stop = task.stop if self.world else ()  # free-text answers run to the end token
        self.per_node = opts.per_node
        parts = replace(plugin_parts(cfg, task, client), domain=opts.domain or "")
        self.proposer = autodetect.search(parts, opts.per_node)
        self.known = list(known)
        self.teacher = (
            make_teacher(cfg, client, task)
            if self.world
            else LLMTeacher(client, samples=1, max_tries=llm.max_tries, max_tokens=llm.max_tokens)
        )
        self.judge = LLMAssessor(client, verifier=task.verifier if self.world else None, max_tries=llm.max_tries)
        self.dropped: list[Record] = []
        # An examiner that grows the taxonomy (it writes probes for the points it adds), where the config names one.
        examiner = build("examiner", cfg.examiner, parts) if cfg.examiner is not None else None
        self.examiner = examiner if hasattr(examiner, "probes") else None
        self.profile: WeaknessProfile | None = None
        self.grown: list[Record] = []
        self.base = list(self.taxonomy)  # what the examiner is given: it adds the points it grew itself

    def grow(self, graded: list[Record], iteration: int) -> list[Record]:
        """AutoDetect's taxonomy growth between iterations: the examiner sees every item graded so far and may
        add a point (judged by the model); a new point's first items are written by the examiner, answered by
        the teacher and asked in the next iteration (`grown`), after which the search covers it like the rest.
        Returns the points added."""
        self.grown = []
        if self.examiner is None:
            return []
        providers = {
            "probes": lambda: graded,
            "previous_profile": lambda: self.profile,
            "taxonomy": lambda: self.base,
        }
        examine = self.examiner.examine  # type: ignore[attr-defined]
        self.profile = examine(Inputs(type(self.examiner), providers), iteration)
        have = {str(p["id"]) for p in self.taxonomy}
        grown = [r for r in self.profile.refinements if r.get("kind") == "new_point"]
        fresh = [r for r in grown if str(r["point"]) not in have]
        if not fresh:
            return []
        added = [
            {"id": str(r["point"]), "category": str(r["category"]), "description": str(r["description"])} for r in fresh
        ]
        self.taxonomy += added
        written = self.examiner.probes(replace(self.profile, refinements=fresh), iteration, self.known)  # type: ignore[attr-defined]
        self.known += [str(w["instruction"]) for w in written]
        answered = self.teacher.answer(written)
        self.grown = [{**a, "iteration": iteration} for a in answered if str(a.get("output") or "").strip()]
        return added

    def initial(self) -> list[Record]:
        """Seed prompts for every point of the taxonomy."""
        fresh = [{"kind": "new_point", "point": p["id"], "description": p["description"]} for p in self.taxonomy]
        return self._ask(WeaknessProfile(round=0, nodes=[], refinements=fresh), [], 0)

    def next_items(self, graded: list[Record], iteration: int) -> list[Record]:
        """Search prompts for every point (every point is searched, as AutoDetect runs each to a fixed count)."""
        groups: dict[str, list[bool]] = defaultdict(list)
        for g in graded:
            groups[str(g["knowledge_point"])].append(bool(g["correct"]))
        profile = WeaknessProfile(round=iteration, nodes=node_stats(groups, {}, weak_below=1.01))
        return self._ask(profile, graded, iteration)

    def _ask(self, profile: WeaknessProfile, graded: list[Record], iteration: int) -> list[Record]:
        budget = self.per_node * len(self.taxonomy)
        failures = [g for g in graded if not g["correct"]]
        successes = [g for g in graded if g["correct"]]
        values = {"profile": profile, "failures": failures, "successes": successes, "taxonomy": self.taxonomy}
        written = self.proposer.question({**values, "known": self.known}, budget, iteration)
        self.known += [str(c["instruction"]) for c in written.items]
        answered = self.teacher.answer(written.items)
        kept = [{**a, "iteration": iteration} for a in answered if str(a.get("output") or "").strip()]
        self.dropped += [a for a in answered if not str(a.get("output") or "").strip()]
        return kept

    def grade(self, answered: list[Record]) -> list[Record]:
        """The judge's 1-10 score against the teacher's reference (right = at least 3.1), or the exact check."""
        return self.judge.grade(answered)


def _model_folder(name: str) -> Path:
    """The HF folder --model names (a GGUF file is converted once); DetectError where there is none."""
    try:
        model = Path(resolve_model(name))
    except (ModelNotFoundError, ModelConversionError) as err:
        raise DetectError(f"--model: {err}") from None
    if not (model / "config.json").is_file():
        raise DetectError(f"--model {name}: not a Hugging Face model folder (no config.json in it)")
    return model


def resolve_student(cfg: RunConfig, opts: DetectOptions, out: Path) -> tuple[Path, list[str], str]:
    """(model folder, questions it was trained on, where it came from)."""
    if opts.model:
        model = _model_folder(opts.model)
        return model, [], f"model {model}"
    if opts.run:
        return _run_student(Path(opts.run), opts.round)
    # The embedded default: round 0 of a loop run (the tiny student trained on the world's seed), kept beside the
    # report as a run directory of its own (its metrics, its training log; `gaploop status` reads it).
    rounds = cfg.rounds.model_copy(update={"max_rounds": 0})
    tracking = cfg.tracking.model_copy(update={"wandb_mode": "disabled"})  # the investigation has the W&B run
    inner = cfg.model_copy(update={"run_dir": str(out / "student"), "rounds": rounds, "tracking": tracking})
    store, task = create_run(inner, WorldTask(inner))
    runner = Runner(inner, store, task=task)
    with runner.session():
        runner.run_round(0)
        store.set_field("status", "finished")
    seed = runner.files.rows(0, F.ITEMS)
    known = [str(r["instruction"]) for r in seed]
    origin = f"the default tiny student: round 0 of the loop run {store.root}, trained on {len(seed)} seed items"
    return runner.files.at(0, F.MODEL), known, origin


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
    graded: list[Record],
    cfg: RunConfig,
    opts: DetectOptions,
    origin: str,
    seconds: dict[str, float],
    total: float,
    describe: dict[str, Record],
) -> dict[str, object]:
    """Everything the HTML page, the plots and W&B show, as plain data. `describe` maps a point id to its
    taxonomy entry (category, description)."""
    by_point: dict[str, list[bool]] = defaultdict(list)
    by_category: dict[str, list[bool]] = defaultdict(list)
    for g in graded:
        point = str(g["knowledge_point"])
        by_point[point].append(bool(g["correct"]))
        by_category[str(describe.get(point, {}).get("category", "?"))].append(bool(g["correct"]))
    points = []
    for s in node_stats(by_point, {}, 1.0):
        mine = [g for g in graded if g["knowledge_point"] == s.point]
        iterations = sorted({int(g["iteration"]) for g in mine})  # type: ignore[call-overload]
        scores = [float(g["score"]) for g in mine if g.get("score") is not None]  # type: ignore[arg-type]
        entry = describe.get(s.point, {})
        points.append(
            {
                "point": s.point,
                "skill": str(entry.get("category", "?")),
                "description": str(entry.get("description", "")),
                "items": s.n,
                "failed": s.n - s.correct,
                "failure_rate": 1 - s.accuracy,
                "ci_low": 1 - s.ci_high,
                "ci_high": 1 - s.ci_low,
                "trajectory": {str(it): _rate([g for g in mine if g["iteration"] == it]) for it in iterations},
                "sweep_failure_rate": _rate([g for g in mine if g["iteration"] == 0]),
                "mean_score": sum(scores) / len(scores) if scores else None,
                "by_level": {
                    str(lv): _rate([g for g in mine if g.get("difficulty") == lv])
                    for lv in sorted({int(g["difficulty"]) for g in mine if g.get("difficulty") is not None})  # type: ignore[call-overload]
                },
                "worst_cell": _worst_cell(mine),
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
    scores = [float(g["score"]) for g in graded if g.get("score") is not None]  # type: ignore[arg-type]
    return {
        "student": origin,
        "config": {"task": cfg.task.model_dump(mode="json"), "seed": cfg.seed, "template": cfg.student.template},
        "options": asdict(opts),
        "taxonomy": list(describe.values()),
        "overall": {
            "items": len(graded),
            "failed": sum(not g["correct"] for g in graded),
            "failure_rate": _rate(graded),
        },
        "iterations": [{"iteration": it, **_counts([g for g in graded if g["iteration"] == it])} for it in iterations],
        "skills": {k: {"items": len(v), "failure_rate": 1 - sum(v) / len(v)} for k, v in sorted(by_category.items())},
        "points": points,
        # Every (point, level, facet) cell the search asked (world items only), worst first.
        "cells": sorted(
            ({**asdict(c), "failure_rate": c.failure_rate} for c in cell_stats(graded)),
            key=lambda c: (-c["failure_rate"], -c["asked"], c["point"], c["difficulty"], c["facet"]),
        ),
        "facet_splits": refinements,
        "weakest": weakest,
        "error_types": dict(Counter(str(g["error_type"]) for g in graded if not g["correct"]).most_common()),
        # The judge's 1-10 scores (LLM mode): how many items got each score.
        "scores": {str(k): v for k, v in sorted(Counter(round(x) for x in scores).items())},
        "seconds": {**seconds, "total": total},
    }


def _worst_cell(records: list[Record]) -> Record | None:
    """The (level, facet) cell with the highest failure rate, where the items have levels (the world)."""
    cells = Counter((int(g["difficulty"]), str(g["facet"])) for g in records if g.get("difficulty") is not None)  # type: ignore[call-overload]
    if not cells:
        return None
    failed = Counter(
        (int(g["difficulty"]), str(g["facet"]))  # type: ignore[call-overload]
        for g in records
        if g.get("difficulty") is not None and not g["correct"]
    )
    level, facet = max(cells, key=lambda c: (failed[c] / cells[c], cells[c]))
    return {"difficulty": level, "facet": facet, "items": cells[(level, facet)], "failed": failed[(level, facet)]}


def _rate(records: list[Record]) -> float:
    return sum(not g["correct"] for g in records) / len(records) if records else 0.0


def _counts(records: list[Record]) -> dict[str, object]:
    return {"items": len(records), "failed": sum(not g["correct"] for g in records), "failure_rate": _rate(records)}


def _worst_examples(records: list[Record], n: int) -> list[Record]:
    """Failures on the easiest items first: a slip at level 1 says more than one at level 3."""
    failed = sorted(
        (g for g in records if not g["correct"]),
        key=lambda g: (g.get("difficulty") or 0, g.get("score") or 0, str(g["id"])),
    )
    keys = ("point", "difficulty", "facet", "question", "expected", "answer", "error_type", "iteration")
    return [
        dict(
            zip(
                keys,
                (
                    g["knowledge_point"],
                    g.get("difficulty"),
                    g.get("facet"),
                    g["instruction"],
                    g["output"],
                    g["prediction"],
                    g.get("error_type"),
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
    for col in ("point", "failure rate (95% CI)", "first sweep", "items", "worst cell / score", "top error"):
        table.add_column(col)
    for p in report["points"][:10]:  # type: ignore[index]
        errors = p["error_types"]
        table.add_row(
            p["point"],
            f"{p['failure_rate']:.2f} ({p['ci_low']:.2f}-{p['ci_high']:.2f})",
            f"{p['sweep_failure_rate']:.2f}",
            str(p["items"]),
            describe_cell(p["worst_cell"]) if p["worst_cell"] else f"mean judge score {p['mean_score']:.1f}",
            next(iter(errors), "-"),
        )
    console.print(table)
    overall = report["overall"]
    console.print(
        f"{overall['items']} items, failure rate {overall['failure_rate']:.3f}, "  # type: ignore[index]
        f"{len(report['facet_splits'])} facet splits; report: {out / 'report.html'} (and report.json)"  # type: ignore[arg-type]
    )
