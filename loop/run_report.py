"""`gaploop report RUN_DIR`: one self-contained report.html of a run (PNG plots embedded), with its data in
report/report.json and the plots as files in report/. Drawn from the run directory alone (round summaries,
record files, metrics.jsonl), so it can be made while the run goes on, after a crash, or long after.

    RUN_DIR/report.html              the page (open it in a browser; it needs nothing beside it)
    RUN_DIR/report/report.json       everything the page shows
    RUN_DIR/report/*.png             the plots
"""

from __future__ import annotations

import base64
import json
import warnings
from collections import Counter
from pathlib import Path

import jinja2
import yaml

from core.jsonl import read_jsonl, write_text_atomic
from loop import files as F
from loop.detect_report import _save, plt
from loop.legacy import migrate
from loop.report import run_state

Report = dict[str, object]
TEMPLATE = Path(__file__).with_name("templates") / "run_report.html.j2"
WEAKEST = 5  # points with their provenance tables on the page
EXAMPLES = 3  # failures and items shown per point and round
TOP_REASONS = 7  # drop reasons with their own colour in the stacked bars; the rest are "other"


class ReportError(RuntimeError):
    """The run directory cannot be reported on; the message says which and why."""


# -- data -------------------------------------------------------------------------------------------
def collect(run_dir: Path, fixed_at: float = 0.8) -> Report:
    """Everything the page shows, as JSON-able data. A point counts as fixed in the first round whose test
    accuracy on it reaches `fixed_at`."""
    if not (run_dir / "manifest.json").is_file():
        raise ReportError(f"{run_dir} is not a run directory: manifest.json not found")
    files = F.RunFiles(run_dir)
    summaries = [json.loads(p.read_text()) for p in sorted(run_dir.glob("round_*/" + F.SUMMARY))]
    if not summaries:
        raise ReportError(f"{run_dir}: no round has finished yet (no round_*/summary.json); nothing to report")
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
    with warnings.catch_warnings():  # a run made before the plugin redesign: its resume has said so already
        warnings.simplefilter("ignore", FutureWarning)
        migrate(cfg, str(run_dir / "config.yaml"))
    manifest = json.loads((run_dir / "manifest.json").read_text())
    rounds = [_round(files, s) for s in summaries]
    skills = _skills(files, len(rounds))
    points = sorted({k.split("/", 2)[2] for s in summaries for k in s["metrics"] if k.startswith("test/point/")})
    accuracy = {p: [s["metrics"].get(f"test/point/{p}") for s in summaries] for p in points}
    return {
        "run": manifest.get("run", run_dir.name),
        "run_dir": str(run_dir),
        "state": run_state(run_dir),
        "strategy": strategy_name(cfg),
        "teacher": _teacher(cfg),
        "student": (cfg.get("student") or {}).get("model", "?"),
        "fixed_at": fixed_at,
        "rounds": rounds,
        "points": [{"point": p, "skill": skills.get(p, "?"), "accuracy": accuracy[p]} for p in points],
        "loss": _loss(run_dir, len(rounds)),
        "weakest": _weakest(files, rounds, accuracy, skills, fixed_at),
    }


def strategy_name(cfg: dict) -> str:
    """'weakness x generator', with refiners and mixes named: the run's synthesis in a few words."""
    syn = cfg.get("synthesis") or {}
    name = lambda spec: spec.get("name") if isinstance(spec, dict) else spec  # noqa: E731
    if syn.get("mix"):
        parts = [f"{part.get('label') or name(part.get('plan'))} {part.get('share', '')}" for part in syn["mix"]]
        text = "mix: " + ", ".join(p.strip() for p in parts)
    else:
        text = f"{name(syn.get('plan'))} x {name(syn.get('writer'))}"
    refine = [name(r) for r in syn.get("refine") or []]
    return text + (f" + {', '.join(refine)}" if refine else "")


def _teacher(cfg: dict) -> str:
    teacher = cfg.get("teacher") or {}
    if teacher.get("kind") != "llm":
        return "the task world (programmatic)"
    llm = teacher.get("llm") or {}
    return f"{llm.get('backend')}:{llm.get('model')}"


