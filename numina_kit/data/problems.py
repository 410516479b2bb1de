"""Problem sets and training data: reading problem files, turning datasets into chat messages, synthetic problems.

`load_problems` is the one reader of problem files for evaluation, the Kaggle local mode and TIR data generation.
It takes JSONL, CSV or Parquet with an `id` (optional: the row number is used) and a `problem` column, and an
optional reference `answer`, kept as the exact string the file gives (AIME/AMC files write `142.0`).

`to_messages` turns a row of NuminaMath-CoT or NuminaMath-TIR (or any `problem`/`solution` file) into the chat
messages that `numina_kit.protocols.tora.CHAT_TEMPLATE` renders. `synthetic_problems` makes tool-integrated problems that
a small model cannot do in its head but can write code for, each with its answer (0..999, AIMO rules) and a worked
solution in the project's TIR format whose output block is what the code really prints.
"""

import csv
import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from numina_kit.data.jsonl import read_jsonl
from numina_kit.errors import InputError
from numina_kit.protocols.tora import (
    CODE_END,
    CODE_START,
    OUTPUT_START,
    render_example,
    render_messages,
    render_output,
)


@dataclass(frozen=True)
class Problem:
    """One problem of a set; `answer` is the reference as written in the file, or None when there is none."""

    id: str
    problem: str
    answer: str | None = None


