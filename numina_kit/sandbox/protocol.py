"""How the sandbox's processes talk to each other, and the facts they share.

The caller (`numina_kit.sandbox.pool`), each warm worker (`numina_kit.sandbox.worker`) and each forked child
(`numina_kit.sandbox.child`) exchange one JSON object per line over pipes. `Pipe` is that channel: `send` a message,
`receive` the next one, waiting at most until a deadline and, optionally, only while another file descriptor (a
pidfd: "the other end died") stays quiet. Every wait has a deadline on the side that must never hang. The worker
environment, the timeout message and the note that a stateful interpreter's state was lost are defined here once.
"""

import contextlib
import json
import math
import os
import select
import time
from typing import Any


STATE_LOST = "The Python interpreter was restarted: variables, functions and imports from earlier blocks are lost."
# The whole environment of a worker and of every block (plus HOME/TMPDIR/PWD, the block's own directory): nothing of
# the caller's environment reaches a worker, so no secret is in its memory; one BLAS thread per process.
ENVIRONMENT = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "LANG": "C.UTF-8",
    "PYTHONHASHSEED": "0",
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}


# Only the worker process's: objects allocated with malloc (not pymalloc's small arenas) on transparent huge pages
# (glibc >= 2.35), so that its address space is mostly 2 MiB pages: forking it and tearing a finished child down then
# copy and free one entry per 2 MiB instead of one per 4 KiB, about half a block's CPU on a busy machine.
WORKER_MEMORY = {"PYTHONMALLOC": "malloc", "GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}


def timeout_message(timeout: float) -> str:
    """What the model sees when a block runs out of time (Numina's wording)."""
    return f"Timed out after {timeout:g} seconds."


class Pipe:
    """One end of a JSON-lines channel: reads from `read_fd`, writes to `write_fd` (either may be None)."""

    def __init__(self, read_fd: int | None, write_fd: int | None) -> None:
        self.read_fd, self.write_fd = read_fd, write_fd
        self._buffer = bytearray()
        # bound now: in a child, the model's code may replace `os.write` or `json.dumps` before the answer is sent
        self._read, self._write, self._dumps, self._loads = os.read, os.write, json.dumps, json.loads

    def send(self, message: Any) -> None:
        """Write `message` as one line; raises OSError when the reader is gone."""
        data = memoryview((self._dumps(message) + "\n").encode())
        while data:
            data = data[self._write(self.write_fd, data) :]

    def ready(self, timeout: float) -> bool:
        """Whether a message (or end of file) can be read without waiting, after waiting at most `timeout` seconds."""
        return b"\n" in self._buffer or bool(select.select([self.read_fd], [], [], timeout)[0])

    def receive(self, deadline: float | None = None, *, unless_readable: int | None = None) -> Any:
        """The next message, or None at end of file, after `deadline` (`time.monotonic()`), or once `unless_readable`
        becomes readable (what was written before that still counts). A line that is not JSON raises ValueError."""
        while b"\n" not in self._buffer:
            if deadline is None and unless_readable is None:
                chunk = self._read(self.read_fd, 65536)
            else:
                wait_ms = None
                if deadline is not None:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return None
                    wait_ms = math.ceil(left * 1000)
                poller = select.poll()
                poller.register(self.read_fd, select.POLLIN)
                if unless_readable is not None:
                    poller.register(unless_readable, select.POLLIN)
                events = dict(poller.poll(wait_ms))
                if self.read_fd not in events:
                    if unless_readable in events:
                        self._drain()
                        break
                    continue
                chunk = self._read(self.read_fd, 65536)
            if not chunk:
                return None
            self._buffer += chunk
        if b"\n" not in self._buffer:
            return None
        line, _, rest = bytes(self._buffer).partition(b"\n")
        self._buffer[:] = rest
        return self._loads(line)

    def _drain(self) -> None:
        """Read whatever is already in the pipe without waiting for more."""
        os.set_blocking(self.read_fd, False)
        with contextlib.suppress(BlockingIOError, OSError):
            while chunk := self._read(self.read_fd, 65536):
                self._buffer += chunk

    def close(self) -> None:
        for fd in {self.read_fd, self.write_fd} - {None}:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.read_fd = self.write_fd = None


def pipe_pair() -> tuple[Pipe, Pipe]:
    """Two connected ends for a process about to fork: the parent keeps the first, the child the second."""
    to_child_r, to_child_w = os.pipe()
    to_parent_r, to_parent_w = os.pipe()
    return Pipe(to_parent_r, to_child_w), Pipe(to_child_r, to_parent_w)