def _round(files: F.RunFiles, summary: dict) -> dict:
    r, m = summary["round"], summary["metrics"]
    items = read_jsonl(files.at(r, F.ITEMS)).rows if files.at(r, F.ITEMS).is_file() else []
    synthetic = [i for i in items if i.get("source") == "synthetic"]
    agents = sorted({k.split("/")[1] for k in m if k.startswith("llm/") and k.endswith("/calls")})
    usage = {
        a: {key: m.get(f"llm/{a}/{key}", 0) for key in ("calls", "prompt_tokens", "completion_tokens", "cost")}
        for a in agents
    }
    return {
        "round": r,
        "test": m.get("test/accuracy"),
        "probe": m.get("probe/accuracy"),
        "skills": {k.split("/")[-1]: v for k, v in m.items() if k.startswith("test/accuracy/")},
        "candidates": int(m.get("synth/candidates", 0)),
        "kept": int(m.get("synth/kept", 0)),
        "dropped": int(m.get("synth/dropped", 0)),
        "reasons": summary.get("reasons", {}),
        "ifd_kept": [float(i["ifd"]) for i in synthetic if i.get("ifd") is not None and i.get("kept")],
        "ifd_dropped": [float(i["ifd"]) for i in synthetic if i.get("ifd") is not None and not i.get("kept")],
        "pool": int(m.get("pool/size", 0)),
        "times": {k: v for k, v in summary.get("times", {}).items() if k not in ("round", "log")},
        "seconds": m.get("time/round", 0.0),
        "usage": usage,
    }


def _skills(files: F.RunFiles, rounds: int) -> dict[str, str]:
    """Point -> skill, from the graded test of the rounds."""
    out: dict[str, str] = {}
    for r in range(rounds):
        path = files.at(r, F.EVAL_TEST)
        if path.is_file():
            for row in read_jsonl(path).rows:
                out.setdefault(str(row.get("knowledge_point")), str(row.get("skill", "?")))
            return out
    return out


def _loss(run_dir: Path, rounds: int) -> list[dict]:
    """Training loss by step, each row given the round it trained (its round row follows it in metrics.jsonl)."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return []
    out, r = [], 0
    for row in read_jsonl(path).rows:
        if "round" in row:
            r = int(row["round"]) + 1  # type: ignore[call-overload]
        elif "train/loss" in row and r < rounds:
            out.append({"round": r, "step": row.get("train/global_step"), "loss": row["train/loss"]})
    return out


def _weakest(
    files: F.RunFiles, rounds: list[dict], accuracy: dict[str, list], skills: dict[str, str], fixed_at: float
) -> list[dict]:
    """The points weakest in round 0, each with its provenance: the failures of a round, the items written for
    the point in the next one (and why dropped ones went), and the point's accuracy after that round."""
    first = {p: acc[0] for p, acc in accuracy.items() if acc and acc[0] is not None}
    out = []
    for point in sorted(first, key=lambda p: (first[p], p))[:WEAKEST]:
        acc = accuracy[point]
        fixed = next((rd["round"] for rd, a in zip(rounds, acc, strict=True) if a is not None and a >= fixed_at), None)
        steps = []
        for prev, rd in zip(rounds, rounds[1:], strict=False):
            r = rd["round"]
            failures = _rows(files, prev["round"], F.EVAL_TEST, point, lambda row: not row.get("correct"))
            written = _rows(files, r, F.ITEMS, point, lambda row: row.get("source") == "synthetic")
            by_id = {str(f["id"]): f for f in failures}
            before, after = acc[prev["round"]], acc[r]
            steps.append(
                {
                    "round": r,
                    "failures": len(failures),
                    "failure_examples": [_brief(f) for f in failures[:EXAMPLES]],
                    "written": len(written),
                    "kept": sum(1 for i in written if i.get("kept")),
                    "drops": dict(
                        Counter(str(i.get("drop_reason")) for i in written if not i.get("kept")).most_common(3)
                    ),
                    "item_examples": [_item(i, by_id) for i in _examples(written)],
                    "before": before,
                    "after": after,
                    "verdict": _verdict(before, after, fixed_at),
                }
            )
        out.append({"point": point, "skill": skills.get(point, "?"), "accuracy": acc, "fixed": fixed, "steps": steps})
    return out


def _rows(files: F.RunFiles, r: int, name: str, point: str, keep) -> list[dict]:  # noqa: ANN001
    path = files.at(r, name)
    if not path.is_file():
        return []
    return [row for row in read_jsonl(path).rows if row.get("knowledge_point") == point and keep(row)]


def _brief(row: dict) -> dict:
    return {k: row.get(k) for k in ("id", "instruction", "output", "prediction", "error_type")}


def _examples(written: list[dict]) -> list[dict]:
    """Kept items first, then dropped ones: what went into training and what did not."""
    kept = [i for i in written if i.get("kept")][: EXAMPLES - 1 if len(written) > EXAMPLES else EXAMPLES]
    dropped = [i for i in written if not i.get("kept")]
    return (kept + dropped)[:EXAMPLES]


