"""The run directory: one folder per round, JSONL records, atomic writes, and a manifest of phases.

Layout:
    RUN_DIR/config.yaml        resolved config
    RUN_DIR/manifest.json      status and input fingerprint of every phase
    RUN_DIR/metrics.jsonl      one JSON object per logged step (see loop/tracking.py)
    RUN_DIR/round_000/...      a round's records (items.jsonl, eval.jsonl, ...) and its student
Every file is written to a temporary name in the same folder and renamed over the target, so a
crash leaves either the old or the new file, never half of one.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path, PurePath
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from loop.config import RunConfig

from core.jsonl import DataFileError, ReadReport, atomic_path, read_jsonl, write_jsonl, write_text_atomic

# Re-exported: the run directory is built on core/jsonl.py's writers and its one row check.
__all__ = ["DataFileError", "ReadReport", "atomic_path", "read_jsonl", "write_jsonl", "write_text_atomic"]

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1


class ManifestError(RuntimeError):
    """The manifest cannot be read; the message says which file and what to do."""


class ChangedRecordError(DataFileError):
    """A record file a finished phase wrote was cut short or changed since; the message names it and the phase."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def fingerprint(*parts: object) -> str:
    """A stable hash of JSON-able values and the contents of any file paths among them."""
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, Path):
            h.update(str(part.name).encode())
            if part.is_file():
                with open(part, "rb") as fh:
                    for chunk in iter(lambda: fh.read(1 << 20), b""):
                        h.update(chunk)
            else:
                h.update(b"<missing>")
        else:
            h.update(json.dumps(part, sort_keys=True, default=str).encode())
        h.update(b"\x00")
    return h.hexdigest()[:16]


