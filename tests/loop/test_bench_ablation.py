"""scripts/bench_ablation.py: its variant syntax, its config check before any run, and a run started from a shared
round 0 (the runs themselves are the loop's, tested elsewhere; the script's printing is in test_compare)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "bench_ablation.py"
_spec = importlib.util.spec_from_file_location("bench_ablation", SCRIPT)
bench = importlib.util.module_from_spec(_spec)  # type: ignore[arg-type]
_spec.loader.exec_module(bench)  # type: ignore[union-attr]


def test_a_variants_commas_inside_brackets_belong_to_its_value() -> None:
    assert bench.variant_overrides("frontier") == ["synthesis.plan=frontier"]
    assert bench.variant_overrides("magpie:") == []
    spec = "si:synthesis.writer={name: self_instruct, human: 6},synthesis.curate=[verify, eliminate], seed=3"
    assert bench.variant_overrides(spec) == [
        "synthesis.writer={name: self_instruct, human: 6}",
        "synthesis.curate=[verify, eliminate]",
        "seed=3",
    ]


def _bench(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, str(SCRIPT), "--out", str(tmp_path / "abl"), "--seeds", "0", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False, cwd=ROOT)


def test_check_names_the_bad_variant_before_any_run(tmp_path: Path) -> None:
    ok = _bench(tmp_path, "--check", "--strategies", "random", "w:synthesis.writer={name: generator}")
    assert ok.returncode == 0, ok.stderr
    assert "2 strategies x 1 seeds: every config is valid" in ok.stdout
    bad = _bench(tmp_path, "--strategies", "random", "typo:synthesis.writer=no_such_writer")
    assert bad.returncode != 0 and "strategy 'typo'" in bad.stderr and "no_such_writer" in bad.stderr
    unbalanced = _bench(tmp_path, "--strategies", "x:synthesis.writer={name: generator")
    assert unbalanced.returncode != 0 and "unbalanced brackets" in unbalanced.stderr
    same = _bench(tmp_path, "--strategies", "a:seed=1", "a:seed=2")
    assert same.returncode != 0 and "each needs its own label" in same.stderr
    assert not (tmp_path / "abl").exists(), "nothing ran"


def test_a_run_from_a_shared_round0_is_a_copy_with_its_own_config(tmp_path: Path) -> None:
    base = tmp_path / "round0-s0"
    (base / "round_000").mkdir(parents=True)
    (base / "round_000" / "items.jsonl").write_text('{"instruction": "q", "output": "a"}\n')
    (base / "config.yaml").write_text("the base run's config\n")
    manifest = {"version": 1, "run": "base", "status": "finished", "stop_reason": "max_rounds", "phases": {"x": 1}}
    (base / "manifest.json").write_text(json.dumps(manifest))
    (base / "manifest.json.bak").write_text("{}")
    run = tmp_path / "random-s0"
    bench.start_from_round0(base, run, [], ["seed=0", "synthesis.plan=random", "name=abl-random"])
    assert (run / "round_000" / "items.jsonl").read_text() == (base / "round_000" / "items.jsonl").read_text()
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["synthesis"]["plan"] == {"name": "random"} and cfg["name"] == "abl-random"
    assert cfg["run_dir"] == str(run)
    copied = json.loads((run / "manifest.json").read_text())
    assert copied == {"version": 1, "run": "abl-random", "phases": {"x": 1}}, "the run goes on: no final status"
    assert not (run / "manifest.json.bak").exists() and not run.with_name("random-s0.part").exists()
    assert json.loads((base / "manifest.json").read_text()) == manifest, "the shared round 0 is left as it was"
