"""Answer equivalence for MATH-style evaluation: math-verify behind a hard time limit, with its false verdicts fixed.

`is_equivalent(gold, candidate)` decides cheap cases in the calling process (identical text up to LaTeX spacing;
two plain numbers compared as exact fractions) and sends the rest to one persistent worker process, forked once
and reused, that runs math-verify with its own signal-based timeouts switched off. The caller waits on a pipe with
a deadline; when it passes, the worker is killed (SIGKILL) and a fresh one is forked on the next call. This works
from any thread (the Kaggle API calls `predict` from a worker thread, where `signal.alarm` raises) and survives a
sympy call that never returns, such as comparing `5^{5^{5^5}}` with 3 (github.com/huggingface/Math-Verify issue 65).

Known false verdicts of math-verify (github.com/huggingface/Math-Verify issues 14 and 60) that are fixed here:
- Tiny exact numbers compared after rounding: `1/2004!` equals `1/2006!` in math-verify. Inside the worker,
  math-verify's numeric comparison is wrapped so that two exact constants (no symbols, no floats) are compared
  exactly (rationals) or to 30 significant digits relative to their size (irrationals), never after rounding.
- Equations collapsing to 0 (#60): plain-text extraction reads `3x-y+13=0` as the number after `=`. Answers are
  parsed as LaTeX only, and an answer with a relation sign whose parse has no relation is compared as text.
- Percentages: no x100 or /100 rescaling of plain numbers (Qwen/ToRA accept 50 for 0.5): `50` and `0.5` differ.
  An explicit percent sign may be read as a unit or as its value: `33.3\\%` matches `33.3` and `0.333`.
"""

import atexit
import logging
import os
import re
import signal
import threading
import time
from pathlib import Path
from typing import Any

from numina_kit.answers.extract import strip_math
from numina_kit.answers.numbers import exact_value
from numina_kit.sandbox.protocol import Pipe, pipe_pair


__all__ = ["MAX_SYMBOLIC_CHARS", "is_equivalent"]

logger = logging.getLogger(__name__)

_WORKER_MEMORY_BYTES = 2 * 2**30
MAX_SYMBOLIC_CHARS = 1000  # longer answers are compared as text only: no answer needs a 1000-character formula
_RELATION = re.compile(r"(?<![\\<>!])=|<|>|\\(?:le|ge|leq|geq|neq|ne|lt|gt|in)(?![a-zA-Z])")
_PERCENT = re.compile(r"\s*(?:\\?%|\\text\{\s*percent\s*\}|percent)\s*$")
_DECIMAL = re.compile(r"\d\.\d|\.\d|\d[eE][+-]?\d")


def is_equivalent(gold: str, candidate: str, *, timeout: float = 2.0) -> bool:
    """Whether `candidate` states the same mathematical answer as the reference `gold`.

    Handles numbers (exactly: `0.5` = `\\frac12`, `1/2004!` != `1/2006!`), fractions, radicals, complex numbers,
    tuples, intervals, sets, matrices, equations, `\\text{}` words, units, degrees and `\\%`, with LaTeX spacing,
    `\\left`/`\\right`, `\\dfrac` and `$`/`\\boxed{}` wrappers ignored. Like math-verify it is asymmetric: `gold`
    decides the format (gold `5` accepts `x = 5`).

    Returns within `timeout` seconds (plus a few milliseconds to kill and reap a stuck worker), from any thread.
    The first call that needs the worker in a process also imports math-verify and runs it on a few fixed answers
    (1-2 s, so that forked workers start warm); that one-time cost is not charged to its `timeout`.
    Never raises: a timeout, a crash of the worker or a parse failure gives False. Calls from several threads are
    served one at a time; a call that cannot get the worker before its deadline returns False.
    Answers longer than `MAX_SYMBOLIC_CHARS` are compared as text only.
    """
    deadline = time.monotonic() + timeout
    try:
        gold, candidate = strip_math(str(gold)), strip_math(str(candidate))
        if not gold or not candidate:
            return False
        if _canonical_text(gold) == _canonical_text(candidate):
            return True
        if len(gold) > MAX_SYMBOLIC_CHARS or len(candidate) > MAX_SYMBOLIC_CHARS:
            return False
        if _PERCENT.search(gold) or _PERCENT.search(candidate):
            # the sign as a unit: `33.3\%` states 33.3; its value (0.333) is left to math-verify below
            unit_gold, unit_candidate = _PERCENT.sub("", gold), _PERCENT.sub("", candidate)
            if _canonical_text(unit_gold) == _canonical_text(unit_candidate):
                return True
            if _compare_numbers(unit_gold, unit_candidate):
                return True
        verdict = _compare_numbers(gold, candidate)
        if verdict is not None:
            return verdict
        return _worker().judge(gold, candidate, deadline)
    except Exception:
        logger.debug("is_equivalent failed on %.80r vs %.80r", gold, candidate, exc_info=True)
        return False


