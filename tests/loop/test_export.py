"""`gaploop export`: a run's seed and synthetic items as a dataset, read back with `datasets` itself."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from unittest.mock import ANY, patch

import datasets
import pytest
from huggingface_hub import HfApi, RepoUrl
from typer.testing import CliRunner, Result

from loop.cli import app
from loop.config import load_config
from loop.export import ExportError, export, normalise
from loop.runner import start_run
from tests.helpers import TINY, rows


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("export") / "run"
    start_run(load_config(None, [*TINY, "rounds.max_rounds=1", f"run_dir={run_dir}"]))
    return run_dir


def _plain(records: list[dict]) -> list[dict]:
    return json.loads(json.dumps(records))


def test_every_format_reads_back_as_the_runs_records(run: Path, tmp_path: Path) -> None:
    seed, synthetic = rows(run / "round_000" / "items.jsonl"), rows(run / "round_001" / "items.jsonl")
    want, _ = normalise({"seed": seed, "synthetic": synthetic})
    assert export(run, tmp_path / "hf") == {"seed": len(seed), "synthetic": len(synthetic)}
    got = datasets.load_from_disk(str(tmp_path / "hf"))
    assert {k: _plain(v.to_list()) for k, v in got.items()} == want
    export(run, tmp_path / "pq", "parquet")
    files = {s: str(tmp_path / "pq" / f"{s}.parquet") for s in ("seed", "synthetic")}
    assert {k: v.to_list() for k, v in datasets.load_dataset("parquet", data_files=files).items()} == want
    # The card's `configs` let `load_dataset(DIR)` find the splits, as on the hub.
    assert {k: v.to_list() for k, v in datasets.load_dataset(str(tmp_path / "pq")).items()} == want
    export(run, tmp_path / "jl", "jsonl")
    assert {s: rows(tmp_path / "jl" / f"{s}.jsonl") for s in ("seed", "synthetic")} == want
    card = (tmp_path / "pq" / "README.md").read_text()
    assert "plan `weakness`, writer `generator`" in card and "selectors [decontaminate, dedup, ifd]" in card
    assert f"`seed`: {len(seed)} items" in card and "| 1 | 8 |" in card


def test_kept_only_and_a_round_cut_short_are_said(run: Path, tmp_path: Path) -> None:
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    # Records name their files by their path in the run directory: let round 1's items be unfinished in the copy.
    for entry in manifest["phases"].values():
        if "round_001/items.jsonl" in entry.get("outputs", []):
            entry["status"] = "running"
    (copy / "manifest.json").write_text(json.dumps(manifest))
    counts = export(copy, tmp_path / "out", "jsonl")
    assert counts["synthetic"] == 0
    assert "round 1: its items are not recorded as done" in (tmp_path / "out" / "README.md").read_text()
    kept = export(run, tmp_path / "kept", "jsonl", kept_only=True)
    assert kept["synthetic"] == sum(1 for r in rows(run / "round_001" / "items.jsonl") if r["kept"])
    with pytest.raises(ExportError, match="exists and is not empty; choose another --out or pass --overwrite"):
        export(run, tmp_path / "kept", "jsonl")
    assert export(run, tmp_path / "kept", "jsonl", overwrite=True)["synthetic"] >= kept["synthetic"]
    with pytest.raises(ExportError, match="not a run directory"):
        export(tmp_path, tmp_path / "x")


def test_mixed_and_nested_columns_become_json_text() -> None:
    splits, as_json = normalise(
        {
            "seed": [{"id": "a", "answer": 3, "realign": None}],
            "synthetic": [{"id": "b", "answer": "x", "realign": {"tag": "original"}}],
        }
    )
    assert as_json == ["answer", "realign"]
    assert splits["synthetic"] == [{"id": "b", "answer": '"x"', "realign": '{"tag": "original"}'}]
    assert splits["seed"] == [{"id": "a", "answer": "3", "realign": None}]


def test_the_command_says_what_it_wrote(run: Path, tmp_path: Path) -> None:
    out = tmp_path / "cli"
    cmd = [sys.executable, "-m", "loop.cli", "export", str(run), "--out", str(out), "--format", "jsonl"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and f"wrote {out} (jsonl: seed " in done.stdout, done.stderr
    bad = subprocess.run([*cmd[:-1], "csv"], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "--format 'csv': one of hf, parquet, jsonl" in bad.stderr


# -- --push-to-hub, against huggingface_hub's own API surface (no network here) ---------------------------------
# HfApi's methods are replaced by autospec mocks: a call with an argument name or arity their signature lacks fails
# as it would against the hub; what is asserted is the call and its arguments.
REPO, TOKEN = "someone/gaploop-run", "hf_planted_token_0123456789"


def _export_cli(args: list[str]) -> Result:
    return CliRunner().invoke(app, ["export", *args])


def test_push_to_hub_creates_a_dataset_repo_and_uploads_the_export(
    run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    out, uploaded = tmp_path / "pq", {}

    def upload(api: HfApi, *, repo_id: str, folder_path: Path, **kwargs: object) -> None:
        uploaded.update({p.name: p.read_bytes() for p in Path(folder_path).iterdir()})

    url = RepoUrl(f"https://huggingface.co/datasets/{REPO}")
    with (
        patch.object(HfApi, "create_repo", autospec=True, return_value=url) as create,
        patch.object(HfApi, "upload_folder", autospec=True, side_effect=upload) as upload_folder,
    ):
        done = _export_cli([str(run), "--out", str(out), "--format", "parquet", "--push-to-hub", REPO, "--private"])
    assert done.exit_code == 0, done.output
    create.assert_called_once_with(ANY, REPO, token=TOKEN, repo_type="dataset", private=True, exist_ok=True)
    upload_folder.assert_called_once_with(
        ANY,
        repo_id=REPO,
        folder_path=out,
        repo_type="dataset",
        token=TOKEN,
        commit_message=f"gaploop export of {out.name}",
    )
    # What went up is the export itself: both splits and the card whose `configs` let load_dataset(REPO) read them.
    assert sorted(uploaded) == ["README.md", "seed.parquet", "synthetic.parquet"]
    assert uploaded == {p.name: p.read_bytes() for p in out.iterdir()}
    assert f"pushed to {url}" in done.output


def test_push_to_hub_refuses_before_any_work(run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))  # no `hf auth login` either
    out = tmp_path / "out"
    with (
        patch.object(HfApi, "create_repo", autospec=True) as create,
        patch.object(HfApi, "upload_folder", autospec=True) as upload_folder,
    ):
        no_token = _export_cli([str(run), "--out", str(out), "--format", "jsonl", "--push-to-hub", REPO])
        monkeypatch.setenv("HF_TOKEN", TOKEN)
        arrow = _export_cli([str(run), "--out", str(out), "--push-to-hub", REPO])
        bad_id = _export_cli([str(run), "--out", str(out), "--format", "jsonl", "--push-to-hub", "a/b/c"])
        private_alone = _export_cli([str(run), "--out", str(out), "--private"])
    assert no_token.exit_code == 2 and "no Hugging Face token; set HF_TOKEN or log in" in no_token.output
    assert arrow.exit_code == 2 and "--push-to-hub needs --format parquet or jsonl" in arrow.output
    assert bad_id.exit_code == 2 and "--push-to-hub 'a/b/c': not a repo id" in bad_id.output
    assert private_alone.exit_code == 2 and "--private applies to --push-to-hub REPO" in private_alone.output
    assert not out.exists(), "nothing was written"
    create.assert_not_called()
    upload_folder.assert_not_called()


def test_a_failed_push_keeps_the_export_and_masks_the_token(
    run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    out = tmp_path / "out"
    refused = OSError(f"401 Unauthorized for token {TOKEN}")  # a server that quotes the token back
    with patch.object(HfApi, "create_repo", autospec=True, side_effect=refused):
        done = _export_cli([str(run), "--out", str(out), "--format", "jsonl", "--push-to-hub", REPO])
    assert done.exit_code == 1, "the input was fine; the hub failed"
    assert f"pushing {out} to the dataset repo {REPO} failed (OSError: 401 Unauthorized for token ***)" in done.output
    assert TOKEN not in done.output and (out / "seed.jsonl").is_file() and (out / "README.md").is_file()
