"""Benchmark training: DeepSpeed ZeRO-0 and ZeRO-2 through gaploop's SFT code vs a plain torch AdamW loop.

    python scripts/bench_train.py [--models smollm2-135m-instruct tiny] [--steps 8] [--tiny-steps 40]
        [--warmup-steps 2] [--micro-batch 2] [--max-length 256] [--repeat 2] [--threads 1]
        [--runs plain zero0 zero2 [zero0-allreduce]] [--paired] [--json FILE]

Data: GSM8K train pairs (question -> instruction, answer -> output) from ../shared/data/gsm8k_train.jsonl
beside the repo (the script stops with a message when the file is absent), chat template, fixed max_length.
The DeepSpeed rows run `trainers.sft.train_sft` (what the loop's training child runs) with configs/deepspeed/
zero{0,2}.json in fp32; `zero0-allreduce` is ZeRO-0 with the one-process all-reduce that `build_engine` skips.
The plain row takes the same steps without DeepSpeed, from the trainer's own pieces (tokenize_rows,
micro_batch_stream/collate, build_optimizer, lr_lambda), so every row sees the same batches, lr, schedule,
clipping and seed; the losses are compared step by step.

Each row runs in its own subprocess (peak RSS is the process's high-water mark, so rows must not share one),
the rows interleaved (plain, ZeRO-0, ZeRO-2, plain, ...) over --repeat repetitions; ratios are taken within a
repetition. Timings leave out the first --warmup-steps steps; model load, DeepSpeed's start-up and the save
are outside them; a step runs from the end of the row's previous step. Wall time, CPU time and minor page
faults are counted per step and per phase (forward, backward, the gradient reduce, clipping, the optimizer),
the phases timed by wrapping DeepSpeed's and torch's methods from outside. With --paired the rows of a
repetition share one process instead and take their steps in turn (the DeepSpeed rows through build_engine
and optimizer_step, train_sft's own step; a step then runs from its own start), so load from other jobs falls
on all rows alike; peak RSS is then not per row and not reported.
Results: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agents.tasks.math import load_gsm8k_jsonl  # noqa: E402
from core.jobs import IN_CHILD, child_env  # noqa: E402
from core.models import resolve_model  # noqa: E402
from trainers import sft  # noqa: E402
from trainers.sft import (  # noqa: E402
    SFTJob,
    build_optimizer,
    collate,
    count_total_steps,
    lr_lambda,
    micro_batch_stream,
    read_rows,
    seed_everything,
    tokenize_rows,
)
from trainers.tiny import build_tiny_student, count_parameters, load_student  # noqa: E402
from trainers.training import TrainingConfig  # noqa: E402

GSM8K = ROOT.parent / "shared" / "data" / "gsm8k_train.jsonl"
RUN_NAMES = {
    "plain": "plain torch AdamW",
    "zero0": "DeepSpeed ZeRO-0",
    "zero2": "DeepSpeed ZeRO-2",
    "zero0-allreduce": "ZeRO-0 + all-reduce",  # the trainer before build_engine skipped the one-rank all-reduce
}
RUNS = tuple(RUN_NAMES)
LR = {"tiny": 3e-3}  # the tiny student's default lr; a pretrained model gets the SmolLM2 recipe's
PRETRAINED_LR = 5e-5
MIB = 1024 * 1024
PHASES = ("forward", "backward", "grad reduce", "step", "clip", "optimizer")
PHASE_TOP = ("forward", "backward", "step")  # the others are parts of these


# ---------------------------------------------------------------------------------------------
# One repetition of a model's rows, in a process of its own (or one process per row)


class Clock:
    """Per row: wall and CPU seconds and page faults per phase of the timed steps, and the same and tokens per step.

    The row being timed is `row`; the paired mode switches it before each row's step. CPU time (the process's
    own) moves less than wall time when other jobs take the cores; wall time is what a run waits.
    """

    def __init__(self, warmup_steps: int) -> None:
        self.warmup_steps = warmup_steps
        self.row = ""
        self.phases: dict[str, dict[str, list[float]]] = {}
        self.steps: dict[str, list[tuple[float, float, float, int]]] = {}  # now()'s differences, then tokens
        self.started: dict[str, tuple[float, float, float]] = {}
        self._open: set[str] = set()

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Time the block as `name`; a block inside one of the same name is already counted."""
        if name in self._open:
            yield
            return
        self._open.add(name)
        start = now()
        try:
            yield
        finally:
            self._open.discard(name)
            got = self.phases.setdefault(self.row, {}).setdefault(name, [0.0, 0.0, 0.0])
            for k, value in enumerate(now()):
                got[k] += value - start[k]

    def wrap(self, owner: object, attr: str, name: str) -> None:
        """Time every call of `owner.attr` (a class's method) as phase `name`."""
        fn = getattr(owner, attr)

        @functools.wraps(fn)
        def timed(*args: object, **kwargs: object) -> object:
            with self.phase(name):
                return fn(*args, **kwargs)

        setattr(owner, attr, timed)

    def begin(self) -> None:
        """The row's next step starts now (without this, it starts where the row's last step ended)."""
        self.started[self.row] = now()

    def step_done(self, tokens: int) -> None:
        end = now()
        start = self.started.get(self.row, end)
        steps = self.steps.setdefault(self.row, [])
        steps.append((end[0] - start[0], end[1] - start[1], end[2] - start[2], tokens))
        self.started[self.row] = end
        if len(steps) == self.warmup_steps:
            self.phases.pop(self.row, None)  # phases count the timed steps only


