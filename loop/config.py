"""The one schema for a run: YAML files in `configs/`, `key=value` overrides, errors that name the field.

Every node forbids unknown keys, so a typo fails before any work with the allowed names listed.
The resolved config is saved into the run directory (`config.yaml`) by the run store.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from core import plugins
from core.plugins import slot as plugin_slot
from loop.legacy import migrate
from trainers.training import TrainingConfig

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
DEFAULT_CONFIG = CONFIG_DIR / "demo.yaml"


class ConfigError(ValueError):
    """A config file, override or value is invalid; the message names where and what is allowed."""


class _Node(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class TinyStudentConfig(_Node):
    """Shape of the from-scratch student the embedded default builds (used when student.model is 'tiny')."""

    vocab_size: int = Field(512, ge=64, description="BPE vocabulary trained on the task's text")
    hidden_size: int = Field(128, ge=16)
    num_layers: int = Field(4, ge=1)
    num_heads: int = Field(4, ge=1)
    intermediate_size: int = Field(384, ge=16)
    max_position: int = Field(512, ge=32)

    @model_validator(mode="after")
    def _heads_divide(self) -> TinyStudentConfig:
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size ({self.hidden_size}) must be a multiple of num_heads ({self.num_heads})")
        return self


class StudentConfig(_Node):
    """The model being taught."""

    model: str = Field("tiny", description="'tiny' builds one from scratch; else an HF folder or hub name")
    tiny: TinyStudentConfig = TinyStudentConfig()
    template: Literal["plain", "alpaca", "chat"] = Field(
        "plain", description="prompt template, the same at training, evaluation and IFD scoring"
    )
    max_length: int = Field(128, ge=8, description="tokens per training example (prompt + answer)")
    max_new_tokens: int = Field(16, ge=1, description="generation budget at evaluation")
    inference_backend: Literal["auto", "transformers", "vllm"] = "auto"
    vllm_engine: dict[str, str | int | float | bool] = Field(
        default_factory=dict,
        description="with inference_backend vllm: engine arguments (gpu_memory_utilization, max_model_len, "
        "tensor_parallel_size, ...)",
    )
    inference_process: Literal["auto", "inline", "child"] = Field(
        "auto",
        description="where the student answers and IFD scoring run: child (a process of their own, so accelerator "
        "memory is handed back before training), inline (in the orchestrator: no model reload), auto (child on CUDA)",
    )
    device: str = Field("auto", description="'auto', 'cpu' or 'cuda[:i]'")

    @model_validator(mode="after")
    def _engine_needs_vllm(self) -> StudentConfig:
        if self.vllm_engine and self.inference_backend != "vllm":
            raise ValueError("vllm_engine applies to inference_backend vllm; set student.inference_backend=vllm")
        return self


class LLMConfig(_Node):
    """A chat model behind one backend, used by the LLM agents (Questioner, Teacher, Assessor)."""

    backend: Literal["auto", "transformers", "vllm", "openai"] = Field(
        "transformers",
        description="transformers (local, CPU or GPU), vllm (offline engine), openai (any HTTP API), auto (vllm "
        "where it is installed, else transformers: vLLM's start-up pays for itself past ~60 requests, "
        "docs/benchmarks.md)",
    )
    model: str = Field(
        "smollm2-135m-instruct",
        description="an HF folder, a hub name, a .gguf file, 'smollm2-135m-instruct' (shipped in a wheel, runs on "
        "CPU; docs/models.md), or with backend openai the served model's name",
    )
    base_url: str | None = Field(None, description="openai: the endpoint, e.g. http://127.0.0.1:8000/v1")
    api_key_env: str = Field("OPENAI_API_KEY", description="openai: the environment variable holding the key")
    max_concurrency: int = Field(8, ge=1, description="openai: requests in flight at once")
    timeout: float = Field(60.0, gt=0, description="openai: seconds per request")
    max_retries: int = Field(5, ge=0, description="openai: retries on 429 / 5xx / connection errors")
    engine: dict[str, str | int | float | bool] = Field(
        default_factory=dict,
        description="vllm (and auto, when it picks vllm): engine arguments (gpu_memory_utilization, ...)",
    )
    device: str = Field("auto", description="transformers: 'auto', 'cpu' or 'cuda[:i]'")
    max_tokens: int = Field(256, ge=1, description="new tokens per reply")
    temperature: float = Field(1.0, ge=0, description="Questioner sampling temperature")
    max_tries: int = Field(3, ge=1, description="re-asks when a reply does not parse, then the item is dropped")
    guided: bool = Field(
        False,
        description="guided decoding: replies of a known shape (JSON objects, 'Score: n', '[[n]]') are constrained "
        "to it while decoding (transformers via xgrammar, vLLM's structured outputs, an OpenAI-compatible "
        "server's response_format; regexes need a vLLM server)",
    )
    price_prompt: float | None = Field(None, ge=0, description="USD per 1M prompt tokens (for cost accounting)")
    price_completion: float | None = Field(None, ge=0, description="USD per 1M completion tokens")
    budget_tokens: int | None = Field(None, ge=1, description="stop the loop once the agents spent this many tokens")
    budget_cost: float | None = Field(None, gt=0, description="stop the loop once the agents spent this many USD")

    @model_validator(mode="after")
    def _endpoint(self) -> LLMConfig:
        if self.backend == "openai" and "model" not in self.model_fields_set:
            raise ValueError("backend 'openai' needs the served model's name in model")
        if self.api_key_env and not self.api_key_env.replace("_", "").isalnum():
            raise ValueError(f"api_key_env must be an environment variable name, got {self.api_key_env!r}")
        return self


class TeacherConfig(_Node):
    """Who answers (and, with an LLM strategy, writes) new items, and how they are curated."""

    kind: Literal["world", "llm"] = Field(
        "world", description="'world': the task world's oracle; 'llm': a chat model (teacher.llm)"
    )
    llm: LLMConfig = LLMConfig()
    samples: int = Field(1, ge=1, description="llm: answers per item; >1 keeps the majority answer (self-consistency)")
    min_agreement: float = Field(0.5, gt=0, le=1, description="llm: share of samples the kept answer needs")
    answers: Literal["model", "oracle_first"] = Field(
        "model",
        description="llm: who answers new items; oracle_first: the task world's code answers every question it "
        "can solve, the chat model the rest (the model only writes; measures a writer apart from a weak teacher)",
    )


class DatasetConfig(_Node):
    """A real task read through `datasets` (task.name=dataset): a hub dataset or local files.

    The seed and the probe are drawn with the run's seed from the train split (deduplicated, and with every
    row whose text the test asks removed), so they never share a row with each other or with the test.
    """

    kind: Literal["math", "classification", "open"] = Field(
        ...,
        description="math: GSM8K style, the final number is checked; classification: a fixed label set, the label "
        "is the knowledge point; open: free text, the LLM judge grades",
    )
    source: str = Field(..., description="hub dataset name (e.g. openai/gsm8k) or a local .jsonl/.json/.parquet/.csv")
    config: str | None = Field(None, description="hub dataset config name (e.g. 'main' for openai/gsm8k)")
    revision: str | None = Field(
        None, description="hub revision; 'refs/convert/parquet' reads the hub's parquet copy of a script dataset"
    )
    train_split: str = Field("train", description="split the seed and the probe are drawn from")
    test_source: str | None = Field(
        None, description="the test split's own file when source is a local file (one file is one split)"
    )
    test_split: str = Field("test", description="the held-out split")
    fields: dict[str, str] = Field(
        default_factory=lambda: {"instruction": "question", "output": "answer"},
        description="record field -> source column; instruction is required (output for math and open, label for "
        "classification; knowledge_point optional)",
    )
    instruction_template: str | None = Field(
        None,
        description="Jinja over the source's columns that builds the instruction (e.g. a multiple-choice question "
        "from a context and its options); replaces fields.instruction",
    )
    labels: list[str] | None = Field(None, description="classification: the label names, in the source's index order")
    instruction: str = Field("Classify the text.", description="classification: the task sentence above each text")
    seed_share: float | None = Field(
        None, gt=0, le=1, description="seed size as a share of the train rows (1% default)"
    )
    seed_count: int | None = Field(None, ge=1, description="seed size in rows (instead of seed_share)")
    probe_share: float | None = Field(None, gt=0, le=1, description="probe size as a share of the train rows")
    probe_count: int | None = Field(None, ge=1, description="probe size in rows (the seed's size when neither is set)")
    test_count: int | None = Field(
        None, ge=1, description="evaluate on a fixed sample of this many test rows; all when null"
    )
    cache_dir: str | None = Field(None, description="datasets cache folder (default: the HF cache)")
    taxonomy: Literal["data", "llm"] = Field(
        "data",
        description="data: knowledge points from the data (the labels, a mapped knowledge_point column, else one "
        "node); llm: the LLM Examiner proposes test points for `domain` (or reads taxonomy_file) and assigns every "
        "seed, probe and test item to one (AutoDetect's taxonomy), so accuracy is reported per point",
    )
    taxonomy_file: str | None = Field(None, description="llm taxonomy: a JSON/YAML list of {id, category, description}")
    taxonomy_points: int = Field(8, ge=2, description="llm taxonomy: how many test points the model proposes")
    domain: str | None = Field(None, description="llm taxonomy: the domain, e.g. 'grade-school math word problems'")

    @model_validator(mode="after")
    def _consistent(self) -> DatasetConfig:
        if self.seed_share is not None and self.seed_count is not None:
            raise ValueError("set seed_share or seed_count, not both")
        if self.probe_share is not None and self.probe_count is not None:
            raise ValueError("set probe_share or probe_count, not both")
        if "instruction" not in self.fields and self.instruction_template is None:
            raise ValueError(
                f"fields must map 'instruction' to a source column (or set instruction_template), got {self.fields}"
            )
        needed = "label" if self.kind == "classification" else "output"
        if needed not in self.fields:
            raise ValueError(f"a {self.kind} task needs fields.{needed} (the source column holding it)")
        if self.kind == "classification" and not self.labels:
            raise ValueError("a classification task needs labels (the label names, in index order)")
        if self.taxonomy == "llm" and self.kind == "classification":
            raise ValueError("a classification task's taxonomy is its labels: leave taxonomy 'data'")
        if self.taxonomy == "llm" and not (self.domain or self.taxonomy_file):
            raise ValueError("taxonomy 'llm' needs the domain (what the task covers) or a taxonomy_file")
        if self.taxonomy == "data" and (self.taxonomy_file or self.domain):
            raise ValueError("taxonomy_file and domain are for taxonomy 'llm'")
        local = Path(self.source).suffix.lower() in (".json", ".jsonl", ".parquet", ".csv")
        if local and self.test_source is None:
            raise ValueError(
                f"source {self.source!r} is a local file, which holds one split: set test_source to the test file"
            )
        return self


class TaskConfig(_Node):
    """What is taught and tested."""

    name: Literal["world", "dataset"] = Field(
        "world", description="world: the verifiable task world (agents/tasks/world.py); dataset: task.dataset"
    )
    dataset: DatasetConfig | None = Field(None, description="the real task when name is 'dataset'")
    points: list[str] | None = Field(None, description="world: knowledge point ids to use; all when null")
    seed_per_point: int = Field(40, ge=0, description="seed training items per knowledge point")
    seed_overrides: dict[str, int] = Field(
        default_factory=dict, description="per-point seed counts (a skewed seed leaves gaps)"
    )
    test_per_point: int = Field(50, ge=1, description="held-out test items per knowledge point")
    probe_per_point: int = Field(30, ge=1, description="fresh probe items per knowledge point and round")
    difficulty: int = Field(2, ge=1, le=3, description="level of seed, probe and test items (1 easiest)")


class RoundsConfig(_Node):
    """How many rounds and when to stop early."""

    max_rounds: int = Field(4, ge=0, description="rounds after round 0")
    target_accuracy: float | None = Field(None, ge=0, le=1)
    plateau_rounds: int = Field(2, ge=1, description="stop after this many rounds without gain")
    plateau_delta: float = Field(0.005, ge=0)


class MixPart(_Node):
    """One strategy of a mix: a plan times a writer, and its share of the round's budget."""

    share: float = Field(gt=0, le=1, description="share of synthesis.budget_per_round (the shares sum to 1)")
    plan: plugin_slot("plan") | None = Field(  # type: ignore[valid-type]
        None, description="this part's plan; null: synthesis.plan"
    )
    writer: plugin_slot("writer") | None = Field(  # type: ignore[valid-type]
        None, description="this part's writer; null: synthesis.writer"
    )
    label: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9_.+-]+$",
        description="the name its items carry in `mix` (ids, round table, W&B); null: <plan>+<writer>",
    )


