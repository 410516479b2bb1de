"""A scripted TIR teacher behind `OpenAIServer` (TIR data generation's tests and benchmark)."""

import re
import threading
from collections import Counter

from numina_kit.testing.server import Reply, completion_reply


# A problem's tag (`[kind]` in its text) picks how `TIRModel` answers it; these kinds make the first request fail.
FIRST_REQUEST_FAILS = {
    "e429": Reply(status=429, body=b'{"error": "slow down"}', headers={"Retry-After": "0"}),
    "e500": Reply(status=500, body=b"boom"),
    "malformed": Reply(body=b"<html>bad gateway</html>"),
    "hang": Reply(delay_s=1.8, body=b"{}"),  # past a client timeout of 1 s
}
# kind -> pass at which the solution is kept (None: never kept), attempts made, code runs per attempt
TIR_KINDS = {
    "right": (1, 1, 1),
    "pass2": (2, 2, 1),
    "pass3": (3, 3, 1),
    "never": (None, 3, 1),
    "nocode": (None, 3, 0),
    "crash": (None, 3, 1),
    "frac": (1, 1, 1),
    **{kind: (1, 1, 1) for kind in FIRST_REQUEST_FAILS},
}


def make_tir_problem(i: int, kind: str):
    """Problem `i` of a kind of `TIR_KINDS`: add two numbers (a fraction answer for `frac`), tagged `[kind]`."""
    from numina_kit.data.problems import Problem

    a, b = 3 + i, 4 + 2 * i
    answer = f"\\frac{{{a}}}{{{a + b}}}" if kind == "frac" else str(a + b)
    return Problem(id=f"p{i:03d}", problem=f"Item {i}: add {a} and {b} [{kind}]", answer=answer)


class TIRModel:
    """A scripted TIR teacher, as an `OpenAIServer` respond function (completions API, ToRA prompts).

    Per problem kind it writes right code, wrong code until pass 2 or 3, no code, crashing code or a fraction, or
    fails its first request; after an output block it boxes what the code printed. It counts, per problem, the
    requests and the first rounds it saw.
    """

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.requests: Counter[str] = Counter()
        self.first_rounds: Counter[str] = Counter()
        self._lock = threading.Lock()

    def __call__(self, path: str, body: dict, headers: dict) -> Reply:
        from numina_kit.protocols.tora import OUTPUT_START, STOP

        problem, solution = body["prompt"].removeprefix("### Problem: ").split("\n### Solution: ", 1)
        a, b, kind = re.search(r"add (\d+) and (\d+) \[(\w+)\]", problem).groups()
        with self._lock:
            first_request = self.requests[problem] == 0
            self.requests[problem] += 1
        if first_request and kind in FIRST_REQUEST_FAILS:
            return FIRST_REQUEST_FAILS[kind]
        if OUTPUT_START in solution:  # second round: box what the code printed
            value = solution.split(OUTPUT_START)[-1].split("\n")[0]
            return self._reply(completion_reply(f"The code printed {value}, so the answer is $\\boxed{{{value}}}$."))
        if kind == "nocode":
            return self._reply(completion_reply(f"Adding, $\\boxed{{{int(a) + int(b)}}}$."))
        with self._lock:
            attempt = self.first_rounds[problem]
            self.first_rounds[problem] += 1
        wrong = kind == "never" or (kind == "pass2" and attempt < 1) or (kind == "pass3" and attempt < 2)
        code = f"print({a} + {b}{' + 1' if wrong else ''})"
        if kind == "frac":
            code = f"from fractions import Fraction\nprint(Fraction({a}, {a} + {b}))"
        if kind == "crash":
            code = f"print({a} / 0)"
        return self._reply(completion_reply(f"Let me add.\n```python\n{code}\n```\n", stop_reason=STOP))

    def _reply(self, reply: Reply) -> Reply:
        reply.delay_s = self.delay_s
        return reply
