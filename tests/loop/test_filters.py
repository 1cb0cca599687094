from __future__ import annotations

from loop.filters import apply_ifd, dedup_and_decontaminate
from trainers.ifd import IFDScore


def test_dedup_and_decontamination_name_the_match() -> None:
    pool = [{"id": "s1", "instruction": "What is 2 + 3?"}]
    test = [{"id": "t7", "instruction": "Which is larger, 4 or 9?"}]
    items = [
        {"id": "a", "instruction": "what is 2 + 3"},  # pool duplicate after normalisation
        {"id": "b", "instruction": "Which is larger, 4 or 9?"},  # restates a test question
        {"id": "c", "instruction": "What is 7 + 1?"},
        {"id": "d", "instruction": "What is 7 + 1?"},  # duplicate within the batch
    ]
    kept, dropped = dedup_and_decontaminate(items, pool, test)
    assert [k["id"] for k in kept] == ["c"]
    reasons = {d["id"]: (d["drop_reason"], d.get("matched_id")) for d in dropped}
    assert reasons == {"a": ("duplicate", None), "b": ("contaminated", "t7"), "d": ("duplicate", None)}


def test_ifd_filter_keeps_below_threshold_and_records_scores() -> None:
    items = [{"id": str(i)} for i in range(4)]
    scores = [
        IFDScore(0.5, 1.0, 0.5),
        IFDScore(1.2, 1.0, 1.2),
        IFDScore(None, None, None, "empty output"),
        IFDScore(0.9, 1.0, 0.9),
    ]
    kept, dropped = apply_ifd(items, scores, threshold=1.0, top_share=1.0)
    assert [k["id"] for k in kept] == ["0", "3"] and kept[0]["ifd"] == 0.5
    assert {d["id"]: d["drop_reason"] for d in dropped} == {"1": "ifd: ifd>=1", "2": "ifd: no score (empty output)"}
    kept, _ = apply_ifd(items, scores, threshold=1.0, top_share=0.5)
    assert [k["id"] for k in kept] == ["3"]


def test_dedup_off_keeps_repeats_but_never_a_test_question() -> None:
    pool = [{"id": "s1", "instruction": "What is 2 + 3?"}]
    test = [{"id": "t7", "instruction": "Which is larger, 4 or 9?"}]
    items = [
        {"id": "a", "instruction": "What is 2 + 3?"},
        {"id": "b", "instruction": "which is larger, 4 or 9"},
        {"id": "c", "instruction": "What is 2 + 3?"},
    ]
    kept, dropped = dedup_and_decontaminate(items, pool, test, dedup=False)
    assert [k["id"] for k in kept] == ["a", "c"]
    assert [(d["id"], d["drop_reason"], d["matched_id"]) for d in dropped] == [("b", "contaminated", "t7")]
