"""Guided decoding on a real chat model: how many of each agent's replies parse, with and without it.

The requests are the LLM agents' own, over N task-world failures: the LLM2LLM Questioner (a
{"question", "answer"} object, sampled at temperature 1 with its own seed), the per-point writer (a JSON list
of 3, sampled), the Humpback quality rating ("Score: n" on the last line, greedy) and the MT-Bench judge
("[[n]]", greedy). Each request is sent twice through the same backend, once bare and once with the guide
its agent attaches (agents/llm/guides.py; `teacher.llm.guided=true` in a run), and parsed with the agent's
own parser. The table gives, per agent, the unparseable share, how many parsed questions the task world can
answer (a usefulness check the guide does not enforce), new tokens and seconds.

    .venv/bin/python scripts/bench_guided.py [--model smollm2-135m-instruct] [--failures 20]
        [--max-tokens 96] [--backend transformers|vllm] [--threads 1]

Nothing else should run on the machine meanwhile: the seconds are compared as ratios within one run.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def requests_for(failures: int, max_tokens: int, seed: int = 0) -> list[tuple[str, object, object]]:
    """(agent, request, parse) for the agents' mix over `failures` task-world failures."""
    from agents.llm import guides
    from agents.llm.assessor import LLMAssessor
    from agents.llm.parsing import parse_rating, parse_score
    from agents.llm.types import ChatRequest, Sampling
    from agents.plans import llm2llm
    from agents.proposal import Ask
    from agents.tasks.world import POINTS_BY_ID, points_for, sample_item
    from agents.writers.chat import _parse_list, _point_messages

    rng = random.Random(seed)
    assessor = LLMAssessor(None, max_tokens=max_tokens)  # type: ignore[arg-type]
    described = {k: p.description for k, p in POINTS_BY_ID.items()}
    out: list[tuple[str, object, object]] = []
    for i in range(failures):
        point = rng.choice(points_for())
        question, answer = sample_item(rng, point, 2)
        failure = {"instruction": question, "output": answer, "prediction": "7", "knowledge_point": point}
        sampled = Sampling(1.0, max_tokens=max_tokens, seed=i)
        out.append(
            (
                "questioner: llm2llm",
                ChatRequest(llm2llm.messages(failure, 1), replace(sampled, guide=guides.QA_OBJECT), "questioner"),
                llm2llm.parse,
            )
        )
        ask = Ask({"id": point, "knowledge_point": point, "facet": None}, 3, "weak", context={
            "description": described.get(point, point), "examples": [failure]})  # fmt: skip
        out.append(
            (
                "questioner: per point (3)",
                ChatRequest(_point_messages(ask, 3), replace(sampled, guide=guides.qa_list(3)), "questioner"),
                _parse_list,
            )
        )
        quality = assessor.quality_request({"instruction": question, "output": answer})
        out.append(("assessor: quality (Score: n)", quality, parse_score))
        judge = assessor.judge_request({"instruction": question, "prediction": "7", "output": answer})
        out.append(("assessor: judge ([[n]])", judge, parse_rating))
    return out


def _parses(parse: object, text: str) -> tuple[bool, list[str]]:
    from agents.llm.parsing import ParseError

    try:
        got = parse(text)  # type: ignore[operator]
    except (ParseError, ValueError):
        return False, []
    questions = [g[0] for g in got] if isinstance(got, list) else []
    return True, questions


def main() -> None:
    """Print the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--failures", type=int, default=20)
    parser.add_argument("--max-tokens", type=int, default=96)
    parser.add_argument("--backend", choices=["transformers", "vllm"], default="transformers")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import torch

    from agents.llm.backends import make_backend
    from agents.tasks.world import solve

    torch.set_num_threads(args.threads)
    options = {"gpu_memory_utilization": 0.3} if args.backend == "vllm" else {}
    backend = make_backend(args.backend, args.model, **options)
    if hasattr(backend, "start"):
        backend.start()
    mix = requests_for(args.failures, args.max_tokens)
    agents = list(dict.fromkeys(a for a, _, _ in mix))
    rows = []
    for guided in (False, True):
        sent = [r if guided else replace(r, sampling=replace(r.sampling, guide=None)) for _, r, _ in mix]
        t0 = time.perf_counter()
        results = backend.chat(sent)
        seconds = time.perf_counter() - t0
        tokens = sum(r.completion_tokens for r in results)
        for agent in agents:
            mine = [(p, res) for (a, _, p), res in zip(mix, results, strict=True) if a == agent]
            parsed = [_parses(p, res.texts[0]) for p, res in mine]
            bad = sum(not ok for ok, _ in parsed)
            questions = [q for ok, qs in parsed if ok for q in qs]
            answerable = sum(solve(q) is not None for q in questions)
            cut = sum(1 for _, res in mine if res.finished and res.finished[0] is False)
            q_cell = f"{answerable} / {len(questions)}" if agent.startswith("questioner") else ""
            rows.append((agent, "on" if guided else "off", len(mine), bad, cut, q_cell))
        rows.append(("all", "on" if guided else "off", len(mix), None, None, f"{tokens} tokens, {seconds:.1f} s"))
    backend.close()
    print(f"model {args.model}, backend {args.backend}, {args.threads} torch thread(s), {args.failures} failures")
    print("| agent | guided | replies | unparseable | cut by max_tokens | answerable / parsed questions |")
    print("|---|---|---|---|---|---|")
    for agent, guided, n, bad, cut, extra in rows:
        if bad is None:
            print(f"| **{agent}** | {guided} | {n} | | | {extra} |")
        else:
            print(f"| {agent} | {guided} | {n} | {bad} ({100 * bad / n:.0f}%) | {cut} | {extra} |")


if __name__ == "__main__":
    main()
