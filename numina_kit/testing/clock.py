"""Time under the test's control: a clock that only moves when told, and an asyncio loop on virtual time."""

import asyncio
import selectors


class FakeClock:
    """A clock that moves only when told to (`clock.now += seconds`); pass it wherever a `clock` is taken."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An asyncio event loop on virtual time: when nothing is ready to run, the clock jumps to the next timer.

    `await asyncio.sleep(3600)` returns at once with `loop.time()` an hour later, so async code (the async SC-TIR
    engine, a simulated server) runs on simulated time: pass `loop.time` wherever a `clock` is taken. Work in other
    threads that wakes the loop (`run_in_executor`) is not waited for before the clock jumps: simulate with
    coroutines only.
    """

    def __init__(self, start: float = 0.0) -> None:
        self.now = start
        super().__init__(_VirtualSelector(self))

    def time(self) -> float:
        return self.now


class _VirtualSelector(selectors.SelectSelector):
    def __init__(self, loop: VirtualTimeLoop) -> None:
        super().__init__()
        self.loop = loop

    def select(self, timeout: float | None = None) -> list:
        events = super().select(0)  # the loop's own wake-up pipe, without waiting
        if events or timeout == 0:
            return events
        if timeout is None:  # nothing scheduled: only another thread can wake the loop
            return super().select(None)
        self.loop.now += timeout
        return []