class CorpusConfig(_Node):
    """Unlabelled texts for writers that read them (back-translation writes an instruction for each)."""

    path: str = Field(
        description="a folder of .txt/.md files (one document each), a .txt/.md file (documents separated by a "
        "blank line) or a .jsonl file (one document per row, in `field`); read when the run starts"
    )
    field: str = Field("text", min_length=1, description="the .jsonl field that holds the text")
    min_chars: int = Field(1, ge=1, description="documents shorter than this are left out")
    max_chars: int | None = Field(None, ge=1, description="documents longer than this are left out")

    @field_validator("path")
    @classmethod
    def _absolute(cls, value: str) -> str:
        # Stored absolute: the run may resume from another directory. Read (and named if unusable) when a run
        # starts, before its directory exists, as a dataset's files are: a config names files of other machines.
        return str(Path(value).expanduser().absolute())


class SynthesisConfig(_Node):
    """How a round writes, rewrites and keeps new items: a plan times a writer, then lists of refiners,
    curators and selectors (each a plugin, named by `name` with its own fields beside it; `docs/plugins.md`).
    A slot left null takes the plugins whose needs the run meets (`gaploop plugins` lists them)."""

    budget_per_round: int = Field(300, ge=0, description="new items a round may write")
    max_total: int | None = Field(None, ge=0, description="stop synthesising past this many kept items")
    plan: plugin_slot("plan") | None = Field(  # type: ignore[valid-type]
        None, description="who gets how many items, and why (allocation); null: the default plan"
    )
    writer: plugin_slot("writer") | None = Field(  # type: ignore[valid-type]
        None, description="who writes the questions: the task world's generator or the chat model; null: by need"
    )
    mix: list[MixPart] = Field(
        default_factory=list,
        description="several strategies in one round, each with a share of the budget (e.g. weakness 0.5, "
        "evol_instruct 0.3, magpie 0.2); empty: one strategy, plan x writer",
    )
    refine: list[plugin_slot("refiner")] = Field(  # type: ignore[valid-type]
        default_factory=list, description="rewrite answered items, in order (none by default)"
    )
    curate: list[plugin_slot("curator")] | None = Field(  # type: ignore[valid-type]
        None, description="drop answered items with a reason, in order; null: every default curator the run can use"
    )
    select: list[plugin_slot("selector")] | None = Field(  # type: ignore[valid-type]
        None, description="keep or drop against pool, evaluation sets and student, in order; null: the defaults"
    )
    corpus: CorpusConfig | None = Field(None, description="unlabelled texts for the writers that read them")


