"""A toy world for proving the JiuZhang pipeline on a CPU: a generated corpus and a scripted teacher.

This is a stand-in, said plainly: the paper's teacher is GPT-4 and its corpus is millions of real math texts. Here
`make_corpus` writes short passages on eight topics, of which only `remainders` (remainders of products and powers
modulo 1000) is relevant to the target task: the demo's tool-integrated problems of kinds `product` and `power`
(`numina_kit.data.problems`'s wording and code, with smaller numbers: `target_problems`). `ScriptedTeacher` is an OpenAI-compatible respond function (serve it with
`numina_kit.testing.OpenAIServer`, call it with `teacher.HTTPTeacher`) that, for a request about a passage, writes
a correct problem and tool solution on that passage's topic with the passage's numbers, deterministically. Like a
real teacher it is sometimes wrong: a few replies are malformed, some claim an output the code does not print (the
pipeline must replace it), and a few box that wrong claim (the pipeline must drop them).
"""

import random
import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass

from numina_kit.data.corpus import Text
from numina_kit.data.problems import SyntheticProblem
from numina_kit.testing import Reply, completion_reply


RELEVANT_TOPIC = "remainders"


@dataclass(frozen=True)
class Topic:
    """Passages with numbers in a fixed pattern, and the problem (text, code) a teacher writes from those numbers."""

    name: str
    passages: tuple[str, ...]  # templates over the fields drawn by `draw`
    draw: Callable[[random.Random], dict]
    problem: Callable[[dict], tuple[str, str]]
    pattern: str  # finds the numbers back in a passage (named groups)


def _product_or_power(rng: random.Random) -> dict:
    # smaller numbers than the demo's: a tiny model trained in minutes copies two digits far more reliably than five
    if rng.random() < 0.5:
        return {"a": rng.randint(12, 99), "b": rng.randint(12, 99)}
    return {"b": rng.randint(2, 19), "e": rng.randint(10, 60)}


def _whole_mean(rng: random.Random) -> dict:
    # three numbers whose mean is whole: every answer of the toy is a short integer, which a tiny model copies from
    # the printed output into \\boxed{} far more reliably than a 17-digit float
    a, b = rng.randint(10, 99), rng.randint(10, 99)
    return {"a": a, "b": b, "c": rng.choice([c for c in range(10, 100) if (a + b + c) % 3 == 0])}


def _remainder_problem(f: dict) -> tuple[str, str]:
    # the wording and code of numina_kit.data.problems's `product` and `power` kinds
    if "a" in f:
        return (
            f"What is the remainder when ${f['a']} \\times {f['b']}$ is divided by $1000$?",
            f"a, b = {f['a']}, {f['b']}\nprint(a * b % 1000)",
        )
    return (
        f"What is the remainder when ${f['b']}^{{{f['e']}}}$ is divided by $1000$?",
        f"b, e = {f['b']}, {f['e']}\nprint(pow(b, e, 1000))",
    )


