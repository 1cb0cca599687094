"""AutoDetect's Examiner: per-point stats over the task's taxonomy plus the points a chat model adds.

Each round the model sees every point's accuracy (or mean judge score) and up to `bad_cases` failed cases
per point and proposes one new point or says [[Stop]]; a judge call accepts it with [[Yes]]; growth ends
at [[Stop]], after `max_rejections` rejections in a row, or once `max_new_points` were added
(agents/llm/examiner.py). A new point gets seed prompts from the `autodetect` plan, and probe items of its
own each round the loop evaluates (`probes`): the chat model writes them (the task's generators know only
the task's own points), the teacher answers them, and the task grades the student on them, so the next
round's profile measures the new point.
"""

from __future__ import annotations

from pydantic import Field

from agents.llm.examiner import AutoDetectExaminer
from agents.llm.parsing import ask_parsed
from agents.llm.types import ChatRequest, Sampling
from agents.plans.autodetect import parse, search_messages
from agents.roles import WeaknessProfile
from core.plugins import Inputs, Plugin, PluginConfig, register
from core.records import Record
from core.text import question_key


class AutoDetectExaminerConfig(PluginConfig):
    """Bounds of the taxonomy growth."""

    weak_score: float = Field(3.1, gt=0, description="a judged answer scoring below this is a weakness hit")
    weak_accuracy: float = Field(0.8, gt=0, le=1.01, description="a point below this accuracy is weak")
    max_rejections: int = Field(3, ge=1, description="stop growing after this many rejected proposals in a row")
    max_new_points: int = Field(6, ge=0, description="stop growing after this many accepted points")
    bad_cases: int = Field(2, ge=0, description="failed cases per point shown to the proposer")
    new_point_probes: int = Field(5, ge=1, description="probe items written for each new point per round")


@register
class AutoDetectExaminerPlugin(Plugin):
    """Stats per point, and one proposed (and judged) new point per round."""

    name = "autodetect"
    kind = "examiner"
    Config = AutoDetectExaminerConfig
    needs = frozenset({"chat"})
    reads = ("probes", "previous_profile", "taxonomy")
    config: AutoDetectExaminerConfig

    def examine(self, inputs: Inputs, round: int) -> WeaknessProfile:
        """The round's profile; `refinements` keeps every proposal, acceptance and stop, so bounds hold on resume."""
        c, p = self.config, self.parts
        examiner = AutoDetectExaminer(
            p.client,
            inputs["taxonomy"],
            weak_score=c.weak_score,
            weak_accuracy=c.weak_accuracy,
            max_rejections=c.max_rejections,
            max_new_points=c.max_new_points,
            bad_cases=c.bad_cases,
            domain=p.domain,
            max_tries=p.max_tries,
            seed=p.seed,
        )
        return examiner.examine(inputs["probes"], round, inputs["previous_profile"])

    def probes(self, profile: WeaknessProfile, round: int, known: list[str]) -> list[Record]:
        """Probe questions (no answers yet) for every accepted new point: `new_point_probes` each, none a
        known question. The loop has the teacher answer them and grades the student on them."""
        p, n = self.parts, self.config.new_point_probes
        new = [r for r in profile.refinements if r.get("kind") == "new_point"]
        taxonomy = {str(r["point"]): str(r.get("description") or "") for r in new}
        requests, owners = [], []
        for r in new:
            point = str(r["point"])
            for k in range(n):
                messages = search_messages(point, taxonomy[point], [], taxonomy, p.domain, 1)
                seed = (round * 1000 + k) * p.max_tries  # distinct per (round, item): a fixed seed repeats itself
                sampling = Sampling(p.temperature, max_tokens=p.max_tokens, seed=seed)
                requests.append(ChatRequest(messages, sampling, "examiner"))
                owners.append(r)
        seen = {question_key(q) for q in known}
        out: list[Record] = []
        for r, got in zip(owners, ask_parsed(p.client, requests, parse, p.max_tries), strict=True):
            if got.value is None or question_key(got.value[0][0]) in seen:
                continue
            seen.add(question_key(got.value[0][0]))
            point = str(r["point"])
            out.append(
                {
                    "id": f"probe{round}-{point}-{len(out):04d}",
                    "instruction": got.value[0][0],
                    "knowledge_point": point,
                    "facet": None,
                    "skill": r.get("category"),
                    "source": "probe",
                    "written_by": "examiner",
                }
            )
        return out
