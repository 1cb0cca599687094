from __future__ import annotations

from core import plugins
from core.ifd import IFDScore
from core.plugins import Inputs, Parts


def _select(name: str, items: list[dict], **values: object) -> tuple[list[dict], list[dict]]:
    """One selector as the loop runs it, its declared inputs given as values."""
    options = values.pop("options", {})
    cls = plugins.get("selector", name)
    selector = cls(cls.Config(name=name, **options), Parts())  # type: ignore[arg-type]
    return selector.select(items, Inputs(cls, {k: (lambda v=v: v) for k, v in values.items()}))


POOL = [{"id": "s1", "instruction": "What is 2 + 3?"}]
TEST = {"test": [{"id": "t7", "instruction": "Which is larger, 4 or 9?"}], "probe": []}


def test_dedup_and_decontamination_name_the_match() -> None:
    items = [
        {"id": "a", "instruction": "what is 2 + 3"},  # pool duplicate after normalisation
        {"id": "b", "instruction": "Which is larger, 4 or 9?"},  # restates a test question
        {"id": "c", "instruction": "What is 7 + 1?"},
        {"id": "d", "instruction": "What is 7 + 1?"},  # duplicate within the batch
        {"id": "e", "instruction": "What is 7 - 1?"},  # another question: the operator counts
    ]
    kept, dropped = _select("decontaminate", items, evaluation=TEST)
    kept, more = _select("dedup", kept, pool=POOL)
    assert [k["id"] for k in kept] == ["c", "e"]
    reasons = {d["id"]: (d["drop_reason"], d.get("matched_id")) for d in dropped + more}
    assert reasons == {
        "a": ("dedup: duplicate of a pool or batch question", None),
        "b": ("decontaminate: restates evaluation item t7", "t7"),
        "d": ("dedup: duplicate of a pool or batch question", None),
    }
    assert all(d["kept"] is False for d in dropped + more)


def test_ngram_decontamination_catches_a_restated_test_question_inside_more_text() -> None:
    test = {"test": [{"id": "t1", "instruction": "A train leaves at 3 pm and travels 60 miles per hour for two hours"}]}
    items = [
        {"id": "x", "instruction": "Story time. A train leaves at 3 pm and travels 60 miles per hour for two hours."}
    ]
    kept, _ = _select("decontaminate", items, evaluation=test)
    assert [k["id"] for k in kept] == ["x"]  # not the same question
    kept, dropped = _select("decontaminate", items, evaluation=test, options={"method": "ngram", "ngram": 8})
    assert kept == [] and dropped[0]["drop_reason"].startswith("decontaminate: 8-word run")


def test_ifd_selector_keeps_below_threshold_and_records_scores() -> None:
    items = [{"id": str(i)} for i in range(4)]
    scores = [
        IFDScore(0.5, 1.0, 0.5),
        IFDScore(1.2, 1.0, 1.2),
        IFDScore(None, None, None, "empty output"),
        IFDScore(0.9, 1.0, 0.9),
    ]
    student = lambda items, reverse=False: scores  # noqa: E731
    kept, dropped = _select("ifd", items, student=student)
    assert [k["id"] for k in kept] == ["0", "3"] and kept[0]["ifd"] == 0.5 and kept[0]["kept"] is True
    assert {d["id"]: d["drop_reason"] for d in dropped} == {"1": "ifd: ifd>=1", "2": "ifd: no score (empty output)"}
    kept, _ = _select("ifd", items, student=student, options={"top_share": 0.5})
    assert [k["id"] for k in kept] == ["3"]


def test_ifd_selector_with_reverse_drops_answers_that_do_not_point_back() -> None:
    items = [{"id": str(i)} for i in range(3)]
    forward = [IFDScore(0.5, 1.0, 0.5), IFDScore(0.6, 1.0, 0.6), IFDScore(0.7, 1.0, 0.7)]
    backward = [IFDScore(0.4, 1.0, 0.4), IFDScore(1.3, 1.0, 1.3), IFDScore(None, None, None, "empty output")]
    student = lambda items, reverse=False: backward if reverse else forward  # noqa: E731
    kept, dropped = _select("ifd", items, student=student, options={"reverse": True})
    assert [(k["id"], k["rifd"]) for k in kept] == [("0", 0.4)]
    assert {d["id"]: d["drop_reason"] for d in dropped} == {"1": "ifd: r-IFD>=1", "2": "ifd: no r-IFD score"}
