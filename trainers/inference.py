"""Student inference: batched greedy generation behind one interface, with a transformers and a vLLM backend.

Both backends tokenise prompts with `templates.encode_text`, so the start token is handled exactly as in
training and both see identical prompt ids (vLLM gets token ids, not text). Texts come back in input
order, cut at the first stop string (the stop string itself is dropped, as vLLM does) and at EOS.

vLLM starts worker processes with `spawn`, so a program that builds a `VLLMGenerator` must do so under
an `if __name__ == "__main__":` guard. The loop runs inference in a child process through
`python -m trainers.inference JOB.json RESULT.json`, which has that guard and hands accelerator memory back on exit.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
import time
from abc import ABC
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Literal

import torch
from pydantic import Field
from transformers import PreTrainedTokenizerBase

from core.children import watch_holder
from core.generation import VLLM_INSTALL_HINT, Sampling, TransformersDecoder, VLLMDecoder
from core.jobs import Job, child_main
from core.jsonl import iter_jsonl, write_jsonl
from core.models import resolve_model
from trainers.templates import encode_text, format_prompt
from trainers.tiny import load_student

logger = logging.getLogger(__name__)

Backend = Literal["auto", "transformers", "vllm"]
BACKENDS: tuple[str, ...] = ("auto", "transformers", "vllm")


def default_device() -> str:
    """'cuda' when a CUDA device is visible, else 'cpu'."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def vllm_installed() -> bool:
    """Whether vLLM can be found, without paying for its import."""
    return importlib.util.find_spec("vllm") is not None


def fit_context(ids: list[int], max_new_tokens: int, context: int) -> list[int]:
    """Prompt ids cut from the left so prompt + answer fit the model's context; both backends use it."""
    if max_new_tokens >= context:
        raise ValueError(f"max_new_tokens={max_new_tokens} leaves no room for a prompt in a context of {context}")
    room = context - max_new_tokens
    return ids if len(ids) <= room else ids[-room:]


class Generator(ABC):
    """Batched generation from formatted prompts over the project's one local decoder (`core.generation`):
    greedy for the student's answers, sampled where a caller asks; use as a context manager to free the model."""

    tokenizer: PreTrainedTokenizerBase
    context: int
    decoder: TransformersDecoder | VLLMDecoder
    seed: int | None = None  # the engine's seed for greedy requests (vLLM takes one)

    def generate_ids(self, prompt_ids: Sequence[list[int]], max_new_tokens: int, stop: Sequence[str] = ()) -> list[str]:
        """Greedy completions of already tokenised prompts, in input order."""
        greedy = Sampling(temperature=0.0, max_tokens=max_new_tokens, stop=tuple(stop), seed=self.seed)
        return [c.texts[0] for c in self.decoder.complete(prompt_ids, [greedy] * len(prompt_ids))]

    def generate(self, prompts: Sequence[str], max_new_tokens: int = 64, stop: Sequence[str] = ()) -> list[str]:
        """Greedy completions of prompt texts (from `format_prompt`), in input order."""
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
        ids = self._fit([encode_text(self.tokenizer, p) for p in prompts], max_new_tokens)
        return self.generate_ids(ids, max_new_tokens, list(stop)) if ids else []

    def complete(self, prompts: Sequence[str], samplings: Sequence[Sampling]) -> list[list[str]]:
        """Each prompt text completed with its own sampling (temperature, nucleus, n, seed, stops), in order."""
        ids = [
            self._fit([encode_text(self.tokenizer, p)], s.max_tokens)[0]
            for p, s in zip(prompts, samplings, strict=True)
        ]
        return [c.texts for c in self.decoder.complete(ids, samplings)] if ids else []

    def _fit(self, ids: list[list[int]], max_new_tokens: int) -> list[list[int]]:
        too_long = sum(len(x) + max_new_tokens > self.context for x in ids)
        if too_long:
            logger.warning(
                "%d of %d prompts are cut from the left to fit a context of %d with %d new tokens",
                too_long,
                len(ids),
                self.context,
                max_new_tokens,
            )
        return [fit_context(x, max_new_tokens, self.context) for x in ids]

    def close(self) -> None:
        """Free the model (and accelerator memory, worker processes); the generator cannot be used afterwards."""
        self.decoder.close()

    def __enter__(self) -> Generator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class TransformersGenerator(Generator):
    """A transformers model through the project's one local decoder (`core.generation.TransformersDecoder`):
    greedy, left padding, batches sorted by prompt length so little padding is computed."""

    def __init__(
        self,
        model_path: str | Path,
        device: str | None = None,
        batch_size: int = 32,
        dtype: torch.dtype | None = None,
    ):
        self.device = device or default_device()
        self.batch_size = batch_size
        model, self.tokenizer = load_student(model_path, device=self.device, dtype=dtype)
        self.decoder = TransformersDecoder(model, self.tokenizer, self.device, batch_size, str(model_path))
        self.context = self.decoder.context


