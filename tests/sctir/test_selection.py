"""numina_kit.sctir.selection and .genselect: each selector's rule on hand-made candidates (majority, confidence from
entropies, mean log-probability, code verification from the recorded evidence and by re-running code in a real
sandbox, the answer prior, products), names and bad input, the engines voting with `SCTIRConfig.selector`, and
GenSelect's mechanism with a scripted judge (prompt, parsing, the vote over judgements, falling back to the majority).
"""

import pytest

from numina_kit.errors import InputError
from numina_kit.sandbox.pool import ExecutorConfig, Sandbox
from numina_kit.sctir.candidates import Candidate, CandidateStatus
from numina_kit.sctir.config import SCTIRConfig
from numina_kit.sctir.genselect import GenSelect, parse_choice
from numina_kit.sctir.loop import solve
from numina_kit.sctir.selection import (
    AnswerPrior,
    CodeVerified,
    Combined,
    Confidence,
    LogprobWeighted,
    Majority,
    make_selector,
    printed_in,
)
from numina_kit.testing import ScriptedGenerator


def cand(index: int, answer, *, entropy=None, logprob=None, from_code=True, code=None, text="") -> Candidate:
    c = Candidate(index=index, status=CandidateStatus.ANSWERED, answer=answer, raw_answer=str(answer), text=text)
    c.finished_round, c.from_code, c.last_code = 1, from_code, code
    if entropy is not None:
        c.entropy_sum, c.entropy_tokens = entropy * 10, 10
    if logprob is not None:
        c.logprob_sum, c.logprob_tokens = logprob * 10, 10
    return c


# Three candidates say 7, two say 12; the table says which selector picks which.
SPLIT = [
    cand(0, 7, entropy=0.9, logprob=-1.5, from_code=False),
    cand(1, 7, entropy=0.8, logprob=-1.2, from_code=False),
    cand(2, 7, entropy=1.0, logprob=-1.0, from_code=True),
    cand(3, 12, entropy=0.1, logprob=-0.1, from_code=True),
    cand(4, 12, entropy=0.2, logprob=-0.2, from_code=True),
]


@pytest.mark.parametrize(
    ("selector", "winner"),
    [
        (Majority(), 7),
        (Confidence(), 12),  # 1/0.1 + 1/0.2 = 15 against 1/0.9 + 1/0.8 + 1 = 3.4
        (LogprobWeighted(), 12),  # e^-0.1 + e^-0.2 = 1.72 against e^-1.5 + e^-1.2 + e^-1 = 0.89
        (CodeVerified(unverified=0.25), 12),  # 2 against 1.5
        (CodeVerified(unverified=0.9), 7),  # 2.8 against 2
        (AnswerPrior(small_below=10, small=0.5), 12),  # 1.5 against 2
        (AnswerPrior(small_below=5), 7),
        (AnswerPrior(overrides=((12, 0.1),)), 7),
        (make_selector("majority+code"), 12),
    ],
)
def test_each_selector_weighs_the_same_candidates_by_its_own_evidence(selector, winner) -> None:
    assert selector.select(SPLIT).winner == winner


def test_votes_are_sums_of_weights_and_ties_keep_the_earliest_answer() -> None:
    result = Confidence().select(SPLIT)
    assert result.table[12] == pytest.approx(15.0) and result.counts == {12: 2, 7: 3}
    tie = [cand(0, 5, entropy=0.5), cand(1, 6, entropy=0.5)]
    assert Confidence().select(tie).winner == 5


def test_confidence_without_logprobs_is_the_majority_and_fills_missing_ones() -> None:
    bare = [cand(0, 3), cand(1, 3), cand(2, 4)]
    assert Confidence().weights(bare) == [1.0, 1.0, 1.0]
    mixed = [cand(0, 3, entropy=0.5), cand(1, 4)]
    assert Confidence().weights(mixed) == [2.0, 2.0]
    assert Confidence(floor=0.5).weights([cand(0, 3, entropy=0.0)]) == [2.0]  # no division by zero
    assert Confidence(measure="tail_entropy").weights(bare) == [1.0, 1.0, 1.0]


def test_answer_prior_weighs_small_and_round_answers_down() -> None:
    prior = AnswerPrior(small_below=10, small=0.5, round_unit=100, round=0.7)
    assert [prior.prior(a) for a in (3, 42, 300, 0, "x")] == pytest.approx([0.5, 1.0, 0.7, 0.35, 1.0])


def test_combined_multiplies_and_is_named_after_its_parts() -> None:
    combined = make_selector("confidence+code")
    assert isinstance(combined, Combined) and combined.name == "confidence+code"
    weights = combined.weights(SPLIT)
    assert weights[0] == pytest.approx(0.25 / 0.9) and weights[3] == pytest.approx(10.0)


