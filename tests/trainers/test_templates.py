"""Prompt templates: a chat template that writes today's date gets a fixed one, so the prompts a student is
trained on are the prompts it is evaluated on, whatever the day."""

from __future__ import annotations

import time

from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from trainers.templates import CHAT_DATE, format_prompt

# The date logic of Llama 3.2's chat template, as it ships on the hub.
LLAMA32_LIKE = (
    "{{- bos_token }}{%- if not date_string is defined %}{%- if strftime_now is defined %}"
    '{%- set date_string = strftime_now("%d %b %Y") %}{%- else %}{%- set date_string = "26 Jul 2024" %}'
    "{%- endif %}{%- endif %}<|start_header_id|>system<|end_header_id|>\n\nToday Date: {{ date_string }}\n\n"
    "{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n{{ m['content'] }}"
    "<|eot_id|>{% endfor %}{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n"
    "{% endif %}"
)


def _tokenizer(template: str) -> PreTrainedTokenizerFast:
    words = Tokenizer(models.WordLevel({"[UNK]": 0, "<s>": 1}, unk_token="[UNK]"))
    words.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=words, bos_token="<s>", eos_token="<s>")
    tokenizer.chat_template = template
    return tokenizer


def test_a_chat_template_that_writes_todays_date_gets_a_fixed_one() -> None:
    tokenizer = _tokenizer(LLAMA32_LIKE)
    today = time.strftime("%d %b %Y")
    # Left to itself the template writes today's date (what a run crossing midnight would see change).
    own = tokenizer.apply_chat_template([{"role": "user", "content": "q"}], tokenize=False, add_generation_prompt=True)
    assert f"Today Date: {today}" in own
    prompt = format_prompt("chat", "What is 2 + 2?", "", tokenizer)
    assert f"Today Date: {CHAT_DATE}\n" in prompt and (today == CHAT_DATE or today not in prompt)
    assert prompt.endswith("What is 2 + 2?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n")


def test_a_chat_template_without_a_date_is_unchanged() -> None:
    tokenizer = _tokenizer("{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}[assistant] ")
    assert format_prompt("chat", "hi", "ctx", tokenizer) == "[user] hi\n\nctx\n[assistant] "
