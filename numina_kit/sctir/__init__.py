"""SC-TIR: the loop (candidates, `advance`, `solve`), the vote, and the time budget of a whole run."""

from numina_kit.sctir.budget import TimeBudget
from numina_kit.sctir.loop import Candidate, CandidateStatus, SCTIRConfig, Solution, advance, solve
from numina_kit.sctir.voting import ConsistencyRule, majority_vote


__all__ = [
    "Candidate",
    "CandidateStatus",
    "ConsistencyRule",
    "SCTIRConfig",
    "Solution",
    "TimeBudget",
    "advance",
    "majority_vote",
    "solve",
]
