"""The report of `gaploop detect`: PNG plots (matplotlib, no screen needed) and one self-contained HTML page
(plots embedded, no outside assets), both drawn from report.json's data."""

from __future__ import annotations

import base64
from pathlib import Path

import jinja2
import matplotlib

matplotlib.use("Agg")  # files only; a machine without a screen must draw too
import matplotlib.pyplot as plt  # noqa: E402

Report = dict[str, object]


def describe_cell(cell: dict[str, object]) -> str:
    """'level 2, no 0 digit: 57/57' for a point's worst cell."""
    return f"level {cell['difficulty']}, {cell['facet']}: {cell['failed']}/{cell['items']}"


def write_plots(report: Report, out: Path) -> list[Path]:
    """failure_by_point, search_trajectory, failure_by_level and failure_by_cell (world), judge_scores (LLM),
    error_types (PNG) in `out`."""
    paths = [
        _failure_by_point(report, out / "failure_by_point.png"),
        _trajectory(report, out / "search_trajectory.png"),
    ]
    if any(p["by_level"] for p in report["points"]):  # type: ignore[union-attr]
        paths.append(_by_level(report, out / "failure_by_level.png"))
    if any(c["asked"] >= MIN_CELL_ITEMS for c in report["cells"]):  # type: ignore[union-attr]
        paths.append(_cell_distribution(report, out / "failure_by_cell.png"))
    if report["scores"]:
        paths.append(_scores(report, out / "judge_scores.png"))
    if report["error_types"]:
        paths.append(_error_types(report, out / "error_types.png"))
    return paths


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
    return path


def _failure_by_point(report: Report, path: Path) -> Path:
    points = list(reversed(report["points"]))  # type: ignore[call-overload]
    skills = sorted({p["skill"] for p in points})
    colours = {s: plt.get_cmap("tab10")(i % 10) for i, s in enumerate(skills)}
    fig, ax = plt.subplots(figsize=(8.5, 0.32 * len(points) + 1.2))
    rates = [p["failure_rate"] for p in points]
    err = [[p["failure_rate"] - p["ci_low"] for p in points], [p["ci_high"] - p["failure_rate"] for p in points]]
    ax.barh([p["point"] for p in points], rates, xerr=err, color=[colours[p["skill"]] for p in points], capsize=2)
    ax.set_xlim(0, 1)
    ax.set_xlabel("failure rate (95% Wilson interval)")
    ax.set_title("Where the student fails, per knowledge point")
    handles = [plt.Rectangle((0, 0), 1, 1, color=colours[s]) for s in skills]
    ax.legend(handles, skills, fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return _save(fig, path)


def _trajectory(report: Report, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(7, 4))
    its = [row["iteration"] for row in report["iterations"]]  # type: ignore[union-attr]
    ax.plot(its, [row["failure_rate"] for row in report["iterations"]], "k-o", lw=2, label="all points")  # type: ignore[union-attr]
    for p in report["points"][:5]:  # type: ignore[index]
        xs = sorted(int(it) for it in p["trajectory"])  # the iterations that asked the point
        ax.plot(xs, [p["trajectory"][str(x)] for x in xs], "--", marker=".", label=p["point"])
    ax.set_ylim(0, 1.02)
    ax.set_xticks(its)
    ax.set_xlabel("search iteration")
    ax.set_ylabel("failure rate of the iteration's items")
    ax.set_title("Search trajectory (the five weakest points)")
    ax.legend(fontsize=7)
    return _save(fig, path)


def _by_level(report: Report, path: Path) -> Path:
    points = report["points"]  # type: ignore[assignment]
    levels = sorted({lv for p in points for lv in p["by_level"]})  # type: ignore[union-attr]
    fig, ax = plt.subplots(figsize=(max(7, 0.45 * len(points)), 4))
    width = 0.8 / max(1, len(levels))
    for i, lv in enumerate(levels):
        xs = [j + i * width for j in range(len(points))]
        ax.bar(xs, [p["by_level"].get(lv, 0.0) for p in points], width, label=f"level {lv}")  # type: ignore[union-attr]
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(points))])
    ax.set_xticklabels([p["point"] for p in points], rotation=60, ha="right", fontsize=7)  # type: ignore[union-attr]
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("failure rate")
    ax.set_title("Failure rate by difficulty level (no bar: the search asked none at that level)")
    ax.legend(fontsize=7)
    return _save(fig, path)


MIN_CELL_ITEMS = 3  # a cell with fewer items has a failure rate too coarse to place in a histogram


def _cell_distribution(report: Report, path: Path) -> Path:
    """How the failures spread over the cells: mass at 0 and 1 means the level and facet decide the outcome."""
    cells = [c for c in report["cells"] if c["asked"] >= MIN_CELL_ITEMS]  # type: ignore[union-attr]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    bins = [i / 10 for i in range(11)]
    ax.hist([c["failure_rate"] for c in cells], bins=bins, color="tab:purple", edgecolor="white", label="cells")
    ax.hist(
        [c["failure_rate"] for c in cells],
        bins=bins,
        weights=[c["asked"] for c in cells],
        histtype="step",
        color="k",
        label="items in them",
    )
    ax.set_yscale("log")
    ax.set_xlabel("failure rate of the cell")
    ax.set_ylabel("count (log)")
    ax.set_title(f"Failure rates of the search's cells (point x level x facet, >= {MIN_CELL_ITEMS} items)", fontsize=9)
    ax.legend(fontsize=7)
    return _save(fig, path)


def _error_types(report: Report, path: Path) -> Path:
    errors = report["error_types"]  # type: ignore[assignment]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.bar(list(errors), list(errors.values()), color="tab:red")  # type: ignore[union-attr]
    ax.set_ylabel("wrong answers")
    ax.set_title("How the student's answers are wrong")
    plt.setp(ax.get_xticklabels(), rotation=30, ha="right")
    return _save(fig, path)


def _scores(report: Report, path: Path) -> Path:
    scores = report["scores"]  # type: ignore[assignment]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    xs = list(range(1, 11))
    ax.bar(xs, [scores.get(str(x), 0) for x in xs], color=["tab:red" if x < 3.1 else "tab:blue" for x in xs])  # type: ignore[union-attr]
    ax.set_xticks(xs)
    ax.set_xlabel("judge score (1-10; red: below 3.1, a weakness hit)")
    ax.set_ylabel("items")
    ax.set_title("Score distribution")
    return _save(fig, path)


# -- HTML -------------------------------------------------------------------------------------------
TEMPLATE = Path(__file__).with_name("templates") / "detect_report.html.j2"


def write_html(report: Report, plots: list[Path], path: Path) -> Path:
    """One page with everything, rendered from `loop/templates/detect_report.html.j2` (every value escaped);
    the PNGs are embedded, so the file alone can be mailed or archived."""
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    template = env.from_string(TEMPLATE.read_text(encoding="utf-8"))
    images = [{"name": p.stem, "data": base64.b64encode(p.read_bytes()).decode("ascii")} for p in plots]
    page = template.render(report=report, plots=images, describe_cell=describe_cell)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(path)
    return path
