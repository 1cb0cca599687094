"""A tiny chat teacher for the CPU demo of the LLM agents: trained here on the agents' own requests.

No model can be downloaded here, and a from-scratch model knows nothing, so `teacher.llm.model: tiny`
builds one (the student's architecture, a larger context and vocabulary) and fine-tunes it with
DeepSpeed on the exact chats the LLM agents send, rendered from their prompt templates over task-world
items, with replies the world's oracle writes:

- Questioner (llm2llm): failed item + answer key + wrong answer -> `{"question", "answer"}` of a new item:
  the failed question with new numbers (or letters) of the same shape, answered by the oracle (a copy
  with edits is what a 1M-parameter model can learn in a couple of minutes; a fresh item is not);
- Teacher: the question under the teacher's system prompt -> the answer (four times as many of these:
  they are short, and the teacher has to learn the task itself);
- Assessor (curation): the Humpback rating prompt -> a one-line reason and `Score: 5` (right) or `Score: 1`.

Its replies are often wrong (it is a 1M-parameter model), which is the point of the demo: every path of
the LLM agents (parsing, re-asks, verification, curation, accounting, caching) runs for real, and the
Assessor's verifier drops what the teacher got wrong. It is never a substitute for a real teacher.
"""

from __future__ import annotations

import json
import random
import re
import shutil
from pathlib import Path

from transformers import AutoTokenizer

from agents.llm.assessor import LLMAssessor
from agents.llm.teacher import LLMTeacher
from agents.llm.types import Message
from agents.plans import llm2llm
from agents.tasks.world import LEVELS, get_point, points_for, sample_item, solve
from core.jsonl import write_jsonl
from loop.config import RunConfig
from loop.console import progress_bar
from trainers.sft import SFTJob, launch_sft
from trainers.tiny import TinySpec, build_tiny_student

SPEC = TinySpec(vocab_size=2048, hidden_size=128, num_layers=4, num_heads=4, intermediate_size=384, max_position=1024)
MAX_LENGTH = 1024


def teacher_chats(points: list[str], rows_per_kind: int, seed: int) -> list[tuple[list[Message], str]]:
    """(messages, reply) pairs: the requests the LLM agents send, answered by the world's oracle."""
    rng = random.Random(f"{seed}:tiny-teacher")
    teacher, assessor = LLMTeacher(None, name="tiny"), LLMAssessor(None)  # type: ignore[arg-type]
    chats: list[tuple[list[Message], str]] = []
    for _ in range(rows_per_kind):
        point, level = rng.choice(points), rng.choice(LEVELS)
        question, answer = sample_item(rng, point, level)
        wrong = _wrong_answer(rng, point, level, answer)
        new_q, new_a = _similar(rng, question) or sample_item(rng, point, level)
        failure = {"instruction": question, "output": answer, "prediction": wrong}
        reply = json.dumps({"question": new_q, "answer": new_a})
        chats.append((llm2llm.messages(failure, 1), reply))
        for q, a in [(question, answer), *(sample_item(rng, rng.choice(points), level) for _ in range(3))]:
            chats.append((teacher.request({"instruction": q}).messages, solve(q) or a))
        shown, right = (answer, True) if rng.random() < 0.5 else (wrong, False)
        rating = "The answer is correct.\nScore: 5" if right else "The answer is wrong.\nScore: 1"
        chats.append((assessor.quality_request({"instruction": question, "output": shown}).messages, rating))
    return chats


def _similar(rng: random.Random, question: str) -> tuple[str, str] | None:
    """The question with each number (same digit count) and each spaced letter redrawn, if the oracle
    can answer the result."""

    def number(m: re.Match[str]) -> str:
        digits = len(m[0])
        return str(rng.randint(10 ** (digits - 1) if digits > 1 else 0, 10**digits - 1))

    for _ in range(20):
        new = re.sub(r"\d+", number, question)
        new = re.sub(r"(?<= )[a-z](?= |\?|$)", lambda _: rng.choice("abcdefghjkmnpqrstuvwxyz"), new)
        answer = solve(new)
        if answer is not None and new != question:
            return new, answer
    return None


def _wrong_answer(rng: random.Random, point: str, level: int, answer: str) -> str:
    for _ in range(50):
        other = get_point(point).generate(rng, level)[1]
        if other != answer:
            return other
    return answer + "0"


def build_tiny_teacher(cfg: RunConfig, out: Path) -> Path:
    """Build and fine-tune the tiny teacher into `out` (via a temporary folder, then renamed)."""
    llm = cfg.teacher.llm
    points = cfg.task.points or points_for()
    chats = teacher_chats(points, llm.tiny_rows_per_kind, cfg.seed)
    work = out.with_name(out.name + ".tmp")
    if work.exists():
        shutil.rmtree(work)
    texts = [m["content"] for msgs, _ in chats[:600] for m in msgs] + [reply for _, reply in chats]
    base = build_tiny_student(work / "base", texts, SPEC)
    tokenizer = AutoTokenizer.from_pretrained(str(base))
    rows = []
    for messages, reply in chats:
        prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        # The SFT 'plain' template appends one newline to the instruction; the chat prompt ends in one.
        rows.append({"instruction": prompt[:-1] if prompt.endswith("\n") else prompt, "output": reply})
    write_jsonl(work / "train.jsonl", rows)
    job = SFTJob(
        model_path=str(base.resolve()),  # the trainer runs from the package root
        data_path=str((work / "train.jsonl").resolve()),
        output_dir=str((work / "sft").resolve()),
        template="plain",
        max_length=MAX_LENGTH,
        epochs=llm.tiny_epochs,
        micro_batch_size=16,
        lr=3e-3,
        seed=cfg.seed,
        zero_stage=0,
        log_every=5,
        group_by_length=False,
    )
    with progress_bar() as bar:
        task = bar.add_task("tiny teacher (DeepSpeed)", total=None, info=f"{len(rows)} chats")

        def on_progress(ev: dict[str, object]) -> None:
            if "step" in ev and "loss" in ev:
                bar.update(task, completed=ev["step"], total=ev.get("total_steps"), info=f"loss {ev['loss']:.3f}")

        launch_sft(job, launcher=cfg.training.launcher, on_progress=on_progress)
    if out.exists():
        shutil.rmtree(out)
    (work / "sft" / "model").rename(out)
    shutil.rmtree(work)
    return out
