"""Plugins by kind: a registry, the base class every plugin extends, and the config slot that validates one.

A plugin is a class with a `name`, a `kind` (one of KINDS), its own pydantic `Config` (every knob of the
technique, with a help text), the capabilities it `needs` from the run (a chat model, the task world's
generator, ...) and the round inputs it `reads` (see `loop/stages.py` for what each input is). Registering
is a decorator; the shipped plugins live in one package per kind under `agents/` and are found by walking
those packages, so adding a plugin is adding a module. A run config names a plugin by `name` and sets its
fields beside it: `{name: frontier, park_after: 30}`, or just `frontier`.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Protocol, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, SerializeAsAny, ValidationError
from pydantic_core import PydanticCustomError

from core.generation import Sampling

# kind -> the package whose modules hold the shipped plugins of that kind
KINDS: dict[str, str] = {
    "plan": "agents.plans",  # who gets how many new items (allocation)
    "writer": "agents.writers",  # turns a plan into candidate questions
    "refiner": "agents.refiners",  # rewrites answered items (answers or instructions)
    "curator": "agents.curators",  # drops answered items with a reason (verification, quality)
    "selector": "agents.selectors",  # drops against the pool, the evaluation sets, the student (dedup, IFD)
    "examiner": "agents.examiners",  # turns graded probes into a weakness profile
}

# What a capability is, and how a user gets it: the text of the error when a plugin needs one the run lacks.
CAPABILITIES: dict[str, str] = {
    "chat": "a chat model (set teacher.kind=llm)",
    "completion": "a local chat model that continues raw text (teacher.kind=llm with teacher.llm.backend "
    "transformers, vllm or auto)",
    "world": "the task world's generator and oracle (task.name=world)",
    "student": "the student's own scores (always there)",
    "trainer": "the student's trainer, to fine-tune a model of the plugin's own (always there)",
    "corpus": "a corpus of unlabelled texts (set synthesis.corpus)",
}


class PluginError(ValueError):
    """A plugin name, config or combination that cannot run; the message says which and what is allowed."""


class PluginConfig(BaseModel):
    """The fields of one plugin; subclasses add theirs. Unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)
    name: str


@dataclass(frozen=True)
class Parts:
    """What the run hands every plugin it builds: the seed, the task, the chat client and the agents' shared
    LLM settings. A part a plugin does not need may be None (it then declares no need of it)."""

    seed: int = 0
    task: Any = None  # the run's task (loop/tasks.py): taxonomy, verifier, extract, difficulty
    client: Any = None  # a chat client (agents/llm/parsing.py `Chat`), where the run has a chat model
    difficulty: int | None = None  # the task's item level, where it has levels
    max_tries: int = 3  # re-asks of a chat request whose reply does not parse
    max_tokens: int = 256  # new tokens per chat reply
    temperature: float = 1.0  # sampling temperature of writing requests
    domain: str = ""  # what the task covers, in words, for prompts that name it
    corpus: tuple[str, ...] = ()  # the run's unlabelled documents (synthesis.corpus), read once
    trainer: Trainer | None = None  # fine-tunes and samples models of a plugin's own (the student's trainer)


class Trainer(Protocol):
    """The student's trainer as a service to plugins that need a model of their own (back-translation's backward
    model): fine-tune one with the run's DeepSpeed trainer and the student's template, then sample from it."""

    def finetune(self, rows: Sequence[dict[str, object]], name: str, start: str, max_steps: int) -> str:
        """Fine-tune `start` ("base": the run's base student; "student": the last round's) on instruction/output
        rows for `max_steps` steps; returns the model's folder (kept in the round's folder under `name`)."""
        ...

    def complete(self, model: str, instructions: Sequence[str], samplings: Sequence[Sampling]) -> list[list[str]]:
        """Each instruction in the student's template, completed by `model` with its sampling (n texts each)."""
        ...


class Inputs:
    """The round inputs one plugin may read: exactly those its class declares in `reads`, computed on first use."""

    def __init__(self, plugin: type[Plugin], providers: Mapping[str, Callable[[], object]]) -> None:
        self.plugin = plugin
        self._providers = providers
        self._values: dict[str, object] = {}

    def __getitem__(self, key: str) -> Any:
        if key not in self.plugin.reads:
            raise PluginError(
                f"{self.plugin.kind} {self.plugin.name!r} reads {key!r} but does not declare it in `reads` "
                f"(declared: {', '.join(self.plugin.reads) or 'nothing'})"
            )
        if key not in self._values:
            if key not in self._providers:
                raise PluginError(f"{self.plugin.kind} {self.plugin.name!r} reads {key!r}, which this stage lacks")
            self._values[key] = self._providers[key]()
        return self._values[key]


