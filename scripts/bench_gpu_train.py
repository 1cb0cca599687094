"""Benchmark the training phase's GPU memory and speed against the estimates of docs/gpu.md.

    python scripts/bench_gpu_train.py --tokenizer DIR [--arch llama3.2-1b smollm2-135m]
        [--settings 8:off 4:off 8:on] [--seq 512] [--zero 2] [--steps 6] [--work DIR] [--json FILE]

Each architecture is built from its published hyperparameters with random weights: nothing is downloaded,
and a training step's memory and time do not depend on the weights' values. --tokenizer is any HF tokenizer
folder (its ids must fit the architecture's vocabulary; the SmolLM2 one that `make venv` converts is fine).
The rows are long enough that every sequence is cut at --seq tokens, so each micro batch is b x s, the shape
the estimates are written for. Training goes through the project's own phase, `launch_sft` (the DeepSpeed
launcher when CUDA is there, bf16 with fp32 master weights where the device has bf16, torch AdamW), for
--steps optimizer steps per setting (a setting is micro batch b:gradient checkpointing). Printed per
setting: docs/gpu.md's estimate (weights 2P, gradients 2P, optimizer states 12P, activations 34·s·b·h
bytes a layer, logits 6·b·s·V) beside the loop's measured peaks
(torch's allocated and reserved CUDA memory, from SFTResult), tokens/s and seconds per step after the first.
Off CUDA it still runs (fp32, so the estimate does not apply) and prints the host's peak resident memory.
Results: docs/gpu.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.jsonl import write_jsonl  # noqa: E402
from trainers.sft import SFTJob, launch_sft  # noqa: E402
from trainers.training import TrainingConfig  # noqa: E402

# Published shapes (the models' config.json files). Llama 3.2 1B ties its embeddings, as SmolLM2 does.
ARCHS: dict[str, dict[str, object]] = {
    "llama3.2-1b": dict(
        vocab_size=128256,
        hidden_size=2048,
        intermediate_size=8192,
        num_hidden_layers=16,
        num_attention_heads=32,
        num_key_value_heads=8,
        max_position_embeddings=8192,
        rope_theta=500000.0,
        rms_norm_eps=1e-5,
        tie_word_embeddings=True,
    ),
    "smollm2-135m": dict(
        vocab_size=49152,
        hidden_size=576,
        intermediate_size=1536,
        num_hidden_layers=30,
        num_attention_heads=9,
        num_key_value_heads=3,
        max_position_embeddings=8192,
        rope_theta=100000.0,
        rms_norm_eps=1e-5,
        tie_word_embeddings=True,
    ),
    # Not a published model: a 2-layer shape for trying this script on a CPU.
    "toy": dict(
        vocab_size=49152,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
    ),
}
GB = 1e9


def build_model(arch: str, tokenizer_dir: Path, out: Path) -> int:
    """Random weights of `arch` with the tokenizer beside them, saved as an HF folder; returns P."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    shape = ARCHS[arch]
    if len(tokenizer) > int(shape["vocab_size"]):  # type: ignore[arg-type]
        raise SystemExit(
            f"--tokenizer {tokenizer_dir}: {len(tokenizer)} tokens do not fit {arch}'s {shape['vocab_size']}"
        )
    config = LlamaConfig(
        **shape,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    model.to(torch.bfloat16).save_pretrained(out)  # bf16 on disk: half the writing; training loads float32
    tokenizer.save_pretrained(out)
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def estimate(shape: dict[str, object], p: int, b: int, s: int, checkpointing: bool) -> dict[str, float]:
    """docs/gpu.md's per-GPU training estimate on one GPU, in bytes."""
    h, layers, v = int(shape["hidden_size"]), int(shape["num_hidden_layers"]), int(shape["vocab_size"])  # type: ignore[arg-type]
    # With checkpointing only each layer's input (b·s·h in bf16) is kept, plus one layer's worth recomputed.
    acts = (2 * s * b * h * layers + 34 * s * b * h) if checkpointing else 34 * s * b * h * layers
    return {"static": 16 * p, "activations": acts, "logits": 6 * b * s * v}


def rows(n: int, s: int) -> list[dict[str, str]]:
    """Rows whose answers run past s tokens with any tokenizer (a word is at least one token)."""
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa", "lambda"]
    out = []
    for i in range(n):
        answer = " ".join(words[(i + j) % len(words)] for j in range(s + 8))
        out.append({"instruction": f"Recite the sequence number {i}.", "output": answer})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokenizer", required=True, type=Path, help="an HF tokenizer folder")
    parser.add_argument("--arch", nargs="+", default=["llama3.2-1b", "smollm2-135m"], choices=sorted(ARCHS))
    parser.add_argument("--settings", nargs="+", default=["8:off", "4:off", "8:on"], help="micro batch:checkpointing")
    parser.add_argument("--seq", type=int, default=512, help="tokens per sequence (student.max_length)")
    parser.add_argument("--zero", type=int, default=2, choices=(0, 1, 2, 3))
    parser.add_argument("--steps", type=int, default=6, help="optimizer steps per setting")
    parser.add_argument("--work", type=Path, default=None, help="folder for models and runs (default: a temp dir)")
    parser.add_argument("--json", type=Path, default=None, help="also write the table's rows here")
    args = parser.parse_args()
    if not (args.tokenizer / "tokenizer_config.json").exists():
        raise SystemExit(f"--tokenizer {args.tokenizer}: no tokenizer_config.json there")
    settings = []
    for text in args.settings:
        b, _, ckpt = text.partition(":")
        if not b.isdigit() or int(b) < 1 or ckpt not in ("off", "on"):
            raise SystemExit(f"--settings {text!r}: write micro batch:checkpointing, e.g. 8:off or 4:on")
        settings.append((int(b), ckpt))
    if args.seq < 16 or args.steps < 2:
        raise SystemExit("--seq >= 16 and --steps >= 2 are needed")

    work = args.work or Path(tempfile.mkdtemp(prefix="bench_gpu_train_"))
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU (no CUDA)"
    print(f"device: {device}; torch {torch.__version__}; ZeRO {args.zero}; s = {args.seq}; {args.steps} steps each")
    results = []
    for arch in args.arch:
        model_dir = work / f"model_{arch}"
        t0 = time.perf_counter()
        p = build_model(arch, args.tokenizer, model_dir)
        print(f"{arch}: P = {p / 1e9:.3f}e9, built and saved in {time.perf_counter() - t0:.1f} s", flush=True)
        for b, ckpt in settings:
            data = work / f"rows_{b}.jsonl"
            write_jsonl(data, rows(b * args.steps, args.seq))
            out = work / f"run_{arch}_b{b}_{ckpt}"
            job = SFTJob(
                model_path=str(model_dir),
                data_path=str(data),
                output_dir=str(out),
                template="chat",
                max_length=args.seq,
                training=TrainingConfig(
                    max_steps=args.steps,
                    micro_batch_size=b,
                    lr=1e-5,
                    zero_stage=args.zero,
                    gradient_checkpointing=ckpt == "on",
                    group_by_length=False,
                ),
            )
            t0 = time.perf_counter()
            res = launch_sft(job)
            wall = time.perf_counter() - t0
            steps = [json.loads(x) for x in (out / "progress.jsonl").read_text().splitlines() if x.strip()]
            later = (steps[-1]["elapsed"] - steps[0]["elapsed"]) / (len(steps) - 1)
            est = estimate(ARCHS[arch], p, b, args.seq, ckpt == "on")
            row = {
                "arch": arch,
                "b": b,
                "checkpointing": ckpt,
                "est_static_gb": est["static"] / GB,
                "est_act_gb": est["activations"] / GB,
                "est_logits_gb": est["logits"] / GB,
                "est_total_gb": sum(est.values()) / GB,
                "peak_alloc_gb": (res.peak_gpu_allocated_bytes or 0) / GB or None,
                "peak_reserved_gb": (res.peak_gpu_reserved_bytes or 0) / GB or None,
                "host_rss_gb": (res.peak_host_rss_bytes or 0) / GB,
                "tokens_per_s": res.tokens_per_s,
                "s_per_step": later,
                "phase_wall_s": wall,
                "loss": [res.first_loss, res.last_loss],
            }
            results.append(row)
            print(json.dumps(row), flush=True)

    head = (
        "| model | b | ckpt | est. 16P | est. act. | est. logits | est. total | peak alloc. | peak reserved "
        "| host RSS | tokens/s | s/step | phase wall |"
    )
    print()
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for r in results:

        def gb(x: float | None) -> str:
            return "-" if x is None else f"{x:.2f} GB"

        print(
            f"| {r['arch']} | {r['b']} | {r['checkpointing']} | {gb(r['est_static_gb'])} | {gb(r['est_act_gb'])} | "
            f"{gb(r['est_logits_gb'])} | {gb(r['est_total_gb'])} | {gb(r['peak_alloc_gb'])} | "
            f"{gb(r['peak_reserved_gb'])} | {gb(r['host_rss_gb'])} | {r['tokens_per_s']:,.0f} | "
            f"{r['s_per_step']:.3f} | {r['phase_wall_s']:.0f} s |"
        )
    if args.json:
        args.json.write_text(json.dumps({"device": device, "rows": results}, indent=2))


if __name__ == "__main__":
    main()
