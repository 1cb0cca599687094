"""Supervised fine-tuning of the student with DeepSpeed, in-process or as a child process.

`run_sft(job)` trains in this process: load the start weights, tokenise the JSONL rows with the
shared prompt template (loss on answer tokens only), build a DeepSpeed engine from one of
`configs/deepspeed/zero{0,2,3}.json`, run the loop, save an HF folder at `output_dir/model`.
`launch_sft(job)` runs the same thing in a child (`python -m trainers.sft JOB.json RESULT.json`, the
protocol of `core/jobs.py`, on CPU; the `deepspeed` launcher on GPUs) so accelerator memory is handed back
when it ends, and follows its progress file. The job carries the run config's training section as is
(`trainers/training.py`).

DeepSpeed configs: the JSON files hold the ZeRO settings; values written `"auto"` are filled from
the job (micro batch, accumulation, clipping, bf16, bucket sizes from the model's hidden size).
The optimizer (torch AdamW) and lr schedule (a LambdaLR) are built here and handed to
`deepspeed.initialize`, not named in the JSON: DeepSpeed's own Adam variants compile C++/CUDA ops on
first use, and on CPU the one op worth compiling is the unavoidable communication op.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
from pydantic import Field

from core.children import PidFile, free_port, stop_group
from core.jobs import PACKAGE_ROOT, Job, child_env, child_main, read_result, write_job
from core.jsonl import iter_jsonl
from core.models import resolve_model
from trainers.templates import encode_pair, format_prompt
from trainers.tiny import load_student
from trainers.training import TrainingConfig

if TYPE_CHECKING:
    from deepspeed import DeepSpeedEngine
    from transformers import PreTrainedTokenizerBase

IGNORE_INDEX = -100
CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs" / "deepspeed"
ProgressFn = Callable[[dict[str, object]], None]


class SFTJob(Job):
    """One fine-tuning run: where from and to, the prompt shape, and the run config's training section as is."""

    model_path: str  # start weights: the base folder, a model alias or GGUF file, or the previous round's student
    data_path: str  # JSONL rows with instruction, output and an optional input
    output_dir: str  # gets model/, checkpoints/, progress.jsonl, logs
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    template: Literal["plain", "alpaca", "chat"] = "alpaca"
    max_length: int = Field(256, ge=1)
    seed: int = 0
    save_checkpoint: bool = False  # an engine checkpoint at the end, so training can be continued
    checkpoint_every: int = Field(0, ge=0)  # also one every N optimizer steps (0: never)
    resume_from_checkpoint: str | None = None  # checkpoints dir (its latest) or one tag dir in it
    progress_path: str | None = None  # JSON lines, one per logged step; None: output_dir/progress.jsonl
    log_every: int = Field(1, ge=1)


@dataclass
class SFTResult:
    """What a run did: steps, losses, tokens and speed, and where the model and checkpoint are."""

    steps: int  # optimizer steps done, counting those before a resume
    total_steps: int
    first_loss: float  # loss of the first step this run took
    last_loss: float
    tail_loss: float  # mean loss over the last 10% of this run's steps
    train_tokens: int  # non-padding tokens seen by this run (all ranks)
    seconds: float  # training loop only
    tokens_per_s: float  # after the first step (its warm-up is not a rate), where the run took more than one
    model_dir: str
    checkpoint_dir: str | None = None
    resumed_from_step: int = 0
    losses: list[float] = field(default_factory=list)  # one per optimizer step of this run
    # Peaks of the training loop, the largest over ranks: torch's allocated and reserved CUDA memory (None
    # off CUDA) and the process's resident host memory (its high-water mark since the process started).
    peak_gpu_allocated_bytes: int | None = None
    peak_gpu_reserved_bytes: int | None = None
    peak_host_rss_bytes: int | None = None


# ---------------------------------------------------------------------------------------------
# Data


def read_rows(path: str | Path) -> list[dict[str, str]]:
    """JSONL rows with string `instruction`, `output` and optional `input`; ValueError names file:line."""
    rows = []
    for lineno, row, problem in iter_jsonl(path):
        if problem:
            raise ValueError(f"{path}:{lineno}: {problem}")
        if not isinstance(row, dict):
            raise ValueError(f"{path}:{lineno}: expected a JSON object, got {type(row).__name__}")
        for key, required in (("instruction", True), ("output", True), ("input", False)):
            value = row.get(key)
            if (required or value is not None) and not isinstance(value, str):
                raise ValueError(f"{path}:{lineno}: field {key!r} must be a string, got {value!r}")
        if not row["instruction"].strip():
            raise ValueError(f"{path}:{lineno}: empty 'instruction'")
        rows.append(row)
    if not rows:
        raise ValueError(f"{path}: no training rows")
    return rows


