"""Instruction-Following Difficulty (IFD): how much an instruction helps the student predict its answer.

IFD(Q, A) = s(A | Q) / s(A), s the student's mean cross-entropy on the answer tokens (Cherry-LLM,
Superfiltering). `reference_ifd` re-implements Superfiltering's per-sample loop
(`code_ifd/data_analysis.py`) as the yardstick; `score_ifd` produces the same numbers from the same
token ids, but runs both passes in padded, length-sorted batches and applies the LM head only where a
next token is a label. `select_by_ifd` keeps the hardest still-aligned items, and `score_file` is the
JSONL-in, JSONL-out face the CLI and the child job (`IFDJob`) call.

Departures from the releases, on purpose: `ifd` is the loss ratio (Superfiltering selects on the
perplexity ratio, `IFDScore.ifd_ppl`; both are < 1 exactly when s(A | Q) < s(A), so the threshold
filter agrees and only the ranking above it differs); a row that cannot be scored gets `ifd=None`
and a reason instead of the release's silent 0.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from core.ifd import IFDScore
from core.jobs import Job, child_main
from core.jsonl import iter_jsonl, write_jsonl
from trainers.templates import TEMPLATES, format_prompt

# Selective Reflection-Tuning's wording for r-IFD (`selection_code/data_analysis.py`); the text is wrapped
# in the template's no-input prompt, and the instruction (plus "\n" + input, if any) is the target.
REVERSE_INSTRUCTION = (
    "Below is the response to an instruction, please guess the corresponding instruction for the given "
    "response.\n{response}\nGenerate the instruction for the above response."
)
IGNORE_INDEX = -100
# Positions per LM-head chunk, so a big vocabulary never materialises a (tokens x vocab) float32 block
# larger than about 512 MiB.
_HEAD_CHUNK_ELEMENTS = 1 << 27


# ---------------------------------------------------------------------------------------------- rows


def _row_fields(row: Mapping[str, object], index: int | None) -> tuple[str, str, str]:
    """(instruction, input, output) of a row, or a ValueError naming the row and the field."""
    where = "row" if index is None else f"row {index}"
    if not isinstance(row, Mapping):
        raise ValueError(f"IFD scoring: {where} is a {type(row).__name__}, not a mapping with 'instruction'")
    values = []
    for name, required in (("instruction", True), ("input", False), ("output", True)):
        value = row.get(name)
        if value is None:
            if required:
                raise ValueError(f"IFD scoring: {where} has no {name!r} field (keys: {sorted(row)})")
            value = ""
        if not isinstance(value, str):
            raise ValueError(f"IFD scoring: {where} field {name!r} is a {type(value).__name__}, not a string")
        values.append(value)
    return values[0], values[1], values[2]


def _prompt_and_target(
    row: Mapping[str, object], index: int, template: str, reverse: bool, tokenizer: PreTrainedTokenizerBase
) -> tuple[str, str, str | None]:
    """(prompt, target, why-not): the text conditioned on and the text scored, per direction."""
    instruction, input_, output = _row_fields(row, index)
    if output == "":
        return "", "", "empty output"
    if not reverse:
        return format_prompt(template, instruction, input_, tokenizer), output, None
    question = f"{instruction}\n{input_}" if input_ else instruction
    if question == "":
        return "", "", "empty instruction"
    prompt = format_prompt(template, REVERSE_INSTRUCTION.format(response=output), "", tokenizer)
    return prompt, question, None


# --------------------------------------------------------------------------------------- reference


def reference_ifd(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, row: Mapping[str, object], max_length: int
) -> IFDScore:
    """Superfiltering's per-sample procedure for one row (template "plain"), with the model's own loss."""
    instruction, input_, output = _row_fields(row, None)
    if output == "":
        return IFDScore(None, None, None, "empty output")
    prompt = f"{instruction}\n{input_}\n" if input_ else f"{instruction}\n"
    whole = prompt + output
    device = next(model.parameters()).device
    prompt_len = len(tokenizer.encode(prompt, truncation=True, max_length=max_length))
    with torch.inference_mode():
        ids_alone = tokenizer.encode(
            output, return_tensors="pt", truncation=True, max_length=max_length - prompt_len + 1
        ).to(device)
        loss_alone = model(ids_alone, labels=ids_alone).loss.item()
        ids_cond = tokenizer.encode(whole, return_tensors="pt", truncation=True, max_length=max_length).to(device)
        start = len(tokenizer.encode(whole[: whole.rfind(output)]))
        labels = ids_cond.clone()
        labels[0, :start] = IGNORE_INDEX
        loss_cond = model(ids_cond, labels=labels).loss.item()
    # The model's mean over zero label tokens is NaN: the answer was cut off by max_length, or it is one token
    # and the tokenizer adds no start token (nothing predicts it alone).
    return _make_score(
        None if math.isnan(loss_cond) else loss_cond,
        None if math.isnan(loss_alone) else loss_alone,
        ids_cond.shape[1] + ids_alone.shape[1],
        one_token=len(tokenizer.encode(output)) < 2,
    )


ONE_TOKEN = "a one-token answer and no start token: nothing predicts it alone"


def _make_score(loss_cond: float | None, loss_alone: float | None, tokens: int, one_token: bool = False) -> IFDScore:
    if loss_alone is None and one_token:
        return IFDScore(loss_cond, loss_alone, None, ONE_TOKEN, tokens)
    if loss_cond is None or loss_alone is None:
        return IFDScore(loss_cond, loss_alone, None, "answer truncated away", tokens)
    if loss_alone == 0.0:
        return IFDScore(loss_cond, loss_alone, None, "zero loss without the instruction", tokens)
    return IFDScore(loss_cond, loss_alone, loss_cond / loss_alone, None, tokens)


# ------------------------------------------------------------------------------------------ tokens


@dataclass
class _Seq:
    row: int
    cond: bool  # True: prompt + target; False: target alone
    ids: list[int]
    first_label: int  # ids[first_label:] are scored, each predicted from the position before it
    one_token: bool = False  # the target, untruncated, is a single token (start token included, if any)

    @property
    def n_labels(self) -> int:
        return len(self.ids) - self.first_label


def _encode_many(
    tokenizer: PreTrainedTokenizerBase, texts: list[str], add_special: list[bool], max_length: int | None
) -> list[list[int]]:
    """`tokenizer.encode(text, ...)` for each text, as two batch calls (fast tokenizers run them natively)."""
    out: list[list[int]] = [[] for _ in texts]
    for flag in (True, False):
        idx = [i for i, f in enumerate(add_special) if f is flag]
        if not idx:
            continue
        kwargs = {"truncation": True, "max_length": max_length} if max_length is not None else {}
        enc = tokenizer([texts[i] for i in idx], add_special_tokens=flag, **kwargs)["input_ids"]
        for i, ids in zip(idx, enc, strict=True):
            out[i] = list(ids)
    return out


def _build_sequences(
    tokenizer: PreTrainedTokenizerBase,
    pairs: list[tuple[int, str, str]],
    template: str,
    max_length: int,
) -> list[_Seq]:
    """Both sequences of every (row, prompt, target), token for token as `reference_ifd` builds them.

    A tokenizer call with truncation equals the untruncated call whenever that one fits, so only
    over-long texts are encoded a second time, one by one, with their own limit.
    """
    bos = tokenizer.bos_token

    # "plain" is Superfiltering's template: the start token is always added, as in the reference. Chat
    # templates already begin with it, so it is added only once there (as `templates.encode_text` does).
    def flag(text: str) -> bool:
        return template == "plain" or not (bos and text.startswith(bos))

    prompts = [p for _, p, _ in pairs]
    targets = [t for _, _, t in pairs]
    wholes = [p + t for _, p, t in pairs]
    prompt_flags = [flag(p) for p in prompts]
    target_flags = [flag(t) for t in targets]
    # whole.rfind(target) == len(prompt) always (a later match could not fit), so the reference's
    # `encode(whole[:whole.rfind(output)])` is `encode(prompt)`.
    prompt_ids = _encode_many(tokenizer, prompts, prompt_flags, None)
    whole_ids = _encode_many(tokenizer, wholes, prompt_flags, max_length)
    target_ids = _encode_many(tokenizer, targets, target_flags, None)
    seqs: list[_Seq] = []
    for k, (row, _, target) in enumerate(pairs):
        start = len(prompt_ids[k])
        prompt_len = start
        if prompt_len > max_length:
            prompt_len = len(_encode_one(tokenizer, prompts[k], prompt_flags[k], max_length))
        limit = max_length - prompt_len + 1
        alone = target_ids[k]
        if len(alone) > limit:
            alone = _encode_one(tokenizer, target, target_flags[k], limit)
        # HF's loss never scores position 0 (nothing predicts it), whatever the label there.
        seqs.append(_Seq(row, True, whole_ids[k], max(start, 1)))
        seqs.append(_Seq(row, False, alone, 1, one_token=len(target_ids[k]) < 2))
    return seqs


def _encode_one(tokenizer: PreTrainedTokenizerBase, text: str, add_special: bool, max_length: int) -> list[int]:
    return list(tokenizer.encode(text, add_special_tokens=add_special, truncation=True, max_length=max_length))


# ----------------------------------------------------------------------------------------- forward


class _Runner:
    """Hidden states of the decoder plus the LM head, or the full logits for models that cannot be split."""

    def __init__(self, model: PreTrainedModel, probe_ids: list[int], device: torch.device) -> None:
        self.model = model
        self.decoder: torch.nn.Module | None = None
        self.head: torch.nn.Module | None = None
        decoder = model.get_decoder() if hasattr(model, "get_decoder") else None
        head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
        if decoder is not None and head is not None and decoder is not model and probe_ids:
            self.decoder, self.head = decoder, head
            # Some heads scale, cap or bias logits outside `lm_head` (Gemma-2 soft-capping, Cohere's
            # logit_scale): check the split against the model's own logits once, else use full logits.
            ids = torch.tensor([probe_ids[:16]], device=device)
            try:
                split = self._split_logits(ids, torch.ones_like(ids)).float()
            except (TypeError, AttributeError, ValueError, NotImplementedError):
                split = None
            full = model(input_ids=ids, use_cache=False).logits.float()
            if split is None or split.shape != full.shape or not torch.allclose(split, full, atol=1e-4, rtol=1e-3):
                self.decoder, self.head = None, None

    @property
    def split(self) -> bool:
        return self.decoder is not None

    def _split_logits(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.head(self._hidden(ids, mask))

    def _hidden(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        out = self.decoder(input_ids=ids, attention_mask=mask, use_cache=False, return_dict=True)
        return out.last_hidden_state

    def losses(
        self, ids: torch.Tensor, mask: torch.Tensor, flat_pos: torch.Tensor, targets: torch.Tensor
    ) -> torch.Tensor:
        """Float32 cross-entropy of `targets`, predicted at the flat (batch * length) positions `flat_pos`."""
        if self.split:
            hidden = self._hidden(ids, mask)
            hidden = hidden.reshape(-1, hidden.shape[-1]).index_select(0, flat_pos)
            vocab = self.head.weight.shape[0] if hasattr(self.head, "weight") else 1 << 17
            chunk = max(1, _HEAD_CHUNK_ELEMENTS // vocab)
            parts = [
                F.cross_entropy(self.head(hidden[i : i + chunk]).float(), targets[i : i + chunk], reduction="none")
                for i in range(0, hidden.shape[0], chunk)
            ]
            return torch.cat(parts)
        logits = self.model(input_ids=ids, attention_mask=mask, use_cache=False).logits
        logits = logits.reshape(-1, logits.shape[-1]).index_select(0, flat_pos)
        return F.cross_entropy(logits.float(), targets, reduction="none")


def score_ifd(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    rows: Sequence[Mapping[str, object]],
    *,
    template: str = "plain",
    max_length: int = 512,
    batch_size: int = 8,
    device: str | torch.device | None = None,
    reverse: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> list[IFDScore]:
    """IFD of every row (rows need `instruction` and `output`, `input` optional), in input order.

    `reverse=True` gives r-IFD, s(Q | reverse prompt with A) / s(Q). `device` None keeps the model where
    it is, else moves it there. `progress(done, total)` is called after each batch, counted in sequences.
    """
    if template not in TEMPLATES:
        raise ValueError(f"IFD scoring: unknown template {template!r}; allowed: {', '.join(TEMPLATES)}")
    if max_length < 2 or batch_size < 1:
        raise ValueError(f"IFD scoring: need max_length >= 2 and batch_size >= 1, got {max_length}, {batch_size}")
    if device is not None:
        model.to(device)
    dev = next(model.parameters()).device
    reasons: dict[int, str] = {}
    pairs: list[tuple[int, str, str]] = []
    for i, row in enumerate(rows):
        prompt, target, why_not = _prompt_and_target(row, i, template, reverse, tokenizer)
        if why_not is not None:
            reasons[i] = why_not
        else:
            pairs.append((i, prompt, target))
    seqs = _build_sequences(tokenizer, pairs, template, max_length) if pairs else []
    work = sorted((s for s in seqs if s.n_labels > 0), key=lambda s: len(s.ids), reverse=True)
    losses: dict[tuple[int, bool], float] = {}
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            runner = _Runner(model, work[-1].ids if work else [], dev)
            # Longest first: a batch that does not fit in memory fails at once, not at the end.
            for b in range(0, len(work), batch_size):
                batch = work[b : b + batch_size]
                for seq, loss in zip(batch, _batch_losses(runner, batch, pad_id, dev), strict=True):
                    losses[(seq.row, seq.cond)] = loss
                if progress is not None:
                    progress(min(b + batch_size, len(work)), len(work))
    finally:
        model.train(was_training)
    tokens: dict[int, int] = {}
    one_token = {s.row for s in seqs if s.one_token}
    for s in seqs:
        tokens[s.row] = tokens.get(s.row, 0) + len(s.ids)
    out: list[IFDScore] = []
    for i in range(len(rows)):
        if i in reasons:
            out.append(IFDScore(None, None, None, reasons[i]))
        else:
            out.append(
                _make_score(losses.get((i, True)), losses.get((i, False)), tokens.get(i, 0), one_token=i in one_token)
            )
    return out


def _batch_losses(runner: _Runner, batch: list[_Seq], pad_id: int, device: torch.device) -> list[float]:
    """Mean label cross-entropy of each sequence of one right-padded batch."""
    width = max(len(s.ids) for s in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    flat_pos: list[int] = []
    targets: list[int] = []
    owner: list[int] = []
    for j, s in enumerate(batch):
        ids[j, : len(s.ids)] = torch.tensor(s.ids)
        mask[j, : len(s.ids)] = 1
        # Token t is predicted by the hidden state at t - 1.
        flat_pos.extend(range(j * width + s.first_label - 1, j * width + len(s.ids) - 1))
        targets.extend(s.ids[s.first_label :])
        owner.extend([j] * s.n_labels)
    ce = runner.losses(
        ids.to(device),
        mask.to(device),
        torch.tensor(flat_pos, device=device),
        torch.tensor(targets, device=device),
    )
    sums = torch.zeros(len(batch), dtype=torch.float32, device=device).index_add_(
        0, torch.tensor(owner, device=device), ce
    )
    counts = torch.tensor([s.n_labels for s in batch], dtype=torch.float32, device=device)
    return (sums / counts).tolist()


# --------------------------------------------------------------------------------------- selection


# -------------------------------------------------------------------------------------------- files


def read_rows(data_path: str | Path) -> list[dict[str, object]]:
    """Rows of a JSONL file; bad JSON or a row without `instruction`/`output` raises, naming the line."""
    path = Path(data_path)
    rows: list[dict[str, object]] = []
    for line_no, row, problem in iter_jsonl(path):
        if problem:
            raise ValueError(f"{path}:{line_no}: {problem}")
        try:
            _row_fields(row, len(rows))  # type: ignore[arg-type]
        except (ValueError, AttributeError, TypeError) as err:
            raise ValueError(f"{path}:{line_no}: {err}") from err
        rows.append(row)  # type: ignore[arg-type]
    return rows


def score_file(
    model_path: str | Path,
    data_path: str | Path,
    out_path: str | Path,
    template: str = "plain",
    max_length: int = 512,
    batch_size: int = 8,
    device: str | None = None,
    reverse: bool = False,
) -> dict[str, float]:
    """Score a JSONL of {instruction, [input], output} rows; write them in order with IFD fields added.

    Each row gains `loss_cond`, `loss_alone`, `ifd` (null when not computable, then with `ifd_reason`); with
    `reverse`, also r-IFD as `rloss_cond`, `rloss_alone`, `rifd` (and `rifd_reason`).
    `model_path` may be an alias or GGUF file (`core.models.resolve_model`); `device` None picks CUDA when
    available. Returns throughput (model load excluded): rows, scored, tokens, seconds, samples_per_s,
    tokens_per_s. The output is written atomically.
    """
    from trainers.tiny import load_student  # the loader pulls in model classes; only the CLI path needs it

    rows = read_rows(data_path)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model, tokenizer = load_student(model_path, device=device)
    t0 = time.perf_counter()
    options = {"template": template, "max_length": max_length, "batch_size": batch_size, "device": device}
    scores = score_ifd(model, tokenizer, rows, **options)  # type: ignore[arg-type]
    back = score_ifd(model, tokenizer, rows, reverse=True, **options) if reverse else [None] * len(rows)  # type: ignore[arg-type]
    seconds = time.perf_counter() - t0
    out_rows = []
    for row, s, b in zip(rows, scores, back, strict=True):
        extra: dict[str, object] = {"loss_cond": s.loss_cond, "loss_alone": s.loss_alone, "ifd": s.ifd}
        if s.ifd is None:
            extra["ifd_reason"] = s.reason
        if b is not None:
            extra.update(rloss_cond=b.loss_cond, rloss_alone=b.loss_alone, rifd=b.ifd)
            if b.ifd is None:
                extra["rifd_reason"] = b.reason
        out_rows.append({**row, **extra})
    write_jsonl(out_path, out_rows)
    tokens = sum(s.tokens for s in scores) + sum(b.tokens for b in back if b is not None)
    return {
        "rows": len(rows),
        "scored": sum(s.ifd is not None for s in scores),
        "tokens": tokens,
        "seconds": seconds,
        "samples_per_s": len(rows) / seconds if seconds > 0 else float("inf"),
        "tokens_per_s": tokens / seconds if seconds > 0 else float("inf"),
    }


class IFDJob(Job):
    """What `python -m trainers.ifd JOB.json RESULT.json` scores (see `score_file`); the result is its summary.

    The loop scores IFD in a child process on GPUs, so the model's accelerator memory is handed back when it exits.
    """

    model: str  # HF folder, hub name, model alias (smollm2-135m-instruct) or .gguf file
    data: str  # JSONL of {instruction, [input], output}
    out: str  # the same rows with the IFD fields
    template: Literal["plain", "alpaca", "chat"] = "plain"
    max_length: int = Field(512, ge=2)
    batch_size: int = Field(8, ge=1)
    device: str | None = None
    reverse: bool = False  # also r-IFD (rifd, rloss_cond, rloss_alone)


def score_job(job: IFDJob) -> dict[str, object]:
    """Score the job's file (the child's work)."""
    return dict(
        score_file(job.model, job.data, job.out, job.template, job.max_length, job.batch_size, job.device, job.reverse)
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry of `python -m trainers.ifd JOB.json RESULT.json` (core/jobs.py)."""
    return child_main(IFDJob, score_job, list(sys.argv[1:] if argv is None else argv), "trainers.ifd")


if __name__ == "__main__":
    raise SystemExit(main())
