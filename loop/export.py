"""`gaploop export RUN_DIR --out DIR`: a run's training data as a dataset others can load.

Two splits: `seed` (round 0's items) and `synthetic` (every item written in rounds 1..n, kept or dropped, with
its provenance: round, strategy, writer, teacher, the failure it came from, IFD, why it was dropped), only from
rounds whose items are recorded as done in the manifest (a round cut short by a crash is left out and named).
Formats: `hf` (`DatasetDict.save_to_disk`, read with `datasets.load_from_disk`), `parquet` or `jsonl` (one file
per split, read with `load_dataset("parquet" | "json", data_files=...)` or by `load_dataset(DIR)` through the
card's `configs`). A dataset card (`README.md`) says what produced the data.

Columns are the union of the records' fields. A field whose values are not all of one scalar type (nested
objects such as `realign`, or numbers and strings mixed) is written as JSON text, so every split has one
schema; the card lists those columns.

`push` uploads an export folder (files and card) to a dataset repo on the Hugging Face Hub with the token
huggingface_hub finds (`HF_TOKEN`, else the one `hf auth login` saved); `hub_token` checks for one before any work.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path
from typing import Literal

import yaml

from core.jsonl import iter_jsonl, write_jsonl
from core.records import drop_reason_key
from core.secrets import register
from loop.store import RunStore

Format = Literal["hf", "parquet", "jsonl"]
FORMATS: tuple[str, ...] = ("hf", "parquet", "jsonl")


class ExportError(ValueError):
    """A run directory that cannot be exported, or an output that would overwrite something."""


class PushError(ExportError):
    """The export is written, but the upload to the hub failed."""


def _rows(path: Path) -> list[dict[str, object]]:
    rows = []
    for lineno, row, problem in iter_jsonl(path):
        if problem is not None or not isinstance(row, dict):
            raise ExportError(f"{path}:{lineno}: {problem or 'not a JSON object'}")
        rows.append(row)
    return rows


def _done_outputs(run_dir: Path) -> set[Path]:
    store = RunStore(run_dir)
    phases = store.manifest.get("phases", {})
    return {p.resolve() for v in phases.values() if v.get("status") == "done" for p in store.outputs(v)}  # type: ignore[union-attr]


def collect(run_dir: Path, kept_only: bool) -> tuple[dict[str, list[dict[str, object]]], list[str]]:
    """({split: records}, notes on what was left out)."""
    done = _done_outputs(run_dir)
    seed_file = run_dir / "round_000" / "items.jsonl"
    if seed_file.resolve() not in done:
        raise ExportError(f"{run_dir}: round 0's items are not recorded as done; nothing to export")
    notes: list[str] = []
    synthetic: list[dict[str, object]] = []
    for items in sorted(run_dir.glob("round_*/items.jsonl")):
        r = int(items.parent.name.split("_")[1])
        if r == 0:
            continue
        if items.resolve() not in done:
            notes.append(f"round {r}: its items are not recorded as done (the run stopped in that round): left out")
            continue
        rows = _rows(items)
        synthetic += [x for x in rows if x.get("kept")] if kept_only else rows
    return {"seed": _rows(seed_file), "synthetic": synthetic}, notes


def _column_kind(values: list[object]) -> str:
    kinds = {type(v) for v in values if v is not None}
    if not kinds:
        return "null"
    if kinds <= {bool}:
        return "bool"
    if kinds <= {int}:
        return "int"
    if kinds <= {int, float}:
        return "float"
    if kinds <= {str}:
        return "str"
    return "json"


def normalise(splits: dict[str, list[dict[str, object]]]) -> tuple[dict[str, list[dict[str, object]]], list[str]]:
    """Every split with every column (None where a record lacks it), and the columns written as JSON text."""
    columns: dict[str, list[object]] = {}
    for rows in splits.values():
        for row in rows:
            for key, value in row.items():
                columns.setdefault(key, []).append(value)
    kinds = {key: _column_kind(values) for key, values in columns.items()}
    as_json = sorted(k for k, kind in kinds.items() if kind == "json")

    def cell(key: str, value: object) -> object:
        if value is None:
            return None
        if kinds[key] == "json":
            return json.dumps(value, ensure_ascii=False, sort_keys=True)
        if kinds[key] == "float":
            return float(value)  # type: ignore[arg-type]
        return value

    out = {name: [{k: cell(k, row.get(k)) for k in columns} for row in rows] for name, rows in splits.items()}
    return out, as_json


def card(
    run_dir: Path,
    splits: dict[str, list[dict[str, object]]],
    fmt: Format,
    kept_only: bool,
    notes: list[str],
    as_json: list[str],
) -> str:
    """The dataset card: YAML metadata (configs, so `load_dataset(DIR)` finds the files) and what made the data."""
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    manifest = RunStore(run_dir).manifest
    syn, teacher, task = cfg.get("synthesis", {}), cfg.get("teacher", {}), cfg.get("task", {})
    meta: dict[str, object] = {"tags": ["gaploop", "synthetic"], "pretty_name": f"gaploop run {cfg.get('name')}"}
    if fmt in ("parquet", "jsonl"):
        suffix = "parquet" if fmt == "parquet" else "jsonl"
        files = [{"split": name, "path": f"{name}.{suffix}"} for name in splits]
        meta["configs"] = [{"config_name": "default", "data_files": files}]
    per_round: dict[int, Counter[str]] = {}
    for row in splits["synthetic"]:
        c = per_round.setdefault(int(row.get("round") or 0), Counter())  # type: ignore[arg-type]
        c["kept" if row.get("kept") else f"dropped: {drop_reason_key(row)}"] += 1
    if task.get("name") == "dataset":
        ds = task.get("dataset") or {}
        test = ds.get("test_source") or ds.get("source")
        seed_source = f"`{ds.get('source')}` (test: `{test}`); its license is that of the source"
    else:
        seed_source = "gaploop's verifiable task world (generated, Apache-2.0 like gaploop)"
    llm = teacher.get("llm", {})
    who = (
        f"chat model `{llm.get('model')}` ({llm.get('backend')})"
        if teacher.get("kind") == "llm"
        else "the task world's oracle"
    )
    lines = [
        "---",
        yaml.safe_dump(meta, sort_keys=False).strip(),
        "---",
        "",
        f"# gaploop run `{cfg.get('name')}`",
        "",
        f"Exported from `{run_dir}` (status: {manifest.get('status', 'running')}).",
        "",
        "## Splits",
        "",
        f"- `seed`: {len(splits['seed'])} items, round 0's seed, from {seed_source}.",
        f"- `synthetic`: {len(splits['synthetic'])} items written in rounds 1+"
        + (" (kept items only)" if kept_only else ", kept and dropped; `kept` and `drop_reason` say which and why")
        + ".",
        "",
        "## What produced it",
        "",
        f"- plan `{_name(syn.get('plan'))}`, writer `{_name(syn.get('writer'))}`{_mix(syn.get('mix'))}",
        f"- refiners {_names(syn.get('refine'))}, curators {_names(syn.get('curate'))}, "
        f"selectors {_names(syn.get('select'))}",
        f"- answers by {who}; budget {syn.get('budget_per_round')} items a round; seed {cfg.get('seed')}",
        f"- rounds run: {len(per_round)}",
        "",
        "| round | items | kept | dropped, by reason |",
        "| --- | --- | --- | --- |",
    ]
    for r, c in sorted(per_round.items()):
        drops = ", ".join(f"{k[len('dropped: ') :]} {v}" for k, v in c.most_common() if k != "kept") or "-"
        lines.append(f"| {r} | {sum(c.values())} | {c['kept']} | {drops} |")
    lines += ["", "## Columns", ""]
    lines.append(
        "Provenance columns: `id`, `round`, `source` (seed / synthetic), `strategy`, `writer`, `teacher`, `parent_id` "
        "(the failure or point an item was written for), `knowledge_point`, `ifd`, `kept`, `drop_reason`."
    )
    if as_json:
        lines += [
            "",
            f"Written as JSON text (objects, or values of mixed types): {', '.join(f'`{c}`' for c in as_json)}.",
        ]
    if notes:
        lines += ["", "## Left out", "", *(f"- {n}" for n in notes)]
    return "\n".join(lines) + "\n"


def _mix(parts: object) -> str:
    if not isinstance(parts, list) or not parts:
        return ""
    return "; mix " + ", ".join(f"{_name(m.get('plan'))} x {_name(m.get('writer'))} {m.get('share')}" for m in parts)


def _name(spec: object) -> str:
    if isinstance(spec, dict):
        return str(spec.get("name"))
    return str(spec)


def _names(specs: object) -> str:
    return "[" + ", ".join(_name(s) for s in specs or []) + "]" if isinstance(specs, list) else "[]"


def hub_token(repo_id: str, fmt: str) -> str:
    """The token to push with, after checking that the push can be made at all; an ExportError says why not."""
    from huggingface_hub import constants, get_token
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as err:
        raise ExportError(f"--push-to-hub {repo_id!r}: not a repo id ('name' or 'user/name'): {err}") from None
    if fmt == "hf":
        # save_to_disk's arrow folder is not what `load_dataset(REPO)` or the hub's viewer read; parquet and jsonl
        # files listed in the card's `configs` are.
        raise ExportError("--push-to-hub needs --format parquet or jsonl (the hub reads those, not save_to_disk's)")
    if constants.HF_HUB_OFFLINE:
        raise ExportError("--push-to-hub: HF_HUB_OFFLINE is set; unset it to push")
    token = get_token()
    if not token:
        raise ExportError("--push-to-hub: no Hugging Face token; set HF_TOKEN or log in with `hf auth login`")
    register(token)  # masked in every message, also when it came from the token file rather than HF_TOKEN
    return token


def push(out: Path, repo_id: str, token: str, private: bool = False) -> str:
    """Upload the export folder `out` to the dataset repo `repo_id` (made if it is not there); returns its URL."""
    from huggingface_hub import HfApi

    api = HfApi()
    try:
        url = api.create_repo(repo_id, token=token, repo_type="dataset", private=private, exist_ok=True)
        api.upload_folder(
            repo_id=repo_id,
            folder_path=out,
            repo_type="dataset",
            token=token,
            commit_message=f"gaploop export of {out.name}",
        )
    # Whatever the hub call raises (HTTP status, the transport errors of the HTTP client this huggingface_hub
    # version uses) ends as one message that names the repo and says the local export is whole.
    except Exception as err:  # noqa: BLE001
        raise PushError(
            f"pushing {out} to the dataset repo {repo_id} failed ({type(err).__name__}: {err}); "
            f"the export itself is complete in {out}"
        ) from None
    return str(url)


def export(
    run_dir: Path, out: Path, fmt: Format = "hf", kept_only: bool = False, overwrite: bool = False
) -> dict[str, int]:
    """Write the run's data to `out`; returns the rows per split."""
    if fmt not in FORMATS:
        raise ExportError(f"--format {fmt!r}: one of {', '.join(FORMATS)}")
    if not (run_dir / "manifest.json").exists():
        raise ExportError(f"{run_dir}: not a run directory (no manifest.json)")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        if not overwrite:
            raise ExportError(f"{out} exists and is not empty; choose another --out or pass --overwrite")
        shutil.rmtree(out)
    splits, notes = collect(run_dir, kept_only)
    splits, as_json = normalise(splits)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    if fmt == "jsonl":
        for name, rows in splits.items():
            write_jsonl(tmp / f"{name}.jsonl", rows)
    else:
        import datasets

        # One schema for both splits: a column the seed lacks (writer, ifd, ...) is typed by the synthetic items.
        dtypes = {"bool": "bool", "int": "int64", "float": "float64", "str": "string", "null": "string"}
        every = [row for rows in splits.values() for row in rows]
        names = list(every[0]) if every else []
        features = datasets.Features({k: datasets.Value(dtypes[_column_kind([r[k] for r in every])]) for k in names})
        dd = datasets.DatasetDict(
            {name: datasets.Dataset.from_list(rows, features=features) for name, rows in splits.items()}
        )
        if fmt == "hf":
            dd.save_to_disk(str(tmp))
        else:
            for name, ds in dd.items():
                ds.to_parquet(str(tmp / f"{name}.parquet"))
    (tmp / "README.md").write_text(card(run_dir, splits, fmt, kept_only, notes, as_json), encoding="utf-8")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp.replace(out)  # the export appears whole or not at all
    return {name: len(rows) for name, rows in splits.items()}
