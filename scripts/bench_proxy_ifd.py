"""Benchmark IFD by a proxy model (Superfiltering, `ifd.model`): does a small scorer rank pairs as the student does?

    python scripts/bench_proxy_ifd.py [--n 200] [--student smollm2-135m-instruct] [--proxy DIR ...]
                                      [--sft-steps 400] [--threads 1] [--max-length 384]

Data: GSM8K train pairs (question -> instruction, answer -> output) from ../shared/data/gsm8k_train.jsonl; the
first --n are scored. The student is SmolLM2-135M-Instruct (the packaged GGUF) unless --student names another.
Proxies: a tiny model (about 4M parameters) whose tokenizer is trained on other GSM8K rows, untrained and after
--sft-steps of SFT on those other rows (never on the scored ones), and every --proxy given. For each scorer:
seconds to score the pairs (both passes, same batch size and token budget), the Spearman rank correlation
(scipy) of its IFD with the student's (the loss ratio gaploop selects on, and the perplexity ratio
Superfiltering selects on), the share of pairs put on the same side of IFD = 1, and the overlap of the top
10% by IFD among the pairs under 1 (what `ifd.top_share` keeps). Torch runs on --threads threads (1 by
default: on a shared 2-core machine two threads can be slower than one). Results: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.ifd import IFDScore  # noqa: E402
from core.models import resolve_model  # noqa: E402
from trainers.ifd import score_ifd  # noqa: E402
from trainers.sft import SFTJob, launch_sft  # noqa: E402
from trainers.tiny import TinySpec, build_tiny_student, count_parameters, load_student  # noqa: E402
from trainers.training import TrainingConfig  # noqa: E402

GSM8K = ROOT.parent / "shared" / "data" / "gsm8k_train.jsonl"
PROXY_SPEC = TinySpec(
    hidden_size=256, num_layers=4, num_heads=4, intermediate_size=688, vocab_size=2048, max_position=1024
)


def gsm8k_rows(start: int, n: int) -> list[dict[str, object]]:
    """GSM8K train rows [start, start + n) as instruction/output pairs."""
    rows = []
    with GSM8K.open(encoding="utf-8") as fh:
        for k, line in enumerate(fh):
            if k >= start + n:
                break
            if k >= start:
                item = json.loads(line)
                rows.append({"instruction": item["question"], "output": item["answer"]})
    return rows


def scored(
    model_dir: str, rows: list[dict[str, object]], args: argparse.Namespace
) -> tuple[list[IFDScore], float, int]:
    """(scores, seconds, parameters) of one scorer over the rows."""
    model, tokenizer = load_student(model_dir)
    t0 = time.perf_counter()
    scores = score_ifd(model, tokenizer, rows, template="plain", max_length=args.max_length, batch_size=args.batch_size)
    return scores, time.perf_counter() - t0, count_parameters(model)


def compare(student: list[IFDScore], proxy: list[IFDScore], top: float = 0.1) -> dict[str, float]:
    """Spearman of both ratios, agreement on IFD < 1, overlap of the top share by IFD among those under 1."""
    from scipy.stats import spearmanr

    both = [i for i, (s, p) in enumerate(zip(student, proxy, strict=True)) if s.ifd is not None and p.ifd is not None]
    s_ifd, p_ifd = [student[i].ifd for i in both], [proxy[i].ifd for i in both]
    s_ppl, p_ppl = [student[i].ifd_ppl for i in both], [proxy[i].ifd_ppl for i in both]
    same_side = sum((a < 1) == (b < 1) for a, b in zip(s_ifd, p_ifd, strict=True)) / len(both)

    def top_set(values: list[float]) -> set[int]:
        under = [(v, i) for v, i in zip(values, both, strict=True) if v < 1]
        k = max(1, math.floor(top * len(both)))
        return {i for _, i in sorted(under, reverse=True)[:k]}

    a, b = top_set(s_ifd), top_set(p_ifd)
    return {
        "pairs": len(both),
        "spearman_ifd": float(spearmanr(s_ifd, p_ifd).statistic),
        "spearman_ppl": float(spearmanr(s_ppl, p_ppl).statistic),
        "same_side": same_side,
        "top_overlap": len(a & b) / max(1, len(a)),
        "under_one": sum(v < 1 for v in p_ifd) / len(both),
    }


def tiny_proxies(work: Path, args: argparse.Namespace) -> list[tuple[str, str]]:
    """The tiny proxy untrained and after SFT on GSM8K rows disjoint from the scored ones."""
    other = gsm8k_rows(args.n, args.train_rows)
    base = work / "tiny"
    build_tiny_student(base, [f"{r['instruction']}\n{r['output']}" for r in other], PROXY_SPEC)
    data = work / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in other))
    out = [("tiny, untrained", str(base))]
    if args.sft_steps:
        job = SFTJob(
            model_path=str(base),
            data_path=str(data),
            output_dir=str(work / "sft"),
            template="plain",
            max_length=args.max_length,
            training=TrainingConfig(
                max_steps=args.sft_steps, micro_batch_size=16, lr=3e-3, warmup_ratio=0.05, launcher="python"
            ),
        )
        t0 = time.perf_counter()
        result = launch_sft(job)
        print(
            f"tiny proxy SFT: {args.sft_steps} steps on {len(other)} other GSM8K rows, loss {result.first_loss:.2f} -> "
            f"{result.tail_loss:.2f}, {time.perf_counter() - t0:.0f} s",
            file=sys.stderr,
        )
        out.append((f"tiny, {args.sft_steps} SFT steps", result.model_dir))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=200, help="GSM8K pairs scored")
    parser.add_argument("--student", default="smollm2-135m-instruct")
    parser.add_argument("--proxy", action="append", default=[], help="another proxy model (repeatable)")
    parser.add_argument("--sft-steps", type=int, default=400, help="SFT steps of the tiny proxy (0: untrained only)")
    parser.add_argument("--train-rows", type=int, default=3000, help="other GSM8K rows the tiny proxy learns from")
    parser.add_argument("--max-length", type=int, default=384)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    if not GSM8K.exists():
        print(f"bench_proxy_ifd: needs the GSM8K copy at {GSM8K}", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rows = gsm8k_rows(0, args.n)
    student_dir = resolve_model(args.student)
    student, student_s, student_params = scored(student_dir, rows, args)
    with tempfile.TemporaryDirectory(prefix="bench-proxy-") as tmp:
        proxies = tiny_proxies(Path(tmp), args) + [(p, p) for p in args.proxy]
        lines = []
        for label, path in proxies:
            proxy, seconds, params = scored(path, rows, args)
            lines.append((label, params, seconds, compare(student, proxy)))
    print(
        f"\nIFD of {len(rows)} GSM8K train pairs, student {args.student} ({student_params / 1e6:.1f}M parameters, "
        f"{student_s:.1f} s), template plain, max_length {args.max_length}, batch {args.batch_size}, "
        f"{args.threads} torch thread(s)\n"
    )
    columns = ["scorer", "parameters", "seconds", "speed-up", "Spearman, IFD (loss ratio)", "Spearman, IFD (ppl ratio)"]
    columns += ["same side of 1", "top-10% overlap", "share under 1"]
    print("| " + " | ".join(columns) + " |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    self_cmp = compare(student, student)
    print(
        f"| {args.student} (the student) | {student_params / 1e6:.1f}M | {student_s:.1f} | 1.0x | 1 | 1 | 1 | 1 | "
        f"{self_cmp['under_one']:.2f} |"
    )
    for label, params, seconds, c in lines:
        print(
            f"| {label} | {params / 1e6:.1f}M | {seconds:.1f} | {student_s / seconds:.1f}x | {c['spearman_ifd']:.3f} | "
            f"{c['spearman_ppl']:.3f} | {c['same_side']:.2f} | {c['top_overlap']:.2f} | {c['under_one']:.2f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
