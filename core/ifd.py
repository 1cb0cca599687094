"""IFD scores as records and the selection over them; the scoring itself (a model) is trainers/ifd.py.

Kept here, below agents/ and trainers/, because the IFD selector plugin (agents/selectors/) chooses over
the scores that the loop gets from the student's scorer (trainers/).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class IFDScore:
    """Losses and IFD of one row; `ifd` is None (and `reason` says why) when it cannot be computed."""

    loss_cond: float | None
    loss_alone: float | None
    ifd: float | None
    reason: str | None = None
    tokens: int = 0  # tokens run through the model for this row, both passes

    @property
    def ifd_ppl(self) -> float | None:
        """The perplexity ratio ppl(A | Q) / ppl(A) = exp(s(A | Q) - s(A)), Superfiltering's `ifd_ppl`."""
        if self.loss_cond is None or self.loss_alone is None:
            return None
        return math.exp(self.loss_cond - self.loss_alone)


@dataclass(frozen=True)
class Selection:
    """Indices kept by `select_by_ifd` (in input order) and the reason for every dropped index."""

    kept: list[int]
    dropped: dict[int, str] = field(default_factory=dict)


def select_by_ifd(
    scores: Sequence[IFDScore | float | None],
    top_share: float,
    threshold: float = 1.0,
    *,
    share_of: str = "all",
) -> Selection:
    """Keep rows with IFD < `threshold`, then the highest-IFD `top_share` of them (kept in input order).

    The count kept is floor(top_share * N), N = all rows (`share_of="all"`, Superfiltering's
    `select_data.py` and the papers' "5% of Alpaca") or only the rows under the threshold ("eligible").
    """
    if not 0.0 < top_share <= 1.0:
        raise ValueError(f"select_by_ifd: top_share must be in (0, 1], got {top_share}")
    if share_of not in ("all", "eligible"):
        raise ValueError(f"select_by_ifd: share_of must be 'all' or 'eligible', got {share_of!r}")
    dropped: dict[int, str] = {}
    eligible: list[tuple[float, int]] = []
    for i, s in enumerate(scores):
        value = s.ifd if isinstance(s, IFDScore) else s
        if value is None or math.isnan(value):
            dropped[i] = "no score"
        elif value >= threshold:
            dropped[i] = f"ifd>={threshold:g}"
        else:
            eligible.append((value, i))
    base = len(scores) if share_of == "all" else len(eligible)
    # The epsilon keeps 0.3 * 10 from flooring to 2.
    n_keep = math.floor(top_share * base + 1e-9)
    eligible.sort(key=lambda vi: (-vi[0], vi[1]))
    for _, i in eligible[n_keep:]:
        dropped[i] = "below top share"
    return Selection(kept=sorted(i for _, i in eligible[:n_keep]), dropped=dropped)
