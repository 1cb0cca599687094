"""Tracking: W&B (online, offline or disabled) and the same metrics in RUN_DIR/metrics.jsonl.

Metrics are keyed by round (`round`) and by training step (`train/global_step`), so W&B charts
per-round metrics against rounds and losses against steps. Config values whose key looks like a
secret are masked before they reach W&B.
"""

from __future__ import annotations

import json
import os
import re
import struct
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

SECRET_KEY = re.compile(r"(api[_-]?key|token|secret|password|passwd|authorization)", re.IGNORECASE)
METRICS_FILE = "metrics.jsonl"


def redact(value: object) -> object:
    """A copy of a nested config with secret-looking keys masked."""
    if isinstance(value, dict):
        return {k: ("***" if SECRET_KEY.search(str(k)) and v else redact(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


def resolve_wandb_mode(mode: str) -> str:
    """'auto' -> WANDB_MODE if set, else online with an API key, else offline."""
    if mode != "auto":
        return mode
    env = os.environ.get("WANDB_MODE", "").strip().lower()
    if env in ("online", "offline", "disabled"):
        return env
    if env == "dryrun":
        return "offline"
    return "online" if os.environ.get("WANDB_API_KEY") else "offline"


class Tracker:
    """Logs metrics and tables to W&B and appends metrics to RUN_DIR/metrics.jsonl."""

    def __init__(
        self,
        run_dir: str | os.PathLike[str],
        config: dict[str, object],
        *,
        mode: str = "auto",
        project: str = "gaploop",
        entity: str | None = None,
        name: str | None = None,
        tags: Sequence[str] = (),
        run_id: str | None = None,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.metrics_path = self.run_dir / METRICS_FILE
        self.mode = resolve_wandb_mode(mode)
        self._rows: list[dict[str, object]] = []
        if self.metrics_path.exists():
            # Resume: keep what earlier sessions logged, drop a torn last line if any.
            for line in self.metrics_path.read_text().splitlines():
                try:
                    self._rows.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
        self.wandb_run = None
        if self.mode != "disabled":
            import wandb

            self.wandb_run = wandb.init(
                project=project,
                entity=entity,
                name=name,
                id=run_id,
                resume="allow" if run_id else None,
                dir=str(self.run_dir),
                mode=self.mode,
                config={**redact(config), "code": code_version()},
                tags=list(tags),
                reinit="finish_previous",
            )
            self.wandb_run.define_metric("round")
            self.wandb_run.define_metric("train/global_step")
            for prefix in ("test", "probe", "synth", "ifd", "pool", "time", "round"):
                self.wandb_run.define_metric(f"{prefix}/*", step_metric="round")
            self.wandb_run.define_metric("train/*", step_metric="train/global_step")

    @property
    def run_id(self) -> str | None:
        """The W&B run id (stored in the manifest so `resume` continues the same W&B run)."""
        return self.wandb_run.id if self.wandb_run is not None else None

    @property
    def rows(self) -> list[dict[str, object]]:
        """Everything logged so far, including earlier sessions of a resumed run."""
        return list(self._rows)

    def log(self, metrics: dict[str, object], *, round: int | None = None, step: int | None = None) -> None:
        """Log one set of metrics, keyed by round and/or training step; a key already logged is not logged again."""
        row: dict[str, object] = {}
        if round is not None:
            row["round"] = round
        if step is not None:
            row["train/global_step"] = step
        row.update(metrics)
        key = (row.get("round"), row.get("train/global_step"))
        if key != (None, None) and any((r.get("round"), r.get("train/global_step")) == key for r in self._rows):
            return  # logged before this phase was redone on resume (its record lost, or a crash after the log)
        self._rows.append(row)
        self._append(row)
        if self.wandb_run is not None:
            self.wandb_run.log(row)

    def _append(self, row: dict[str, object]) -> None:
        # One line appended and synced per call, not the whole file rewritten: a crash can leave at most a
        # torn last line, which every reader skips.
        self.metrics_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.metrics_path, "a+b") as fh:
            fh.seek(0, os.SEEK_END)
            if fh.tell():
                fh.seek(-1, os.SEEK_END)
                torn = fh.read(1) != b"\n"
            else:
                torn = False
            fh.write((b"\n" if torn else b"") + json.dumps(row, ensure_ascii=False, default=str).encode() + b"\n")
            fh.flush()
            os.fsync(fh.fileno())

    def log_table(self, key: str, rows: Sequence[dict[str, object]], round: int | None = None) -> None:
        """A W&B table of records (e.g. failures, synthesised items); columns from the first row."""
        if self.wandb_run is None or not rows:
            return
        import wandb

        columns = list(rows[0])
        data = [[_cell(r.get(c)) for c in columns] for r in rows]
        payload: dict[str, object] = {key: wandb.Table(columns=columns, data=data)}
        if round is not None:
            payload["round"] = round
        self.wandb_run.log(payload)

    def log_histogram(self, key: str, values: Sequence[float], round: int | None = None) -> None:
        """A W&B histogram (e.g. IFD scores of a round)."""
        if self.wandb_run is None or not values:
            return
        import wandb

        payload: dict[str, object] = {key: wandb.Histogram(list(values))}
        if round is not None:
            payload["round"] = round
        self.wandb_run.log(payload)

    def log_images(self, images: dict[str, str | os.PathLike[str]], round: int | None = None) -> None:
        """PNG files as W&B images (e.g. a report's plots), one key each."""
        if self.wandb_run is None or not images:
            return
        import wandb

        payload: dict[str, object] = {key: wandb.Image(str(path)) for key, path in images.items()}
        if round is not None:
            payload["round"] = round
        self.wandb_run.log(payload)

    def log_artifact(
        self,
        name: str,
        kind: str,
        *,
        rows: Sequence[dict[str, object]] | None = None,
        reference: str | os.PathLike[str] | None = None,
        aliases: Sequence[str] = (),
        metadata: dict[str, object] | None = None,
    ) -> None:
        """A W&B artifact (offline runs keep it too): `rows` as its `items.jsonl`, or a folder by reference
        (checksums recorded, nothing copied: a model folder can be large)."""
        if self.wandb_run is None:
            return
        import wandb

        artifact = wandb.Artifact(_artifact_name(name), type=kind, metadata=metadata or {})
        if rows is not None:
            with artifact.new_file("items.jsonl", mode="w", encoding="utf-8") as fh:
                for row in rows:
                    fh.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
        if reference is not None:
            artifact.add_reference(Path(reference).resolve().as_uri(), name=Path(reference).name)
        self.wandb_run.log_artifact(artifact, aliases=list(aliases))

    def summary(self, values: dict[str, object]) -> None:
        """Set W&B summary values (final numbers of the run)."""
        if self.wandb_run is not None:
            for k, v in values.items():
                self.wandb_run.summary[k] = v

    def finish(self, wait_s: float = 60.0) -> None:
        """Flush and close the W&B run; offline, wait until its file on disk is complete."""
        if self.wandb_run is None:
            return
        run_dir = Path(self.wandb_run.dir).parent  # .../wandb/offline-run-*/files -> the run folder
        self.wandb_run.finish()
        self.wandb_run = None
        if self.mode == "offline":
            # wandb-core may still be writing the .wandb file after finish() returns (seen on a
            # loaded 2-core machine); a run whose file lacks its exit record would sync incomplete.
            deadline = time.monotonic() + wait_s
            files = sorted(run_dir.glob("run-*.wandb"))
            while files and not read_wandb_file(files[0])["finished"] and time.monotonic() < deadline:
                time.sleep(0.2)


def _artifact_name(name: str) -> str:
    """W&B artifact names take letters, digits, '-', '_' and '.' only."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "artifact"


def code_version() -> dict[str, object]:
    """The code that ran: gaploop's version and, in a git checkout, its commit and whether it had changes."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        info: dict[str, object] = {"version": version("gaploop")}
    except PackageNotFoundError:
        info = {"version": None}
    root = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
        status = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return {**info, "commit": None}
    if commit.returncode != 0:
        return {**info, "commit": None}
    return {**info, "commit": commit.stdout.strip(), "dirty": bool(status.stdout.strip())}


def _cell(value: object) -> object:
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return json.dumps(value, default=str)


# -- reading an offline W&B run back (tests, `gaploop status`) --------------------------------------
_BLOCK = 32768
_HEADER = 7


def read_wandb_file(path: str | os.PathLike[str]) -> dict[str, object]:
    """Parse a `.wandb` run file (LevelDB-style log of protobuf records): config, history, finished."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = Path(path).read_bytes()
    if len(data) >= 4 and data[:4] != b":W&B":
        raise ValueError(f"{path}: not a W&B run file (bad header {data[:4]!r})")
    pos, buf = _HEADER, b""
    config: dict[str, object] = {}
    history: list[dict[str, object]] = []
    artifacts: list[dict[str, object]] = []
    finished = False
    while pos + _HEADER <= len(data):
        left = _BLOCK - pos % _BLOCK
        if left < _HEADER:
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + _HEADER])
        pos += _HEADER
        if kind == 0 and length == 0:
            break
        buf += data[pos : pos + length]
        pos += length
        if kind in (1, 4):  # a full record, or the last piece of one
            rec = pb.Record()
            rec.ParseFromString(buf)
            buf = b""
            which = rec.WhichOneof("record_type")
            if which == "run":
                for item in rec.run.config.update:
                    config[item.key] = json.loads(item.value_json)
            elif which == "config":
                for item in rec.config.update:
                    config[item.key] = json.loads(item.value_json)
            elif which == "exit":
                finished = True
            elif which == "artifact":
                a = rec.artifact
                entries = list(a.manifest.contents)
                artifacts.append(
                    {
                        "name": a.name,
                        "type": a.type,
                        "aliases": list(a.aliases),
                        "metadata": json.loads(a.metadata) if a.metadata else {},
                        "files": [e.path for e in entries],
                        "references": [e.ref for e in entries if e.ref],
                    }
                )
            elif which == "history":
                history.append({(i.key or "/".join(i.nested_key)): json.loads(i.value_json) for i in rec.history.item})
    return {"config": config, "history": history, "artifacts": artifacts, "finished": finished}


def find_wandb_files(run_dir: str | os.PathLike[str]) -> list[Path]:
    """The `.wandb` files W&B wrote under a run directory (offline or online)."""
    return sorted(Path(run_dir).glob("wandb/*run-*/run-*.wandb"))