TOPICS = (
    Topic(
        RELEVANT_TOPIC,
        (
            "Remainders of large numbers. Only the last three digits of {x} decide its remainder on division by "
            "1000, so it can be found without writing the whole number.",
            "Modular arithmetic keeps numbers small: to reduce {x} modulo 1000, reduce at every step of the work.",
            "A calculator overflows on {x}, yet its remainder modulo 1000 is easy to get by working with residues.",
        ),
        _product_or_power,
        _remainder_problem,
        r"(?:(?P<a>\d+) times (?P<b>\d+)|(?P<base>\d+) to the power (?P<e>\d+))",
    ),
    Topic(
        "area",
        (
            "A rectangular garden is {a} metres long and {b} metres wide; its area is length times width.",
            "Floor plans give rooms as rectangles, such as one of {a} by {b} feet, whose area sets the cost of tiles.",
        ),
        lambda rng: {"a": rng.randint(3, 99), "b": rng.randint(3, 99)},
        lambda f: (f"What is the area of a rectangle that is ${f['a']}$ by ${f['b']}$?", _assign(f, "a * b")),
        r"(?P<a>\d+) (?:metres long and|by) (?P<b>\d+)",
    ),
    Topic(
        "mean",
        (
            "The mean of a list is its sum divided by its length: the scores {a}, {b} and {c} have one mean.",
            "Averages summarise data; three measurements, {a}, {b} and {c}, are averaged to reduce error.",
        ),
        _whole_mean,
        lambda f: (f"What is the mean of ${f['a']}$, ${f['b']}$ and ${f['c']}$?", _assign(f, "(a + b + c) // 3")),
        r"(?P<a>\d+), (?P<b>\d+) and (?P<c>\d+)",
    ),
    Topic(
        "percent",
        (
            "Percent means per hundred: {p} percent of the {n} voters supported the proposal.",
            "A shop discounts goods by {p} percent; on a price of {n} the saving is a simple product.",
        ),
        lambda rng: {"p": rng.randint(2, 95), "n": 100 * rng.randint(1, 9)},
        lambda f: (f"What is ${f['p']}\\%$ of ${f['n']}$?", _assign(f, "p * n // 100")),
        r"(?P<p>\d+) percent of the (?P<n>\d+)|(?P<p2>\d+) percent; on a price of (?P<n2>\d+)",
    ),
    Topic(
        "years",
        (
            "Historians date the first printed arithmetic book to {a}; a famous table of logarithms followed in {b}.",
            "An old almanac was started in {a} and its last edition appeared in {b}.",
        ),
        lambda rng: {"a": rng.randint(1100, 1600), "b": rng.randint(1601, 1999)},
        lambda f: (f"How many years passed from ${f['a']}$ to ${f['b']}$?", _assign(f, "b - a")),
        r"(?:to|in) (?P<a>\d{4})\D+in (?P<b>\d{4})",
    ),
    Topic(
        "series",
        (
            "An arithmetic progression starts at {a} and grows by {d}; its first {n} terms have a closed-form sum.",
            "Stacking logs in rows that start at {a} and change by {d} gives, after {n} rows, an arithmetic series.",
        ),
        lambda rng: {"a": rng.randint(1, 50), "d": rng.randint(1, 20), "n": rng.randint(5, 60)},
        lambda f: (
            f"What is the sum of the first ${f['n']}$ terms of the arithmetic sequence that starts at ${f['a']}$ "
            f"with common difference ${f['d']}$?",
            _assign(f, "n * (2 * a + (n - 1) * d) // 2"),
        ),
        r"(?:starts|start) at (?P<a>\d+) and (?:grows|change) by (?P<d>\d+)\D+(?P<n>\d+)",
    ),
    Topic(
        "primes",
        (
            "Primes thin out slowly: the primes below {n} were listed by sieving out multiples.",
            "Euclid proved there are infinitely many primes; counting those under {n} is a classic exercise.",
        ),
        lambda rng: {"n": rng.randint(20, 999)},
        lambda f: (
            f"How many primes are less than ${f['n']}$?",
            f"from sympy import primepi\nprint(primepi({f['n']} - 1))",
        ),
        r"(?:below|under) (?P<n>\d+)",
    ),
    Topic(
        "speed",
        (
            "Distance is speed times time: a train at {v} km/h for {t} hours covers a predictable distance.",
            "Pilots plan with ground speed; flying at {v} km/h for {t} hours fixes the range.",
        ),
        lambda rng: {"v": rng.randint(20, 900), "t": rng.randint(2, 12)},
        lambda f: (
            f"How far does a vehicle travelling at ${f['v']}$ km/h go in ${f['t']}$ hours?",
            _assign(f, "v * t"),
        ),
        r"(?P<v>\d+) km/h for (?P<t>\d+) hours",
    ),
)
TOPIC_NAMES = tuple(topic.name for topic in TOPICS)
_FILLER = (
    "Textbooks return to this idea in several chapters.",
    "Worked examples make the method clear.",
    "Students often check such results with a computer.",
    "The idea has a long history in elementary mathematics.",
    "",
)