class VLLMGenerator(Generator):
    """vLLM's offline engine (`core.generation.VLLMDecoder`), greedy; build it under `if __name__ == "__main__":`
    (vLLM spawns workers).

    On CPU, `gpu_memory_utilization` is the share of RAM vLLM reserves, so the default there is small,
    the context is capped, weights stay float32 and the model runs eagerly: on the tiny student, compiling
    added ~23 s to a ~25 s start and saved ~0.6 s per 18k generated tokens.
    """

    def __init__(
        self,
        model_path: str | Path,
        device: str | None = None,
        batch_size: int = 256,
        seed: int = 0,
        gpu_memory_utilization: float | None = None,
        max_model_len: int | None = None,
        enforce_eager: bool | None = None,
        dtype: str | None = None,
        **engine_kwargs: object,
    ):
        if not vllm_installed():
            raise ImportError(f"backend 'vllm' needs vLLM, which is not installed; {VLLM_INSTALL_HINT}")
        self.device = device or default_device()
        on_cpu = self.device == "cpu"
        self.batch_size = batch_size
        self.seed = seed
        path = resolve_model(model_path)  # an alias or GGUF file becomes the HF folder vLLM reads
        self.tokenizer = load_tokenizer(path)
        if max_model_len is None and on_cpu:
            max_model_len = min(_max_positions(path), 2048)
        self.decoder = VLLMDecoder(
            path,
            str(model_path),
            seed=seed,
            # vLLM's "auto" runs float32 checkpoints in bfloat16 on CPU; float32 keeps it in step
            # with the transformers backend (and AVX2 has no fast bfloat16 anyway).
            dtype=dtype or ("float32" if on_cpu else "auto"),
            gpu_memory_utilization=gpu_memory_utilization or (0.1 if on_cpu else 0.85),
            max_model_len=max_model_len,
            enforce_eager=on_cpu if enforce_eager is None else enforce_eager,
            **engine_kwargs,
        )
        self.context = self.decoder.context  # starts the engine: its start-up is not generation time


def load_tokenizer(model_path: str | Path) -> PreTrainedTokenizerBase:
    """The model's tokenizer (a folder, hub name, alias or GGUF file), with a pad token, without loading its weights."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(resolve_model(model_path))
    except OSError as err:
        raise FileNotFoundError(f"cannot load a tokenizer from {model_path!s} ({err})") from err
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _max_positions(model_path: str | Path) -> int:
    from transformers import AutoConfig

    return int(getattr(AutoConfig.from_pretrained(str(model_path)), "max_position_embeddings", 2048))


def make_generator(model_path: str | Path, backend: str = "auto", device: str | None = None, **kw: object) -> Generator:
    """A generator for `model_path`; 'auto' takes vLLM when installed and on CUDA, else transformers.

    vLLM on CPU takes about a minute to start, which is why it is never the CPU default.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown inference backend {backend!r}; allowed: {', '.join(BACKENDS)}")
    device = device or default_device()
    if backend == "auto":
        backend = "vllm" if vllm_installed() and device.startswith("cuda") else "transformers"
    if backend == "vllm":
        if not vllm_installed():
            raise ImportError(f"inference backend 'vllm' was requested but vLLM is not installed; {VLLM_INSTALL_HINT}")
        return VLLMGenerator(model_path, device=device, **kw)  # type: ignore[arg-type]
    return TransformersGenerator(model_path, device=device, **kw)  # type: ignore[arg-type]