class RunStore:
    """A run directory: round folders, atomic record files, and the manifest of phases."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.manifest_path = self.root / MANIFEST
        self._manifest: dict[str, object] | None = None

    # -- layout ---------------------------------------------------------------------------------
    def round_dir(self, round_index: int) -> Path:
        """The folder of a round, created on first use."""
        path = self.root / f"round_{round_index:03d}"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def path(self, round_index: int, name: str) -> Path:
        """A file inside a round's folder."""
        return self.round_dir(round_index) / name

    # -- manifest -------------------------------------------------------------------------------
    def create(self, config_yaml: str, run_name: str) -> None:
        """Start a new run directory; refuses one that already holds a run."""
        if self.manifest_path.exists():
            raise FileExistsError(
                f"{self.root} already holds a run (manifest.json exists): use `gaploop resume {self.root}` "
                "or choose another run_dir"
            )
        self.root.mkdir(parents=True, exist_ok=True)
        write_text_atomic(self.root / "config.yaml", config_yaml)
        self._manifest = {
            "version": MANIFEST_VERSION,
            "run": run_name,
            "created": time.time(),
            "outputs_relative": True,
            "phases": {},
        }
        self._save()

    @property
    def manifest(self) -> dict[str, object]:
        """The manifest, read on first use; a corrupt one is an error, never silently replaced."""
        if self._manifest is None:
            self._manifest = self._load()
        return self._manifest

    def _load(self) -> dict[str, object]:
        if not self.manifest_path.is_file():
            raise ManifestError(f"{self.root} is not a run directory: {MANIFEST} not found")
        try:
            data = json.loads(self.manifest_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            backup = self.manifest_path.with_suffix(".json.bak")
            hint = (
                f"; the previous version is in {backup.name}: inspect it and copy it over {MANIFEST} to resume"
                if backup.exists()
                else ""
            )
            raise ManifestError(f"{self.manifest_path} is corrupt ({err}){hint}") from err
        if not isinstance(data, dict) or not isinstance(data.get("phases"), dict):
            raise ManifestError(f"{self.manifest_path}: expected an object with a 'phases' mapping")
        if data.get("version") != MANIFEST_VERSION:
            raise ManifestError(
                f"{self.manifest_path}: manifest version {data.get('version')!r}, this gaploop reads {MANIFEST_VERSION}"
            )
        if not data.get("outputs_relative"):
            _relative_outputs(data["phases"])
            data["outputs_relative"] = True  # written with the next change, not by a command that only reads
        return data

    def _save(self) -> None:
        text = json.dumps(self.manifest, indent=1, sort_keys=True)
        write_text_atomic(self.manifest_path, text)
        # A second copy of the last good state: an outside edit that corrupts manifest.json can be undone.
        write_text_atomic(self.manifest_path.with_suffix(".json.bak"), text)

    @staticmethod
    def _key(round_index: int, phase: str) -> str:
        return f"round_{round_index:03d}/{phase}"

    def phase(self, round_index: int, phase: str) -> dict[str, object] | None:
        """The manifest entry of a phase, or None when it never started."""
        entry = self.manifest["phases"].get(self._key(round_index, phase))  # type: ignore[union-attr]
        return entry if isinstance(entry, dict) else None

    def is_done(self, round_index: int, phase: str, fp: str) -> bool:
        """True when the phase finished with the same input fingerprint."""
        entry = self.phase(round_index, phase)
        return bool(entry) and entry.get("status") == "done" and entry.get("fingerprint") == fp

    def mark_started(self, round_index: int, phase: str, fp: str) -> None:
        """Record that a phase began (a crash leaves it 'running', so resume redoes it)."""
        self.manifest["phases"][self._key(round_index, phase)] = {  # type: ignore[index]
            "status": "running",
            "fingerprint": fp,
            "started": time.time(),
        }
        self._save()

    def mark_done(
        self,
        round_index: int,
        phase: str,
        fp: str,
        outputs: Sequence[str | os.PathLike[str]] = (),
        stats: dict | None = None,
        scheme: int | None = None,
    ) -> None:
        """Record that a phase finished, after its outputs were written: each by its path in the run directory
        (a moved run still finds them) and, for a file, its size (a file cut short afterwards is noticed)."""
        key = self._key(round_index, phase)
        entry = dict(self.manifest["phases"].get(key) or {})  # type: ignore[union-attr]
        names = [self._relative(Path(p)) for p in outputs]
        sizes = {name: path.stat().st_size for name in names if (path := self.root / name).is_file()}
        entry.update(
            status="done",
            fingerprint=fp,
            finished=time.time(),
            outputs=names,
            sizes=sizes,
            stats=stats or {},
        )
        if scheme is not None:
            entry["scheme"] = scheme
        entry.setdefault("started", entry["finished"])
        self.manifest["phases"][key] = entry  # type: ignore[index]
        self._save()

    def _relative(self, path: Path) -> str:
        """`path` (built on the root, or already relative to it) as a path relative to the run directory."""
        try:
            return path.relative_to(self.root).as_posix()
        except ValueError:
            pass
        if not path.is_absolute():
            return path.as_posix()  # already relative to the run directory
        try:
            return path.resolve().relative_to(self.root.resolve()).as_posix()
        except ValueError:
            return str(path)  # outside the run directory: kept as it is

    def outputs(self, entry: dict[str, object]) -> list[Path]:
        """The files and folders a manifest entry names, as paths under this run directory."""
        return [self.root / name for name in entry.get("outputs") or []]  # type: ignore[union-attr]

    def damage(self, round_index: int, phase: str) -> str | None:
        """Why a phase's recorded outputs are not as it wrote them (one is gone, a file has another size), or None."""
        entry = self.phase(round_index, phase) or {}
        sizes = entry.get("sizes") or {}
        for name, path in zip(entry.get("outputs") or [], self.outputs(entry), strict=True):  # type: ignore[arg-type]
            if not path.exists():
                return f"{name} is gone"
            if name in sizes and path.is_file() and path.stat().st_size != sizes[name]:  # type: ignore[operator]
                return f"{name} has {path.stat().st_size} bytes, not the {sizes[name]} written"  # type: ignore[index]
        return None

    def check_written(self, paths: Sequence[object]) -> None:
        """ChangedRecordError when a file among `paths` that a finished phase wrote no longer has the size it wrote
        (cut short or changed outside gaploop since): a phase is never given fewer rows than were recorded."""
        written = {}
        for key, entry in self.manifest["phases"].items():  # type: ignore[union-attr]
            if entry.get("status") == "done":
                written.update({name: (key, size) for name, size in (entry.get("sizes") or {}).items()})
        for path in paths:
            if not isinstance(path, Path) or (hit := written.get(self._relative(path))) is None:
                continue
            key, size = hit
            now = path.stat().st_size if path.is_file() else None
            if now != size:
                found = "it is gone" if now is None else f"it has {now} bytes"
                raise ChangedRecordError(
                    f"{path}: phase {key} wrote {size} bytes and {found}: cut short or changed outside gaploop; "
                    f"`gaploop resume {self.root}` redoes that phase"
                )

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold RUN_DIR/.lock while driving the run: a second `run`/`resume` on it fails clearly.

        A lock left by a process that no longer exists (a kill -9) is taken over.
        """
        path = self.root / ".lock"
        for _ in range(2):
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                holder = path.read_text().strip() or "?"
                if holder.isdigit() and _alive(int(holder)):
                    raise RuntimeError(
                        f"{self.root} is in use by process {holder} (another gaploop run or resume); "
                        "wait for it or stop it first"
                    ) from None
                path.unlink(missing_ok=True)  # stale: its process is gone
                continue
            with os.fdopen(fd, "w") as fh:
                fh.write(str(os.getpid()))
            break
        try:
            yield
        finally:
            path.unlink(missing_ok=True)

    def set_field(self, key: str, value: object) -> None:
        """Set a top-level manifest field (e.g. the W&B run id, the final status)."""
        self.manifest[key] = value
        self._save()


def _relative_outputs(phases: dict[str, dict]) -> None:
    """Make the outputs of a manifest written before they were stored relative to the run directory (they named
    each file by the path the run was started with: absolute, or relative to the working directory then)
    relative to it, so a run directory moved since still finds them. The run's old path is read off an output
    inside a round folder: `OLD/round_NNN/name` of a phase of round NNN."""
    old = next(
        (
            path.parent.parent
            for key, entry in phases.items()
            for path in map(PurePath, entry.get("outputs") or [])
            if path.parent.name == key.split("/")[0]
        ),
        None,
    )
    if old is None:
        return
    for entry in phases.values():
        if entry.get("outputs"):
            paths = map(PurePath, entry["outputs"])
            entry["outputs"] = [p.relative_to(old).as_posix() if p.is_relative_to(old) else str(p) for p in paths]


def default_run_dir(cfg: RunConfig) -> Path:
    """`run_dir` if set, else `<runs_dir>/<name>-<time>`."""
    if cfg.run_dir:
        return Path(cfg.run_dir)
    return Path(cfg.runs_dir) / f"{cfg.name}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
