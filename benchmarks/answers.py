"""Benchmark of numina_kit.answers (extraction, equivalence) and numina_kit.sctir.voting against baselines run alongside.

- Extraction on ../shared/data/tir_traces_sample.jsonl: agreement with ToRA's recorded `model_pred`, against a
  Numina-style extraction that reads only the last 100 characters; non-integers that Numina's `round(float(x))`
  would have turned into votes.
- Equivalence on ../shared/data/math500.jsonl: every answer against its rewritten forms and against the next
  answer, with time per call, against math-verify called directly in this process; the peers' known false verdicts;
  the hard time limit (hanging sympy, 1 MB input, a worker thread).
- Voting: `majority_vote` over 48 integer answers against `collections.Counter.most_common` (Numina's vote).

Run: `python benchmarks/answers.py` (writes the `answers` section of docs/benchmarks.md).
"""

import logging
import statistics
import sys
import threading
import time
import timeit
from collections import Counter
from pathlib import Path


REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from _results import markdown_table, write_section  # noqa: E402

from numina_kit.answers import extract_answer, extract_boxed, is_equivalent, parse_integer  # noqa: E402
from numina_kit.data.jsonl import read_jsonl  # noqa: E402
from numina_kit.sctir.voting import ConsistencyRule, majority_vote  # noqa: E402
from numina_kit.testing import answers_agree, equivalent_forms  # noqa: E402


DATA = REPO.parent / "shared" / "data"
KNOWN_FALSE_VERDICTS = [
    ("50", "0.5", False, "x vs x/100 (Qwen/ToRA percent rule)"),
    ("50", "5000", False, "x vs x*100 (Qwen/ToRA percent rule)"),
    ("\\frac{1}{2004!}", "\\frac{1}{2006!}", False, "tiny exact numbers (Math-Verify #14)"),
    ("\\frac{1}{2^{99}}", "\\frac{1}{2^{98}}", False, "tiny exact numbers (Math-Verify #14)"),
    ("3*x-1*y+13=0", "3x + 4y + 14=0", False, "equations collapsing to 0 (Math-Verify #60)"),
    ("\\pm 2021", "2021", False, "plus-minus (Math-Verify #14)"),
    ("33.3\\%", "33.3", True, "percent sign as a unit"),
]


def numina_tail_answer(text: str) -> str | None:
    """Numina's extraction: only the last 100 characters, the last box there, else the text after "answer is"."""
    tail = text[-100:]
    if "\\boxed" in tail:
        return extract_boxed(tail)
    if "answer is" in tail:
        return tail.split("answer is")[-1].strip().strip("$. ") or None
    return None


def numina_integer(answer: str | None) -> int:
    """Numina's filter in its AIMO-1 notebook: `round(float(x))`, -1 when that fails."""
    try:
        return round(float(answer))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return -1


def math_verify_direct(gold: str, candidate: str) -> bool:
    """math-verify in this process on `$...$`-wrapped answers read as LaTeX (its signal timeouts on)."""
    from math_verify import LatexExtractionConfig, parse, verify

    config = [LatexExtractionConfig(boxed_match_priority=0)]
    return verify(parse(f"${gold}$", extraction_config=config), parse(f"${candidate}$", extraction_config=config))


def math_verify_defaults(gold: str, candidate: str) -> bool:
    """math-verify as its README shows it: `verify(parse(gold), parse(candidate))` with default settings."""
    from math_verify import parse, verify

    return verify(parse(gold), parse(candidate))


def timed(function, *args, **kwargs) -> tuple[object, float]:
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - start


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.2f}"