@pytest.mark.parametrize("spec", ["vote", "majority+", "", "confidence*code"])
def test_unknown_selector_names_are_one_line_errors(spec: str) -> None:
    with pytest.raises(InputError, match="unknown selector"):
        make_selector(spec)
    with pytest.raises(InputError, match="unknown selector"):
        SCTIRConfig(selector=spec)


@pytest.mark.parametrize(
    ("raw", "output", "found"),
    [("12", "12\n", True), ("12", "123\n", False), ("12.0", "x = 12", True), ("5", "2.5", False), ("", "1", False)],
)
def test_printed_in_matches_whole_numbers_only(raw: str, output: str, found: bool) -> None:
    assert printed_in(raw, output) is found


def test_code_verified_reruns_the_leading_answers_code_in_the_sandbox() -> None:
    # recorded evidence says 7 was printed by code, but its code does not print 7 when run again
    candidates = [
        cand(0, 7, from_code=True, code="print(6)"),
        cand(1, 7, from_code=True, code="import random\nprint(7 if random.random() > 2 else 8)"),
        cand(2, 9, from_code=False, code="print(9)"),
        cand(3, 9, from_code=False, code="print(4 + 5)"),
        cand(4, 9, from_code=False, code="print(4 + 5)"),
    ]
    assert CodeVerified().select(candidates).winner == 7  # recorded: 7 weighs 2, 9 weighs 0.75
    with Sandbox(ExecutorConfig(num_workers=1, warmup=False)) as sandbox:
        selector = make_selector("code", executor=sandbox)
        assert selector.weights(candidates) == [0.25, 0.25, 1.0, 1.0, 1.0]
        assert selector.select(candidates).winner == 9


def test_the_engine_votes_with_the_configured_selector() -> None:
    """Candidate 0 answers 5 without the answer in its output; 1 and 2 answer 6 from code; 3 and 4 answer 5
    without. Majority picks 5 (3 votes); `code` picks 6 (2 against 0.75)."""
    code = "```python\nprint(6)\n```\n```output\n"
    first = [code] * 5
    second = ["$\\boxed{5}$", "$\\boxed{6}$", "$\\boxed{6}$", "$\\boxed{5}$", "$\\boxed{5}$"]
    winners = {}
    for selector in ("majority", "code"):
        config = SCTIRConfig(
            num_candidates=5, max_rounds=2, selector=selector, executor=ExecutorConfig(num_workers=1, warmup=False)
        )
        solution = solve("Problem?", ScriptedGenerator([first, second]), config)
        winners[selector] = solution.answer
    assert winners == {"majority": 5, "code": 6}


# ------------------------------------------------------------------------------------------------------ GenSelect


class Judge(ScriptedGenerator):
    """A scripted judge: one call, its replies in order."""

    def __init__(self, replies: list[str]) -> None:
        super().__init__([replies])


def test_genselect_lists_the_leading_answers_and_follows_the_judgements() -> None:
    candidates = [cand(0, 7, text="sol A"), cand(1, 7, text="sol B"), cand(2, 12, text="sol C"), cand(3, 3)]
    judge = Judge(["\\boxed{2}", "I pick \\boxed{2}", "\\boxed{1}"])
    result = GenSelect(judge, judgements=3, leaders=2).select(candidates, problem="What is x?")
    assert result.winner == 12 and result.table == {12: 2, 7: 1}
    prompt = judge.calls[0][0]
    assert "What is x?" in prompt and "Solution 1 (final answer 7):\nsol A" in prompt
    assert "Solution 2 (final answer 12):\nsol C" in prompt and "sol B" not in prompt and "answer 3)" not in prompt
    assert judge.calls[0] == [prompt] * 3


def test_genselect_falls_back_to_the_majority_without_a_readable_judgement() -> None:
    candidates = [cand(0, 7), cand(1, 7), cand(2, 12)]
    result = GenSelect(Judge(["no idea", "\\boxed{9}"]), judgements=2).select(candidates, problem="p")
    assert result.winner == 7 and result.table == {7: 2, 12: 1}
    single = GenSelect(Judge([])).select([cand(0, 4), cand(1, 4)], problem="p")  # one answer: no judge is asked
    assert single.winner == 4


def test_genselect_shortens_long_solutions_from_the_start() -> None:
    long = cand(0, 7, text="x" * 50 + "END")
    prompt = GenSelect(Judge([]), max_chars=10).prompt("p", [long, cand(1, 8, text="short")])
    assert "...xxxxxxxEND" in prompt and "x" * 11 not in prompt


@pytest.mark.parametrize(
    ("text", "choice"),
    [("\\boxed{2}", 2), ("\\boxed{Solution 3}", 3), ("\\boxed{0}", None), ("\\boxed{4}", None), ("2", None)],
)
def test_parse_choice_reads_the_last_boxed_solution_number(text: str, choice: int | None) -> None:
    assert parse_choice(text, 3) == choice
