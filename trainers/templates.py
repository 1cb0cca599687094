"""Prompt templates, applied the same way at training, at evaluation and when scoring IFD.

LLM2LLM's release trained and evaluated with different prompts; here one function builds the
prompt for every phase, and `encode_pair` tokenises prompt and answer separately so the prompt
tokens a student is trained on are exactly the ones it sees at inference.
"""

from __future__ import annotations

from typing import Literal

from transformers import PreTrainedTokenizerBase

TemplateName = Literal["plain", "alpaca", "chat"]
TEMPLATES: tuple[str, ...] = ("plain", "alpaca", "chat")
# Llama 3.2's chat template writes "Today Date: <today>" into its system header unless `date_string` is
# given: a run that crosses midnight would then evaluate on other prompts than it trained on. Templates
# without the variable ignore it. The value is the template's own fallback.
CHAT_DATE = "26 Jul 2024"

ALPACA_WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
)
ALPACA_NO_INPUT = (
    "Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Response:\n"
)


def format_prompt(
    template: str, instruction: str, input: str = "", tokenizer: PreTrainedTokenizerBase | None = None
) -> str:
    """The prompt text for one item; the answer follows it directly."""
    if template == "plain":
        # Superfiltering's `code_ifd` template: "{instruction}\n" or "{instruction}\n{input}\n".
        return f"{instruction}\n{input}\n" if input else f"{instruction}\n"
    if template == "alpaca":
        if input:
            return ALPACA_WITH_INPUT.format(instruction=instruction, input=input)
        return ALPACA_NO_INPUT.format(instruction=instruction)
    if template == "chat":
        if tokenizer is None or not getattr(tokenizer, "chat_template", None):
            raise ValueError(
                "template 'chat' needs a tokenizer with a chat template "
                "(tokenizer_config.json has no 'chat_template'); use template 'plain' or 'alpaca'"
            )
        content = f"{instruction}\n\n{input}" if input else instruction
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": content}], tokenize=False, add_generation_prompt=True, date_string=CHAT_DATE
        )
    raise ValueError(f"unknown template {template!r}; allowed: {', '.join(TEMPLATES)}")


def encode_text(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    """Token ids of a prompt, with the start token added once (chat templates may already carry it)."""
    bos = tokenizer.bos_token
    already = bool(bos) and text.startswith(bos)
    return list(tokenizer(text, add_special_tokens=not already)["input_ids"])


def encode_pair(
    tokenizer: PreTrainedTokenizerBase, prompt: str, answer: str, max_length: int | None = None
) -> tuple[list[int], int]:
    """(ids, n_prompt): prompt ids, then answer ids and the end token; loss goes on ids[n_prompt:].

    Truncation keeps the whole prompt when it can and cuts the answer; a prompt longer than
    `max_length` is cut from the left so the answer's start stays in view.
    """
    p = encode_text(tokenizer, prompt)
    a = list(tokenizer(answer, add_special_tokens=False)["input_ids"])
    if tokenizer.eos_token_id is not None:
        a.append(tokenizer.eos_token_id)
    if max_length is not None and len(p) + len(a) > max_length:
        if len(p) >= max_length:
            p = p[-(max_length // 2) :]
        a = a[: max_length - len(p)]
    return p + a, len(p)
