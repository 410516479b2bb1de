"""The time-allocation policies benchmarks/budget.py compares with `numina_kit.sctir.budget.TimeBudget` (the default)."""

import math

from numina_kit.sctir.budget import CLAMP_FLOOR, TimeBudget


class FairShare(TimeBudget):
    def allotment(self) -> float:
        return max(min(self.remaining() / self.problems_left, self._cap()), 0.0)

    def _cap(self) -> float:
        return min(self.remaining(), self.ceiling_s if self.ceiling_s is not None else math.inf)


class StretchRule(FairShare):
    """TimeBudget as it was: min(2 x left / n, left - floor x (n - 1)), clamped to [60 s, 20 min]."""

    def allotment(self) -> float:
        left, n, floor = self.remaining(), self.problems_left, 60.0
        share = min(max(min(2 * left / n, left - floor * (n - 1)), floor), 1200.0)
        return max(min(share, self._cap()), 0.0)


class ClampRule(FairShare):
    """The AIMO-3 winners' rule, scaled to the budget: clamp(left - r x (n - 1), r, 3r), r = 300/348 share."""

    def allotment(self) -> float:
        r = CLAMP_FLOOR * self.first_share
        return max(min(max(self.remaining() - r * (self.problems_left - 1), r), 3 * r, self._cap()), 0.0)


POLICIES = {
    "fair share": FairShare,
    "stretch (before)": StretchRule,
    "clamp (AIMO-3)": ClampRule,
    "default": TimeBudget,
}