def _item(item: dict, failures: dict[str, dict]) -> dict:
    parent = str(item.get("parent_id"))
    return {
        "id": item.get("id"),
        "instruction": item.get("instruction"),
        "output": item.get("output"),
        "kept": bool(item.get("kept")),
        "drop_reason": item.get("drop_reason"),
        "ifd": item.get("ifd"),
        "from": f"failure {parent}: {failures[parent]['instruction']}"
        if parent in failures
        else f"{parent} ({item['why']})"
        if item.get("why")
        else parent,
    }


def _verdict(before: float | None, after: float | None, fixed_at: float) -> str:
    if before is None or after is None:
        return "not evaluated"
    if after >= fixed_at:
        return "fixed" if before < fixed_at else "held"
    return "improved" if after > before else ("unchanged" if after == before else "worse")


# -- plots ------------------------------------------------------------------------------------------
def write_plots(report: Report, out: Path) -> list[Path]:
    """accuracy, point_heatmap, items (stacked by drop reason), ifd, phase_times, loss, teacher (LLM runs)."""
    out.mkdir(parents=True, exist_ok=True)
    rounds: list[dict] = report["rounds"]  # type: ignore[assignment]
    paths = [_accuracy(rounds, out / "accuracy.png")]
    if report["points"]:
        paths.append(_heatmap(report, out / "point_heatmap.png"))
    if len(rounds) > 1:
        paths.append(_items(rounds, out / "items.png"))
    if any(rd["ifd_kept"] or rd["ifd_dropped"] for rd in rounds):
        paths.append(_ifd(rounds, out / "ifd.png"))
    paths.append(_times(rounds, out / "phase_times.png"))
    if report["loss"]:
        paths.append(_loss_plot(report["loss"], out / "loss.png"))  # type: ignore[arg-type]
    if any(rd["usage"] for rd in rounds):
        paths.append(_teacher_plot(rounds, out / "teacher.png"))
    return paths


def _accuracy(rounds: list[dict], path: Path) -> Path:
    xs = [rd["round"] for rd in rounds]
    fig, ax = plt.subplots(figsize=(8, 4.2))
    ax.plot(xs, [rd["test"] for rd in rounds], "k-o", lw=2.5, label="test (all points)")
    if any(rd["probe"] is not None for rd in rounds):
        ax.plot(xs, [rd["probe"] for rd in rounds], "k--s", lw=1.5, label="probe (all points)")
    for skill in sorted({s for rd in rounds for s in rd["skills"]}):
        ax.plot(xs, [rd["skills"].get(skill) for rd in rounds], "-", marker=".", lw=1, label=skill)
    ax.set_xticks(xs)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("round")
    ax.set_ylabel("accuracy")
    ax.set_title("Held-out accuracy by round, overall and per skill")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return _save(fig, path)


def _heatmap(report: Report, path: Path) -> Path:
    points: list[dict] = sorted(report["points"], key=lambda p: (p["skill"], p["point"]))  # type: ignore[arg-type]
    rounds = [rd["round"] for rd in report["rounds"]]  # type: ignore[union-attr]
    grid = [[float("nan") if a is None else a for a in p["accuracy"]] for p in points]
    fig, ax = plt.subplots(figsize=(1.1 * len(rounds) + 3, 0.3 * len(points) + 1.3))
    im = ax.imshow(grid, cmap="RdYlGn", vmin=0, vmax=1, aspect="auto")
    for i, row in enumerate(grid):
        for j, a in enumerate(row):
            if a == a:  # not NaN
                ax.text(j, i, f"{a:.2f}", ha="center", va="center", fontsize=6.5)
    ax.set_xticks(range(len(rounds)), [str(r) for r in rounds])
    ax.set_yticks(range(len(points)), [f"{p['point']} ({p['skill']})" for p in points], fontsize=7)
    ax.set_xlabel("round")
    ax.set_title("Test accuracy per knowledge point and round")
    fig.colorbar(im, ax=ax, fraction=0.04)
    return _save(fig, path)


def _items(rounds: list[dict], path: Path) -> Path:
    later = rounds[1:]
    total: Counter[str] = Counter()
    for rd in later:
        total.update(rd["reasons"])
    named = [reason for reason, _ in total.most_common(TOP_REASONS)]
    stacks = [("kept", [rd["kept"] for rd in later])]
    stacks += [(f"dropped: {reason}"[:70], [rd["reasons"].get(reason, 0) for rd in later]) for reason in named]
    other = [sum(n for k, n in rd["reasons"].items() if k not in named) for rd in later]
    if any(other):
        stacks.append(("dropped: other reasons", other))
    colours = ["tab:green"] + [plt.get_cmap("tab20")(2 * i + 1) for i in range(len(stacks))]
    title = "Items written per round: kept, and dropped by reason"
    return _stacked([rd["round"] for rd in later], stacks, colours, "synthetic items", title, path)


