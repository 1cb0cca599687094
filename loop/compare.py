"""`gaploop compare RUN_DIR ...`: runs side by side, grouped by strategy or by seed, from their run directories alone.

Per group: round-0 and final held-out test accuracy (mean ± sample std over the group's runs, min, max, each run's
value), the gain over round 0 and over a baseline group, accuracy by round, the weak points' accuracy, each
knowledge point's final accuracy, and what the runs spent (synthetic items written and kept, teacher tokens and
cost where an LLM answered, minutes). Printed as rich tables; with an output folder also as PNG plots, the data
(compare.json) and one self-contained page (compare.html, plots embedded).

Only finished rounds (those with a summary.json) count; a round folder without one is named as skipped, and a run
with no finished round is left out with a note.
"""

from __future__ import annotations

import base64
import json
import statistics
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import jinja2
import yaml
from rich.console import Console
from rich.table import Table

from core.jsonl import read_jsonl, write_text_atomic
from loop import files as F
from loop.detect_report import _save, plt
from loop.report import run_state
from loop.run_report import _fmt, strategy_name

Comparison = dict[str, object]
Stat = dict[str, float | int | None]  # mean, std (None for one run), n, min, max
BY = ("strategy", "seed")
TEMPLATE = Path(__file__).with_name("templates") / "compare.html.j2"
NOT_COMPARED = ("name", "seed", "run_dir", "runs_dir", "tracking", "synthesis")  # differ by design between runs
MAX_DIFFS = 3  # option differences named in a strategy's label


class CompareError(ValueError):
    """A path that is not a run nor a folder of runs, a bad --by or --baseline, or nothing to compare."""


@dataclass
class Run:
    """One run directory's finished rounds and what it spent."""

    dir: Path
    cfg: dict
    state: str
    rounds: list[dict] = field(default_factory=list)  # the finished rounds' summaries, in order
    unfinished: list[int] = field(default_factory=list)  # round folders without a summary.json
    kept_by_point: Counter[str] = field(default_factory=Counter)  # synthetic items kept, over all rounds

    def total(self, key: str) -> float | None:
        """A metric summed over the finished rounds; None where no round has it (e.g. teacher tokens without an LLM)."""
        values = [s["metrics"][key] for s in self.rounds if key in s["metrics"]]
        return float(sum(values)) if values else None

    def accuracy(self, i: int, key: str = "test/accuracy") -> float | None:
        """A metric (test accuracy unless named) of the i-th finished round (-1: the last); None where not logged."""
        value = self.rounds[i]["metrics"].get(key)
        return None if value is None else float(value)


# -- finding and reading runs -------------------------------------------------------------------------
def find_runs(paths: Sequence[Path]) -> list[Path]:
    """Each path as a run directory (it holds manifest.json) or as a folder of runs (every */manifest.json)."""
    found: dict[Path, None] = {}
    for path in paths:
        if not path.is_dir():
            raise CompareError(f"{path}: no such folder")
        if (path / "manifest.json").is_file():
            found[path.resolve()] = None
            continue
        inside = sorted(p.parent for p in path.glob("*/manifest.json"))
        if not inside:
            raise CompareError(
                f"{path} is not a run directory (no manifest.json) nor a folder of runs (no */manifest.json)"
            )
        found.update((p.resolve(), None) for p in inside)
    return list(found)


def load_run(run_dir: Path) -> Run:
    """A run's config, state, finished round summaries, skipped rounds and kept items per point."""
    if not (run_dir / "manifest.json").is_file():
        raise CompareError(f"{run_dir} is not a run directory: manifest.json not found")
    cfg_path = run_dir / "config.yaml"
    if not cfg_path.is_file():
        raise CompareError(f"{run_dir}: config.yaml not found; the run's strategy and seed are unknown")
    reading = cfg_path
    try:
        run = Run(run_dir, yaml.safe_load(cfg_path.read_text()) or {}, "")
        reading = run_dir / "manifest.json"
        run.state = run_state(run_dir)
        for folder in sorted(run_dir.glob("round_*/")):
            reading = folder / F.SUMMARY
            if not reading.is_file():
                run.unfinished.append(int(folder.name.split("_")[1]))
                continue
            run.rounds.append(json.loads(reading.read_text()))
            reading = folder / F.ITEMS
            if run.rounds[-1]["round"] > 0 and reading.is_file():
                kept = [i for i in read_jsonl(reading).rows if i.get("kept") and i.get("knowledge_point")]
                run.kept_by_point.update(str(i["knowledge_point"]) for i in kept)
    except (OSError, ValueError, KeyError, yaml.YAMLError) as err:
        raise CompareError(f"{reading}: cannot be read ({type(err).__name__}: {err})") from None
    return run


