"""The step executor: runs one step of a round unless the manifest says it is done with the same inputs.

A step is a function that computes and returns its outputs without writing them; the executor then
(1) holds at the test hook, (2) writes every output atomically, (3) marks the step done with its
fingerprint and stats. Its fingerprint is chained from what the step is given: the config it reads and the
content of its input files (which are earlier steps' outputs), so a changed input redoes exactly the steps
downstream of it, and a crash anywhere loses or duplicates nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from core.jsonl import write_jsonl, write_text_atomic
from loop.console import console
from loop.store import RunStore, fingerprint

# A test hook: "round_001/filter" makes that step stop after its work, before its writes, so a test can
# kill the process at a known point. Never set in normal use.
HOLD_ENV = "GAPLOOP_TEST_HOLD"
# Manifest entries written since steps fingerprint what they are given; older entries fingerprinted the
# whole config and are trusted as done (a resume always uses the run's own saved config).
SCHEME = 2


@dataclass
class Out:
    """What a step produced: files to write (JSONL rows, a JSON document, or a folder/file to move into
    place) and stats for the manifest and the round table (`compute_seconds`: model work, not orchestration)."""

    files: dict[Path, list | dict | str | Path] = field(default_factory=dict)
    stats: dict[str, object] = field(default_factory=dict)
    effects: list[Callable[[], None]] = field(default_factory=list)  # done after the hold, before the writes


def hold(r: int, name: str) -> None:
    """The test hook (see HOLD_ENV): wait here to be killed."""
    if os.environ.get(HOLD_ENV) == f"round_{r:03d}/{name}":
        console.print(f"[test hook] holding in round {r} phase {name}")
        time.sleep(3600)


def write(files: dict[Path, list | dict | str | Path]) -> None:
    """Every output written atomically: rows as JSONL, a dict as JSON, text as text, a path moved in place."""
    for path, value in files.items():
        if isinstance(value, Path):
            if path.exists():
                shutil.rmtree(path) if path.is_dir() else path.unlink()
            os.replace(value, path)
        elif isinstance(value, list):
            write_jsonl(path, value)
        elif isinstance(value, dict):
            write_text_atomic(path, json.dumps(value, indent=1))
        else:
            write_text_atomic(path, value)


class Steps:
    """Runs the steps of a run directory and collects their times per round."""

    def __init__(self, store: RunStore) -> None:
        self.store = store
        self.times: dict[int, dict[str, float]] = {}

    def run(self, r: int, name: str, given: Sequence[object], fn: Callable[[], Out]) -> bool:
        """Run step `name` of round r unless done with the same `given`; True when it ran now."""
        self.store.check_written(given)  # a file cut short since its phase wrote it is never read as whole
        fp = fingerprint(name, *given)
        entry = self.store.phase(r, name) or {}
        done = entry.get("status") == "done"
        if done and (entry.get("scheme") != SCHEME or entry.get("fingerprint") == fp):
            damage = self.store.damage(r, name)
            if damage is None:
                self.times.setdefault(r, {})[name] = float(entry.get("stats", {}).get("seconds", 0.0))
                return False
            console.print(f"round {r} {name}: its output {damage} (changed outside gaploop); redoing the phase")
        self.store.mark_started(r, name, fp)
        t0 = time.perf_counter()
        out = fn()
        hold(r, name)
        for effect in out.effects:
            effect()
        write(out.files)
        stats = {**out.stats, "seconds": time.perf_counter() - t0}
        self.times.setdefault(r, {})[name] = stats["seconds"]  # type: ignore[assignment]
        self.store.mark_done(r, name, fp, outputs=list(out.files), stats=stats, scheme=SCHEME)
        return True