def extraction_section() -> str:
    rows = [row for row in read_jsonl(DATA / "tir_traces_sample.jsonl") if row.get("model_pred") is not None]
    ours, tail, durations = Counter(), Counter(), []
    rounded = 0
    for row in rows:
        extracted, seconds = timed(extract_answer, row["solution"])
        durations.append(seconds)
        ours[answers_agree(row["model_pred"], extracted) or "disagree"] += 1
        tail[answers_agree(row["model_pred"], numina_tail_answer(row["solution"])) or "disagree"] += 1
        if extracted is not None and parse_integer(extracted) is None and numina_integer(extracted) >= 0:
            rounded += 1
    n = len(rows)

    def line(name: str, counts: Counter) -> list[object]:
        agree = n - counts["disagree"]
        return [
            name,
            n,
            counts["same"],
            counts["integer"],
            counts["equivalent"],
            counts["disagree"],
            f"{agree / n:.2%}",
        ]

    table = markdown_table(
        ["extraction", "rows", "same text", "same integer", "equivalent", "disagree", "agreement"],
        [line("`extract_answer` (whole text)", ours), line("Numina-style (last 100 chars)", tail)],
    )
    return (
        f"### Extraction on `tir_traces_sample.jsonl` (rows with a `model_pred`)\n\n{table}\n\n"
        "Compared in order: identical text; the same `parse_integer` value (`4.0` and `4`); "
        "`is_equivalent(model_pred, extracted)`. "
        f'Every disagreement of `extract_answer` is a text with no `\\boxed{{}}` and no "answer is", '
        "where ToRA fell back to the last program output. "
        f"`extract_answer`: {statistics.mean(durations) * 1e6:.0f} µs per trace on average. "
        f"Non-integer extracted answers that Numina's `round(float(x))` would have counted as integer votes: "
        f"{rounded} (`parse_integer` rejects them all).\n"
    )


