"""Config keys from before the plugin redesign, mapped onto the new ones with a deprecation warning.

Old YAML files, `key=value` overrides and every run directory's saved config.yaml still load. The one
place in loop/ that knows plugin names: the old keys named strategies and filters, and each maps to the
plugin that now does that job. Removal of these mappings will be announced in the changelog first.
"""

from __future__ import annotations

import warnings
from collections.abc import MutableMapping

Node = MutableMapping[str, object]

# synthesis.<old knob> -> (the plan that reads it, its field there)
_PLAN_KNOBS = {
    "contrast": ("instructors", "contrast"),
    "curriculum": ("frontier", "curriculum"),
    "explore": ("frontier", "explore"),
    "park_after": ("frontier", "park_after"),
}
# Old strategies a chat model wrote when teacher.kind was llm (else the task world's generator wrote).
_CHAT_WRITTEN = {"llm2llm", "autodetect", "instructors"}
_ALWAYS_CHAT = {"autodetect", "instructors"}


def migrate(data: Node, source: str) -> list[str]:
    """Rewrite old keys in `data` (in place) onto the new ones; returns one line per key moved."""
    moved: list[str] = []
    if not isinstance(data.get("synthesis"), MutableMapping):
        data.setdefault("synthesis", {})  # a wrong type is left for validation to name
    syn = _section(data, "synthesis")
    teacher = _section(data, "teacher")
    llm_teacher = teacher.get("kind") == "llm"
    if "strategy" in syn:
        strategy = str(syn.pop("strategy"))
        plan: dict[str, object] = {"name": strategy}
        for knob, (owner, field) in _PLAN_KNOBS.items():
            if knob in syn:
                value = syn.pop(knob)
                if owner == strategy:
                    plan[field] = value
        chat = strategy in _ALWAYS_CHAT or (llm_teacher and strategy in _CHAT_WRITTEN)
        syn["plan"], syn["writer"] = plan, "chat" if chat else "generator"
        moved.append(f"synthesis.strategy={strategy} -> synthesis.plan={plan}, synthesis.writer={syn['writer']}")
    for knob in [k for k in _PLAN_KNOBS if k in syn]:
        moved.append(f"synthesis.{knob}: dropped (it belongs to a plan: set synthesis.plan.{_PLAN_KNOBS[knob][1]})")
        syn.pop(knob)
    if isinstance(syn.get("refine"), bool):
        refine = syn.pop("refine")
        examiner = data.setdefault("examiner", {"name": "failure_rates"})
        if isinstance(examiner, MutableMapping):
            examiner["refine"] = refine
        moved.append(f"synthesis.refine={refine} -> examiner.refine={refine}")
    if "curate" in teacher or "min_quality" in teacher:
        rate = bool(teacher.pop("curate", True)) and llm_teacher
        min_quality = teacher.pop("min_quality", 4)
        syn["curate"] = ["verify", *([{"name": "quality", "min_quality": min_quality}] if rate else [])]
        moved.append(f"teacher.curate / teacher.min_quality -> synthesis.curate={syn['curate']}")
    moved += _filters(data, syn)
    moved += _tiny_teacher(teacher)
    for line in moved:
        warnings.warn(f"{source}: deprecated config key: {line}", FutureWarning, stacklevel=3)
    return moved


def _filters(data: Node, syn: Node) -> list[str]:
    filters = data.pop("filters", None)
    ifd = _section(data, "ifd")
    old_ifd = {k: ifd.pop(k) for k in ("enabled", "threshold", "top_share", "reverse") if k in ifd}
    if filters is None and not old_ifd:
        return []
    f: Node = filters if isinstance(filters, MutableMapping) else {}
    if f.pop("skip_malformed", False):
        raise ValueError(
            "filters.skip_malformed was never read by the loop and is gone: remove it (data rows are checked "
            "when they are read, and a malformed row is an error naming its file and line)"
        )
    decontaminate: dict[str, object] = {"name": "decontaminate", "method": f.pop("decontamination", "exact")}
    decontaminate |= {k: f.pop(k) for k in ("ngram", "near_copy") if k in f}
    select: list[object] = [decontaminate, *(["dedup"] if f.pop("dedup", True) else [])]
    if old_ifd.pop("enabled", True):
        select.append({"name": "ifd", **old_ifd})
    if f:
        raise ValueError(f"filters: unknown field(s) {', '.join(map(str, f))}")
    syn["select"] = select
    return [f"filters.* / ifd.enabled,threshold,top_share,reverse -> synthesis.select={select}"]


def _tiny_teacher(teacher: Node) -> list[str]:
    """The tiny chat teacher trained on the agents' own requests is retired: SmolLM2 took its place."""
    llm = _section(teacher, "llm")
    moved = []
    knobs = [k for k in ("tiny_rows_per_kind", "tiny_epochs") if k in llm]
    for k in knobs:
        llm.pop(k)
    if knobs:
        moved.append(f"teacher.llm.{', '.join(knobs)}: dropped (the tiny trained teacher is retired)")
    if llm.get("model") == "tiny":
        llm["model"] = "smollm2-135m-instruct"
        moved.append("teacher.llm.model=tiny -> teacher.llm.model=smollm2-135m-instruct (the tiny teacher is retired)")
    return moved


def _section(data: Node, key: str) -> Node:
    node = data.get(key)
    if isinstance(node, MutableMapping):
        return node
    return {}