def now() -> tuple[float, float, float]:
    """Wall seconds, this process's CPU seconds, and its minor page faults so far (a fault maps a fresh page:
    memory the allocator just took from the OS, which it does for every new buffer of a model's size)."""
    return time.perf_counter(), time.process_time(), float(resource.getrusage(resource.RUSAGE_SELF).ru_minflt)


def wrap_deepspeed(clock: Clock) -> None:
    """Time the DeepSpeed engine's phases, and the parts of them where ZeRO-0 and ZeRO-2 do their own work."""
    from deepspeed import DeepSpeedEngine
    from deepspeed.runtime.zero.stage_1_and_2 import DeepSpeedZeroOptimizer

    wraps = [
        (DeepSpeedEngine, "forward", "forward"),
        (DeepSpeedEngine, "backward", "backward"),
        (DeepSpeedEngine, "step", "step"),
        # ZeRO-0: the engine's all-reduce after backward; ZeRO-2: its optimizer's per-parameter hooks during
        # backward, which copy each gradient into the bucket and reduce full buckets, and the final flush.
        (DeepSpeedEngine, "allreduce_gradients", "grad reduce"),
        (DeepSpeedZeroOptimizer, "reduce_ready_partitions_and_remove_grads", "grad reduce"),
        (DeepSpeedZeroOptimizer, "overlapping_partition_gradients_reduce_epilogue", "grad reduce"),
        # Clipping: the engine's (ZeRO-0, fp32), or the ZeRO optimizer's norm and scaling of its flat gradients.
        (DeepSpeedEngine, "clip_fp32_gradients", "clip"),
        (DeepSpeedZeroOptimizer, "scaled_global_norm", "clip"),
        (DeepSpeedZeroOptimizer, "unscale_and_clip_grads", "clip"),
    ]
    for owner, attr, name in wraps:
        clock.wrap(owner, attr, name)


def _load(job: SFTJob) -> tuple[torch.nn.Module, object, list]:
    """Seeded as the trainer is: the job's model in training mode, its tokenizer, and the job's rows tokenized."""
    seed_everything(job.seed)
    model, tokenizer = load_student(job.model_path)
    model.train()
    model.config.use_cache = False
    return model, tokenizer, tokenize_rows(read_rows(job.data_path), tokenizer, job.template, job.max_length)