# -- grouping ---------------------------------------------------------------------------------------
def _flat(node: object, prefix: str = "") -> dict[str, str]:
    """Dotted paths to JSON text of the leaves (a list is one leaf)."""
    if not isinstance(node, dict):
        return {prefix: json.dumps(node, sort_keys=True)}
    out: dict[str, str] = {}
    for key, value in node.items():
        out.update(_flat(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def _differing(configs: Iterable[dict]) -> list[str]:
    """The dotted paths whose values are not the same in every config."""
    flats = [_flat(c) for c in configs]
    keys = sorted({k for f in flats for k in f})
    return [k for k in keys if len({f.get(k) for f in flats}) > 1]


def strategy_labels(runs: Sequence[Run]) -> list[str]:
    """Each run's strategy_name; where runs with different synthesis settings share a name (a plan's option, the
    budget), the settings that differ are added, so that they are not averaged together."""
    names = [strategy_name(r.cfg) for r in runs]
    labels = []
    for run, name in zip(runs, names, strict=True):
        same_name = {
            json.dumps(r.cfg.get("synthesis"), sort_keys=True) for r, n in zip(runs, names, strict=True) if n == name
        }
        if len(same_name) == 1:
            labels.append(name)
            continue
        mine = _flat(run.cfg.get("synthesis") or {})
        diffs = _differing(json.loads(s) or {} for s in same_name)
        shown = [f"{k}={mine.get(k, 'unset')}" for k in diffs[:MAX_DIFFS]]
        labels.append(f"{name} ({', '.join(shown)}{', ...' if len(diffs) > MAX_DIFFS else ''})")
    return labels


def group_runs(runs: Sequence[Run], by: str) -> dict[str, list[Run]]:
    """{label: runs}, labels in the order their first run was given."""
    if by not in BY:
        raise CompareError(f"--by {by!r}: one of {', '.join(BY)}")
    labels = strategy_labels(runs) if by == "strategy" else [f"seed {r.cfg.get('seed')}" for r in runs]
    groups: dict[str, list[Run]] = {}
    for label, run in zip(labels, runs, strict=True):
        groups.setdefault(label, []).append(run)
    return groups


# -- the numbers ------------------------------------------------------------------------------------
def stat(values: Iterable[float | None]) -> Stat:
    """Mean, sample std (n - 1; None for a single value), n, min and max of the values that are there."""
    xs = [float(v) for v in values if v is not None]
    if not xs:
        return {"mean": None, "std": None, "n": 0, "min": None, "max": None}
    std = statistics.stdev(xs) if len(xs) > 1 else None
    return {"mean": statistics.fmean(xs), "std": std, "n": len(xs), "min": min(xs), "max": max(xs)}


def _weak(run: Run, below: float) -> tuple[float, float, int] | None:
    """(round-0, final) mean test accuracy over the run's points below `below` in round 0, and how many."""
    first, last = run.rounds[0]["metrics"], run.rounds[-1]["metrics"]
    keys = [k for k, v in first.items() if k.startswith("test/point/") and v < below]
    if not keys:
        return None
    return statistics.fmean(first[k] for k in keys), statistics.fmean(last.get(k, 0.0) for k in keys), len(keys)


def _run_row(run: Run, label: str) -> dict:
    return {
        "run": run.dir.name,
        "dir": str(run.dir),
        "group": label,
        "seed": run.cfg.get("seed"),
        "strategy": strategy_name(run.cfg),
        "state": run.state,
        "rounds": [s["round"] for s in run.rounds],
        "test": [run.accuracy(i) for i in range(len(run.rounds))],
        "first": run.accuracy(0),
        "final": run.accuracy(-1),
        "unfinished": run.unfinished,
        "written": run.total("synth/candidates"),
        "kept": run.total("synth/kept"),
        "tokens": run.total("llm/tokens"),
        "cost": run.total("llm/cost"),
        "minutes": (run.total("time/round") or 0.0) / 60,
    }


def _group_row(label: str, runs: list[Run], rows: list[dict], weak_below: float) -> dict:
    first, final = stat(r["first"] for r in rows), stat(r["final"] for r in rows)
    by_round = sorted({x for r in rows for x in r["rounds"]})
    weak = [w for w in (_weak(r, weak_below) for r in runs) if w is not None]
    return {
        "group": label,
        "runs": [r["run"] for r in rows],
        "first": first,
        "final": final,
        "per_run": [r["final"] for r in rows],
        "gain": None if first["mean"] is None or final["mean"] is None else final["mean"] - first["mean"],
        "by_round": [
            {"round": x, **stat(r["test"][r["rounds"].index(x)] for r in rows if x in r["rounds"])} for x in by_round
        ],
        "weak": {
            "runs": len(weak),
            "points": statistics.fmean(w[2] for w in weak) if weak else 0.0,
            "first": statistics.fmean(w[0] for w in weak) if weak else None,
            "final": statistics.fmean(w[1] for w in weak) if weak else None,
        },
        **{key: stat(r[key] for r in rows) for key in ("written", "kept", "tokens", "cost", "minutes")},
    }


def compare(
    groups: dict[str, list[Run]], weak_below: float = 0.5, baseline: str | None = None, by: str = "given groups"
) -> Comparison:
    """Everything the tables, plots and page show, as JSON-able data."""
    if not groups:
        raise CompareError("no run with a finished round to compare")
    if baseline is not None and baseline not in groups:
        raise CompareError(f"--baseline {baseline!r}: not a group; the groups are {', '.join(map(repr, groups))}")
    runs = [r for rs in groups.values() for r in rs]
    run_rows = {label: [_run_row(r, label) for r in rs] for label, rs in groups.items()}
    rows = [_group_row(label, rs, run_rows[label], weak_below) for label, rs in groups.items()]
    base = next((g["final"]["mean"] for g in rows if g["group"] == baseline), None)
    for g in rows:
        g["vs_baseline"] = None if base is None or g["final"]["mean"] is None else g["final"]["mean"] - base
    points = sorted(
        {k.split("/", 2)[2] for r in runs for s in r.rounds for k in s["metrics"] if k.startswith("test/point/")}
    )
    notes = [f"{r.dir.name}: round {x} not finished (no summary.json): skipped" for r in runs for x in r.unfinished]
    for label, rs in groups.items():
        ends = sorted({r.rounds[-1]["round"] for r in rs})
        if len(ends) > 1:
            notes.append(
                f"{label}: its runs end at rounds {', '.join(map(str, ends))}; final = each run's last finished round"
            )
    others = [k for k in _differing(r.cfg for r in runs) if k.split(".")[0] not in NOT_COMPARED]
    if others:
        notes.append(f"the runs also differ in {', '.join(others[:8])}{', ...' if len(others) > 8 else ''}")
    return {
        "by": by,
        "rounds": sorted({x["round"] for g in rows for x in g["by_round"]}),
        "weak_below": weak_below,
        "baseline": baseline,
        "notes": notes,
        "runs": [row for rs in run_rows.values() for row in rs],
        "groups": rows,
        "points": [
            {
                "point": p,
                "first": stat(r.accuracy(0, f"test/point/{p}") for r in runs)["mean"],
                "groups": {
                    label: {
                        "final": stat(r.accuracy(-1, f"test/point/{p}") for r in rs),
                        "kept": statistics.fmean(r.kept_by_point.get(p, 0) for r in rs),
                    }
                    for label, rs in groups.items()
                },
            }
            for p in points
        ],
    }


def load(
    paths: Sequence[Path], by: str = "strategy", weak_below: float = 0.5, baseline: str | None = None
) -> Comparison:
    """Find the runs under `paths`, group them `by` strategy or seed, compare them; runs with no finished round are
    left out and noted."""
    if by not in BY:
        raise CompareError(f"--by {by!r}: one of {', '.join(BY)}")
    runs = [load_run(p) for p in find_runs(paths)]
    empty = [r for r in runs if not r.rounds]
    result = compare(group_runs([r for r in runs if r.rounds], by), weak_below, baseline, by)
    result["notes"] = [f"{r.dir.name}: no round finished yet ({r.state}): left out" for r in empty] + result["notes"]  # type: ignore[operator]
    return result


# -- terminal tables --------------------------------------------------------------------------------
def _pm(s: Stat, digits: int = 3) -> str:
    """'0.512 ± 0.031' (no ± for a single run), '-' for no value."""
    if s["mean"] is None:
        return "-"
    return f"{s['mean']:.{digits}f}" + (f" ± {s['std']:.{digits}f}" if s["std"] is not None else "")


def _signed(value: float | None) -> str:
    return "-" if value is None else f"{value:+.3f}"


def _table(title: str, columns: Sequence[str], left: Sequence[str] = ("group",)) -> Table:
    table = Table(title=title, title_justify="left", min_width=len(title))  # a title is not wrapped over lines
    for col in columns:
        table.add_column(col, justify="left" if col in left else "right")
    return table


def at_round(group: dict, x: int) -> str:
    """A group's cell for round x: 'mean ± std (runs)', or '-' where none of its runs finished the round."""
    cell = next((c for c in group["by_round"] if c["round"] == x), None)
    return "-" if cell is None else f"{_pm(cell)} ({cell['n']})"


def tables(cmp: Comparison) -> list[Table]:
    """Runs; groups (accuracy, gain, spend); accuracy by round; weak points; per knowledge point."""
    groups: list[dict] = cmp["groups"]  # type: ignore[assignment]
    cols = ("run", "group", "seed", "state", "last round", "round 0", "final", "written / kept", "teacher tokens")
    runs = _table("runs", (*cols, "minutes"), left=("run", "group", "state", "written / kept"))
    for r in cmp["runs"]:  # type: ignore[attr-defined]
        spent = f"{_fmt(r['written'], 0)} / {_fmt(r['kept'], 0)}"
        cells = (str(r["seed"]), r["state"], str(r["rounds"][-1]), _fmt(r["first"]), _fmt(r["final"]), spent)
        runs.add_row(r["run"], r["group"], *cells, _fmt(r["tokens"], 0), f"{r['minutes']:.1f}")
    vs = f"vs {cmp['baseline'] or 'baseline'}"
    cols = ("group", "runs", "round 0", "final", "min", "max", "gain", vs, "final per run", "written", "kept")
    summary = _table("held-out test accuracy, mean ± std over each group's runs", (*cols, "teacher tokens", "minutes"))
    for g in groups:
        final = g["final"]
        accuracy = (_pm(g["first"]), _pm(final), _fmt(final["min"]), _fmt(final["max"]), _signed(g["gain"]))
        spent = (_pm(g["written"], 1), _pm(g["kept"], 1), _pm(g["tokens"], 0), _pm(g["minutes"], 1))
        per_run = " ".join(map(_fmt, g["per_run"]))
        summary.add_row(g["group"], str(len(g["runs"])), *accuracy, _signed(g["vs_baseline"]), per_run, *spent)
    rounds: list[int] = cmp["rounds"]  # type: ignore[assignment]
    by_round = _table("test accuracy by round, mean ± std (runs that finished the round)", ["group"])
    for x in rounds:
        by_round.add_column(f"round {x}", justify="right")
    for g in groups:
        by_round.add_row(g["group"], *(at_round(g, x) for x in rounds))
    title = f"weak points (round-0 test accuracy < {cmp['weak_below']} in a run): mean over their points, then runs"
    weak = _table(title, ("group", "runs with any", "points", "round 0", "final", "gain"))
    for g in groups:
        w = g["weak"]
        gain = None if w["first"] is None else w["final"] - w["first"]
        weak.add_row(
            g["group"], str(w["runs"]), f"{w['points']:.1f}", _fmt(w["first"]), _fmt(w["final"]), _signed(gain)
        )
    title = "per knowledge point: final test accuracy, mean ± std over the group's runs (synthetic items kept, mean)"
    points = _table(title, ("point", "round 0, all runs", *(g["group"] for g in groups)), left=("point",))
    for p in cmp["points"]:  # type: ignore[attr-defined]
        cells = [f"{_pm(c['final'], 2)} ({c['kept']:.0f})" for c in p["groups"].values()]
        points.add_row(p["point"], _fmt(p["first"], 2), *cells)
    return [runs, summary, by_round, weak, points]


def print_comparison(cmp: Comparison, console: Console | None = None) -> None:
    """The tables, then the notes (skipped rounds, runs left out, other config differences)."""
    # Piped to a file, rich would wrap every table to 80 columns; 200 keeps a row on one line, as `plugins` does.
    console = console or (Console() if sys.stdout.isatty() else Console(width=200))
    for table in tables(cmp):
        console.print(table)
    for note in cmp["notes"]:  # type: ignore[attr-defined]
        console.print(f"note: {note}", soft_wrap=True)


# -- plots and the page -----------------------------------------------------------------------------
def write_plots(cmp: Comparison, out: Path) -> list[Path]:
    """accuracy_by_round (mean with a std band), final_accuracy, points, items (and teacher tokens) in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [_by_round(cmp, out / "accuracy_by_round.png"), _finals(cmp, out / "final_accuracy.png")]
    if cmp["points"]:
        paths.append(_points(cmp, out / "points.png"))
    paths.append(_spend(cmp, out / "items.png"))
    return paths


def _runs(n: int) -> str:
    return f"{n} run" if n == 1 else f"{n} runs"


def _groups_legend(fig: plt.Figure, ax: plt.Axes, ylabel: str, title: str, path: Path) -> Path:
    """Label, title, the groups' legend beside the plot (group labels are long), then save."""
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _save(fig, path)


def _colours(n: int) -> list:
    return [plt.get_cmap("tab10")(i % 10) for i in range(n)]


def _by_round(cmp: Comparison, path: Path) -> Path:
    groups: list[dict] = cmp["groups"]  # type: ignore[assignment]
    runs: list[dict] = cmp["runs"]  # type: ignore[assignment]
    fig, ax = plt.subplots(figsize=(8.5, 4.3))
    for g, colour in zip(groups, _colours(len(groups)), strict=True):
        for r in (r for r in runs if r["group"] == g["group"]):
            ax.plot(r["rounds"], r["test"], "-", color=colour, lw=0.7, alpha=0.3)
        xs = [x["round"] for x in g["by_round"]]
        mean = [x["mean"] for x in g["by_round"]]
        ax.plot(xs, mean, "-o", color=colour, lw=2, label=f"{g['group']} ({_runs(len(g['runs']))})")
        std = [x["std"] or 0.0 for x in g["by_round"]]
        ax.fill_between(
            xs,
            [m - s for m, s in zip(mean, std, strict=True)],
            [m + s for m, s in zip(mean, std, strict=True)],
            color=colour,
            alpha=0.18,
        )
    ax.set_xticks(cmp["rounds"])  # type: ignore[arg-type]
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("round")
    title = "Test accuracy by round: group mean, ± 1 std band, thin lines the runs"
    return _groups_legend(fig, ax, "held-out test accuracy", title, path)


def _finals(cmp: Comparison, path: Path) -> Path:
    groups: list[dict] = cmp["groups"]  # type: ignore[assignment]
    runs: list[dict] = cmp["runs"]  # type: ignore[assignment]
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(groups) + 2.5), 4.3))
    xs = range(len(groups))
    for offset, key, colour, name in ((-0.2, "first", "tab:grey", "round 0"), (0.2, "final", "tab:blue", "final")):
        means = [g[key]["mean"] or 0.0 for g in groups]
        ax.bar(
            [x + offset for x in xs],
            means,
            0.38,
            yerr=[g[key]["std"] or 0.0 for g in groups],
            color=colour,
            alpha=0.75,
            capsize=3,
            label=name,
        )
        for x, g in zip(xs, groups, strict=True):
            values = [r[key] for r in runs if r["group"] == g["group"] and r[key] is not None]
            ax.plot([x + offset] * len(values), values, "k.", ms=5)
    ax.set_xticks(list(xs), [g["group"] for g in groups], rotation=20, ha="right", fontsize=7.5)
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("held-out test accuracy")
    ax.set_title("Round 0 and final test accuracy\n(bars: group mean ± std; dots: its runs)")
    ax.legend(fontsize=8)
    return _save(fig, path)


