"""The report of `gaploop detect`: PNG plots (matplotlib, no screen needed) and one self-contained HTML page
(plots embedded, no outside assets), both drawn from report.json's data."""

from __future__ import annotations

import base64
import html
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; a machine without a screen must draw too
import matplotlib.pyplot as plt  # noqa: E402

from loop.detect import describe_cell  # noqa: E402

Report = dict[str, object]


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
_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:.9em}
td,th{border:1px solid #ccc;padding:.25em .5em;text-align:left}
th{background:#f3f3f3}td.num{text-align:right}img{max-width:100%;margin:.5em 0}code{background:#f3f3f3;padding:0 .2em}
"""


def write_html(report: Report, plots: list[Path], path: Path) -> Path:
    """One page with everything; the PNGs are embedded, so the file alone can be mailed or archived."""
    e = html.escape
    o = report["overall"]  # type: ignore[assignment]
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>gaploop detect</title><style>{_STYLE}</style>",
        "</head><body><h1>Capability gaps</h1>",
        f"<p>Student: {e(str(report['student']))}. {o['items']} items asked in {len(report['iterations'])} "  # type: ignore[index, arg-type]
        f"search iterations; {o['failed']} failed (failure rate {o['failure_rate']:.3f}). "  # type: ignore[index]
        f"{len(report['facet_splits'])} facet splits.</p>",  # type: ignore[arg-type]
        "<h2>Knowledge points, weakest first</h2>",
        "<p>The failure rate counts every item asked of a point, and the search asks more where it finds failures, "
        "so it is the rate the search could provoke; <em>first sweep</em> is iteration 0 alone (the point at the "
        "task level, drawn at random): the unsteered estimate.</p>",
        _table(
            ["point", "category", "failure rate", "95% CI", "first sweep", "items", "worst cell / score", "errors"],
            [
                [
                    e(p["point"]),
                    e(p["skill"]),
                    f"{p['failure_rate']:.3f}",
                    f"{p['ci_low']:.2f}-{p['ci_high']:.2f}",
                    f"{p['sweep_failure_rate']:.3f}",
                    str(p["items"]),
                    e(describe_cell(p["worst_cell"]) if p["worst_cell"] else f"mean score {p['mean_score']:.1f}"),
                    e(", ".join(f"{k} {v}" for k, v in p["error_types"].items())),
                ]
                for p in report["points"]  # type: ignore[union-attr]
            ],
        ),
    ]
    for plot in plots:
        data = base64.b64encode(plot.read_bytes()).decode("ascii")
        parts.append(f"<img alt='{e(plot.stem)}' src='data:image/png;base64,{data}'>")
    if report["facet_splits"]:
        parts.append("<h2>Facet splits (where inside a point the failures concentrate)</h2>")
        parts.append(
            _table(
                ["point", "facet", "why"],
                [[e(str(r["point"])), e(", ".join(r["facets"])), e(str(r["why"]))] for r in report["facet_splits"]],  # type: ignore[union-attr]
            )
        )
    parts.append("<h2>Worst examples of the weakest points</h2>")
    for w in report["weakest"]:  # type: ignore[union-attr]
        parts.append(f"<h3>{e(w['point'])} (failure rate {w['failure_rate']:.3f})</h3>")
        parts.append(
            _table(
                ["level", "facet", "question", "expected", "student", "error"],
                [
                    [
                        str(x["difficulty"]),
                        e(str(x["facet"])),
                        e(str(x["question"])),
                        e(str(x["expected"])),
                        e(str(x["answer"])),
                        e(str(x["error_type"])),
                    ]
                    for x in w["examples"]
                ],
            )
        )
    parts.append("<h2>Iterations</h2>")
    parts.append(
        _table(
            ["iteration", "items", "failed", "failure rate"],
            [
                [str(r["iteration"]), str(r["items"]), str(r["failed"]), f"{r['failure_rate']:.3f}"]
                for r in report["iterations"]
            ],  # type: ignore[union-attr]
        )
    )
    parts.append(
        "<p>Everything on this page is in <code>report.json</code>; every item asked, with the "
        "student's answer and grade, is in <code>items.jsonl</code>.</p></body></html>"
    )
    tmp = path.with_suffix(".tmp")
    tmp.write_text("\n".join(parts), encoding="utf-8")
    tmp.replace(path)
    return path


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"
