"""Drop reasons counted by kind, and the round table that shows them."""

from __future__ import annotations

import io

import pytest

from core.records import drop_reason_key


@pytest.mark.parametrize(
    ("reason", "key"),
    [
        ("magpie: too similar: ROUGE-L 1.00 > 0.95 to 'What is 9 * 1?'", "magpie: too similar: ROUGE-L n > n"),
        ("questioner: magpie: kept 0 of 4 after 2 tries", "questioner: magpie: kept n of n after n tries"),
        ("evol_instruct: deepening: template leakage ('given prompt')", "evol_instruct: deepening: template leakage"),
        ("questioner: unparsable: no JSON object; last: 'x'", "questioner: unparsable: no JSON object"),
        ("verify: teacher answer disagrees with the reference", "verify: teacher answer disagrees with the reference"),
    ],
)  # fmt: skip
def test_a_drop_reason_loses_its_particulars_and_keeps_its_kind(reason: str, key: str) -> None:
    assert drop_reason_key({"drop_reason": reason}) == key


def test_the_round_table_lists_the_commonest_drop_reasons(monkeypatch: pytest.MonkeyPatch) -> None:
    from rich.console import Console

    import loop.report as report

    out = io.StringIO()
    monkeypatch.setattr(report, "console", Console(file=out, width=200))
    reasons = {f"questioner: magpie: reason {chr(97 + i)}": 20 - i for i in range(10)}
    m = {"test/accuracy": 0.5, "synth/candidates": 155, "synth/kept": 0, "synth/dropped": 155}
    report.print_round_table(report.Round(1, m, {}, reasons), report.Round(0, {"test/accuracy": 0.4}))
    text = out.getvalue()
    assert "questioner: magpie: reason a" in text and "20" in text and "questioner: magpie: reason h" in text
    assert "reason i" not in text and "2 other reasons" in text  # 12 + 11 items summed on one line
