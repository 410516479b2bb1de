"""The sandboxed Python executor for model-written code: `run_code`, `run_codes` and the `Sandbox` that owns workers.

Each block runs the way NuminaMath-7B-TIR was trained (ToRA style): alone, in fresh globals with `math`, `numpy as np`
and `sympy as sp`, the value of a final bare expression printed when nothing else was, errors shown as a compact
traceback, output capped with a marker, a timeout reported in one line. Blocks run in worker processes
(`numina_kit.sandbox.worker`) that import the preamble once and fork an isolated child per block, so a call costs
milliseconds. The caller never hangs and never crashes: every wait has a deadline, a worker that dies or stops
answering is killed and replaced, and timeouts need no signals (callable from any thread). See docs/executor.md for
exactly what the isolation guarantees.
"""

import atexit
import contextlib
import itertools
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

from numina_kit.errors import InputError
from numina_kit.sandbox.config import ExecutorConfig
from numina_kit.sandbox.isolation import Isolation, kill_processes_of
from numina_kit.sandbox.protocol import ENVIRONMENT, STATE_LOST, WORKER_MEMORY, Pipe, timeout_message


logger = logging.getLogger(__name__)

STATUSES = ("ok", "error", "timeout", "killed")
GRACE_S = 5.0  # beyond the block's timeout, how long the caller waits for a worker before replacing it
STARTUP_TIMEOUT_S = 120.0
_SLOTS = itertools.count()  # each worker's own range of block uids (see isolation.UIDS_PER_WORKER)
_PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@dataclass(frozen=True)
class ExecResult:
    """One block's outcome: `status` ok/error/timeout/killed, `output` (the text of the ```output block), seconds."""

    status: str
    output: str
    duration_s: float

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def _dead_result(timed_out: bool, timeout: float, stateful: bool, started: float) -> ExecResult:
    if timed_out:
        status, output = "timeout", timeout_message(timeout)
    else:
        status, output = "killed", "Killed: the sandbox process running this code died."
    if stateful:
        output += "\n" + STATE_LOST
    return ExecResult(status, output, time.monotonic() - started)


class _WorkerProcess:
    """One `numina_kit.sandbox.worker` process and the JSON-lines pipes to it; every read has a deadline."""

    def __init__(self, config: ExecutorConfig, root: str, index: int) -> None:
        self.config, self.root, self.index = config, root, index
        self.runs_root = os.path.join(root, f"runs{index}")
        self.proc: subprocess.Popen | None = None
        self.pipe: Pipe | None = None
        self.info: dict = {}
        self.live: list[int] = []
        self.keys: set[str] = set()

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None and bool(self.info)

    def start(self) -> None:
        """Start the process and send its configuration; `wait_ready` collects its answer."""
        env = ENVIRONMENT | WORKER_MEMORY | {"PYTHONPATH": _PACKAGE_PARENT}
        log = open(os.path.join(self.root, f"worker{self.index}.log"), "ab")  # noqa: SIM115 - handed to the child
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-P", "-m", "numina_kit.sandbox.worker"],  # -P: nothing imported from the cwd
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                env=env,
                cwd=self.root,
                start_new_session=True,
                close_fds=True,
            )
        finally:
            log.close()
        self.pipe = Pipe(self.proc.stdout.fileno(), self.proc.stdin.fileno())
        self.info = {}
        resolved = {"sympy_cache_size": self.config.sympy_cache_entries()}  # None resolved: the worker reads a number
        self.pipe.send(asdict(self.config) | resolved | {"runs_root": self.runs_root, "slot": next(_SLOTS)})

    def wait_ready(self) -> None:
        reply = self._receive(time.monotonic() + STARTUP_TIMEOUT_S)
        if reply is None or not reply.get("ready"):
            self.kill()
            reason = reply.get("error") if reply else self._log_tail()
            if reply and reply.get("preamble"):
                raise InputError(f"the executor preamble failed in the sandbox worker: {reason}")
            raise RuntimeError(f"the sandbox worker did not start: {reason}")
        self.live = reply.pop("live", [])
        self.info = reply

    def _log_tail(self) -> str:
        try:
            with open(os.path.join(self.root, f"worker{self.index}.log"), "rb") as handle:
                return handle.read()[-2000:].decode(errors="replace").strip() or "no message"
        except OSError:
            return "no message"

    def request(self, message: dict, deadline: float) -> dict | None:
        """Send one request and return its reply, or None after killing the worker (it died or missed the deadline)."""
        try:
            self.pipe.send(message)
        except OSError:
            self.kill()
            return None
        reply = self._receive(deadline)
        if reply is None:
            self.kill()
        else:
            self.live = reply.pop("live", [])
        return reply

    def _receive(self, deadline: float) -> dict | None:
        try:
            return self.pipe.receive(deadline)
        except ValueError:
            return None

    def kill(self, *, exited_cleanly: bool = False) -> None:
        """Kill the worker (its children die with it: they hold PR_SET_PDEATHSIG) and delete its files."""
        uid_base, isolation = self.info.get("uid_base"), self.info.get("isolation", {})
        if uid_base is not None and not isolation.get("private_processes") and self.live and not exited_cleanly:
            # without a PID namespace (where all dies with the worker), what its children started survives it (no
            # PDEATHSIG on grandchildren): find them by their uids
            kill_processes_of({uid_base + pid for pid in self.live})
        if self.proc is not None:
            with contextlib.suppress(OSError):
                os.killpg(self.proc.pid, 9)
            with contextlib.suppress(OSError):
                self.proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=5)
            for pipe in (self.proc.stdin, self.proc.stdout):
                with contextlib.suppress(OSError):
                    pipe.close()
        self.info = {}
        self.live = []
        shutil.rmtree(self.runs_root, ignore_errors=True)

    def stop(self) -> None:
        """Ask the worker to clean up and exit (closing stdin does it), then make sure it has."""
        if self.proc is None:
            return
        with contextlib.suppress(OSError, ValueError):
            self.proc.stdin.close()
        exited = False
        with contextlib.suppress(subprocess.TimeoutExpired):
            exited = self.proc.wait(timeout=5) == 0
        self.kill(exited_cleanly=exited)