def load_problems(path: str | Path, *, limit: int | None = None) -> list[Problem]:
    """Read a JSONL, CSV or Parquet problem file; raise `InputError` (one line) for anything malformed.

    Ids must be unique and every problem non-empty text, so that no row is silently lost or merged.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"problem file not found: {path}")
    return problems_from_rows(read_rows(path), str(path), limit=limit)


def problems_from_rows(rows: list, source: str, *, limit: int | None = None) -> list[Problem]:
    """Problems from rows with `problem`, optional `id` and `answer` (a file's, or a Hub dataset's, named `source`
    in errors), checked as `load_problems` checks a file."""
    problems: list[Problem] = []
    seen: set[str] = set()
    for number, row in enumerate(rows, start=1):
        if not isinstance(row, dict):
            raise InputError(f"{source}: row {number} is not an object with a 'problem' field")
        text = row.get("problem")
        if not isinstance(text, str) or not text.strip():
            raise InputError(f"{source}: row {number} has no 'problem' text")
        pid = str(row["id"]) if row.get("id") not in (None, "") else str(number - 1)
        if pid in seen:
            raise InputError(f"{source}: duplicate id {pid!r} at row {number}")
        seen.add(pid)
        answer = row.get("answer")
        problems.append(Problem(id=pid, problem=text, answer=None if answer in (None, "") else str(answer)))
        if limit is not None and len(problems) >= limit:
            break
    if not problems:
        raise InputError(f"{source}: no problems found")
    return problems


def read_rows(path: Path) -> list:
    """The rows of a JSONL, CSV (with a `problem` column) or Parquet file, as the file gives them."""
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        return read_jsonl(path)
    if suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            if not reader.fieldnames or "problem" not in reader.fieldnames:
                raise InputError(f"{path}: CSV needs a 'problem' column, found {reader.fieldnames}")
            return list(reader)
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    raise InputError(f"{path}: unsupported problem file type {suffix!r} (use .jsonl, .csv or .parquet)")


# ---------------------------------------------------------------------------------------------------------------------
# NuminaMath-CoT / NuminaMath-TIR rows -> chat messages
# ---------------------------------------------------------------------------------------------------------------------


def to_messages(row: dict) -> list[dict[str, str]]:
    """One user turn and one assistant turn for a dataset row, whichever schema it has.

    NuminaMath-CoT (`source, problem, solution, messages`) and NuminaMath-TIR (`problem, solution, messages`) carry
    `messages`; other files may give only `problem` and `solution`. System turns are dropped (Numina rendered them as
    empty text), and a row without exactly one non-empty user and assistant turn raises `InputError`.
    """
    messages = row.get("messages")
    if messages:
        turns = [m for m in messages if isinstance(m, dict) and m.get("role") != "system"]
        roles = [m.get("role") for m in turns]
        if roles != ["user", "assistant"] or not all(isinstance(m.get("content"), str) for m in turns):
            raise InputError(f"row {row.get('id', '?')}: expected one user and one assistant message, got {roles}")
        problem, solution = turns[0]["content"], turns[1]["content"]
    else:
        problem, solution = row.get("problem"), row.get("solution")
    if not isinstance(problem, str) or not problem.strip():
        raise InputError(f"row {row.get('id', '?')}: no problem text (needs 'messages' or 'problem'/'solution')")
    if not isinstance(solution, str) or not solution.strip():
        raise InputError(f"row {row.get('id', '?')}: no solution text (needs 'messages' or 'problem'/'solution')")
    return render_messages(problem, solution)


def example_text(row: dict, eos_token: str) -> str:
    """A whole training example as text: `input` + `output` for raw rows (JiuZhang's schema), else the chat template's
    rendering of `to_messages(row)` (what a from-scratch tokenizer is trained on)."""
    if isinstance(row.get("input"), str) and isinstance(row.get("output"), str):
        return row["input"] + row["output"] + eos_token
    problem, solution = (m["content"] for m in to_messages(row))
    return render_example(problem, solution, eos_token)


# ---------------------------------------------------------------------------------------------------------------------
# Synthetic tool-integrated problems
# ---------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SyntheticProblem:
    """A generated problem, its reference answer (an int in 0..999) and a worked TIR solution."""

    id: str
    kind: str
    problem: str
    answer: int
    code: str
    solution: str

    def to_row(self) -> dict:
        """The JSONL row: `load_problems` reads `id/problem/answer`, SFT reads `messages`."""
        return {
            "id": self.id,
            "kind": self.kind,
            "problem": self.problem,
            "answer": str(self.answer),
            "solution": self.solution,
            "messages": render_messages(self.problem, self.solution),
        }


# Each kind draws its numbers and returns (problem, code); the answer is what the code prints, so the output block is
# never made up. Solutions are deliberately rigid so that a model of a few million parameters learns them: the code
# first copies the problem's numbers in the order the problem states them, then applies one formula per kind, and
# the output is copied into \\boxed.
def _code(names: str, values: tuple[int, ...], formula: str, header: str = "") -> str:
    return f"{header}{names} = {', '.join(map(str, values))}\n{formula}"


def _product(rng: random.Random) -> tuple[str, str]:
    a, b = rng.randint(1000, 99999), rng.randint(1000, 99999)
    problem = f"What is the remainder when ${a} \\times {b}$ is divided by $1000$?"
    return problem, _code("a, b", (a, b), "print(a * b % 1000)")


def _power(rng: random.Random) -> tuple[str, str]:
    b, e = rng.randint(2, 99), rng.randint(10, 999)
    problem = f"What is the remainder when ${b}^{{{e}}}$ is divided by $1000$?"
    return problem, _code("b, e", (b, e), "print(pow(b, e, 1000))")


def _digit_sum(rng: random.Random) -> tuple[str, str]:
    b, e = rng.randint(2, 29), rng.randint(10, 59)
    problem = f"What is the sum of the digits of ${b}^{{{e}}}$?"
    return problem, _code("b, e", (b, e), "print(sum(int(d) for d in str(b ** e)))")


def _binomial(rng: random.Random) -> tuple[str, str]:
    n = rng.randint(20, 99)
    k = rng.randint(2, n - 2)
    problem = f"What is the remainder when $\\binom{{{n}}}{{{k}}}$ is divided by $1000$?"
    return problem, _code("n, k", (n, k), "print(comb(n, k) % 1000)", header="from math import comb\n")


def _multiples(rng: random.Random) -> tuple[str, str]:
    n, (p, q) = rng.randint(100, 999), rng.sample(range(2, 20), 2)
    problem = f"How many integers from $1$ to ${n}$ are divisible by ${p}$ or ${q}$?"
    return problem, _code("n, p, q", (n, p, q), "print(sum(1 for k in range(1, n + 1) if k % p == 0 or k % q == 0))")


SYNTHETIC_KINDS: dict[str, Callable[[random.Random], tuple[str, str]]] = {
    "product": _product,
    "power": _power,
    "digit_sum": _digit_sum,
    "binomial": _binomial,
    "multiples": _multiples,
}


def _evaluate(code: str) -> str:
    """What `code` prints: the real output, computed in-process (the kinds above are pure arithmetic)."""
    import contextlib
    import io

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        exec(code, {"__name__": "__synthetic__", "math": math})  # only our own templates above reach here
    return buffer.getvalue().strip()


def render_tir_solution(code: str, output: str) -> str:
    """The worked solution: one sentence, the code block, its output block, and the output copied into \\boxed.

    It opens with a newline so that the space closing `render_prompt` stays a token of its own: byte-level BPE
    tokenizers glue a space to the word after it, and a prompt ending in a lone space would then never occur in
    training.
    """
    return (
        f"\nWe compute it with Python.\n{CODE_START}{code}\n{CODE_END}{OUTPUT_START}{render_output(output)}"
        f"The answer is $\\boxed{{{output}}}$."
    )


def synthetic_problems(
    n: int, *, seed: int = 0, kinds: tuple[str, ...] | None = None, exclude: set[str] | None = None
) -> list[SyntheticProblem]:
    """`n` distinct synthetic TIR problems, cycling through `kinds` (all by default), reproducible from `seed`.

    Problems whose text is in `exclude` are skipped, so a training set can be drawn disjoint from a held-out set.
    """
    kinds = tuple(kinds or SYNTHETIC_KINDS)
    unknown = [k for k in kinds if k not in SYNTHETIC_KINDS]
    if unknown:
        raise InputError(f"unknown synthetic kind(s) {unknown}; choose from {sorted(SYNTHETIC_KINDS)}")
    rng = random.Random(seed)
    seen = set(exclude or ())
    problems: list[SyntheticProblem] = []
    for kind in _cycle(kinds, n, rng):
        for _ in range(100):
            text, code = SYNTHETIC_KINDS[kind](rng)
            if text not in seen:
                break
        else:
            raise InputError(f"could not draw {n} distinct {kind!r} problems; ask for fewer")
        seen.add(text)
        output = _evaluate(code)
        problems.append(
            SyntheticProblem(
                id=f"synthetic-{seed}-{len(problems)}",
                kind=kind,
                problem=text,
                answer=int(output),
                code=code,
                solution=render_tir_solution(code, output),
            )
        )
    return problems


def _cycle(kinds: tuple[str, ...], n: int, rng: random.Random) -> Iterator[str]:
    order = [kinds[i % len(kinds)] for i in range(n)]
    rng.shuffle(order)
    yield from order