class IFDConfig(_Node):
    """How the student scores IFD (and r-IFD) for the selectors that read the student's scores."""

    batch_size: int = Field(32, ge=1, description="rows per forward pass")
    model: str | None = Field(
        None,
        description="score with this model in place of the student (Superfiltering's proxy): an HF folder, a "
        "hub name, an alias such as smollm2-135m-instruct, or a .gguf file; the student's template is used",
    )

    @field_validator("model")
    @classmethod
    def _model_is_there(cls, value: str | None) -> str | None:
        from core.models import ALIASES

        if value is None or value.lower() in ALIASES or Path(value).expanduser().exists():
            return value
        if value.endswith(".gguf") or value.startswith(("/", ".", "~")):
            raise ValueError(f"no model at {value!r} (a folder or .gguf file that does not exist)")
        return value  # a hub name: loaded (from the local cache) when the first round scores


class TrackingConfig(_Node):
    """Weights & Biases; metrics also go to metrics.jsonl in the run directory."""

    wandb_mode: Literal["auto", "online", "offline", "disabled"] = Field(
        "auto", description="auto: online with WANDB_API_KEY set, else offline"
    )
    project: str = "gaploop"
    entity: str | None = None
    tags: list[str] = Field(default_factory=list)


class RunConfig(_Node):
    """A whole run."""

    name: str = Field("demo", pattern=r"^[A-Za-z0-9._-]+$")
    seed: int = 0
    run_dir: str | None = Field(None, description="defaults to <runs_dir>/<name>-<time>")
    runs_dir: str = "runs"
    student: StudentConfig = StudentConfig()
    teacher: TeacherConfig = TeacherConfig()
    task: TaskConfig = TaskConfig()
    rounds: RoundsConfig = RoundsConfig()
    examiner: plugin_slot("examiner") | None = Field(  # type: ignore[valid-type]
        None, description="turns a round's graded probes into a weakness profile; null: the default examiner"
    )
    synthesis: SynthesisConfig = SynthesisConfig()
    ifd: IFDConfig = IFDConfig()
    training: TrainingConfig = TrainingConfig()
    tracking: TrackingConfig = TrackingConfig()

    def capabilities(self) -> set[str]:
        """What this run offers its plugins (core/plugins.py CAPABILITIES)."""
        caps = {"student", "trainer"}
        if self.synthesis.corpus is not None:
            caps.add("corpus")
        if self.task.name == "world":
            caps.add("world")
        if self.teacher.kind == "llm":
            caps.add("chat")
            if self.teacher.llm.backend != "openai":  # a server wraps every prompt in its own chat template
                caps.add("completion")
        return caps

    @model_validator(mode="after")
    def _dataset_task(self) -> RunConfig:
        task = self.task
        if self.teacher.answers == "oracle_first" and (task.name != "world" or self.teacher.kind != "llm"):
            raise ValueError(
                "teacher.answers 'oracle_first' lets the task world's code answer before the chat model: it needs "
                "task.name=world and teacher.kind=llm"
            )
        if task.name == "world":
            if task.dataset is not None:
                raise ValueError("task.dataset is set but task.name is 'world': set task.name=dataset to use it")
            return self
        if task.dataset is None:
            raise ValueError("task.name 'dataset' needs a task.dataset section (kind, source, fields, ...)")
        if task.points is not None:
            raise ValueError("task.points selects task-world points; a dataset's points come from its data")
        if self.rounds.max_rounds > 0 and self.teacher.kind != "llm":
            raise ValueError(
                "a dataset task has no world oracle to write and answer new items: set teacher.kind=llm "
                "(or rounds.max_rounds=0 to train on the seed and evaluate only)"
            )
        if task.dataset.taxonomy == "llm" and self.teacher.kind != "llm":
            raise ValueError("task.dataset.taxonomy 'llm' needs the LLM Examiner: set teacher.kind=llm")
        if task.dataset.kind == "open" and self.teacher.kind != "llm":
            raise ValueError("an open task is graded by the LLM judge: set teacher.kind=llm")
        return self

    @model_validator(mode="after")
    def _plugins_can_run(self) -> RunConfig:
        # Null slots take their defaults here, so config.yaml records exactly which plugins a run used. A run of
        # round 0 only synthesises nothing: its slots are filled where they can be, and not checked.
        caps, syn, synthesising = self.capabilities(), self.synthesis, self.rounds.max_rounds > 0
        for node, where, kind in ((self, "examiner", "examiner"), (syn, "plan", "plan"), (syn, "writer", "writer")):
            if getattr(node, where) is None:
                label = where if node is self else f"synthesis.{where}"
                object.__setattr__(node, where, _default_one(kind, caps, label, required=synthesising))
        for where, kind in (("curate", "curator"), ("select", "selector")):
            if getattr(syn, where) is None:
                object.__setattr__(syn, where, [cls.Config(name=cls.name) for cls in plugins.defaults(kind, caps)])
        if not synthesising:
            return self
        named = [("examiner", "examiner", self.examiner), ("synthesis.plan", "plan", syn.plan)]
        named += [("synthesis.writer", "writer", syn.writer)]
        named += _check_mix(syn)
        for field_name, kind in (("refine", "refiner"), ("curate", "curator"), ("select", "selector")):
            named += [(f"synthesis.{field_name}[{i}]", kind, c) for i, c in enumerate(getattr(syn, field_name))]
        for where, kind, config in named:
            missing = plugins.missing_needs(plugins.get(kind, config.name), caps)
            if missing:
                raise ValueError(f"{where} {config.name!r} needs {' and '.join(missing)}")
        return self