def _stacked(xs: list[int], stacks: list[tuple[str, list]], colours: list, ylabel: str, title: str, path: Path) -> Path:
    """Bars per round, one stacked part per (label, heights), legend at the right."""
    fig, ax = plt.subplots(figsize=(8.5, 4.2))
    bottom = [0.0] * len(xs)
    for (label, heights), colour in zip(stacks, colours, strict=False):
        ax.bar(xs, heights, bottom=bottom, color=colour, label=label)
        bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
    ax.set_xticks(xs)
    ax.set_xlabel("round")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=6.5, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _save(fig, path)


def _ifd(rounds: list[dict], path: Path) -> Path:
    with_ifd = [rd for rd in rounds if rd["ifd_kept"] or rd["ifd_dropped"]]
    fig, ax = plt.subplots(figsize=(8, 4))
    data = [rd["ifd_kept"] + rd["ifd_dropped"] for rd in with_ifd]
    ax.violinplot(data, positions=[rd["round"] for rd in with_ifd], showmedians=True)
    for rd in with_ifd:
        for values, colour in ((rd["ifd_kept"], "tab:green"), (rd["ifd_dropped"], "tab:red")):
            ax.plot([rd["round"] + 0.25] * len(values), values, "_", color=colour, alpha=0.35)
    ax.axhline(1.0, color="grey", lw=0.8, ls=":")
    ax.set_xticks([rd["round"] for rd in with_ifd])
    ax.set_xlabel("round (ticks at the right: green kept, red dropped)")
    ax.set_ylabel("IFD = ppl(A|Q) / ppl(A)")
    ax.set_title("IFD of the round's synthetic items, by the student")
    return _save(fig, path)


def _times(rounds: list[dict], path: Path) -> Path:
    phases = list(dict.fromkeys(k for rd in rounds for k in rd["times"]))
    stacks = [(phase, [float(rd["times"].get(phase, 0.0)) for rd in rounds]) for phase in phases]
    colours = [plt.get_cmap("tab20")(i % 20) for i in range(len(phases))]
    return _stacked([rd["round"] for rd in rounds], stacks, colours, "seconds", "Time in each phase", path)


def _loss_plot(loss: list[dict], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(8, 3.8))
    for r in sorted({row["round"] for row in loss}):
        rows = [row for row in loss if row["round"] == r]
        ax.plot([row["step"] for row in rows], [row["loss"] for row in rows], lw=1, label=f"round {r}")
    ax.set_xlabel("training step (counted over the whole run)")
    ax.set_ylabel("training loss")
    ax.set_title("Training loss")
    ax.legend(fontsize=7)
    return _save(fig, path)


def _teacher_plot(rounds: list[dict], path: Path) -> Path:
    agents = sorted({a for rd in rounds for a in rd["usage"]})
    tokens = {
        a: sum(
            rd["usage"].get(a, {}).get("prompt_tokens", 0) + rd["usage"].get(a, {}).get("completion_tokens", 0)
            for rd in rounds
        )
        for a in agents
    }
    cost = {a: sum(rd["usage"].get(a, {}).get("cost", 0.0) for rd in rounds) for a in agents}
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6))
    left.bar(agents, [tokens[a] for a in agents], color="tab:blue")
    left.set_ylabel("tokens (prompt + completion)")
    left.set_title("Teacher tokens per agent")
    right.bar(agents, [cost[a] for a in agents], color="tab:orange")
    right.set_ylabel("cost (USD; 0 without prices)")
    right.set_title("Teacher cost per agent")
    for ax in (left, right):
        plt.setp(ax.get_xticklabels(), rotation=30, ha="right", fontsize=7)
    return _save(fig, path)


# -- the page ---------------------------------------------------------------------------------------
def write_report(run_dir: Path, fixed_at: float = 0.8) -> Path:
    """report/report.json, report/*.png and report.html in `run_dir`; returns the page's path."""
    report = collect(run_dir, fixed_at)
    out = run_dir / "report"
    plots = write_plots(report, out)
    write_text_atomic(out / "report.json", json.dumps(report, indent=1, default=str) + "\n")
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    template = env.from_string(TEMPLATE.read_text(encoding="utf-8"))
    images = [{"name": p.stem, "data": base64.b64encode(p.read_bytes()).decode("ascii")} for p in plots]
    page = template.render(report=report, plots=images, fmt=_fmt)
    path = run_dir / "report.html"
    write_text_atomic(path, page)
    return path


def write_run_report(run_dir: Path) -> str:
    """The report at the end of a run: its path, or why there is none (a report is never worth failing a run)."""
    try:
        return str(write_report(run_dir))
    except (ReportError, OSError, ValueError) as err:
        return f"not written ({type(err).__name__}: {err}); try `gaploop report {run_dir}`"


def _fmt(value: object, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)
