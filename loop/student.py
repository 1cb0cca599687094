"""Student-side operations of a round: build the base student, train it, answer items."""

from __future__ import annotations

import re
import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch

from core.generation import Sampling
from core.jobs import run_job
from loop.config import RunConfig
from loop.console import progress_bar
from loop.evaluate import answer_items
from loop.store import read_jsonl, write_jsonl
from loop.tracking import Tracker
from trainers.inference import InferenceJob, format_rows, make_generator
from trainers.sft import SFTJob, launch_sft
from trainers.tiny import TinySpec, build_tiny_student


def resolve_device(device: str) -> str:
    """'auto' -> cuda when available, else cpu."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def build_student(cfg: RunConfig, out: Path, texts: Sequence[str]) -> Path:
    """The base student: the configured HF model, or a tiny one whose tokenizer is trained on `texts`."""
    if cfg.student.model != "tiny":
        return Path(cfg.student.model)
    t = cfg.student.tiny
    spec = TinySpec(
        vocab_size=t.vocab_size,
        hidden_size=t.hidden_size,
        num_layers=t.num_layers,
        num_heads=t.num_heads,
        intermediate_size=t.intermediate_size,
        max_position=t.max_position,
        seed=cfg.seed,
    )
    return build_tiny_student(out, texts, spec)


def in_child(cfg: RunConfig) -> bool:
    """Whether the student's inference and IFD scoring run in a child process (see student.inference_process)."""
    mode = cfg.student.inference_process
    return mode == "child" or (mode == "auto" and torch.cuda.is_available())


def evaluate(
    cfg: RunConfig, model_dir: Path, items: list[dict[str, object]], label: str, stop: Sequence[str] = ("\n",)
) -> list[dict]:
    """Greedy answers (`prediction`) of the student in `model_dir` to `items`, with a progress bar; the task grades."""
    if in_child(cfg):
        return _evaluate_in_child(cfg, model_dir, items, label, stop)
    device = resolve_device(cfg.student.device)
    with (
        make_generator(model_dir, backend=cfg.student.inference_backend, device=device, **_engine(cfg)) as gen,
        progress_bar() as bar,
    ):
        task = bar.add_task(label, total=len(items), info="")
        return answer_items(
            gen,
            items,
            cfg.student.template,
            cfg.student.max_new_tokens,
            stop=stop,
            progress=lambda n: bar.advance(task, n),
        )


def _engine(cfg: RunConfig) -> dict[str, object]:
    """vLLM engine arguments of the student, where vLLM is asked for by name (transformers takes none)."""
    return dict(cfg.student.vllm_engine) if cfg.student.inference_backend == "vllm" else {}


def _evaluate_in_child(
    cfg: RunConfig, model_dir: Path, items: list[dict[str, object]], label: str, stop: Sequence[str]
) -> list[dict]:
    """The same answers from `python -m trainers.inference JOB.json RESULT.json`, which returns the accelerator
    when it exits."""
    with tempfile.TemporaryDirectory(prefix="gaploop-infer-") as tmp, progress_bar() as bar:
        task = bar.add_task(label, total=len(items), info="child process")
        rows = [{"instruction": i["instruction"], "input": i.get("input") or ""} for i in items]
        write_jsonl(Path(tmp) / "in.jsonl", rows)
        job = InferenceJob(
            model=str(model_dir),
            input=str(Path(tmp) / "in.jsonl"),
            output=str(Path(tmp) / "out.jsonl"),
            backend=cfg.student.inference_backend,
            device=resolve_device(cfg.student.device),
            template=cfg.student.template,
            max_new_tokens=cfg.student.max_new_tokens,
            stop=list(stop),
            engine=_engine(cfg),
            rows_per_call=128,  # answer_items' chunk: the generator sees the same calls as inline (vLLM needs many)
        )

        def on_line(line: str) -> None:
            done = re.search(r"(\d+)/\d+ rows", line)
            if done:
                bar.update(task, completed=int(done.group(1)))

        run_job("trainers.inference", job, Path(tmp), label, on_line)
        answers = read_jsonl(Path(tmp) / "out.jsonl").rows
    return [{**item, "prediction": a["prediction"]} for item, a in zip(items, answers, strict=True)]


