"""Secrets never leave the process: a key read from the environment is masked in every message the project
writes or prints (errors, tracebacks, logs), also when a server quotes it back in an error body.

`register(value)` adds a value to mask (the chat backend registers the key it sends); the values of the
well-known secret variables below are masked too, whichever code read them. `redact(text)` masks them all.
"""

from __future__ import annotations

import os

# Read by gaploop or by the libraries it drives (W&B, the Hugging Face hub, OpenAI-compatible clients).
SECRET_ENV = ("OPENAI_API_KEY", "WANDB_API_KEY", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "ANTHROPIC_API_KEY")
MASK = "***"
_MIN_LENGTH = 8  # shorter values ("EMPTY", "1") would mask ordinary words
_registered: set[str] = set()


def register(value: str | None) -> None:
    """Mask `value` from now on in everything `redact` sees (ignored when short or empty)."""
    if value and len(value) >= _MIN_LENGTH:
        _registered.add(value)


def secret_values() -> list[str]:
    """Every value to mask, the longest first (so a key that contains another is masked whole)."""
    values = set(_registered)
    values.update(v for name in SECRET_ENV if len(v := os.environ.get(name, "")) >= _MIN_LENGTH)
    return sorted(values, key=len, reverse=True)


def redact(text: str) -> str:
    """`text` with every secret value replaced by ***."""
    for value in secret_values():
        text = text.replace(value, MASK)
    return text


def without_secrets(env: dict[str, str]) -> dict[str, str]:
    """`env` less the variables that hold a registered value (the chat key): for child processes that train,
    answer or score, which never call a chat server. The well-known variables stay: a child may need HF_TOKEN
    to fetch a gated model, and their values are masked wherever gaploop prints."""
    return {k: v for k, v in env.items() if v not in _registered}
