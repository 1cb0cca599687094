"""The one protocol of gaploop's child processes: `python -m trainers.<job> JOB.json RESULT.json`.

The parent writes the job (a pydantic model of plain data) to JOB.json and starts the child; the child
reads it back (an unknown, missing or invalid field is an error naming the file and the field), watches
its parent (`core.children`), does the work and writes its result (a JSON object) to RESULT.json
atomically. The parent reads RESULT.json: a child that exits 0 without writing it has failed. Training
(`trainers.sft`), the student's answers (`trainers.inference`) and IFD scoring (`trainers.ifd`) all speak
it; training alone is started through its own launcher (`trainers.sft.launch_sft`: the DeepSpeed
launcher, a progress file, a pid file), the others through `run_job`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from core.children import tie_to_parent, watch_parent
from core.jsonl import write_json
from core.secrets import without_secrets

PACKAGE_ROOT = Path(__file__).resolve().parents[1]


class Job(BaseModel):
    """Base of every child job: plain fields only, unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


J = TypeVar("J", bound=Job)
# Validation context of a job read back in its child: checks of the parent's machine (a file exists there)
# are skipped, since a rank on another node reads the same job.
IN_CHILD = {"in_child": True}


def write_job(path: str | os.PathLike[str], job: Job) -> Path:
    """JOB.json, atomically; returns its path."""
    write_json(path, job.model_dump(mode="json"))
    return Path(path)


def read_job(cls: type[J], path: str | os.PathLike[str]) -> J:
    """The job in a JOB.json file; an unreadable file or a bad field raises ValueError naming both."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as err:
        raise ValueError(f"cannot read the job file {path}: {err}") from err
    try:
        return cls.model_validate_json(text, context=IN_CHILD)
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'job'}: {e['msg']}" for e in err.errors())
        raise ValueError(f"job file {path} ({cls.__name__}): {problems}") from None


def read_result(path: str | os.PathLike[str]) -> dict[str, object]:
    """A child's RESULT.json."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def child_main(cls: type[J], run: Callable[[J], dict[str, object] | None], argv: Sequence[str], prog: str) -> int:
    """The entry of a child: read JOB.json, run, write RESULT.json (skipped where `run` returns None, e.g. on
    a rank other than 0). A bad job is exit 2 with the reason on stderr."""
    if len(argv) != 2:
        print(f"usage: python -m {prog} JOB.json RESULT.json", file=sys.stderr)
        return 2
    watch_parent()
    try:
        job = read_job(cls, argv[0])
    except ValueError as err:
        print(f"{prog}: {err}", file=sys.stderr)
        return 2
    result = run(job)
    if result is not None:
        write_json(argv[1], result)
    return 0


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a child: this package importable, no secrets (a child never needs the chat key),
    and tied to this process so it exits when this one dies."""
    env = without_secrets({**os.environ, **(extra or {})})
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PACKAGE_ROOT), env.get("PYTHONPATH")) if p)
    tie_to_parent(env)
    return env


def run_job(
    module: str, job: Job, workdir: Path, label: str, on_line: Callable[[str], None] | None = None
) -> dict[str, object]:
    """`python -m module JOB.json RESULT.json` with both files in `workdir`; returns the result.

    stdout and stderr are one pipe (vLLM logs to stdout, tracebacks go to stderr), read as it comes, so a
    chatty child never blocks on a full pipe; each line goes to `on_line`. A failure raises with the output's
    tail; an interrupt kills the child first.
    """
    job_path, result_path = write_job(workdir / "job.json", job), workdir / "result.json"
    result_path.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", module, str(job_path), str(result_path)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=child_env())
    tail: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            tail = [*tail[-39:], line.rstrip()]
            if on_line is not None:
                on_line(line)
        code = proc.wait()
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    if code != 0 or not result_path.exists():
        why = f"exit {code}" if code != 0 else "exit 0 but no result file"
        raise RuntimeError(
            f"{label}: the child process `python -m {module} {job_path}` failed ({why}); the end of its output:\n"
            + "\n".join(tail)
        )
    return read_result(result_path)