def tokenize_rows(
    rows: list[dict[str, str]], tokenizer: PreTrainedTokenizerBase, template: str, max_length: int
) -> list[tuple[list[int], int]]:
    """(ids, n_prompt) per row, with the same prompt template as evaluation uses."""
    out = []
    for row in rows:
        prompt = format_prompt(template, row["instruction"], row.get("input") or "", tokenizer)
        out.append(encode_pair(tokenizer, prompt, row["output"], max_length))
    return out


def epoch_batches(lengths: list[int], micro_batch_size: int, seed: int, group_by_length: bool) -> list[list[int]]:
    """Micro-batches of row indices for one epoch, shuffled by `seed`.

    With length grouping, rows are sorted by length inside shuffled windows of 64 batches, so a
    batch pads little while the epoch order stays random.
    """
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    if group_by_length:
        window = micro_batch_size * 64
        order = [
            i
            for start in range(0, len(order), window)
            for i in sorted(order[start : start + window], key=lambda j: -lengths[j])
        ]
    batches = [order[i : i + micro_batch_size] for i in range(0, len(order), micro_batch_size)]
    if group_by_length:
        rng.shuffle(batches)
    return batches


def rank_batches(batches: list[list[int]], rank: int, world_size: int) -> list[list[int]]:
    """This rank's share; the list is padded by wrapping so every rank gets the same count."""
    padded = batches + batches[: (-len(batches)) % world_size]
    return padded[rank::world_size]