def _points(cmp: Comparison, path: Path) -> Path:
    groups: list[dict] = cmp["groups"]  # type: ignore[assignment]
    points: list[dict] = cmp["points"]  # type: ignore[assignment]
    height = 0.8 / len(groups)
    fig, ax = plt.subplots(figsize=(8.5, 0.25 * len(points) * max(2, len(groups)) + 1.5))
    for i, (g, colour) in enumerate(zip(groups, _colours(len(groups)), strict=True)):
        cells = [p["groups"][g["group"]]["final"] for p in points]
        ys = [j + (i - (len(groups) - 1) / 2) * height for j in range(len(points))]
        means = [c["mean"] or 0.0 for c in cells]
        ax.barh(ys, means, height, xerr=[c["std"] or 0.0 for c in cells], color=colour, capsize=2, label=g["group"])
        for y, mean in zip(ys, means, strict=True):  # a bar at 0 draws nothing; its number still shows
            ax.text(0.005, y, f"{mean:.2f}", va="center", fontsize=6)
    ax.set_yticks(range(len(points)), [p["point"] for p in points], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.02)
    ax.set_xlabel("final held-out test accuracy (mean ± std over the group's runs)")
    return _groups_legend(fig, ax, "", "Final accuracy per knowledge point", path)


def _spend(cmp: Comparison, path: Path) -> Path:
    groups: list[dict] = cmp["groups"]  # type: ignore[assignment]
    tokens = any(g["tokens"]["mean"] is not None for g in groups)
    fig, axes = plt.subplots(1, 2 if tokens else 1, figsize=(11 if tokens else 6.5, 4.3), squeeze=False)
    ax, xs = axes[0][0], range(len(groups))
    for offset, key, colour in ((-0.2, "written", "tab:grey"), (0.2, "kept", "tab:green")):
        ax.bar(
            [x + offset for x in xs],
            [g[key]["mean"] or 0.0 for g in groups],
            0.38,
            yerr=[g[key]["std"] or 0.0 for g in groups],
            color=colour,
            capsize=3,
            label=key,
        )
    ax.set_ylabel("synthetic items over the run (mean over runs)")
    ax.set_title("Synthetic items written and kept")
    ax.legend(fontsize=8)
    if tokens:
        right = axes[0][1]
        right.bar(
            list(xs),
            [g["tokens"]["mean"] or 0.0 for g in groups],
            yerr=[g["tokens"]["std"] or 0.0 for g in groups],
            color="tab:blue",
            capsize=3,
        )
        right.set_ylabel("teacher tokens over the run (mean over runs)")
        right.set_title("Teacher tokens")
        for x, g in zip(xs, groups, strict=True):
            if g["tokens"]["mean"] is None:  # no bar: say why, rather than leave a gap that reads as zero
                right.text(x, 0, "no LLM", ha="center", va="bottom", fontsize=7)
    for a in axes[0]:
        a.set_xticks(list(xs), [g["group"] for g in groups], rotation=20, ha="right", fontsize=7.5)
    return _save(fig, path)


def write_page(cmp: Comparison, out: Path) -> Path:
    """compare.json, the plots and compare.html (self-contained) in `out`; returns the page's path."""
    plots = write_plots(cmp, out)
    write_text_atomic(out / "compare.json", json.dumps(cmp, indent=1, default=str) + "\n")
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    template = env.from_string(TEMPLATE.read_text(encoding="utf-8"))
    images = [{"name": p.stem, "data": base64.b64encode(p.read_bytes()).decode("ascii")} for p in plots]
    page = out / "compare.html"
    write_text_atomic(page, template.render(cmp=cmp, plots=images, fmt=_fmt, pm=_pm, signed=_signed, at_round=at_round))
    return page