def plain_steps(job: SFTJob, clock: Clock) -> Callable[[], float]:
    """The trainer's steps without DeepSpeed (same tokens, batches, optimizer, schedule, clipping, seed); each
    call takes one and returns its loss."""
    t = job.training
    model, tokenizer, examples = _load(job)
    total_steps = count_total_steps(job, len(examples), 1)
    optimizer = build_optimizer(model, job)
    warmup = math.ceil(t.warmup_ratio * total_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(t.lr_schedule, warmup, total_steps))
    batches = micro_batch_stream(examples, job, 0, 1, skip=0)

    def step() -> float:
        loss_sum, tokens = 0.0, 0
        for _ in range(t.grad_accum):
            batch = collate([examples[i] for i in next(batches)], tokenizer.pad_token_id)
            with clock.phase("forward"):
                loss = model(**batch).loss
            with clock.phase("backward"):
                (loss / t.grad_accum).backward()  # as the engine scales it
            loss_sum += loss.item() / t.grad_accum
            tokens += int(batch["attention_mask"].sum())
        with clock.phase("step"):
            with clock.phase("clip"):
                torch.nn.utils.clip_grad_norm_(model.parameters(), t.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
        clock.step_done(tokens)
        return loss_sum

    return step


def engine_steps(job: SFTJob, clock: Clock, allreduce: bool) -> Callable[[], float]:
    """train_sft's set-up and step (`build_engine`, `optimizer_step`) without its loop, for the paired mode."""
    sft.ensure_dist_env()
    model, tokenizer, examples = _load(job)
    engine = sft.build_engine(job, model, count_total_steps(job, len(examples), 1), 1)
    engine.enable_backward_allreduce = engine.enable_backward_allreduce or allreduce
    batches = micro_batch_stream(examples, job, 0, 1, skip=0)

    def step() -> float:
        loss, tokens = sft.optimizer_step(engine, batches, examples, tokenizer.pad_token_id)
        clock.step_done(tokens)
        return loss

    return step


def train_sft_row(job: SFTJob, clock: Clock, allreduce: bool) -> tuple[list[float], int]:
    """gaploop's trainer as the loop's child runs it, timed at each optimizer step; (losses, peak RSS)."""

    def counted(*args: object, **kwargs: object) -> tuple[float, int]:
        if clock.row not in clock.started:
            clock.begin()
        loss, tokens = step_fn(*args, **kwargs)
        clock.step_done(tokens)
        return loss, tokens

    def with_allreduce(*args: object, **kwargs: object) -> object:
        engine = build_fn(*args, **kwargs)
        engine.enable_backward_allreduce = True
        return engine

    step_fn, build_fn = sft.optimizer_step, sft.build_engine
    sft.optimizer_step = counted  # train_sft looks both up at each call
    if allreduce:
        sft.build_engine = with_allreduce
    result, engine = sft.train_sft(job)
    engine.destroy()
    assert result.peak_host_rss_bytes is not None
    return result.losses, result.peak_host_rss_bytes  # getrusage at the loop's end, before the save


def peak_rss() -> int:
    """This process's resident-memory high-water mark in bytes (Linux reports kilobytes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def worker(plan_path: Path, out_path: Path) -> None:
    """Run the plan's rows (one, or all of them in turn with `paired`) and write what each did to `out_path`."""
    plan = json.loads(plan_path.read_text())
    torch.set_num_threads(plan["threads"])
    jobs = {run: SFTJob.model_validate(job, context=IN_CHILD) for run, job in plan["jobs"].items()}
    clock = Clock(plan["warmup_steps"])
    clock.wrap(torch.optim.AdamW, "step", "optimizer")
    if set(jobs) != {"plain"}:
        wrap_deepspeed(clock)  # imports DeepSpeed: not in a plain row, whose peak RSS it would raise
    losses: dict[str, list[float]] = {run: [] for run in jobs}
    peaks: dict[str, int | None] = {}
    if plan["paired"]:
        steppers = {}
        for run, job in jobs.items():
            clock.row = run
            allreduce = run == "zero0-allreduce"
            steppers[run] = plain_steps(job, clock) if run == "plain" else engine_steps(job, clock, allreduce)
        for _ in range(jobs["plain"].training.max_steps or 0):
            for run, step in steppers.items():
                clock.row = run
                clock.begin()
                losses[run].append(step())
        peaks = dict.fromkeys(jobs)
    else:
        ((run, job),) = jobs.items()
        clock.row = run
        if run == "plain":
            step = plain_steps(job, clock)
            clock.begin()
            losses[run] = [step() for _ in range(job.training.max_steps or 0)]
            peaks[run] = peak_rss()  # where train_sft takes its own: at the loop's end
        else:
            losses[run], peaks[run] = train_sft_row(job, clock, run == "zero0-allreduce")
    got = {
        run: {"losses": losses[run], "steps": clock.steps[run], "phases": clock.phases[run], "peak_rss": peaks[run]}
        for run in jobs
    }
    got["threads_after"] = torch.get_num_threads()  # type: ignore[assignment]  # DeepSpeed must not change it
    out_path.write_text(json.dumps(got))


# ---------------------------------------------------------------------------------------------
# The driver


@dataclass
class Model:
    """One model's rows: where it is, its data and its step counts."""

    name: str
    path: str
    data: Path
    steps: int
    lr: float
    params: int
    n_rows: int


def make_job(run: str, model: Model, out: Path, args: argparse.Namespace) -> SFTJob:
    """The SFT job of one row; the rows of a model differ only in the ZeRO stage (the plain loop has none)."""
    training = TrainingConfig(
        epochs=None,
        max_steps=args.warmup_steps + model.steps,
        micro_batch_size=args.micro_batch,
        lr=model.lr,
        zero_stage=2 if run == "zero2" else 0,
        precision="fp32",
        launcher="python",
    )
    return SFTJob(
        model_path=model.path,
        data_path=str(model.data),
        output_dir=str(out),
        training=training,
        template="chat",
        max_length=args.max_length,
        seed=0,
    )


def run_worker(jobs: dict[str, SFTJob], work: Path, args: argparse.Namespace) -> dict:
    """One worker process for `jobs` (one row, or all rows paired); the rows' output folders are removed after."""
    work.mkdir(parents=True, exist_ok=True)
    plan_path, out_path = work / "plan.json", work / "result.json"
    plan = {
        "jobs": {run: job.model_dump(mode="json") for run, job in jobs.items()},
        "paired": args.paired,
        "threads": args.threads,
        "warmup_steps": args.warmup_steps,
    }
    plan_path.write_text(json.dumps(plan))
    threads = str(args.threads)
    env = child_env({"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads})
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", str(plan_path), str(out_path)]
    proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0 or not out_path.exists():
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-30:])
        raise SystemExit(f"{', '.join(jobs)} failed (exit {proc.returncode}), plan {plan_path}:\n{tail}")
    for job in jobs.values():
        shutil.rmtree(job.output_dir, ignore_errors=True)
    got = json.loads(out_path.read_text())
    threads_after = got.pop("threads_after")
    return {run: {**row, "threads_after": threads_after} for run, row in got.items()}


def run_repetition(model: Model, rep: int, work: Path, args: argparse.Namespace) -> dict[str, dict]:
    """The model's rows once: each in its own process, or all in one with --paired."""
    jobs = {run: make_job(run, model, work / f"out_{run}", args) for run in args.runs}
    t0 = time.perf_counter()
    if args.paired:
        got = run_worker(jobs, work / f"rep{rep}", args)
    else:
        got = {run: run_worker({run: job}, work / f"rep{rep}_{run}", args)[run] for run, job in jobs.items()}
    for run in args.runs:
        wall, cpu, _, rate = steady(got[run], args.warmup_steps)
        print(f"  rep {rep + 1} {model.name} {run}: {wall:.3f} s/step ({cpu:.3f} CPU s), {rate:.0f} tokens/s")
    print(f"  ({time.perf_counter() - t0:.0f} s with start-ups and saves)", flush=True)
    return got


def steady(got: dict, skip: int) -> tuple[float, float, float, float]:
    """(wall s, CPU s, page faults per step; tokens per wall second) over the steps after the first `skip`."""
    timed = got["steps"][skip:]
    wall, cpu, faults, tokens = (sum(step[k] for step in timed) for k in range(4))
    return wall / len(timed), cpu / len(timed), faults / len(timed), tokens / wall


def max_diff(a: list[float], b: list[float]) -> float:
    return max(abs(x - y) for x, y in zip(a, b, strict=True))


def report(model: Model, results: list[dict[str, dict]], args: argparse.Namespace) -> None:
    """One model's table (speed, its ratio to plain within each repetition, peak RSS, losses against plain's)
    and where each row's CPU time and page faults go."""
    reps = range(len(results))
    per = {run: [steady(r[run], args.warmup_steps) for r in results] for run in args.runs}
    how = "rows paired in one process, steps in turn" if args.paired else "each row in its own process"
    print(
        f"\n{model.name}: {model.params / 1e6:.1f}M params, lr {model.lr:g} cosine, "
        f"{args.warmup_steps} warm-up + {model.steps} timed steps, {model.n_rows} rows; {how}"
    )
    print(
        f"{'run':<20} {'s/step':>7} {'tokens/s':>8} {'vs plain, by rep':>17} {'CPU s/step':>10} "
        f"{'vs plain, by rep':>17} {'peak RSS MiB':>12} {'max |loss - plain|':>18}"
    )
    for run in args.runs:
        wall = statistics.mean(p[0] for p in per[run])
        cpu = statistics.mean(p[1] for p in per[run])
        rate = statistics.mean(p[3] for p in per[run])
        by_wall = " ".join(f"{per[run][i][3] / per['plain'][i][3]:.3f}" for i in reps)
        by_cpu = " ".join(f"{per['plain'][i][1] / per[run][i][1]:.3f}" for i in reps)
        peaks = [r[run]["peak_rss"] for r in results]
        rss = f"{max(peaks) / MIB:.0f}" if None not in peaks else "-"
        diff = max(max_diff(r[run]["losses"], r["plain"]["losses"]) for r in results)
        print(
            f"{RUN_NAMES[run]:<20} {wall:>7.3f} {rate:>8.0f} {by_wall:>17} {cpu:>10.3f} {by_cpu:>17} "
            f"{rss:>12} {diff:>18.1e}"
        )
    phase_table(model, results, per, args, 1, "CPU s", 1.0)
    phase_table(model, results, per, args, 2, "minor page faults (thousands)", 1e3)
    first = results[0]["plain"]["losses"]
    between = max(max_diff(r[run]["losses"], results[0][run]["losses"]) for r in results for run in args.runs)
    threads = sorted({r[run]["threads_after"] for r in results for run in args.runs})
    line = (
        f"plain loop's loss: step 1 {first[0]:.4f}, last {first[-1]:.4f}; largest |diff| of a row's losses "
        f"between repetitions {between:.1e}; torch threads after training: {threads}"
    )
    if {"zero0", "zero0-allreduce"} <= set(args.runs):
        skipped = max(max_diff(r["zero0"]["losses"], r["zero0-allreduce"]["losses"]) for r in results)
        line += f"; max |loss diff| ZeRO-0 with / without the all-reduce: {skipped:.1e}"
    print(line)


def phase_table(
    model: Model,
    results: list[dict[str, dict]],
    per: dict[str, list],
    args: argparse.Namespace,
    k: int,
    what: str,
    unit: float,
) -> None:
    """Measure `k` of now() (1: CPU s, 2: page faults) per timed step and phase, in `unit`s, mean of repetitions."""
    print(f"{what} per timed step by phase, mean of {len(results)} repetitions ((...): part of the phase before it)")
    print(f"{'run':<20} " + " ".join(f"{n if n in PHASE_TOP else f'({n})':>13}" for n in PHASES) + f" {'other':>13}")
    for run in args.runs:
        cells, top = [], 0.0
        for name in PHASES:
            values = [r[run]["phases"].get(name) for r in results]
            if None in values:
                cells.append(f"{'-':>13}")
                continue
            value = statistics.mean(v[k] for v in values) / model.steps / unit
            top += value if name in PHASE_TOP else 0.0
            cells.append(f"{value:>13.3f}")
        other = statistics.mean(p[k] for p in per[run]) / unit - top
        print(f"{RUN_NAMES[run]:<20} " + " ".join(cells) + f" {other:>13.3f}")


def prepare(name: str, args: argparse.Namespace, work: Path) -> Model:
    """The model's folder (a fresh tiny student, its tokenizer trained on the same rows, for 'tiny') and its data:
    one epoch of rows, so every step sees new rows."""
    steps = args.tiny_steps if name == "tiny" else args.steps
    rows = load_gsm8k_jsonl(GSM8K)[: args.micro_batch * (args.warmup_steps + steps)]
    data = work / f"data_{name.replace('/', '_')}.jsonl"
    data.write_text("".join(json.dumps({"instruction": r["instruction"], "output": r["output"]}) + "\n" for r in rows))
    if name == "tiny":
        path = str(build_tiny_student(work / "tiny", [f"{r['instruction']}\n{r['output']}" for r in rows]))
    else:
        path = resolve_model(name)
    model, _ = load_student(path)
    return Model(name, path, data, steps, LR.get(name, PRETRAINED_LR), count_parameters(model), len(rows))


def main() -> None:
    if sys.argv[1:2] == ["--worker"]:  # a repetition's rows, started by run_worker
        worker(Path(sys.argv[2]), Path(sys.argv[3]))
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["smollm2-135m-instruct", "tiny"], help="names, folders or tiny")
    ap.add_argument("--steps", type=int, default=8, help="timed optimizer steps per row")
    ap.add_argument("--tiny-steps", type=int, default=40, help="timed steps on the tiny student (its steps are fast)")
    ap.add_argument("--warmup-steps", type=int, default=2, help="steps run first and left out of the timing")
    ap.add_argument("--micro-batch", type=int, default=2)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--repeat", type=int, default=2, help="repetitions of the interleaved rows")
    ap.add_argument("--threads", type=int, default=1, help="torch threads in every row")
    ap.add_argument("--runs", nargs="+", choices=RUNS, default=["plain", "zero0", "zero2"], help="rows, in this order")
    ap.add_argument("--paired", action="store_true", help="a repetition's rows in one process, steps in turn")
    ap.add_argument("--json", type=Path, default=None, help="also write every row's per-step numbers here")
    args = ap.parse_args()
    if args.runs[0] != "plain":
        raise SystemExit("--runs: the first row must be plain (the others are compared with it)")
    if min(args.steps, args.tiny_steps, args.warmup_steps) < 1:
        raise SystemExit("--steps, --tiny-steps and --warmup-steps must be at least 1")
    if not GSM8K.exists():
        print(f"bench_train: skipped, no GSM8K file at {GSM8K} (the benchmark trains on real GSM8K pairs)")
        return
    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="bench_train_"))
    try:
        models = [prepare(name, args, work) for name in args.models]
        how = "paired in one process, steps in turn" if args.paired else "each in its own process"
        print(
            f"torch {torch.__version__}, DeepSpeed {version('deepspeed')}, {args.threads} torch thread(s) per row, "
            f"{os.cpu_count()} CPUs; GSM8K train ({GSM8K}), chat template, max_length {args.max_length}, "
            f"micro-batch {args.micro_batch}, fp32; {args.repeat} repetitions of the rows {', '.join(args.runs)}, "
            f"{how}",
            flush=True,
        )
        results: dict[str, list[dict[str, dict]]] = {m.name: [] for m in models}
        t_start = time.perf_counter()
        for rep in range(args.repeat):
            for model in models:
                results[model.name].append(run_repetition(model, rep, work, args))
        for model in models:
            report(model, results[model.name], args)
        print(f"\nwall time of the rows {time.perf_counter() - t_start:.0f} s")
        if args.json:
            args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)}, "results": results}))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