def _check_mix(syn: SynthesisConfig) -> list[tuple[str, str, plugins.PluginConfig]]:
    """Fill each mix part's plan, writer and label; the shares must sum to 1, labels and stateful plugins be
    unique (a plugin's state is kept under its name). The parts' plugins, for the needs check."""
    if not syn.mix:
        return []
    total = sum(p.share for p in syn.mix)
    if abs(total - 1.0) > 1e-6:
        shares = ", ".join(f"{p.share:g}" for p in syn.mix)
        raise ValueError(f"synthesis.mix: the shares ({shares}) sum to {total:g}, not 1")
    out: list[tuple[str, str, plugins.PluginConfig]] = []
    labels: dict[str, int] = {}
    stateful: dict[tuple[str, str], int] = {}
    for i, part in enumerate(syn.mix):
        if part.plan is None:
            object.__setattr__(part, "plan", syn.plan.model_copy())  # type: ignore[union-attr]
        if part.writer is None:
            object.__setattr__(part, "writer", syn.writer.model_copy())  # type: ignore[union-attr]
        if part.label is None:
            object.__setattr__(part, "label", f"{part.plan.name}+{part.writer.name}")  # type: ignore[union-attr]
        if part.label in labels:
            raise ValueError(
                f"synthesis.mix[{i}]: label {part.label!r} is taken by synthesis.mix[{labels[part.label]}]; "
                "give one of them a label"
            )
        labels[str(part.label)] = i
        for kind, config in (("plan", part.plan), ("writer", part.writer)):
            out.append((f"synthesis.mix[{i}].{kind}", kind, config))  # type: ignore[arg-type]
            if "state" in plugins.get(kind, config.name).reads:  # type: ignore[union-attr]
                key = (kind, config.name)  # type: ignore[union-attr]
                if key in stateful:
                    raise ValueError(
                        f"synthesis.mix[{i}].{kind}: {config.name!r} keeps state across rounds and is already "  # type: ignore[union-attr]
                        f"in synthesis.mix[{stateful[key]}]; a stateful {kind} can be in a mix once"
                    )
                stateful[key] = i
    return out


