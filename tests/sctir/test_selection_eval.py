"""numina_kit.sctir.selection_eval: stored candidates read back with their evidence, pass@k, every selector scored on
the same subsets, and the paired comparison (McNemar's exact test, the bootstrap over problems)."""

import json

import pytest

from numina_kit.data.problems import Problem
from numina_kit.errors import InputError
from numina_kit.sctir.candidates import Candidate, CandidateStatus, Solution
from numina_kit.sctir.selection import CodeVerified, Majority
from numina_kit.sctir.selection_eval import (
    candidate_from_dict,
    load_stored,
    paired_comparison,
    score_selectors,
    selection_headroom,
)


def answered(index: int, answer: int, from_code: bool) -> Candidate:
    candidate = Candidate(index=index, status=CandidateStatus.ANSWERED, answer=answer, raw_answer=str(answer))
    candidate.finished_round, candidate.from_code = 1, from_code
    return candidate


def stored_file(tmp_path, rows: list[tuple[str, int, list[Candidate]]]):
    path = tmp_path / "solutions.jsonl"
    with path.open("w") as handle:
        for pid, seed, candidates in rows:
            solution = Solution(answer=0, votes=[], candidates=candidates)
            handle.write(
                json.dumps({"id": pid, "seed": seed, "correct": False, "solution": json.loads(solution.to_json())})
            )
            handle.write("\n")
    return path


def test_a_candidate_survives_the_round_trip_through_solutions_jsonl() -> None:
    candidate = answered(3, 42, True)
    candidate.entropy_sum, candidate.entropy_tokens, candidate.logprob_sum, candidate.logprob_tokens = 1.5, 3, -2.0, 4
    candidate.last_code, candidate.code_errors, candidate.tail_entropies = "print(42)", 1, [0.5]
    data = json.loads(Solution(answer=42, votes=[], candidates=[candidate]).to_json())["candidates"][0]
    assert candidate_from_dict({**data, "added_later": 1}) == candidate
    with pytest.raises(InputError, match="not a stored candidate"):
        candidate_from_dict({"status": "bogus", "index": 0})


def test_selectors_are_scored_on_the_same_candidates_and_compared_pairwise(tmp_path) -> None:
    # p1: 3 wrong answers (5) without code evidence, 2 right (6) printed by code: majority wrong, code right.
    # p2: everyone right. p3: right answer absent.
    p1 = [
        answered(0, 5, False),
        answered(1, 6, True),
        answered(2, 5, False),
        answered(3, 6, True),
        answered(4, 5, False),
    ]
    p2 = [answered(i, 8, True) for i in range(5)]
    p3 = [answered(i, 1, True) for i in range(5)]
    rows = [(pid, seed, cands) for seed in (1, 2) for pid, cands in (("p1", p1), ("p2", p2), ("p3", p3))]
    problems = [Problem("p1", "?", "6"), Problem("p2", "?", "8"), Problem("p3", "?", "2")]
    stored = load_stored(stored_file(tmp_path, rows), problems)
    assert [(p.id, p.seed, len(p.candidates)) for p in stored][:2] == [("p1", 1, 5), ("p2", 1, 5)]

    scores = score_selectors(stored, [Majority(), CodeVerified()], draws=8)
    assert scores.ks == [1, 2, 4, 5] and scores.seeds() == [1, 2]
    assert scores.accuracy["majority"][5] == [0.0, 1.0, 0.0] * 2
    assert scores.accuracy["code"][5] == [1.0, 1.0, 0.0] * 2
    assert scores.mean("code", 5) == pytest.approx(2 / 3) and scores.mean("majority", 5, seed=1) == pytest.approx(
        1 / 3
    )
    assert scores.pass_mean(5) == pytest.approx(2 / 3) and scores.pass_mean(1) == pytest.approx((0.4 + 1) / 3)
    # one candidate: every selector picks it, so they agree exactly
    assert scores.accuracy["majority"][1] == scores.accuracy["code"][1]

    comparison = paired_comparison(scores, "code", k=5, resamples=200)
    assert (comparison.wins, comparison.losses) == (2, 0) and comparison.mcnemar_p == pytest.approx(0.5)
    assert comparison.difference == pytest.approx(1 / 3) and comparison.low <= comparison.difference <= comparison.high
    assert paired_comparison(scores, "code", k=2, resamples=50).mcnemar_p is None

    # the headroom: p1 has the right answer among its candidates but majority misses it, on both seeds
    headroom = selection_headroom(scores, k=5, resamples=200)
    assert headroom.name == "pass@5" and headroom.difference == pytest.approx(1 / 3)
    assert 0 <= headroom.low <= headroom.difference <= headroom.high <= 1


def test_bad_stored_input_is_a_one_line_error(tmp_path) -> None:
    path = stored_file(tmp_path, [("p9", 0, [answered(0, 1, True)])])
    with pytest.raises(InputError, match="no reference answer"):
        load_stored(path, [Problem("p1", "?", "1")])
    stored = load_stored(path, [Problem("p9", "?", "1")])
    with pytest.raises(InputError, match="k must be between"):
        score_selectors(stored, [Majority()], ks=[2])
    with pytest.raises(InputError, match="distinct names"):
        score_selectors(stored, [Majority(), Majority()])