def equivalence_section() -> str:
    answers = [row["answer"] for row in read_jsonl(DATA / "math500.jsonl")]
    is_equivalent("\\frac{1}{2}", "\\sqrt{2}/2")  # one-time import and fork, outside the timings
    math_verify_direct("1", "1")
    pairs = [(answer, form) for answer in answers for form in equivalent_forms(answer).values()]
    ours, theirs = [], []
    for gold, form in pairs:
        ours.append(timed(is_equivalent, gold, form, timeout=10.0))
        theirs.append(timed(math_verify_direct, gold, form))
    different = [(a, b) for a, b in zip(answers, answers[1:], strict=False) if a != b]
    ours_neg = [timed(is_equivalent, a, b, timeout=10.0) for a, b in different]
    theirs_neg = [timed(math_verify_direct, a, b) for a, b in different]

    def row(name: str, same: list, diff: list) -> list[object]:
        times = sorted(seconds for _, seconds in same + diff)
        return [
            name,
            f"{sum(v for v, _ in same)}/{len(same)}",
            f"{sum(v for v, _ in diff)}/{len(diff)}",
            ms(statistics.mean(times)),
            ms(times[len(times) // 2]),
            ms(times[int(len(times) * 0.99)]),
            ms(times[-1]),
        ]

    table = markdown_table(
        ["judge", "forms judged equal", "next answer judged equal", "mean ms", "p50 ms", "p99 ms", "max ms"],
        [row("`is_equivalent`", ours, ours_neg), row("math-verify in process", theirs, theirs_neg)],
    )
    verdicts = [
        [
            f"`{gold}` vs `{candidate}`",
            why,
            expected,
            math_verify_defaults(gold, candidate),
            math_verify_direct(gold, candidate),
            is_equivalent(gold, candidate),
        ]
        for gold, candidate, expected, why in KNOWN_FALSE_VERDICTS
    ]
    verdict_table = markdown_table(
        ["pair", "case", "right", "math-verify `parse(x)`", "math-verify `parse($x$)` as LaTeX", "`is_equivalent`"],
        verdicts,
    )
    return (
        f"### Equivalence on `math500.jsonl`\n\n{len(pairs)} (answer, rewritten form) pairs from "
        "`numina_kit.testing.equivalent_forms` (`$...$`, `\\boxed{}`, `\\frac`/`\\dfrac`, spacing, "
        f"`\\left(`/`\\right)`, `(a)/(b)`), and {len(different)} pairs of consecutive different answers. "
        "Times are per call, warm (worker forked, math-verify imported); the negative pairs are where the "
        "symbolic path runs.\n\n"
        f"{table}\n\nKnown false verdicts of the peers:\n\n{verdict_table}\n"
    )


def time_limit_section() -> str:
    rows = []
    verdict, seconds = timed(is_equivalent, "5^{5^{5^5}}", "3", timeout=1.0)
    rows.append(["`5^{5^{5^5}}` vs `3` (sympy hangs)", "1.0", f"{seconds:.3f}", verdict])
    _, seconds = timed(is_equivalent, "x^2-1", "(x-1)(x+1)", timeout=10.0)
    rows.append(["next call (fresh worker forked)", "10.0", f"{seconds:.3f}", "True"])
    huge = "1" + "+1" * 500_000
    verdict, seconds = timed(is_equivalent, huge, "500001", timeout=1.0)
    rows.append(["1 MB answer vs `500001`", "1.0", f"{seconds:.3f}", verdict])
    result: list = []
    thread = threading.Thread(target=lambda: result.append(timed(is_equivalent, "5^{5^{5^5}}", "7", timeout=1.0)))
    thread.start()
    thread.join()
    rows.append(["`5^{5^{5^5}}` vs `7` from a worker thread", "1.0", f"{result[0][1]:.3f}", result[0][0]])
    errors: list = []

    def direct_in_thread() -> None:
        try:
            math_verify_direct("x+1", "1+x")
        except Exception as error:
            errors.append(type(error).__name__)

    thread = threading.Thread(target=direct_in_thread)
    thread.start()
    thread.join()
    table = markdown_table(["call", "timeout s", "returned after s", "verdict"], rows)
    return (
        f"### Hard time limit\n\n{table}\n\nmath-verify called directly from a thread with its default "
        f"timeouts: {'raises ' + errors[0] if errors else 'no error'} (its `signal.alarm` works only in the main "
        "thread).\n"
    )


def voting_section() -> str:
    answers = [17, 42, 17, None, 803, 42, 17] * 6 + [42, 17, 5, 17, 999, None]
    weights = [0.5 + (i % 7) / 10 for i in range(len(answers))]
    assert len(answers) == 48
    number = 20_000

    def per_call_us(statement) -> float:
        return min(timeit.repeat(statement, number=number, repeat=5)) / number * 1e6

    valid = [a for a in answers if a is not None]
    forms = ["\\frac{1}{2}", "0.5", "\\dfrac12", "2", "\\sqrt{2}", "1/2"] * 8
    equivalent_ms = min(timeit.repeat(lambda: majority_vote(forms, equivalent=is_equivalent), number=3, repeat=3)) / 3
    rows = [
        ["`Counter(answers).most_common(1)` (Numina)", f"{per_call_us(lambda: Counter(valid).most_common(1)):.1f}"],
        ["`majority_vote(answers)`", f"{per_call_us(lambda: majority_vote(answers)):.1f}"],
        [
            "`majority_vote(answers, weights=...)`",
            f"{per_call_us(lambda: majority_vote(answers, weights=weights)):.1f}",
        ],
        [
            "`ConsistencyRule(4, window=5).is_met(answers)`",
            f"{per_call_us(lambda: ConsistencyRule(4, 5).is_met(answers)):.1f}",
        ],
        ["`majority_vote(48 LaTeX strings, equivalent=is_equivalent)`", f"{equivalent_ms * 1e6:.0f}"],
    ]
    table = markdown_table(["call (48 answers)", "µs per call"], rows)
    return f"### Voting\n\n{table}\n\nBest of 5 repeats of {number} calls (the last row: 3 calls, 6 distinct forms).\n"


def main() -> None:
    logging.basicConfig(level=logging.ERROR)
    body = "\n".join([extraction_section(), equivalence_section(), time_limit_section(), voting_section()])
    write_section("answers", "Answers, equivalence and voting", body)
    print(body)


if __name__ == "__main__":
    main()