def collate(examples: list[tuple[list[int], int]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded input_ids / attention_mask / labels; labels are -100 on prompt and padding."""
    width = max(len(ids) for ids, _ in examples)
    input_ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, (ids, n_prompt) in enumerate(examples):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        labels[row, n_prompt : len(ids)] = torch.tensor(ids[n_prompt:])
        mask[row, : len(ids)] = 1
    return {"input_ids": input_ids, "attention_mask": mask, "labels": labels}


def micro_batch_stream(
    examples: list[tuple[list[int], int]], job: SFTJob, rank: int, world_size: int, skip: int
) -> Iterator[list[int]]:
    """Endless micro-batches over epochs (epoch e reshuffles with seed + e), the first `skip` skipped.

    Skipping by position is what makes a resumed run see exactly the batches the first run would have.
    """
    lengths = [len(ids) for ids, _ in examples]
    t = job.training
    epoch = 0
    while True:
        batches = epoch_batches(lengths, t.micro_batch_size, job.seed + epoch, t.group_by_length)
        for batch in rank_batches(batches, rank, world_size):
            if skip > 0:
                skip -= 1
                continue
            yield batch
        epoch += 1


def count_total_steps(job: SFTJob, n_rows: int, world_size: int) -> int:
    """Optimizer steps of the run: max_steps, or epochs over this rank's micro-batches."""
    t = job.training
    if t.max_steps is not None:
        return t.max_steps
    per_rank = math.ceil(math.ceil(n_rows / t.micro_batch_size) / world_size)
    return max(1, math.ceil((t.epochs or 0.0) * per_rank / t.grad_accum))


# ---------------------------------------------------------------------------------------------
# Engine


def resolve_precision(precision: str) -> str:
    """'bf16' or 'fp32'; auto picks bf16 only on a CUDA device that supports it."""
    if precision != "auto":
        return precision
    return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "fp32"


def build_ds_config(job: SFTJob, world_size: int, hidden_size: int) -> dict[str, object]:
    """Load the job's DeepSpeed JSON and fill its "auto" values; a concrete value that disagrees fails."""
    t = job.training
    path = Path(t.deepspeed_config) if t.deepspeed_config else CONFIG_DIR / f"zero{t.zero_stage}.json"
    try:
        config = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"cannot read DeepSpeed config {path}: {err}") from err
    zero = config.setdefault("zero_optimization", {})
    zero["stage"] = t.zero_stage  # a JSON's own stage was checked against it where the config was made
    bf16 = resolve_precision(job.training.precision) == "bf16"
    from_job = {
        "train_micro_batch_size_per_gpu": job.training.micro_batch_size,
        "gradient_accumulation_steps": job.training.grad_accum,
        "train_batch_size": job.training.micro_batch_size * job.training.grad_accum * world_size,
        "gradient_clipping": job.training.max_grad_norm,
    }
    for key, value in from_job.items():
        current = config.get(key, "auto")
        if current != "auto" and current != value:
            raise ValueError(
                f"DeepSpeed config {path}: {key} is {current!r} but the job asks for {value!r}; "
                'write "auto" there to let the job decide'
            )
        config[key] = value
    config.setdefault("bf16", {})["enabled"] = bf16
    # Sizes that scale with the model, set as the transformers integration sets them.
    from_model = {
        "reduce_bucket_size": hidden_size * hidden_size,
        "stage3_prefetch_bucket_size": int(0.9 * hidden_size * hidden_size),
        "stage3_param_persistence_threshold": 10 * hidden_size,
    }
    for key, value in from_model.items():
        if zero.get(key) == "auto":
            zero[key] = value
    if config.get("fp16", {}).get("enabled"):
        raise ValueError(f"DeepSpeed config {path}: fp16 is not supported, use bf16 or fp32")
    return config


def lr_lambda(schedule: str, warmup_steps: int, total_steps: int) -> Callable[[int], float]:
    """Multiplier of the peak lr at optimizer step `s` (0-based): linear warmup, then the schedule."""

    def factor(s: int) -> float:
        if s < warmup_steps:
            return (s + 1) / warmup_steps
        if schedule == "constant":
            return 1.0
        progress = min(1.0, (s - warmup_steps) / max(1, total_steps - warmup_steps))
        if schedule == "linear":
            return 1.0 - progress
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def build_optimizer(model: torch.nn.Module, job: SFTJob) -> torch.optim.Optimizer:
    """Torch AdamW; no weight decay on 1-D parameters (norms, biases), as is usual for transformers."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.dim() >= 2 else no_decay).append(p)
    groups = [
        {"params": decay, "weight_decay": job.training.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=job.training.lr, betas=(0.9, 0.95), eps=1e-8)


def ensure_dist_env() -> None:
    """Single-process defaults for the variables torch.distributed reads; launchers set their own.

    Also points this process at its environment's torch-extensions folder with no orphaned build lock,
    as `launch_sft` does for its child: an in-process run waits forever on a stale lock otherwise.
    """
    _prepare_extensions(os.environ)
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", str(free_port()))
    for key, value in (("RANK", "0"), ("LOCAL_RANK", "0"), ("WORLD_SIZE", "1")):
        os.environ.setdefault(key, value)


def build_engine(job: SFTJob, model: torch.nn.Module, total_steps: int, world_size: int) -> DeepSpeedEngine:
    """deepspeed.initialize with our optimizer and lr schedule; the engine steps the schedule."""
    import deepspeed

    config = build_ds_config(job, world_size, model.config.hidden_size)
    optimizer = build_optimizer(model, job)
    warmup = math.ceil(job.training.warmup_ratio * total_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(job.training.lr_schedule, warmup, total_steps))
    engine, _, _, _ = deepspeed.initialize(model=model, optimizer=optimizer, lr_scheduler=scheduler, config=config)
    if engine.world_size == 1 and engine.zero_optimization_stage() == 0:
        # One rank has nothing to all-reduce, yet ZeRO-0 still copies every gradient into a new flat buffer, scales
        # it by 1/1 and copies it back after each backward: 0.4 CPU s of SmolLM2-135M's 5 s step on CPU and 275 MiB
        # of peak memory (docs/benchmarks.md, "Training"). Skipping it changes no loss. ZeRO-1/2/3 keep their hooks.
        engine.enable_backward_allreduce = False
    return engine


# ---------------------------------------------------------------------------------------------
# Saving


def save_hf_model(engine: DeepSpeedEngine, tokenizer: PreTrainedTokenizerBase, out_dir: Path) -> None:
    """Save an HF folder (weights, config, tokenizer); ZeRO-3 gathers the full weights first.

    Every rank must call this (the ZeRO-3 gather is collective); rank 0 writes, to a temporary
    folder renamed into place so a crash never leaves half a model.
    """
    state = engine._zero3_consolidated_16bit_state_dict() if engine.zero_optimization_stage() == 3 else None
    if engine.global_rank != 0:
        return
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    engine.module.save_pretrained(tmp, state_dict=state, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(out_dir, ignore_errors=True)
    os.replace(tmp, out_dir)


def save_engine_checkpoint(engine: DeepSpeedEngine, ckpt_dir: Path, step: int) -> None:
    """An engine checkpoint (weights, optimizer, scheduler) tagged step_N; all ranks call it."""
    engine.save_checkpoint(str(ckpt_dir), tag=f"step_{step}", client_state={"step": step})


def load_engine_checkpoint(engine: DeepSpeedEngine, path: str) -> int:
    """Load a checkpoints dir (its `latest` tag) or one tag dir; returns the step it was saved at."""
    where = Path(path)
    load_dir, tag = (where, None) if (where / "latest").exists() else (where.parent, where.name)
    loaded, client = engine.load_checkpoint(str(load_dir), tag=tag)
    if loaded is None:
        raise FileNotFoundError(f"no DeepSpeed checkpoint to resume from at {path}")
    return int(client.get("step", engine.global_steps))


# ---------------------------------------------------------------------------------------------
# Training


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _reduce(values: list[float], engine: DeepSpeedEngine) -> list[float]:
    """Sum over ranks (only needed with more than one)."""
    if engine.world_size == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=engine.device)
    torch.distributed.all_reduce(t)
    return t.tolist()


def optimizer_step(
    engine: DeepSpeedEngine, batches: Iterator[list[int]], examples: list[tuple[list[int], int]], pad_id: int
) -> tuple[float, int]:
    """One optimizer step over the accumulation micro-batches: (mean loss, tokens), summed over ranks."""
    accum = engine.gradient_accumulation_steps()
    loss_sum, tokens = 0.0, 0
    for _ in range(accum):
        batch = collate([examples[i] for i in next(batches)], pad_id)
        batch = {k: v.to(engine.device) for k, v in batch.items()}
        loss = engine(**batch).loss
        engine.backward(loss)  # the engine divides by the accumulation steps
        engine.step()  # steps optimizer and lr schedule only at the accumulation boundary
        loss_sum += loss.item() / accum
        tokens += int(batch["attention_mask"].sum())
    loss_all, tokens_all = _reduce([loss_sum, float(tokens)], engine)
    return loss_all / engine.world_size, int(tokens_all)


def peak_memory(engine: DeepSpeedEngine) -> dict[str, int | None]:
    """The loop's memory peaks on this rank, then the largest over ranks (SFTResult's peak_* fields)."""
    import resource

    host = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports kilobytes
    on_cuda = engine.device.type == "cuda"
    values = [host]
    if on_cuda:
        values += [torch.cuda.max_memory_allocated(engine.device), torch.cuda.max_memory_reserved(engine.device)]
    if engine.world_size > 1:
        t = torch.tensor(values, dtype=torch.float64, device=engine.device)
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
        values = [int(v) for v in t.tolist()]
    return {
        "peak_host_rss_bytes": int(values[0]),
        "peak_gpu_allocated_bytes": int(values[1]) if on_cuda else None,
        "peak_gpu_reserved_bytes": int(values[2]) if on_cuda else None,
    }


def summarize(
    losses: list[float],
    tokens: int,
    seconds: float,
    total_steps: int,
    start_step: int,
    out: Path,
    warm: tuple[int, float] = (0, 0.0),
) -> SFTResult:
    """The run's numbers; losses are those of the steps this process took. `warm` is (tokens, seconds) of the
    first step, left out of tokens/s where later steps were taken."""
    rate_tokens, rate_seconds = (tokens - warm[0], seconds - warm[1]) if len(losses) > 1 else (tokens, seconds)
    nan = float("nan")
    tail = losses[-max(1, math.ceil(0.1 * len(losses))) :] if losses else [nan]
    ckpt_dir = out / "checkpoints"
    return SFTResult(
        steps=total_steps,
        total_steps=total_steps,
        first_loss=losses[0] if losses else nan,
        last_loss=losses[-1] if losses else nan,
        tail_loss=sum(tail) / len(tail),
        train_tokens=tokens,
        seconds=round(seconds, 3),
        tokens_per_s=round(rate_tokens / rate_seconds, 1) if rate_seconds > 0 else 0.0,
        model_dir=str(out / "model"),
        checkpoint_dir=str(ckpt_dir) if ckpt_dir.exists() else None,
        resumed_from_step=start_step,
        losses=losses,
    )


def train_sft(job: SFTJob) -> tuple[SFTResult, DeepSpeedEngine]:
    """Run the job in this process and keep the engine (for callers that inspect or continue it)."""
    ensure_dist_env()
    logging.getLogger("DeepSpeed").setLevel(logging.WARNING)
    seed_everything(job.seed)
    out = Path(job.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])

    rows = read_rows(job.data_path)  # before the model loads, so bad data fails fast
    model, tokenizer = load_student(job.model_path)
    model.train()
    model.config.use_cache = False
    if job.training.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    examples = tokenize_rows(rows, tokenizer, job.template, job.max_length)
    total_steps = count_total_steps(job, len(examples), world_size)
    engine = build_engine(job, model, total_steps, world_size)
    resume = job.resume_from_checkpoint
    start_step = load_engine_checkpoint(engine, resume) if resume else 0
    batches = micro_batch_stream(examples, job, rank, world_size, skip=start_step * job.training.grad_accum)

    progress_path = Path(job.progress_path) if job.progress_path else out / "progress.jsonl"
    # A resumed run adds to the progress of the run it continues; a fresh run starts the file anew.
    progress = open(progress_path, "a" if resume else "w", encoding="utf-8") if rank == 0 else None  # noqa: SIM115
    losses: list[float] = []
    tokens = 0
    warm = (0, 0.0)
    t0 = time.perf_counter()
    try:
        for step in range(start_step + 1, total_steps + 1):
            lr = engine.get_lr()[0]  # the lr this step uses; the schedule moves on inside the step
            loss, step_tokens = optimizer_step(engine, batches, examples, tokenizer.pad_token_id)
            losses.append(loss)
            tokens += step_tokens
            if len(losses) == 1:  # the first step warms up (allocations, DeepSpeed's first reduce): not a rate
                warm = (tokens, time.perf_counter() - t0)
            if progress and (step % job.log_every == 0 or step == total_steps):
                event = {"event": "step", "step": step, "total_steps": total_steps, "loss": round(loss, 6)}
                event |= {"lr": lr, "tokens": tokens, "elapsed": round(time.perf_counter() - t0, 3)}
                progress.write(json.dumps(event) + "\n")
                progress.flush()
            if job.checkpoint_every and step % job.checkpoint_every == 0 and step < total_steps:
                save_engine_checkpoint(engine, out / "checkpoints", step)
        seconds = time.perf_counter() - t0
    finally:
        if progress:
            progress.close()
    peaks = peak_memory(engine)  # the loop's, before saving gathers or copies weights
    if job.save_checkpoint:
        save_engine_checkpoint(engine, out / "checkpoints", total_steps)
    save_hf_model(engine, tokenizer, out / "model")
    return replace(summarize(losses, tokens, seconds, total_steps, start_step, out, warm), **peaks), engine


def run_sft(job: SFTJob) -> SFTResult:
    """Train in this process, save the HF model at output_dir/model, and return the run's numbers."""
    result, engine = train_sft(job)
    engine.destroy()
    return result