class Plugin:
    """Base of every plugin: subclasses set the class attributes; __init__ takes the Config and the Parts."""

    name: ClassVar[str]
    kind: ClassVar[str]
    Config: ClassVar[type[PluginConfig]] = PluginConfig
    needs: ClassVar[frozenset[str]] = frozenset()
    reads: ClassVar[tuple[str, ...]] = ()
    # Where no plugin of this kind is named, the run uses every plugin with a `default_rank` whose needs it
    # meets (lists: all of them, in rank order; single slots: the highest rank).
    default_rank: ClassVar[int | None] = None

    def __init__(self, config: PluginConfig, parts: Parts) -> None:
        self.config = config
        self.parts = parts

    # A plugin with state across rounds (an archive) reads "state" and returns its new state here; the step
    # executor keeps it in the round's folder, so a resume continues from exactly what the round saw.
    def load_state(self, state: dict | None) -> None:
        """Take the state this plugin returned after the previous round (None at first)."""

    def state(self) -> dict | None:
        """The state to keep after this round, or None for a stateless plugin."""
        return None


P = TypeVar("P", bound=type[Plugin])
_REGISTRY: dict[str, dict[str, type[Plugin]]] = {kind: {} for kind in KINDS}
_loaded: set[str] = set()


def register(cls: P) -> P:
    """Class decorator: make `cls` selectable by its name within its kind."""
    if cls.kind not in KINDS:
        raise PluginError(f"plugin {cls.__name__}: unknown kind {cls.kind!r}; kinds: {', '.join(KINDS)}")
    if not issubclass(cls.Config, PluginConfig):
        raise PluginError(f"plugin {cls.__name__}: its Config must extend core.plugins.PluginConfig")
    unknown = set(cls.needs) - set(CAPABILITIES)
    if unknown:
        raise PluginError(f"plugin {cls.__name__}: unknown capabilities {sorted(unknown)}; known: {list(CAPABILITIES)}")
    taken = _REGISTRY[cls.kind].get(cls.name)
    if taken is not None and taken is not cls:
        raise PluginError(f"{cls.kind} {cls.name!r} is registered twice ({taken.__module__} and {cls.__module__})")
    _REGISTRY[cls.kind][cls.name] = cls
    return cls


def _load(kind: str) -> None:
    if kind in _loaded:
        return
    package = importlib.import_module(KINDS[kind])
    for info in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{package.__name__}.{info.name}")
    _loaded.add(kind)


def plugins(kind: str) -> dict[str, type[Plugin]]:
    """Every registered plugin of a kind, by name (the shipped ones are imported on first use)."""
    if kind not in KINDS:
        raise PluginError(f"unknown plugin kind {kind!r}; kinds: {', '.join(KINDS)}")
    _load(kind)
    return dict(_REGISTRY[kind])


def get(kind: str, name: str) -> type[Plugin]:
    """The plugin class of a kind and name; an unknown name lists the allowed ones."""
    found = plugins(kind).get(name)
    if found is None:
        raise PluginError(f"unknown {kind} {name!r}; allowed: {', '.join(sorted(plugins(kind)))}")
    return found


def missing_needs(cls: type[Plugin], capabilities: Iterable[str]) -> list[str]:
    """The capabilities `cls` needs that the run does not have, each as the sentence that says how to get it."""
    have = set(capabilities)
    return [CAPABILITIES[c] for c in sorted(cls.needs) if c not in have]


def defaults(kind: str, capabilities: Iterable[str]) -> list[type[Plugin]]:
    """The plugins of a kind used where the config names none: those with a rank whose needs the run meets."""
    have = set(capabilities)
    ranked = [c for c in plugins(kind).values() if c.default_rank is not None and c.needs <= have]
    return sorted(ranked, key=lambda c: (c.default_rank, c.name))


def build(kind: str, config: PluginConfig, parts: Parts) -> Any:
    """An instance of the plugin a config names."""
    return get(kind, config.name)(config, parts)


def _validate(kind: str) -> Callable[[object], PluginConfig]:
    def check(value: object) -> PluginConfig:
        if isinstance(value, PluginConfig):
            return value
        if isinstance(value, str):
            value = {"name": value}
        if not isinstance(value, dict) or not isinstance(value.get("name"), str):
            allowed = ", ".join(sorted(plugins(kind)))
            raise PydanticCustomError(
                "plugin_type",
                "a {kind} is a name or a mapping with a 'name' field (allowed names: {allowed})",
                {"kind": kind, "allowed": allowed},
            )
        name = value["name"]
        cls = plugins(kind).get(name)
        if cls is None:
            allowed = ", ".join(sorted(plugins(kind)))
            raise PydanticCustomError(
                "plugin_name",
                "unknown {kind} '{name}' (allowed: {allowed})",
                {"kind": kind, "name": name, "allowed": allowed},
            )
        try:
            return cls.Config.model_validate(value)
        except ValidationError as err:
            # Carried in the context so the run config's error message can name each field under this slot.
            errors = err.errors(include_url=False)
            for e in errors:
                if e["type"] == "extra_forbidden":
                    e["allowed"] = ", ".join(cls.Config.model_fields)  # type: ignore[typeddict-unknown-key]
            raise PydanticCustomError(
                "plugin_config", "invalid {kind} '{name}'", {"kind": kind, "name": name, "errors": errors}
            ) from None

    return check


def slot(kind: str) -> Any:
    """The annotation of a config field holding one plugin of `kind` (validated against the registry)."""
    return Annotated[SerializeAsAny[PluginConfig], BeforeValidator(_validate(kind))]