def _default_one(kind: str, caps: set[str], where: str, required: bool = True) -> plugins.PluginConfig | None:
    """The highest-ranked plugin of a kind that this run can use (its config with every default)."""
    found = plugins.defaults(kind, caps)
    if not found:
        if not required:
            return None
        raise ValueError(f"{where}: no {kind} can run here; allowed names: {', '.join(sorted(plugins.plugins(kind)))}")
    return found[-1].Config(name=found[-1].name)


def _errors(err: ValidationError) -> list[tuple[str, dict]]:
    """(where, error) for every error, a plugin's own field errors spelled out under its slot."""
    out = []
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"]) or "<top level>"
        if e["type"] == "plugin_config":
            out += [(f"{where}.{'.'.join(str(p) for p in inner['loc'])}", inner) for inner in e["ctx"]["errors"]]
        else:
            out.append((where, e))
    return out


def _format_validation(err: ValidationError, source: str) -> str:
    lines = [f"invalid config ({source}):"]
    for where, e in _errors(err):
        if e["type"] == "extra_forbidden":
            lines.append(f"  {where}: unknown field (allowed: {e.get('allowed') or _allowed_at(e['loc'][:-1])})")
            continue
        if where == "<top level>" and e["type"] == "value_error":  # a rule across sections names its own fields
            lines.append(f"  {str(e['msg']).removeprefix('Value error, ')}")
            continue
        value = e.get("input")
        shown = repr(value) if not isinstance(value, dict) else "{...}"
        lines.append(f"  {where} = {shown}: {e['msg']}")
    return "\n".join(lines)


