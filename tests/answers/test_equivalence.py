"""Tests for numina_kit.answers.equivalence: table cases (the peers' known false verdicts included), never raising,
and its hard time limit (hanging sympy, huge input, threads, fork, a dead worker, the memory cap).
Table cases live in tests/cases/answers.json; the measurements on real data are in tests/answers/test_real_data.py.
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from numina_kit.answers import equivalence
from numina_kit.answers.equivalence import is_equivalent


CASES = json.loads((Path(__file__).parents[1] / "cases" / "answers.json").read_text())
HANG_GUARD_S = 60.0  # not a performance bound: a call that is not cut off runs for hours; how soon it is, is measured
# in benchmarks/answers.py, not here (the house rule: no timing thresholds in unit tests)


def _ids(cases: list[list]) -> list[str]:
    return [case[-1] for case in cases]


@pytest.fixture(scope="module", autouse=True)
def warm_worker() -> None:
    """Import math-verify and fork the worker once, so timing tests measure calls, not the one-time import."""
    assert is_equivalent("\\frac{1}{2}", "\\sqrt{2}/2") is False


@pytest.mark.parametrize(
    ("gold", "candidate", "expected", "why"), CASES["is_equivalent"], ids=_ids(CASES["is_equivalent"])
)
def test_is_equivalent(gold: str, candidate: str, expected: bool, why: str) -> None:
    assert is_equivalent(gold, candidate, timeout=10.0) is expected


def test_is_equivalent_never_raises() -> None:
    assert is_equivalent(None, "1") is False  # type: ignore[arg-type]
    assert is_equivalent("\\frac{", "}{") is False
    assert is_equivalent("1", "1", timeout=-1) is True  # decided without the worker
    assert is_equivalent("x+1", "1+x", timeout=0) is False  # no time at all for the worker


def _timed(gold: str, candidate: str, timeout: float) -> tuple[bool, float]:
    start = time.monotonic()
    verdict = is_equivalent(gold, candidate, timeout=timeout)
    return verdict, time.monotonic() - start


def test_hanging_sympy_call_is_cut_off_and_the_worker_replaced() -> None:
    verdict, elapsed = _timed("5^{5^{5^5}}", "3", timeout=1.0)
    assert verdict is False
    assert elapsed < 1.0 + HANG_GUARD_S
    assert is_equivalent("x^2-1", "(x-1)(x+1)", timeout=10.0) is True  # a fresh worker serves the next call


def test_huge_input_returns_within_the_timeout() -> None:
    huge = "1" + "+1" * 500_000  # a 1 MB answer
    for gold, candidate, expected in [(huge, "500001", False), (huge, huge, True), ("500001", huge, False)]:
        verdict, elapsed = _timed(gold, candidate, timeout=1.0)
        assert verdict is expected
        assert elapsed < 1.0 + HANG_GUARD_S


COLD_CALL = """
import threading
from numina_kit.answers.equivalence import is_equivalent
result = []
thread = threading.Thread(target=lambda: result.append(is_equivalent("5^{5^{5^5}}", "3", timeout=1.5)))
thread.start()
thread.join()
print(result[0])
"""


def test_first_call_in_a_fresh_process_from_a_thread_returns() -> None:
    """The first call also pays the one-time import and warm-up of math-verify; from a thread it must still return
    (a hanging input gives False) rather than hang the process."""
    out = subprocess.run(
        [sys.executable, "-c", COLD_CALL], capture_output=True, text=True, timeout=5 * HANG_GUARD_S, check=True
    )
    assert out.stdout.split() == ["False"]


def test_works_from_threads_without_signals(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_alarm(*args: object) -> None:
        raise AssertionError("signal.alarm must not be used by the caller")

    monkeypatch.setattr(signal, "alarm", no_alarm)
    results: dict[str, tuple[bool, float]] = {}

    def check(name: str, gold: str, candidate: str, timeout: float) -> None:
        results[name] = _timed(gold, candidate, timeout)

    threads = [
        threading.Thread(target=check, args=("hang", "5^{5^{5^5}}", "7", 1.0)),
        threading.Thread(target=check, args=("sqrt", "\\sqrt{12}", "2\\sqrt{3}", 3.0)),
        threading.Thread(target=check, args=("tuple", "(1, \\frac{1}{2})", "(1,0.5)", 3.0)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results["hang"][0] is False
    for _, elapsed in results.values():
        assert elapsed < 3.0 + HANG_GUARD_S
    # the two real checks may queue behind the hanging one; either they got their verdict or ran out of time
    assert results["sqrt"][0] is True or results["sqrt"][1] >= 3.0
    assert results["tuple"][0] is True or results["tuple"][1] >= 3.0
    assert is_equivalent("\\sqrt{12}", "2\\sqrt{3}", timeout=5.0) is True


def test_a_forked_child_gets_its_own_worker() -> None:
    assert is_equivalent("\\sin^2 x + \\cos^2 x", "1", timeout=10.0) is True
    pid = os.fork()
    if pid == 0:  # the child must not talk over the parent's pipe
        try:
            ok = is_equivalent("\\frac{\\pi}{4}", "\\arctan 1", timeout=10.0)
        finally:
            os._exit(0 if ok else 1)  # noqa: B012
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert is_equivalent("2\\pi", "\\pi+\\pi", timeout=10.0) is True


def test_worker_death_is_survived() -> None:
    worker = equivalence._worker()
    assert is_equivalent("x+x", "2x", timeout=10.0) is True
    assert worker._pid is not None
    os.kill(worker._pid, signal.SIGKILL)
    os.waitpid(worker._pid, 0)
    worker._pid = None  # already reaped
    assert is_equivalent("x+x+x", "3x", timeout=10.0) is True  # a new worker answers this very call
    assert worker._pid is not None


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="the memory cap reads /proc (Linux)")
def test_worker_memory_cap_turns_runaway_allocation_into_memory_error() -> None:
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            equivalence._cap_memory(256 * 2**20)
            try:
                bytearray(2 * 2**30)
            except MemoryError:
                code = 0
            bytearray(16 * 2**20)  # small allocations still work
        finally:
            os._exit(code)  # noqa: B012
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
