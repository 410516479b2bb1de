"""Bookkeeping of the async engine's requests: what one request has streamed so far (`RequestProgress`) and how
long requests or code blocks were in flight (`BusyTime`)."""

import asyncio
from collections.abc import Callable

from numina_kit.answers.extract import extract_boxed
from numina_kit.protocols.tora import OUTPUT_START
from numina_kit.sctir.candidates import Candidate


class RequestProgress:
    """The `on_progress` callback of one request: the text streamed so far, a check run on every chunk (the async
    engine's deadline), and, with `stop_at_answer`, the end of the request at a complete `\\boxed{}` answer."""

    def __init__(self, candidate: Candidate, on_chunk: Callable[[], object], *, stop_at_answer: bool) -> None:
        self.candidate, self.on_chunk, self.stop_at_answer = candidate, on_chunk, stop_at_answer
        self.text, self.tokens = "", 0
        self.request: asyncio.Future | None = None
        self.answer_end: int | None = None
        self._from = 0  # where to look for the next `\boxed`

    def __call__(self, text: str, tokens: int) -> None:
        self.text, self.tokens = text, tokens
        self.on_chunk()
        if self.stop_at_answer and self.answer_end is None and self._complete_answer():
            self.answer_end = len(text)
            if self.request is not None:
                self.request.cancel()

    def _complete_answer(self) -> bool:
        """Whether the text now holds a complete `\\boxed{}` outside code, written after the candidate saw output."""
        if OUTPUT_START not in self.candidate.text:
            return False
        while (start := self.text.find("\\boxed", self._from)) != -1:
            if inside_code(self.text, start):
                self._from = start + 1
                continue
            self._from = start  # incomplete: look again from here when more text arrives
            return extract_boxed(self.text[start:]) is not None
        self._from = max(self._from, len(self.text) - len("\\boxed") + 1)
        return False

    def keep(self) -> None:
        """Append what was streamed to the candidate (the request ended without a completion)."""
        keep_text(self.candidate, self.text, self.tokens)
        self.text, self.tokens = "", 0


def inside_code(text: str, position: int) -> bool:
    """Whether `position` lies inside a ```python block left open before it."""
    opened = text.rfind("```python", 0, position)
    return opened != -1 and text.find("```", opened + len("```python"), position) == -1


def keep_text(candidate: Candidate, text: str, tokens: int) -> None:
    """Append text generated for `candidate` that no `advance` will see (its request or its code was cancelled)."""
    candidate.text += text
    candidate.tokens += tokens
    candidate.generated_tokens += tokens


class BusyTime:
    """Time during which at least one request (or block) was in flight: the async analogue of a phase's time."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock, self.active, self.since, self.total = clock, 0, 0.0, 0.0

    def enter(self) -> None:
        if self.active == 0:
            self.since = self.clock()
        self.active += 1

    def leave(self) -> None:
        self.active -= 1
        if self.active == 0:
            self.total += self.clock() - self.since