def _allowed_at(loc: tuple[object, ...]) -> str:
    model: type[BaseModel] = RunConfig
    for part in loc:
        field = model.model_fields.get(str(part))
        ann = getattr(field, "annotation", None) if field else None
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            return "?"
        model = ann
    return ", ".join(model.model_fields)


def parse_override(text: str) -> tuple[list[str], object]:
    """`a.b.c=value` -> (['a','b','c'], typed value); the value is read as YAML (1, 0.5, true, null, [x])."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} is not key=value (e.g. training.lr=1e-3)")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not p for p in key.split(".")):
        raise ConfigError(f"override {text!r} has an empty key part")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as err:
        raise ConfigError(f"override {text!r}: the value is not valid YAML ({err})") from err
    return key.split("."), value


def apply_overrides(data: dict[str, object], overrides: list[str]) -> dict[str, object]:
    """Set each dotted key in a nested dict (validation happens afterwards, on the whole config)."""
    for text in overrides:
        path, value = parse_override(text)
        node: dict[str, object] = data
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if isinstance(child, str) and part in _PLUGIN_FIELDS:  # a plugin named alone: now set one of its fields
                child = node[part] = {"name": child}
            if not isinstance(child, dict):
                raise ConfigError(f"override {text!r}: {part!r} is a value, not a section")
            node = child
        node[path[-1]] = value
    return data


_PLUGIN_FIELDS = {"plan", "writer", "examiner"}


def read_yaml(path: Path) -> dict[str, object]:
    """A YAML mapping from a file, with the file and line in any parse error."""
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise ConfigError(f"{where}: not valid YAML: {err.problem}") from err
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from err
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of fields, got {type(data).__name__}")
    return data


def load_config(path: str | os.PathLike[str] | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Read a YAML config (default `configs/demo.yaml`), apply `key=value` overrides, validate."""
    file = Path(path) if path is not None else DEFAULT_CONFIG
    data = apply_overrides(read_yaml(file), list(overrides or []))
    source = str(file) + (f" with overrides {' '.join(overrides)}" if overrides else "")
    return config_from_dict(data, source)


def config_from_dict(data: dict[str, object], source: str) -> RunConfig:
    """Validate an already-parsed mapping (a config file, or a run directory's saved config.yaml); keys from
    before the plugin redesign are mapped onto the new ones with a warning (loop/legacy.py)."""
    try:
        migrate(data, source)
        return RunConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_validation(err, source)) from None
    except ValueError as err:
        raise ConfigError(f"invalid config ({source}): {err}") from None


def dump_config(cfg: RunConfig) -> str:
    """The resolved config as YAML, every field written out."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
