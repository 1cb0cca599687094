"""Child processes that never outlive the run that started them.

Three pieces, because a child can lose its parent three ways:

- `stop_on_signals()`: SIGTERM and SIGHUP to the orchestrator raise `Stopped` (a KeyboardInterrupt, as
  Ctrl-C does), so the code that started a child stops it on the way out instead of Python dying at once.
- `tie_to_parent(env)` / `watch_parent()`: a SIGKILLed parent runs no code at all. The parent names
  itself in the child's environment (host, pid and the pid's start time, so a reused pid does not count);
  every gaploop child process (the trainer's ranks behind any launcher, inference, IFD) watches that
  process and exits within a second of its death. (Not the kernel's parent-death signal: it would reach
  only the direct child, which under the DeepSpeed launcher is the launcher, not the ranks.)
- `hold_engine()` / `watch_holder()`: a vLLM engine runs in processes vLLM starts (its engine core, each
  worker), which no gaploop code starts. The process that builds an engine names itself first, and has vLLM
  spawn them; a spawned process imports the main module again (`trainers.inference`, `loop.cli`), which
  calls `watch_holder()`: once the holder is gone it stops as vLLM stops on SIGTERM (exit after 5 s at most).
- `PidFile`: the trainer's launcher writes its process group to the job's folder; a resume that finds it
  alive (it holds the run's lock, so nothing else can be driving that job) stops it before redoing the
  phase, so two trainers never write one output folder.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager, suppress
from pathlib import Path

PARENT_ENV = "GAPLOOP_PARENT"  # host:pid:start of the process whose death ends this one
HOLDER_ENV = "GAPLOOP_ENGINE_HOLDER"  # the same, of the process whose vLLM engine this one runs
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


class Stopped(KeyboardInterrupt):
    """The orchestrator was asked to stop by a signal; raised where it was, so children are stopped."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), '' where /proc is absent, None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        if Path("/proc/self/stat").exists():
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return ""
        return ""
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # the command name may hold spaces and parentheses
    if fields[0] == "Z":  # a zombie has exited; only its exit status is left to collect
        return None
    return fields[19]


def alive(pid: int, started: str | None = None) -> bool:
    """Whether `pid` runs, and is the same process that had start time `started` when that is given."""
    now = start_time(pid)
    return now is not None and (started is None or not now or not started or now == started)


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """While inside: SIGTERM and SIGHUP raise `Stopped` in the main thread (earlier handlers come back after).

    A signal this process was started with ignored stays ignored: `nohup gaploop run ... &` must survive the
    terminal's SIGHUP, which is what nohup is for (Python does the same for an inherited ignored SIGINT).
    """

    def handler(signum: int, frame: object) -> None:
        raise Stopped(signum)

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, handler) for s in STOP_SIGNALS if signal.getsignal(s) != signal.SIG_IGN}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _me() -> str:
    me = os.getpid()
    return f"{socket.gethostname()}:{me}:{start_time(me) or ''}"


def tie_to_parent(env: MutableMapping[str, str]) -> MutableMapping[str, str]:
    """Name this process in a child's environment as the one whose death ends it (see `watch_parent`)."""
    env[PARENT_ENV] = _me()
    env.pop(HOLDER_ENV, None)  # a gaploop child holds its own engines, if any
    return env


def watch_parent(interval: float = 0.5) -> threading.Thread | None:
    """In a child: exit (status 143) once the process named in GAPLOOP_PARENT is gone.

    Nothing happens without the variable, or on another host (a rank started over ssh by a multi-node
    launcher cannot see the orchestrator's pid; its launcher ends it).
    """
    return _watch(PARENT_ENV, "the process that started this one", interval, grace=0.0)


def hold_engine() -> None:
    """Before building a vLLM engine here: name this process as its holder, and have vLLM spawn its processes
    (not fork them), so that each imports the main module again and watches this one (`watch_holder`)."""
    os.environ[HOLDER_ENV] = _me()
    os.environ.setdefault("VLLM_WORKER_MULTIPROC_METHOD", "spawn")


