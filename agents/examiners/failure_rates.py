"""The programmatic Examiner: per-node failure rates with Wilson intervals from the graded probes, and
AutoDetect-style growth by splitting a weak point into facets where one facet fails significantly more."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import Field

from agents.examiner import WorldExaminer
from agents.roles import WeaknessProfile
from core.plugins import Inputs, Plugin, PluginConfig, register
from core.records import Record


class ProbeExaminerConfig(PluginConfig):
    """Weakness threshold and facet splitting."""

    weak_below: float = Field(0.8, gt=0, le=1.01, description="a node below this probe accuracy is weak")
    refine: bool = Field(True, description="split weak points into facets (AutoDetect-style taxonomy growth)")
    max_refinements: int = Field(6, ge=0, description="refine: at most this many splits over the run")
    split_z: float = Field(2.0, gt=0, description="refine: two-proportion z a facet's failure rate needs")
    min_split_n: int = Field(8, ge=1, description="refine: probes a facet (and the rest) need before a split")


@register
class ProbeExaminer(Plugin):
    """Stats per node from the previous round's probes, weakest first; may refine weak points."""

    name = "failure_rates"
    kind = "examiner"
    Config = ProbeExaminerConfig
    reads = ("probes", "previous_profile")
    default_rank = 0
    config: ProbeExaminerConfig

    def examine(self, inputs: Inputs, round: int) -> WeaknessProfile:
        """The round's weakness profile."""
        c = self.config
        examiner = WorldExaminer(c.weak_below, c.split_z, c.min_split_n, c.max_refinements if c.refine else 0)
        probes: Sequence[Record] = inputs["probes"]
        return examiner.examine(probes, round, inputs["previous_profile"])