def _assign(fields: dict, expression: str) -> str:
    names = sorted(fields)
    return f"{', '.join(names)} = {', '.join(str(fields[n]) for n in names)}\nprint({expression})"


def _render_passage(topic: Topic, fields: dict, rng: random.Random) -> str:
    template = rng.choice(topic.passages)
    if topic.name == RELEVANT_TOPIC:
        x = f"{fields['a']} times {fields['b']}" if "a" in fields else f"{fields['b']} to the power {fields['e']}"
        return f"{template.format(x=x)} {rng.choice(_FILLER)}".strip()
    return f"{template.format(**fields)} {rng.choice(_FILLER)}".strip()


def make_corpus(size: int, *, relevant_share: float = 0.1, seed: int = 0) -> list[Text]:
    """`size` distinct passages; a `relevant_share` of them on the relevant topic, the rest spread over the others.

    Each passage's `source` is `toy/<topic>`, so relevance can be counted afterwards (the pipeline never reads it).
    """
    rng = random.Random(seed)
    relevant = round(size * relevant_share)
    others = [t for t in TOPICS if t.name != RELEVANT_TOPIC]
    topics = [TOPICS[0]] * relevant + [others[i % len(others)] for i in range(size - relevant)]
    rng.shuffle(topics)
    texts, seen = [], set()
    for topic in topics:
        while True:
            passage = _render_passage(topic, topic.draw(rng), rng)
            if passage not in seen:
                break
        seen.add(passage)
        texts.append(Text(id=f"toy{len(texts):05d}", text=passage, source=f"toy/{topic.name}"))
    return texts


def is_relevant(text: Text) -> bool:
    return text.source == f"toy/{RELEVANT_TOPIC}"


def write_from_passage(passage: str) -> tuple[str, str] | None:
    """(problem, code) a careful teacher writes about a toy passage; None for a passage of no known topic."""
    for topic in TOPICS:
        match = re.search(topic.pattern, passage)  # the relevant topic first: its numbers could look like years
        if match is None:
            continue
        groups = {k.rstrip("2"): int(v) for k, v in match.groupdict().items() if v is not None}
        if topic.name == RELEVANT_TOPIC and "base" in groups:
            groups = {"b": groups["base"], "e": groups["e"]}
        return topic.problem(groups)
    return None


def render_solution(code: str, claimed: str, boxed: str) -> str:
    """A tool solution in the demo's format (numina_kit.data.problems.render_tir_solution), with what it claims."""
    return (
        f"We compute it with Python.\n```python\n{code}\n```\n```output\n{claimed}\n```\n"
        f"The answer is $\\boxed{{{boxed}}}$."
    )


class ScriptedTeacher:
    """Stands in for GPT-4 behind an OpenAI-compatible server: replies to `stages.render_request` prompts.

    Per request (a hash of its prompt, so the same request always gets the same reply): 4% are malformed (no
    `[Solution]`), 10% claim an output one more than the code prints but box the true value, 3% claim and box that
    wrong value; the rest are right. `answers` records the true value of every reply, `requests` counts them.
    """

    MALFORMED, WRONG_CLAIM, WRONG_BOX = 0.04, 0.10, 0.03

    def __init__(self) -> None:
        self.requests = 0

    def __call__(self, path: str, body: dict, headers: dict) -> Reply:
        self.requests += 1
        prompt = body.get("prompt") or body["messages"][-1]["content"]
        match = re.search(r"## Math Content\n(.*?)\n\n## Guidelines", prompt, re.DOTALL)
        written = write_from_passage(match.group(1)) if match else None
        if written is None:
            return completion_reply("I cannot write a problem about this text.")
        problem, code = written
        value = _evaluate(code)
        draw = zlib.crc32(prompt.encode()) / 2**32
        claimed = boxed = value
        if draw < self.MALFORMED:
            return completion_reply(f"[Problem]\n{problem}\n\nSolution: the answer is {value}.")
        if draw < self.MALFORMED + self.WRONG_CLAIM:
            claimed = _off_by_one(value)
        elif draw < self.MALFORMED + self.WRONG_CLAIM + self.WRONG_BOX:
            claimed = boxed = _off_by_one(value)
        return completion_reply(f"[Problem]\n{problem}\n\n[Solution]\n{render_solution(code, claimed, boxed)}")


