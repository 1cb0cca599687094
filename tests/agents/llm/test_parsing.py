from __future__ import annotations

import pytest

from agents.llm.parsing import (
    ParseError,
    ask_parsed,
    parse_bracketed,
    parse_json,
    parse_json_list,
    parse_rating,
    parse_score,
    retry_request,
)
from agents.llm.prompts import PromptError, render, template_names
from agents.llm.scripted import ScriptedBackend
from agents.llm.types import ChatRequest, Sampling


def test_parse_json_fenced_bare_and_prose() -> None:
    fenced = 'Sure! Here it is:\n```json\n{"question": "2+2?", "answer": "4"}\n```\nHope this helps.'
    assert parse_json(fenced, required=("question",)) == {"question": "2+2?", "answer": "4"}
    assert parse_json('{"a": 1}') == {"a": 1}
    assert parse_json('The result is {"a": 1} and that is all {not json}') == {"a": 1}
    assert parse_json('```\n{"a": [1, 2,],}\n```') == {"a": [1, 2]}  # trailing commas repaired
    # A raw control character inside a string (a tab; a stray byte xgrammar let through) keeps the object.
    assert parse_json('{"q": "a\tb", "answer": "6 f\x151"}') == {"q": "a\tb", "answer": "6 f\x151"}


def test_parse_json_nested_braces_in_strings_and_required_keys() -> None:
    text = 'noise {"question": "What is {x} in \\"a}b\\"?", "answer": "{}"} tail }'
    assert parse_json(text, required=("question", "answer"))["question"] == 'What is {x} in "a}b"?'
    # The first object lacks a required key; the next one that has it wins.
    assert parse_json('{"note": 1} then {"question": "q", "answer": "a"}', required=("answer",))["answer"] == "a"
    # A wrapped object is found inside its wrapper (AutoDetect's {"test_case1": {...}} replies).
    wrapped = '{"test_case1": {"key_point": "k", "prompt": "p"}}'
    assert parse_json(wrapped, required=("prompt",)) == {"key_point": "k", "prompt": "p"}
    assert parse_json(wrapped) == {"test_case1": {"key_point": "k", "prompt": "p"}}  # outermost first
    # An object nested in a broken outer one is still found.
    assert parse_json('{"outer": {"question": "q"}, oops', required=("question",)) == {"question": "q"}


def test_parse_json_garbage_raises_with_excerpt() -> None:
    with pytest.raises(ParseError) as err:
        parse_json("I cannot help with that { really", required=("question",))
    assert err.value.excerpt == "I cannot help with that { really"
    assert "question" in str(err.value)
    with pytest.raises(ParseError):
        parse_json('["a list", "not an object"]')
    long = "x" * 1000
    with pytest.raises(ParseError) as err:
        parse_json(long)
    assert len(err.value.excerpt) == 160 and err.value.excerpt.endswith("...")


def test_parse_json_list_forms() -> None:
    rows = parse_json_list(
        'Here: [{"question": "a", "answer": "1"}, {"question": "b", "answer": "2"}, {"x": 0}]', ("question",)
    )
    assert [r["question"] for r in rows] == ["a", "b"]
    assert parse_json_list('{"questions": [{"question": "c", "answer": "3"}]}', ("question",)) == [
        {"question": "c", "answer": "3"}
    ]
    assert parse_json_list('{"question": "d", "answer": "4"}', ("question",)) == [{"question": "d", "answer": "4"}]
    assert parse_json_list('There are [2] items: [{"question": "e"}]', ("question",)) == [{"question": "e"}]
    with pytest.raises(ParseError):
        parse_json_list("[1, 2, 3]", ("question",))


def test_bracketed_rating_and_score() -> None:
    assert parse_bracketed("I think [[Yes]]") == "Yes"
    assert parse_bracketed("[[No]] because... but maybe [[ Stop ]]") == "Stop"
    with pytest.raises(ParseError):
        parse_bracketed("Yes")
    assert parse_rating("The answer is right. Rating: [[8]]") == 8.0
    assert parse_rating("Compared with [[rating]] format: [[7.5]] then [[42]]") == 7.5  # 42 is out of range
    assert parse_rating("Rating: [3]") == 3.0
    with pytest.raises(ParseError):
        parse_rating("Rating: [[rating]]")
    assert parse_score("The answer is complete.\nScore: 5") == 5.0
    assert parse_score("**Score:** 4/5") == 4.0
    assert parse_score("A score of 3 seems low; Score: 2\nFinal Score: 4") == 4.0
    with pytest.raises(ParseError):
        parse_score("Score: <rating>\nScore: 9")  # 9 is off the 5-point scale


def test_a_broken_object_with_well_formed_fields_is_salvaged() -> None:
    # What SmolLM2-135M wrote: the fields, then no closing brace (or more text where one belongs).
    broken = '{"question": "Is 7 odd or even?", "answer": "98"?'
    assert parse_json(broken, required=("question", "answer")) == {"question": "Is 7 odd or even?", "answer": "98"}
    escaped = '{"question": "Say \\"hi\\"", "answer": "hi" "cookies_"}'
    assert parse_json(escaped, required=("question", "answer"))["question"] == 'Say "hi"'
    for hopeless in (
        '{"question": "What is 2 + 3?", "answer": ...Once',
        '{"question": 5, "answer": "5"',
        '"question": "a", "answer": "b"',
    ):
        with pytest.raises(ParseError):
            parse_json(hopeless, required=("question", "answer"))


def test_retry_request_changes_seed_and_temperature() -> None:
    req = ChatRequest([{"role": "user", "content": "hi"}], Sampling(temperature=0.0), "judge")
    assert retry_request(req, 0) is req
    r1, r2 = retry_request(req, 1), retry_request(req, 2)
    assert (r1.sampling.seed, r1.sampling.temperature, r1.agent, r1.attempt) == (1, 0.7, "judge", 1)
    assert r2.sampling.seed == 2 and r2.messages == req.messages
    seeded = ChatRequest(req.messages, Sampling(temperature=1.0, seed=10))
    assert retry_request(seeded, 1).sampling == Sampling(temperature=1.0, seed=11)


def test_ask_parsed_retries_only_failures_and_is_bounded() -> None:
    backend = ScriptedBackend([("good", "Rating: [[6]]"), ("bad", "no idea")])
    reqs = [ChatRequest([{"role": "user", "content": c}]) for c in ("good one", "bad one")]
    good, bad = ask_parsed(backend, reqs, parse_rating, tries=3)
    assert (good.value, good.attempts, bad.value, bad.attempts) == (6.0, 1, None, 3)
    assert bad.error is not None and "no idea" in bad.error
    assert len(backend.calls) == 4  # both once, then the bad one twice more
    assert [c.sampling.seed for c in backend.calls] == [None, None, 1, 2]


def test_prompts_render_and_fail_loudly() -> None:
    assert {"llm2llm_user", "judge_reference", "quality", "autodetect_propose"} <= set(template_names())
    text = render("judge_reference", question="2+2?", reference="4", answer="5")
    assert "[[rating]]" in text and "2+2?" in text and "Reference Answer]\n4\n" in text
    with pytest.raises(PromptError, match="'llm2llm_user'.*'prediction' is undefined"):
        render("llm2llm_user", question="q", answer="a")
    with pytest.raises(PromptError, match="no prompt template 'nope'"):
        render("nope")