def _shutdown(workers: list[_WorkerProcess], root: str) -> None:
    for worker in workers:
        worker.stop()
    shutil.rmtree(root, ignore_errors=True)


class Sandbox:
    """Owns a pool of sandbox workers; `run` one block, `run_many` in parallel (input order), `close` when done.

    With `config.stateful`, a `key` names an interpreter kept across calls (one per candidate); without it keys are
    ignored and every block runs alone. Safe to call from several threads at once.
    """

    def __init__(self, config: ExecutorConfig | None = None) -> None:
        self.config = config or ExecutorConfig()
        count = self.config.num_workers or os.cpu_count() or 1
        self._root = tempfile.mkdtemp(prefix="numina_kit_sandbox_")
        os.chmod(self._root, 0o711)  # a block's own uid must reach its run folder inside (nothing can be listed)
        self._workers = [_WorkerProcess(self.config, self._root, i) for i in range(count)]
        self._busy = [False] * count
        self._cond = threading.Condition()
        self._key_slot: dict[str, int] = {}
        self._lost: set[str] = set()
        self._pool: ThreadPoolExecutor | None = None
        self._closed = False
        self._finalizer = weakref.finalize(self, _shutdown, self._workers, self._root)

    def __enter__(self) -> "Sandbox":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def isolation(self) -> Isolation:
        """How the blocks are isolated here: the mode and each guarantee (`Isolation.missing()` says what is not
        guaranteed, and why, in one line each); starts the workers if needed."""
        self._start_workers()
        return Isolation(**self._workers[0].info["isolation"])

    def _start_workers(self) -> None:
        """Start every worker that is not running, all at once (each takes about a second to import and warm up)."""
        if self._closed:
            raise RuntimeError("this Sandbox is closed")
        with self._cond:
            idle = [i for i, worker in enumerate(self._workers) if not self._busy[i] and not worker.alive]
            for i in idle:
                self._busy[i] = True
        try:
            for i in idle:
                self._workers[i].start()
            for i in idle:
                self._workers[i].wait_ready()
        finally:
            with self._cond:
                for i in idle:
                    self._busy[i] = False
                self._cond.notify_all()

    def _acquire(self, key: str | None) -> int:
        with self._cond:
            if key is not None and key not in self._key_slot:
                loads = [0] * len(self._workers)
                for slot in self._key_slot.values():
                    loads[slot] += 1
                self._key_slot[key] = min(range(len(loads)), key=lambda i: (loads[i], self._busy[i]))
            while True:
                if key is not None:
                    slot = self._key_slot[key]
                    if not self._busy[slot]:
                        break
                else:
                    free = [i for i, busy in enumerate(self._busy) if not busy]
                    if free:
                        slot = free[0]
                        break
                self._cond.wait()
            self._busy[slot] = True
            return slot

    def _release(self, slot: int) -> None:
        with self._cond:
            self._busy[slot] = False
            self._cond.notify_all()

    def run(self, code: str, *, key: str | None = None, timeout: float | None = None) -> ExecResult:
        """Run one block (in the interpreter named `key` when the config is stateful) and return what it showed."""
        if self._closed:
            raise RuntimeError("this Sandbox is closed")
        timeout = self.config.timeout if timeout is None else timeout
        if not timeout > 0:
            raise InputError(f"timeout must be positive, got {timeout!r}")
        key = str(key) if key is not None and self.config.stateful else None
        slot = self._acquire(key)
        try:
            return self._run_on(slot, code, key, float(timeout))
        finally:
            self._release(slot)

    def _run_on(self, slot: int, code: str, key: str | None, timeout: float) -> ExecResult:
        worker = self._workers[slot]
        if not worker.alive:
            if worker.proc is not None:
                self._lose_keys(worker, except_key=None)
            worker.kill()
            worker.start()
            worker.wait_ready()
        note = ""
        if key is not None:
            if key in self._lost:
                self._lost.discard(key)
                note = STATE_LOST + "\n"
            worker.keys.add(key)
        started = time.monotonic()
        message = {"op": "run", "code": str(code), "timeout": timeout, "key": key}
        reply = worker.request(message, started + timeout + GRACE_S)
        if reply is None:
            logger.warning("sandbox worker %d died or stopped answering; replacing it", slot)
            self._lose_keys(worker, except_key=key)
            timed_out = time.monotonic() - started >= timeout + GRACE_S
            return _dead_result(timed_out, timeout, key is not None, started)
        status = reply.get("status") if reply.get("status") in STATUSES else "error"
        return ExecResult(status, note + str(reply.get("output", "")), time.monotonic() - started)

    def _lose_keys(self, worker: _WorkerProcess, except_key: str | None) -> None:
        """A worker died: its stateful interpreters are gone; tell each key's next block."""
        self._lost |= worker.keys - {except_key}
        worker.keys.clear()

    def run_many(
        self, codes: Sequence[str], *, keys: Sequence[str] | None = None, timeout: float | None = None
    ) -> list[ExecResult]:
        """Run blocks in parallel across the workers; results in input order. `keys[i]` names block i's interpreter."""
        codes = list(codes)
        if keys is not None and len(keys) != len(codes):
            raise InputError(f"run_many got {len(codes)} codes but {len(keys)} keys")
        if not codes:
            return []
        self._start_workers()
        if self._pool is None:
            with self._cond:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(len(self._workers), thread_name_prefix="numina-sandbox")
        keys = list(keys) if keys is not None else [None] * len(codes)
        futures = [
            self._pool.submit(self.run, code, key=key, timeout=timeout) for code, key in zip(codes, keys, strict=True)
        ]
        return [future.result() for future in futures]

    def forget(self, key: str) -> None:
        """Drop the stateful interpreter named `key` (its next block starts from fresh globals)."""
        key = str(key)
        with self._cond:
            slot = self._key_slot.get(key)
        self._lost.discard(key)
        if slot is None:
            return
        slot = self._acquire(key)
        try:
            worker = self._workers[slot]
            worker.keys.discard(key)
            if worker.alive:
                worker.request({"op": "forget", "key": key}, time.monotonic() + GRACE_S)
        finally:
            with self._cond:
                self._key_slot.pop(key, None)
            self._release(slot)

    def close(self) -> None:
        """Stop the workers and delete every file the sandbox made. Safe to call twice."""
        self._closed = True
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        self._finalizer()


_default_lock = threading.Lock()
_default: Sandbox | None = None


def default_sandbox() -> Sandbox:
    """The shared Sandbox behind `run_code` and `run_codes`, created on first use and closed at interpreter exit."""
    global _default
    with _default_lock:
        if _default is None or _default._closed:
            _default = Sandbox()
        return _default


@atexit.register
def _close_default() -> None:
    global _default
    with _default_lock:
        if _default is not None:
            _default.close()
            _default = None


def run_code(code: str, *, timeout: float = 5.0) -> ExecResult:
    """Run one model-written block in the default sandbox (fresh globals, math/np/sp preloaded)."""
    return default_sandbox().run(code, timeout=timeout)


def run_codes(codes: Sequence[str], *, timeout: float = 5.0) -> list[ExecResult]:
    """Run many blocks in parallel in the default sandbox; results in input order."""
    return default_sandbox().run_many(codes, timeout=timeout)
