"""Prompt templates: every prompt is a Jinja2 file in `agents/llm/prompts/`, rendered by name.

Templates are read through importlib.resources so they work from an installed wheel too; undefined
variables are errors (StrictUndefined), so a prompt never silently renders with a hole in it.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

import jinja2

_PACKAGE = "agents.llm"
_FOLDER = "prompts"


class PromptError(LookupError):
    """A template that does not exist, or a variable it needs that was not given."""


def _source(name: str) -> str:
    path = resources.files(_PACKAGE).joinpath(_FOLDER, f"{name}.j2")
    if not path.is_file():
        raise PromptError(f"no prompt template {name!r}; known: {', '.join(template_names())}")
    return path.read_text(encoding="utf-8")


@cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FunctionLoader(_source),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,  # plain text for a model, not HTML
    )


def template_names() -> list[str]:
    """Names of the packaged templates (file names without `.j2`)."""
    folder = resources.files(_PACKAGE).joinpath(_FOLDER)
    return sorted(p.name[: -len(".j2")] for p in folder.iterdir() if p.name.endswith(".j2"))


def render(name: str, /, **variables: object) -> str:
    """The template `name` rendered with `variables`; a missing template or variable raises PromptError."""
    template = _environment().get_template(name)
    try:
        return template.render(**variables).strip()
    except jinja2.UndefinedError as err:
        raise PromptError(f"prompt template {name!r}: {err.message} (given: {', '.join(sorted(variables))})") from err