def _canonical_text(answer: str) -> str:
    """`answer` with meaning-free LaTeX removed: whitespace, spacing commands, `\\left`/`\\right`, `\\dfrac`."""
    text = re.sub(r"\\(?:left|right)(?![a-zA-Z])|\\[,!;: ]|\s+", "", answer)
    return re.sub(r"\\[dt]frac(?![a-zA-Z])", r"\\frac", text)


def _compare_numbers(gold: str, candidate: str) -> bool | None:
    """The verdict when both answers are plain numbers; None when the symbolic path must decide.

    A mismatch involving a decimal is left to math-verify, which accepts decimals rounded to 6 places
    (`0.333333` for `\\frac13`); two exact forms that differ are different.
    """
    gold_value, candidate_value = exact_value(gold), exact_value(candidate)
    if gold_value is None or candidate_value is None:
        return None
    if gold_value == candidate_value:
        return True
    if _DECIMAL.search(gold) or _DECIMAL.search(candidate):
        return None
    return False


class _Worker:
    """One forked process running math-verify; killed and replaced when a call runs past its deadline."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._pipe: Pipe | None = None

    def judge(self, gold: str, candidate: str, deadline: float) -> bool:
        """The worker's verdict, or False when it is not back by `deadline` (on `time.monotonic()`)."""
        deadline += _prepare_math_verify()  # once per process, on fixed answers: not charged to the caller
        if not self._lock.acquire(timeout=max(deadline - time.monotonic(), 0.0)):
            return False
        try:
            for attempt in range(2):  # a worker found dead (OOM killer, a stray signal) is replaced once
                try:
                    if self._pipe is None:
                        self._start()
                    self._pipe.send([gold, candidate])
                    verdict = self._pipe.receive(deadline)
                except (OSError, ValueError):
                    verdict = None
                if verdict is not None:
                    return bool(verdict)
                self.stop()
                if time.monotonic() >= deadline:
                    logger.info("equivalence check ran out of time; restarting its worker")
                    return False
                logger.info("equivalence worker died (attempt %d); restarting it", attempt + 1)
            return False
        finally:
            self._lock.release()

    def _start(self) -> None:
        ours, theirs = pipe_pair()
        pid = os.fork()
        if pid == 0:  # the worker: serve until the pipe closes, and never return into the caller's stack
            try:
                ours.close()
                _serve(theirs)
            finally:
                os._exit(0)
        theirs.close()
        self._pid, self._pipe = pid, ours

    def stop(self) -> None:
        """Kill the worker process (if any) and forget it; the next call forks a new one."""
        if self._pipe is not None:
            self._pipe.close()
        if self._pid is not None:
            try:
                os.kill(self._pid, signal.SIGKILL)
                os.waitpid(self._pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
        self._pid, self._pipe = None, None

    def forget_after_fork(self) -> None:
        """In a forked child of the caller: close the inherited pipe without touching the parent's worker."""
        if self._pipe is not None:
            self._pipe.close()
        self._pid, self._pipe = None, None


_WORKER: _Worker | None = None
_WORKER_LOCK = threading.Lock()
_PREPARE_LOCK = threading.Lock()
_PREPARED = threading.Event()


def _worker() -> _Worker:
    global _WORKER
    with _WORKER_LOCK:
        if _WORKER is None:
            _WORKER = _Worker()
        return _WORKER


def _reset_after_fork() -> None:
    global _WORKER, _WORKER_LOCK, _PREPARE_LOCK
    _WORKER_LOCK, _PREPARE_LOCK = threading.Lock(), threading.Lock()  # another thread may have held them
    if _WORKER is not None:
        _WORKER.forget_after_fork()
        _WORKER = None


def _stop_at_exit() -> None:
    if _WORKER is not None:
        _WORKER.stop()


os.register_at_fork(after_in_child=_reset_after_fork)
atexit.register(_stop_at_exit)


def _prepare_math_verify() -> float:
    """Import math-verify and run it once on fixed answers in this process, so that every forked worker starts
    warm (sympy imports much of itself lazily on first use); returns the seconds spent here (waiting included)."""
    if _PREPARED.is_set():
        return 0.0
    start = time.monotonic()
    with _PREPARE_LOCK:  # a thread arriving meanwhile waits here, and that wait is not charged to it either
        if _PREPARED.is_set():
            return time.monotonic() - start
        import math_verify.grader
        import math_verify.parser
        from math_verify import verify

        math_verify.parser.TIMEOUT_WARNING_SHOWN = True  # we disable its alarms on purpose and time out ourselves
        math_verify.grader.TIMEOUT_WARNING_SHOWN = True
        for gold, candidate in _WARM_UP:
            verify(_parse_answer(gold)[0], _parse_answer(candidate)[0], timeout_seconds=None)
        _PREPARED.set()
    return time.monotonic() - start


_WARM_UP = [
    ("\\frac{\\sqrt{3}}{3}", "\\frac{1}{\\sqrt{3}}"),
    ("(x+1)^2", "x^2+2x+1"),
    ("\\{1,2\\}", "(1,2]"),
    ("y=2x+3", "2x-y+3=0"),
]


def _serve(pipe: Pipe) -> None:
    """The worker's loop: receive [gold, candidate], send a verdict, until the caller closes the pipe."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the caller, which owns this process's lifetime
    logging.disable(logging.CRITICAL)
    _cap_memory(_WORKER_MEMORY_BYTES)
    _patch_numeric_comparison()
    while True:
        try:
            message = pipe.receive()
        except (OSError, ValueError):
            return
        if message is None:
            return
        try:
            verdict = _judge(*message)
        except BaseException:
            verdict = False
        pipe.send(verdict)


def _cap_memory(extra_bytes: int) -> None:
    """Let the worker grow by at most `extra_bytes` of address space, so a runaway sympy expansion fails with
    MemoryError (a False verdict) instead of taking the caller's memory. Relative to the size inherited at fork,
    because a parent with large mappings (CUDA, model weights) would otherwise be over any fixed cap."""
    try:
        import resource

        size = int(Path("/proc/self/statm").read_text().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        limit = size + extra_bytes
        if hard == resource.RLIM_INFINITY or limit <= hard:
            resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    except (OSError, ValueError, ImportError):
        pass  # no /proc (macOS) or no permission: run uncapped


def _parse_answer(answer: str) -> tuple[Any | None, str]:
    """The sympy object math-verify reads from `answer` as LaTeX (None when it reads none) and its fallback text."""
    from math_verify import LatexExtractionConfig, parse

    parsed = parse(
        "$" + answer.replace("\n", " ") + "$",
        extraction_config=[LatexExtractionConfig(boxed_match_priority=0)],
        parsing_timeout=None,
    )
    expression = next((item for item in parsed if not isinstance(item, str)), None)
    text = next((item for item in parsed if isinstance(item, str)), answer)
    if expression is not None and _RELATION.search(answer) and not _has_relation(expression):
        expression = None  # the parse dropped the relation (`3x-y=0` read as 0): compare as text instead
    return expression, text


def _has_relation(expression: Any) -> bool:
    from sympy import Basic
    from sympy.core.relational import Relational
    from sympy.sets.sets import Set

    if isinstance(expression, (Relational, Set)):
        return True
    return isinstance(expression, Basic) and any(isinstance(arg, Relational) for arg in expression.atoms(Relational))


def _judge(gold: str, candidate: str) -> bool:
    """The verdict inside the worker (no time limit here: the caller enforces it)."""
    from math_verify import verify

    gold_expression, gold_text = _parse_answer(gold)
    candidate_expression, candidate_text = _parse_answer(candidate)
    if gold_expression is None or candidate_expression is None:
        return _canonical_text(gold_text) == _canonical_text(candidate_text)
    return bool(verify(gold_expression, candidate_expression, timeout_seconds=None))


def _patch_numeric_comparison() -> None:
    """In the worker only: compare exact constants exactly before math-verify's rounded numeric comparison."""
    import math_verify.grader as grader

    rounded = grader.sympy_numeric_eq

    def numeric_eq(a: Any, b: Any, float_rounding: int, numeric_precision: int) -> bool:
        verdict = _exact_constants_equal(a, b)
        return verdict if verdict is not None else rounded(a, b, float_rounding, numeric_precision)

    grader.sympy_numeric_eq = numeric_eq


def _exact_constants_equal(a: Any, b: Any) -> bool | None:
    """Exact comparison of two symbol-free, float-free sympy numbers; None when either is something else."""
    from sympy import Expr, Float, UnevaluatedExpr

    for value in (a, b):
        if not isinstance(value, Expr) or value.free_symbols or value.has(Float) or value.has(UnevaluatedExpr):
            return None
    a, b = a.doit(), b.doit()
    if not (a.is_number and b.is_number and a.is_finite and b.is_finite):
        return None
    if a.is_Rational and b.is_Rational:
        return bool(a == b)
    try:
        difference = abs((a - b).evalf(60))
        scale = max(abs(a.evalf(60)), abs(b.evalf(60)))
        return bool(difference <= scale * Float("1e-30", 60))
    except TypeError:  # not comparable as real numbers: leave it to math-verify
        return None