def watch_holder(interval: float = 0.5) -> threading.Thread | None:
    """In a process vLLM spawned for an engine (called by the main module it imports): once the process holding
    the engine is gone, SIGTERM itself (vLLM shuts its engine core and workers down on it), exit 5 s later at
    the latest. Nothing happens in the holder, nor in a process no holder started."""
    if os.environ.get(HOLDER_ENV, "").split(":")[1:2] == [str(os.getpid())]:
        return None  # the holder itself
    return _watch(HOLDER_ENV, "the process holding this vLLM engine", interval, grace=5.0)


def _watch(variable: str, who: str, interval: float, grace: float) -> threading.Thread | None:
    """Stop this process once the one named in `variable` (host:pid:start) is gone: at once (status 143), or
    with a SIGTERM to itself first and `grace` seconds to act on it."""
    host, _, rest = os.environ.get(variable, "").partition(":")
    pid_text, _, started = rest.partition(":")
    if not pid_text.isdigit() or host != socket.gethostname():
        return None
    pid = int(pid_text)

    def watch() -> None:
        while alive(pid, started):
            time.sleep(interval)
        with suppress(OSError):  # stderr may be a pipe to the process that is gone (before: the thread died here)
            print(f"gaploop: {who} (pid {pid}) is gone; stopping {os.getpid()}", file=sys.stderr, flush=True)
        if grace:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(grace)
        os._exit(143)

    if not alive(pid, started) and not grace:  # it died before we got here
        watch()
    thread = threading.Thread(target=watch, name="gaploop-parent-watch", daemon=True)
    thread.start()
    return thread


class PidFile:
    """A launcher's process group recorded in a job folder, so an orphan of an earlier driver can be stopped."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self, pid: int) -> None:
        try:
            pgid = os.getpgid(pid)
        except ProcessLookupError:  # already gone and collected: nothing to stop later
            return
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps({"pid": pid, "pgid": pgid, "start": start_time(pid) or ""}))
        os.replace(tmp, self.path)

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)

    def stop_orphan(self, grace: float = 10.0) -> int | None:
        """Stop the recorded process group if its leader still runs; its pid, or None when nothing ran."""
        try:
            info = json.loads(self.path.read_text())
            pid, pgid, started = int(info["pid"]), int(info["pgid"]), str(info.get("start", ""))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError):
            self.clear()  # unreadable: written by a launch killed mid-write (the rename makes that unlikely)
            return None
        if not alive(pid, started):
            self.clear()
            return None
        print(
            f"gaploop: stopping process group {pgid} still running {self.path.parent} from an earlier, killed run",
            file=sys.stderr,
        )
        _signal_group(pgid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while alive(pid, started) and time.monotonic() < deadline:
            time.sleep(0.1)
        _signal_group(pgid, signal.SIGKILL)
        while _group_exists(pgid) and time.monotonic() < deadline + grace:
            time.sleep(0.1)
        self.clear()
        return pid


def stop_group(proc: subprocess.Popen, grace: float) -> None:
    """Stop a child started with `start_new_session=True` and everything in its process group (a launcher's
    ranks, a server's workers): SIGTERM, then SIGKILL if the child is still there after `grace` seconds."""
    if proc.poll() is not None:
        return
    _signal_group(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        _signal_group(proc.pid, signal.SIGKILL)
        proc.wait()


def free_port() -> int:
    """A loopback TCP port that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _signal_group(pgid: int, sig: int) -> None:
    with suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def _group_exists(pgid: int) -> bool:
    """Whether a live (not zombie) process of group `pgid` is left."""
    proc = Path("/proc")
    if not proc.is_dir():
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        return True
    for stat in proc.glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2 :].split()
        if fields[0] != "Z" and fields[2] == str(pgid):
            return True
    return False