# ---------------------------------------------------------------------------------------------
# Child process


class SFTError(RuntimeError):
    """The training child failed; the message carries the tail of its stderr."""


def _child_command(
    job_path: Path, result_path: Path, launcher: str, num_gpus: int | None, hostfile: str | None
) -> list[str]:
    if launcher == "python":
        return [sys.executable, "-m", "trainers.sft", str(job_path), str(result_path)]
    # The runner module is what the `deepspeed` script calls; this way it need not be on PATH.
    cmd = [
        sys.executable,
        "-m",
        "deepspeed.launcher.runner",
        "--master_port",
        str(free_port()),
        "--no_local_rank",
    ]
    if hostfile:
        cmd += ["--hostfile", hostfile]
    if num_gpus is not None:
        cmd += ["--num_gpus", str(num_gpus)]
    return cmd + ["--module", "trainers.sft", str(job_path), str(result_path)]


def _read_new_events(path: Path, offset: int) -> tuple[list[dict[str, object]], int]:
    """Complete JSON lines written after `offset`, and the offset after the last complete one."""
    if not path.exists():
        return [], offset
    with open(path, "rb") as f:
        f.seek(offset)
        chunk = f.read()
    end = chunk.rfind(b"\n") + 1  # a line still being written is read next time
    lines = chunk[:end].decode("utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()], offset + end


def _tail(path: Path, n_lines: int = 40) -> str:
    text = path.read_text(errors="replace") if path.exists() else ""
    return "\n".join(text.splitlines()[-n_lines:])


STALE_LOCK_SECONDS = 600  # DeepSpeed's one op compiles in under 3 minutes here; a lock this old is orphaned


def _prepare_extensions(env: MutableMapping[str, str]) -> None:
    """One torch-extensions folder per Python environment, and no orphaned build lock in it.

    Two environments (e.g. a fresh clone beside the main one) sharing ~/.cache/torch_extensions rebuild
    DeepSpeed's op for each other, and a process killed during that build leaves a `lock` file on which
    every later run waits forever without a word; both were seen here.
    """
    root = Path(env.setdefault("TORCH_EXTENSIONS_DIR", str(Path(sys.prefix) / "torch_extensions")))
    for lock in root.glob("*/lock"):
        age = time.time() - lock.stat().st_mtime
        if age > STALE_LOCK_SECONDS:
            print(
                f"gaploop: removing a torch extension build lock left {age / 60:.0f} min ago by a killed build: {lock}",
                file=sys.stderr,
            )
            lock.unlink(missing_ok=True)


def launch_sft(
    job: SFTJob,
    *,
    on_progress: ProgressFn | None = None,
    env: dict[str, str] | None = None,
) -> SFTResult:
    """Run the job in a child process and follow its progress; raises SFTError with its stderr tail.

    The launcher is the job's `training.launcher`: `auto` uses the deepspeed launcher when CUDA devices or a
    hostfile are there, else plain python with single-process distributed variables set.
    """
    t = job.training
    launcher = t.launcher
    if launcher == "auto":
        launcher = "deepspeed" if t.hostfile or torch.cuda.is_available() else "python"
    # An alias or GGUF start model is converted here once, before the ranks start and each wait on the cache's lock;
    # the job keeps the name, so ranks on other nodes resolve it in their own cache.
    resolve_model(job.model_path)
    out = Path(job.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    pid_file = PidFile(out / "sft.pid")
    pid_file.stop_orphan()  # a trainer of this job left by a killed run must not write beside the new one
    if job.progress_path is None:
        job = job.model_copy(update={"progress_path": str(out / "progress.jsonl")})
    job_path, result_path = write_job(out / "sft_job.json", job), out / "sft_result.json"
    result_path.unlink(missing_ok=True)
    progress_path = Path(job.progress_path)
    if not job.resume_from_checkpoint:
        progress_path.unlink(missing_ok=True)  # the child starts it anew; follow it from the start
    offset = progress_path.stat().st_size if progress_path.exists() else 0

    env_of_child = child_env(env)
    _prepare_extensions(env_of_child)
    if launcher == "python":
        env_of_child.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()), RANK="0", LOCAL_RANK="0")
        env_of_child["WORLD_SIZE"] = "1"
    cmd = _child_command(job_path, result_path, launcher, t.num_gpus, t.hostfile)
    stdout_path, stderr_path = out / "sft.stdout.log", out / "sft.stderr.log"
    with open(stdout_path, "wb") as stdout, open(stderr_path, "wb") as stderr:
        proc = subprocess.Popen(
            cmd, stdout=stdout, stderr=stderr, env=env_of_child, cwd=PACKAGE_ROOT, start_new_session=True
        )
        pid_file.write(proc.pid)
        try:
            while True:
                done = proc.poll() is not None
                events, offset = _read_new_events(progress_path, offset)
                for event in events:
                    if on_progress:
                        on_progress(event)
                if done:
                    break
                time.sleep(0.2)
        except BaseException:
            # KeyboardInterrupt, a stop signal or a failing callback: never leave a trainer running on its own.
            stop_group(proc, grace=10)  # the launcher's workers too
            raise
        finally:
            if proc.poll() is not None:
                pid_file.clear()
    if proc.returncode != 0 or not result_path.exists():
        raise SFTError(
            f"SFT child {' '.join(cmd)} failed with exit code {proc.returncode} for job {job_path}; "
            f"last lines of {stderr_path}:\n{_tail(stderr_path)}"
        )
    return SFTResult(**read_result(result_path))


def run_child_job(job: SFTJob) -> dict[str, object] | None:
    """The child's work: train; rank 0 returns the result (RESULT.json), the other ranks None."""
    try:
        result = run_sft(job)
        return asdict(result) if int(os.environ.get("RANK", "0")) == 0 else None
    finally:
        # NCCL warns of leaked resources when a process exits with its group still up (seen on an H200).
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def main(argv: list[str]) -> int:
    """Child entry: `python -m trainers.sft JOB.json RESULT.json` (core/jobs.py)."""
    return child_main(SFTJob, run_child_job, argv, "trainers.sft")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