def format_rows(
    rows: Iterable[Mapping[str, object]], template: str, tokenizer: PreTrainedTokenizerBase | None = None
) -> list[str]:
    """Prompt texts of Alpaca-style rows (`instruction`, optional `input`)."""
    prompts = []
    for n, row in enumerate(rows):
        if "instruction" not in row:
            raise KeyError(f"row {n} has no 'instruction' field (fields: {', '.join(map(str, row))})")
        prompts.append(format_prompt(template, str(row["instruction"]), str(row.get("input") or ""), tokenizer))
    return prompts


def generate_answers(
    generator: Generator,
    rows: Iterable[Mapping[str, object]],
    template: str,
    tokenizer: PreTrainedTokenizerBase | None = None,
    max_new_tokens: int = 64,
    stop: Sequence[str] = (),
) -> list[str]:
    """The student's greedy answers to Alpaca-style rows, formatted with `template`, in row order."""
    prompts = format_rows(rows, template, tokenizer or generator.tokenizer)
    return generator.generate(prompts, max_new_tokens=max_new_tokens, stop=stop)


class InferenceJob(Job):
    """What `python -m trainers.inference JOB.json RESULT.json` runs: rows in, the same rows with `prediction` out."""

    model: str
    input: str
    output: str
    backend: Literal["auto", "transformers", "vllm"] = "auto"
    device: str | None = None
    template: Literal["plain", "alpaca", "chat"] = "plain"
    max_new_tokens: int = Field(64, ge=1)
    stop: list[str] = Field(default_factory=list)
    batch_size: int = Field(32, ge=1)
    # torch CPU threads for this process; on a CPU shared with other jobs, 1 ran 7-15x faster than 2.
    threads: int | None = Field(None, ge=1)
    engine: dict[str, object] = Field(default_factory=dict)  # extra keyword arguments for the generator
    # Rows per generate call (the progress step; batch_size when unset). vLLM schedules a call's rows itself,
    # so small calls starve it; transformers splits each call into batch_size batches, longest first.
    rows_per_call: int | None = Field(None, ge=1)


def read_jsonl(path: str | Path) -> list[dict[str, object]]:
    """Rows of a JSONL file; a bad line raises an error naming file and line."""
    rows = []
    for n, row, problem in iter_jsonl(path):
        if problem:
            raise ValueError(f"{path}:{n}: {problem}")
        rows.append(row)
    return rows


def run_job(job: InferenceJob) -> dict[str, object]:
    """Run one inference job; returns a summary (rows, seconds, start-up seconds, backend)."""
    rows = read_jsonl(job.input)
    if job.threads:
        torch.set_num_threads(job.threads)
    t0 = time.perf_counter()
    with make_generator(job.model, job.backend, job.device, batch_size=job.batch_size, **job.engine) as generator:
        startup = time.perf_counter() - t0
        prompts = format_rows(rows, job.template, generator.tokenizer)
        predictions: list[str] = []
        t1 = time.perf_counter()
        step = job.rows_per_call or job.batch_size
        n_batches = (len(prompts) + step - 1) // step
        for b in range(n_batches):
            chunk = prompts[b * step : (b + 1) * step]
            predictions += generator.generate(chunk, max_new_tokens=job.max_new_tokens, stop=job.stop)
            elapsed = time.perf_counter() - t1
            print(
                f"inference: batch {b + 1}/{n_batches}, {len(predictions)}/{len(prompts)} rows, "
                f"{len(predictions) / max(elapsed, 1e-9):.1f} rows/s",
                file=sys.stderr,
                flush=True,
            )
        backend = "vllm" if isinstance(generator, VLLMGenerator) else "transformers"
    write_jsonl(job.output, ({**row, "prediction": p} for row, p in zip(rows, predictions, strict=True)))
    return {
        "rows": len(rows),
        "backend": backend,
        "startup_s": round(startup, 3),
        "generate_s": round(time.perf_counter() - t1, 3),
        "output": job.output,
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Entry of `python -m trainers.inference JOB.json RESULT.json` (core/jobs.py); the result is run_job's summary."""
    return child_main(InferenceJob, run_job, list(sys.argv[1:] if argv is None else argv), "trainers.inference")


# vLLM spawns its workers, which re-import the main module: the engine must only start under this guard.
if __name__ == "__main__":
    raise SystemExit(main())
watch_holder()  # in those workers: stop once this child, which holds their engine, is gone (core/children.py)
