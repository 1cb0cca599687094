"""What a chat template writes before a user's message, so a chat model can be prompted to write the message
itself (Magpie): derived from the tokenizer's own template, so any chat model works without a table.

The user turn is rendered around a sentinel and the text before the sentinel kept: that prefix holds the
start token, any default system prompt the template injects (SmolLM2 and Qwen2.5 do, and their questions
are complete only with it, `docs/strategies.md`), and the user header. The stops are every special token
the template writes and the assistant's role word, because a model that skips its end-of-turn token goes
on to write the assistant's header.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

SENTINEL = "\x00GAPLOOP-USER-TURN\x00"


@dataclass(frozen=True)
class PreQuery:
    """The raw prompt that makes a chat model write a user turn, and where that turn ends."""

    text: str  # the template up to where the user's message starts
    stop: tuple[str, ...]  # special tokens of the template, then the assistant role word(s)


def pre_query(tokenizer: PreTrainedTokenizerBase, system: str | None = None, role_stop: bool = True) -> PreQuery:
    """The pre-query prompt of the tokenizer's chat template, with `system` as the system prompt if given
    (else whatever the template writes by default), and its stop strings."""
    template = getattr(tokenizer, "chat_template", None)
    if not template:
        raise ValueError("the tokenizer has no chat template, so there is no user turn to derive a pre-query from")
    messages = ([{"role": "system", "content": system}] if system is not None else []) + [
        {"role": "user", "content": SENTINEL}
    ]
    try:
        rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    except Exception as err:  # jinja raises TemplateError or its own exceptions for unsupported roles
        roles = [m["role"] for m in messages]
        raise ValueError(f"the chat template cannot render a chat with roles {roles}: {err}") from err
    if SENTINEL not in rendered:
        raise ValueError("the chat template does not write the user's message verbatim; no pre-query can be cut")
    prefix, suffix = rendered.split(SENTINEL, 1)
    return PreQuery(prefix, template_stops(tokenizer, rendered, suffix, role_stop))


def template_stops(tokenizer: PreTrainedTokenizerBase, rendered: str, suffix: str, role_stop: bool) -> tuple[str, ...]:
    """Special tokens found in a rendered chat (plus EOS), then the assistant's role word from the part the
    template adds after the user's message (`<|im_end|>\\n<|im_start|>assistant\\n` gives "assistant")."""
    specials = sorted(
        {str(t) for t in tokenizer.all_special_tokens if t and str(t) in rendered}
        | ({str(tokenizer.eos_token)} if tokenizer.eos_token else set()),
        key=lambda t: (-len(t), t),
    )
    stops = list(specials)
    if role_stop:
        rest = suffix
        for token in specials:
            rest = rest.replace(token, " ")
        for word in re.findall(r"[A-Za-z]{3,}", rest):
            for form in (word, word.capitalize()):
                if form not in stops:
                    stops.append(form)
    return tuple(stops)
