"""`gaploop report`: report.html and its data agree with the run's records, and the page renders in a real
headless Chromium with every plot and no console error."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from loop.config import load_config
from loop.run_report import ReportError, collect, write_report
from loop.runner import start_run
from tests.helpers import TINY, rows

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("report") / "run"
    start_run(load_config(None, [*TINY, "rounds.max_rounds=2", f"run_dir={run_dir}"]))
    return run_dir


def test_the_run_writes_its_report_and_the_data_match_the_records(run: Path) -> None:
    assert (run / "report.html").is_file(), "the end of a run writes report.html"
    data = json.loads((run / "report" / "report.json").read_text())
    assert data["state"] == "finished" and data["strategy"] == "weakness x generator"
    for rd in data["rounds"]:
        summary = json.loads((run / f"round_{rd['round']:03d}" / "summary.json").read_text())["metrics"]
        assert rd["test"] == summary["test/accuracy"] and rd["probe"] == summary["probe/accuracy"]
        items = [i for i in rows(run / f"round_{rd['round']:03d}" / "items.jsonl") if i.get("source") == "synthetic"]
        assert rd["kept"] == sum(1 for i in items if i["kept"]) and rd["dropped"] == len(items) - rd["kept"]
        assert sorted(rd["ifd_kept"] + rd["ifd_dropped"]) == sorted(i["ifd"] for i in items if i.get("ifd") is not None)
    # The weakest point of round 0 comes first; its provenance counts the failures and items the files hold.
    first = {p["point"]: p["accuracy"][0] for p in data["points"]}
    weakest = data["weakest"][0]
    assert first[weakest["point"]] == min(first.values())
    step = weakest["steps"][0]
    failures = [r for r in rows(run / "round_000" / "eval_test.jsonl") if r["knowledge_point"] == weakest["point"]]
    written = [r for r in rows(run / "round_001" / "items.jsonl") if r["knowledge_point"] == weakest["point"]]
    assert step["failures"] == sum(1 for r in failures if not r["correct"])
    assert (step["written"], step["kept"]) == (len(written), sum(1 for r in written if r["kept"]))
    assert step["before"] == weakest["accuracy"][0] and step["after"] == weakest["accuracy"][1]
    names = {p.name for p in (run / "report").glob("*.png")}
    assert {"accuracy.png", "point_heatmap.png", "items.png", "ifd.png", "phase_times.png", "loss.png"} <= names


def test_fixed_at_decides_the_verdicts(run: Path) -> None:
    data = collect(run, fixed_at=0.0)  # every evaluated point is then fixed from round 0 on
    assert all(w["fixed"] == 0 for w in data["weakest"])
    assert {s["verdict"] for w in data["weakest"] for s in w["steps"]} == {"held"}


def test_bad_run_directories_are_named(tmp_path: Path, run: Path) -> None:
    with pytest.raises(ReportError, match="not a run directory: manifest.json not found"):
        write_report(tmp_path)
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    shutil.copy(run / "manifest.json", fresh)
    shutil.copy(run / "config.yaml", fresh)
    with pytest.raises(ReportError, match="no round has finished yet"):
        write_report(fresh)
    cli = [sys.executable, "-m", "loop.cli", "report", str(fresh)]
    got = subprocess.run(cli, capture_output=True, text=True, check=False)
    assert got.returncode == 2 and "no round has finished yet" in got.stderr


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium (scripts/bootstrap.sh installs Debian's where it is root)")
def test_the_page_renders_in_headless_chromium(run: Path, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    page_path = write_report(run)
    plots = sorted(p.stem for p in (run / "report").glob("*.png"))
    errors: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"],
        )
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
            page.on("pageerror", lambda err: errors.append(str(err)))
            page.goto(page_path.resolve().as_uri())
            images = page.evaluate("[...document.images].map(i => [i.alt, i.complete && i.naturalWidth > 0])")
            heading = page.inner_text("h1")
            page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        finally:
            browser.close()
    assert errors == []
    assert sorted(alt for alt, _ in images) == plots and all(shown for _, shown in images)
    assert heading.startswith("Run ")
    assert (tmp_path / "report.png").stat().st_size > 50_000  # a full page of plots, not a blank one
