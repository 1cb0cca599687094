"""IFD scoring: the batched scorer against the per-sample reference, r-IFD, selection, bad input, JSONL."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest
import torch

from agents.tasks.world import generate_items, points_for
from core.ifd import IFDScore, select_by_ifd
from trainers.ifd import (
    ONE_TOKEN,
    REVERSE_INSTRUCTION,
    _build_sequences,
    read_rows,
    reference_ifd,
    score_file,
    score_ifd,
)
from trainers.tiny import build_tiny_student, load_student

MAX_LENGTH = 96
# Alpaca and reverse prompts are long; they get room for the answer.
LONG = 256
TOL = 1e-4


def _train_a_little(model: torch.nn.Module, tokenizer, texts: list[str], steps: int = 10) -> None:
    """A few AdamW steps so the student is not uniform: IFD must then vary from row to row."""
    torch.manual_seed(0)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for step in range(steps):
        batch = texts[(step * 8) % len(texts) :][:8]
        enc = tokenizer(batch, return_tensors="pt", padding=True)
        labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
        loss = model(**enc, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    model.eval()


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models gain nothing from a second thread, and a spinning one stalls on a shared 2-core box."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def student(tmp_path_factory: pytest.TempPathFactory):
    items = generate_items(0, {p: 12 for p in points_for()}, difficulty=2)
    texts = [f"{it['instruction']}\n{it['output']}" for it in items]
    out = build_tiny_student(tmp_path_factory.mktemp("student"), texts)
    model, tokenizer = load_student(out)
    _train_a_little(model, tokenizer, texts)
    model.save_pretrained(out)
    return model, tokenizer, out


@pytest.fixture(scope="module")
def rows() -> list[dict[str, object]]:
    rng = random.Random(1)
    items = generate_items(3, {p: 3 for p in points_for()}, difficulty=3)
    rng.shuffle(items)
    out: list[dict[str, object]] = []
    for k, it in enumerate(items[:40]):
        row: dict[str, object] = {
            "instruction": it["instruction"],
            "output": " ".join([it["output"]] * rng.randint(1, 8)),
        }
        if k % 5 == 0:
            row["input"] = f"Context {k}: answer carefully."
        out.append(row)
    out[6]["output"] = ""  # no score
    out[9]["output"] = " ".join(str(d) for d in range(80))  # the answer is cut at max_length
    out[12]["instruction"] = "Read this: " + "lorem ipsum " * 60  # the prompt alone fills max_length
    return out


@pytest.fixture(scope="module")
def reference(student, rows) -> list[IFDScore]:
    model, tokenizer, _ = student
    return [reference_ifd(model, tokenizer, r, MAX_LENGTH) for r in rows]


def _assert_close(ref: list[IFDScore], got: list[IFDScore], tol: float = TOL) -> None:
    assert len(ref) == len(got)
    for i, (a, b) in enumerate(zip(ref, got, strict=True)):
        assert a.reason == b.reason, f"row {i}: {a} vs {b}"
        assert a.tokens == b.tokens, f"row {i}: token counts differ"
        for name in ("loss_cond", "loss_alone", "ifd"):
            x, y = getattr(a, name), getattr(b, name)
            assert (x is None) == (y is None), f"row {i} {name}: {x} vs {y}"
            if x is not None:
                assert abs(x - y) <= tol, f"row {i} {name}: reference {x} vs batched {y}"


def test_reference_covers_the_edge_cases(reference: list[IFDScore]) -> None:
    assert reference[6].reason == "empty output" and reference[6].ifd is None
    assert reference[9].ifd is not None  # cut, but still scored on what is left
    assert reference[12].reason == "answer truncated away" and reference[12].ifd is None
    values = [s.ifd for s in reference if s.ifd is not None]
    assert len(values) == 38
    assert all(math.isfinite(v) and v > 0 for v in values)
    assert max(values) - min(values) > 0.05, "scores should vary on a trained student"


@pytest.mark.parametrize("batch_size", [1, 7, 32])
def test_batched_scores_match_the_reference(student, rows, reference, batch_size: int) -> None:
    model, tokenizer, _ = student
    _assert_close(reference, score_ifd(model, tokenizer, rows, max_length=MAX_LENGTH, batch_size=batch_size))


def test_full_logits_fallback_matches(student, rows, reference, monkeypatch: pytest.MonkeyPatch) -> None:
    model, tokenizer, _ = student
    # A head that disagrees with the model's own logits must be caught by the probe.
    wrong_head = torch.nn.Linear(model.config.hidden_size, model.config.vocab_size, bias=False)
    monkeypatch.setattr(model, "get_output_embeddings", lambda: wrong_head)
    _assert_close(reference, score_ifd(model, tokenizer, rows, max_length=MAX_LENGTH, batch_size=16))


def test_progress_and_input_order(student, rows) -> None:
    model, tokenizer, _ = student
    calls: list[tuple[int, int]] = []
    scores = score_ifd(
        model,
        tokenizer,
        rows[:5],
        max_length=MAX_LENGTH,
        batch_size=4,
        progress=lambda d, t: calls.append((d, t)),
    )
    assert calls[-1][0] == calls[-1][1] and len(calls) >= 2
    alone = [score_ifd(model, tokenizer, [r], max_length=MAX_LENGTH)[0] for r in rows[:5]]
    _assert_close(alone, scores, tol=1e-5)


@pytest.mark.parametrize("template", ["alpaca", "chat"])
def test_other_templates_do_not_depend_on_batching(student, rows, template: str) -> None:
    model, tokenizer, _ = student
    rows = rows[:20]
    one = score_ifd(model, tokenizer, rows, template=template, max_length=LONG, batch_size=1)
    many = score_ifd(model, tokenizer, rows, template=template, max_length=LONG, batch_size=32)
    _assert_close(one, many, tol=1e-5)
    assert sum(s.ifd is not None for s in many) == 18


def test_chat_template_has_one_start_token(student) -> None:
    _, tokenizer, _ = student
    from trainers.templates import format_prompt

    prompt = format_prompt("chat", "What is 2 + 2?", "", tokenizer)
    cond, alone = _build_sequences(tokenizer, [(0, prompt, "4")], "chat", MAX_LENGTH)
    bos = tokenizer.bos_token_id
    assert cond.ids[0] == bos and cond.ids[1] != bos
    assert alone.ids[0] == bos and tokenizer.decode(cond.ids[cond.first_label :]).strip() == "4"


def test_reverse_ifd_is_reference_on_the_swapped_pair(student, rows) -> None:
    model, tokenizer, _ = student
    rows = rows[:16]
    got = score_ifd(model, tokenizer, rows, max_length=LONG, batch_size=8, reverse=True)
    swapped = []
    for r in rows:
        question = f"{r['instruction']}\n{r['input']}" if r.get("input") else r["instruction"]
        swapped.append({"instruction": REVERSE_INSTRUCTION.format(response=r["output"]), "output": question})
    ref = [reference_ifd(model, tokenizer, r, LONG) for r in swapped]
    ref[6] = IFDScore(None, None, None, "empty output")  # no answer to reflect on
    _assert_close(ref, got)
    scored = [s for s in got if s.ifd is not None]
    assert len(scored) == 14  # rows 6 (empty output) and 12 (the question is cut away)
    for s in scored:
        assert math.isfinite(s.ifd) and s.ifd == pytest.approx(s.loss_cond / s.loss_alone)
        assert s.ifd_ppl == pytest.approx(math.exp(s.loss_cond) / math.exp(s.loss_alone))
    forward = score_ifd(model, tokenizer, rows, max_length=LONG, batch_size=8)
    assert any(abs(a.ifd - b.ifd) > 1e-3 for a, b in zip(forward, got, strict=True) if a.ifd and b.ifd)


def test_select_by_ifd_keeps_the_hardest_aligned_share() -> None:
    scores = [0.5, 0.9, None, 1.2, 0.95, 1.0, float("nan"), 0.7, 0.3, 0.8]
    sel = select_by_ifd(scores, top_share=0.3)  # floor(0.3 * 10) = 3 of all rows
    assert sel.kept == [1, 4, 9]
    assert sel.dropped == {
        0: "below top share",
        2: "no score",
        3: "ifd>=1",
        5: "ifd>=1",
        6: "no score",
        7: "below top share",
        8: "below top share",
    }
    eligible = select_by_ifd(scores, top_share=0.5, share_of="eligible")  # floor(0.5 * 6) = 3
    assert eligible.kept == [1, 4, 9]
    assert select_by_ifd(scores, top_share=1.0, threshold=2.0).kept == [0, 1, 3, 4, 5, 7, 8, 9]
    objs = [
        IFDScore(1.0, 2.0, v, None) if v is not None else IFDScore(None, None, None, "empty output")
        for v in (0.4, None, 0.6)
    ]
    assert select_by_ifd(objs, top_share=0.34).kept == [2]
    with pytest.raises(ValueError, match="top_share"):
        select_by_ifd(scores, top_share=0.0)


def test_bad_rows_name_the_row_and_field(student) -> None:
    model, tokenizer, _ = student
    with pytest.raises(ValueError, match=r"row 1 has no 'output'"):
        score_ifd(model, tokenizer, [{"instruction": "a", "output": "b"}, {"instruction": "c"}])
    with pytest.raises(ValueError, match=r"row 0 has no 'instruction'"):
        score_ifd(model, tokenizer, [{"question": "a", "output": "b"}])
    with pytest.raises(ValueError, match=r"row 0 field 'output' is a int"):
        score_ifd(model, tokenizer, [{"instruction": "a", "output": 3}])
    with pytest.raises(ValueError, match="unknown template"):
        score_ifd(model, tokenizer, [{"instruction": "a", "output": "b"}], template="vicuna")


def test_bad_jsonl_names_file_and_line(tmp_path: Path) -> None:
    bad_json = tmp_path / "bad.jsonl"
    bad_json.write_text('{"instruction": "a", "output": "b"}\n\n{"instruction": oops}\n')
    with pytest.raises(ValueError, match=r"bad\.jsonl:3: not valid JSON"):
        read_rows(bad_json)
    missing = tmp_path / "missing.jsonl"
    missing.write_text('{"instruction": "a", "output": "b"}\n{"instruction": "a"}\n')
    with pytest.raises(ValueError, match=r"missing\.jsonl:2: .*'output'"):
        read_rows(missing)


def test_score_file_writes_rows_in_order(student, rows, reference, tmp_path: Path) -> None:
    _, _, model_dir = student
    data = tmp_path / "in.jsonl"
    data.write_text("".join(json.dumps({**r, "id": i}) + "\n" for i, r in enumerate(rows)))
    out = tmp_path / "sub" / "out.jsonl"
    stats = score_file(model_dir, data, out, "plain", MAX_LENGTH, 16, "cpu")
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert [w["id"] for w in written] == list(range(len(rows)))
    for w, ref in zip(written, reference, strict=True):
        assert set(w) >= {"instruction", "output", "loss_cond", "loss_alone", "ifd"}
        if ref.ifd is None:
            assert w["ifd"] is None and w["ifd_reason"] == ref.reason
        else:
            assert "ifd_reason" not in w and abs(w["ifd"] - ref.ifd) <= TOL
    assert stats["rows"] == len(rows) and stats["scored"] == 38
    assert stats["samples_per_s"] > 0 and stats["tokens_per_s"] > 0
    assert [p.name for p in out.parent.iterdir()] == ["out.jsonl"]


def test_a_one_token_answer_without_a_start_token_is_named_as_such(student) -> None:
    """SmolLM2's and GPT-2's tokenizers add no start token: a one-token answer ("4", "even") has no loss alone, in
    the reference as in the batched scorer, and the reason says so instead of blaming truncation."""
    import copy

    from tokenizers import processors

    model, tokenizer, _ = student
    no_bos = copy.deepcopy(tokenizer)
    no_bos.backend_tokenizer.post_processor = processors.TemplateProcessing(single="$A", special_tokens=[])
    one = no_bos.encode("7")
    assert len(one) == 1, one
    rows = [{"instruction": "What is 3 + 4?", "output": "7"}, {"instruction": "What is 3 + 4?", "output": "7 7"}]
    reference = [reference_ifd(model, no_bos, r, MAX_LENGTH) for r in rows]
    assert reference[0].reason == ONE_TOKEN and reference[0].ifd is None and reference[0].loss_cond is not None
    assert reference[1].ifd is not None
    _assert_close(reference, score_ifd(model, no_bos, rows, max_length=MAX_LENGTH, batch_size=2))
    with_bos = score_ifd(model, tokenizer, rows[:1], max_length=MAX_LENGTH)  # the tiny tokenizer adds <s>
    assert with_bos[0].ifd is not None
