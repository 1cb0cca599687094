"""The shapes of the agents' replies as guides for guided decoding (`teacher.llm.guided`): with it on, a
backend that can (transformers through xgrammar, vLLM, an OpenAI-compatible server) only lets the model
write text of that shape, so a small model's reply parses; the parsers stay as they are (they read both)."""

from __future__ import annotations

from agents.llm.types import Guide

# Lengths are bounded so that a rambling model closes a field instead of running into max_tokens (~4 characters
# a token: 160 + 80 characters fit the demo's 64 new tokens with the JSON around them, mostly).
_QA = {
    "type": "object",
    "properties": {"question": {"type": "string", "maxLength": 160}, "answer": {"type": "string", "maxLength": 80}},
    "required": ["question", "answer"],
    "additionalProperties": False,
}
QA_OBJECT = Guide.schema(_QA)  # LLM2LLM: one {"question", "answer"}


def qa_list(n: int) -> Guide:
    """A JSON list of 1..n {"question", "answer"} objects (the per-point prompt, LLMs-as-Instructors)."""
    return Guide.schema({"type": "array", "items": _QA, "minItems": 1, "maxItems": max(1, n)})


# AutoDetect's search step: {"key_point", "prompt"}.
PROMPT_OBJECT = Guide.schema(
    {
        "type": "object",
        "properties": {
            "key_point": {"type": "string", "maxLength": 80},
            "prompt": {"type": "string", "maxLength": 240},
        },
        "required": ["key_point", "prompt"],
        "additionalProperties": False,
    }
)
# Humpback's rating: a brief reasoning, then "Score: n" on the last line.
SCORE = Guide.regex(r"[^\n]{1,160}\nScore: [1-5]")
# MT-Bench's judge: an explanation, then the rating as [[n]].
RATING = Guide.regex(r"[^\n]{1,160} Rating: \[\[([1-9]|10)\]\]")
# Selective Reflection-Tuning: a short analysis, then the tagged new instruction and its answer / the better answer.
REFLECT_INSTRUCTION = Guide.regex(
    r"[^\[]{1,300}\[New Instruction\] [^\[]{1,240} \[End\]\n\[New Answer\] [^\[]{1,300} \[End\]"
)
REFLECT_RESPONSE = Guide.regex(r"[^\[]{1,300}\[Better Answer\] [^\[]{1,300} \[End\]")
# ReAlign's rewrite: one line of reasoning, then the revised response (which may hold newlines and "####").
REALIGN_REWRITE = Guide.regex(r"Reasoning: [^\n]{1,300}\nRevised response: [^\[]{1,1200}")