def _evaluate(code: str) -> str:
    """What one of this module's code templates prints (its own `print`: the server runs in several threads)."""
    printed: list[str] = []
    exec(code, {"print": lambda *values: printed.append(" ".join(map(str, values)))})
    return "\n".join(printed).strip()


def _off_by_one(value: str) -> str:
    return str(int(float(value)) + 1) if re.fullmatch(r"-?\d+(\.0)?", value) else value + "1"


# numina_kit.data.problems' kinds other than the target's (product, power), in these shares of the base's problems
BASE_KINDS = {"digit_sum": 1 / 6, "binomial": 5 / 12, "multiples": 5 / 12}


def base_rows(size: int, *, seed: int = 0, problems: int = 0) -> list[dict]:
    """Rows that stand in for the pre-training of the toy's base model, none on the target topic, shuffled: for each
    of `size` passages of the irrelevant topics, the passage followed by the problem written from it and its worked
    tool solution (the project's prompt format), and `problems` more problems of the demo's kinds other than the
    target's (`BASE_KINDS`: longer, more varied numbers), without a passage.

    A real pipeline starts from a pretrained LM. What this one must bring is copying numbers from its context (the
    problem's into the code, the printed output into \\boxed{}), which a model of this size learns from thousands of
    distinct worked problems sampled at random, as the demo model does from 6,000, and did not learn from fewer rows
    repeated for more epochs, nor with long stage requests mixed in and batches grouped by length (docs/jiuzhang3.md).
    """
    from numina_kit.data.problems import synthetic_problems
    from numina_kit.data.stages import render_question

    # (passage, problem, code): a passage before the problem written from it, as text and exercise meet in books
    written = [(t.text, *write_from_passage(t.text)) for t in make_corpus(size, relevant_share=0.0, seed=seed)]
    counts = {kind: round(problems * share) for kind, share in BASE_KINDS.items()}
    counts["multiples"] += problems - sum(counts.values())
    for number, (kind, count) in enumerate(counts.items()):
        written += [("", p.problem, p.code) for p in synthetic_problems(count, seed=seed + number, kinds=(kind,))]
    rows = [
        {
            "input": (f"{passage}\n\n" if passage else "") + render_question(problem, tool=True),
            "output": "\n" + render_solution(code, *[_evaluate(code)] * 2),
        }
        for passage, problem, code in written
    ]
    random.Random(seed).shuffle(rows)
    return rows


def target_problems(size: int, *, seed: int, exclude: set[str] | None = None) -> list[SyntheticProblem]:
    """Problems of the target task (the relevant topic's), with worked solutions: a training split for influence
    and a held-out split for scoring, disjoint through `exclude`."""
    rng = random.Random(seed)
    seen = set(exclude or ())
    problems: list[SyntheticProblem] = []
    while len(problems) < size:
        problem, code = _remainder_problem(_product_or_power(rng))
        if problem in seen:
            continue
        seen.add(problem)
        value = _evaluate(code)
        kind = "product" if "times" in problem else "power"
        solution = "\n" + render_solution(code, value, value)
        problems.append(SyntheticProblem(f"target-{seed}-{len(problems)}", kind, problem, int(value), code, solution))
    return problems