def sft_job(cfg: RunConfig, start: Path, data: Path, out: Path) -> SFTJob:
    """The DeepSpeed SFT job the training phase runs for this config: the run's training section as is."""
    # Absolute paths: the trainer runs from the package root (and, over a hostfile, on other nodes), not
    # from where the run was started; a hub name stays a name.
    return SFTJob(
        model_path=str(start.resolve()) if start.exists() else str(start),
        data_path=str(data.resolve()),
        output_dir=str(out.resolve()),
        training=cfg.training,
        template=cfg.student.template,
        max_length=cfg.student.max_length,
        seed=cfg.seed,
        log_every=5,
    )


def train_student(
    cfg: RunConfig,
    start: Path,
    data: Path,
    out: Path,
    tracker: Tracker | None,
    label: str = "train (DeepSpeed)",
    len_pool: int | None = None,
) -> dict[str, float]:
    """SFT with DeepSpeed in a child process from `start` on `data`, following its progress.

    Training curves go to the tracker under a global step that keeps counting across rounds.
    """
    job = sft_job(cfg, start, data, out)
    offset = 0
    if tracker is not None:
        offset = max((int(row.get("train/global_step", 0)) for row in tracker.rows), default=0)
    with progress_bar() as bar:
        task = bar.add_task(label, total=None, info=f"pool {len_pool}" if len_pool else "starting")

        def on_progress(ev: dict[str, object]) -> None:
            if "step" not in ev or "loss" not in ev:
                return
            bar.update(task, completed=ev["step"], total=ev.get("total_steps"), info=f"loss {ev['loss']:.3f}")
            if tracker is not None:
                tracker.log({"train/loss": ev["loss"], "train/lr": ev.get("lr")}, step=offset + int(ev["step"]))

        res = launch_sft(job, on_progress=on_progress)
    return {
        "steps": res.steps,
        "first_loss": res.first_loss,
        "last_loss": res.tail_loss,
        "tokens_per_s": res.tokens_per_s,
        "seconds": res.seconds,
        "peak_host_rss_bytes": res.peak_host_rss_bytes,
        "peak_gpu_allocated_bytes": res.peak_gpu_allocated_bytes,
    }


class RoundTrainer:
    """The student's trainer as a service to plugins (`core.plugins.Trainer`), for round r of a run: models of a
    plugin's own are fine-tuned with the run's DeepSpeed settings and the student's template into the round's
    folder, and sampled with the student's generation stack."""

    def __init__(self, cfg: RunConfig, round_dir: Path, base: Path, previous: Path | None) -> None:
        self.cfg, self.round_dir, self.base, self.previous = cfg, round_dir, base, previous

    def finetune(self, rows: Sequence[dict[str, object]], name: str, start: str, max_steps: int) -> str:
        """Fine-tune the base ("base") or the last round's student ("student") on `rows`; returns the model folder."""
        if start not in ("base", "student"):
            raise ValueError(f"finetune: start must be 'base' or 'student', not {start!r}")
        origin = self.base if start == "base" or self.previous is None else self.previous
        out = self.round_dir / name
        data = out / "train.jsonl"
        write_jsonl(data, [{"instruction": r["instruction"], "output": r["output"]} for r in rows])
        training = self.cfg.training.model_copy(update={"max_steps": max_steps, "epochs": None})
        cfg = self.cfg.model_copy(update={"training": training})
        train_student(cfg, origin, data, out / "sft", None, label=f"{self.round_dir.name} {name} (DeepSpeed)")
        return str(out / "sft" / "model")

    def complete(self, model: str, instructions: Sequence[str], samplings: Sequence[Sampling]) -> list[list[str]]:
        """Each instruction in the student's template, completed by `model` with its own sampling."""
        device = resolve_device(self.cfg.student.device)
        backend, engine = self.cfg.student.inference_backend, _engine(self.cfg)
        with make_generator(model, backend=backend, device=device, **engine) as gen, progress_bar() as bar:
            bar.add_task(f"{self.round_dir.name} sample from {Path(model).parent.parent.name}", total=None, info="")
            prompts = format_rows([{"instruction": t} for t in instructions], self.cfg.student.template, gen.tokenizer)
            return gen.complete(prompts, samplings)
