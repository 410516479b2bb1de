"""The sandbox worker: a warm process that has run the preamble once and forks one isolated child per block.

`numina_kit.sandbox.pool.Sandbox` starts it as `python -m numina_kit.sandbox.worker` and speaks JSON lines with it on
stdin/stdout (`numina_kit.sandbox.protocol`). The worker first isolates itself (`isolation.isolate_worker`: the
strongest mode the machine allows), then imports the preamble. Forking from a parent that has already imported numpy
and sympy (and exercised sympy once) makes a block cost milliseconds instead of a fresh interpreter. Children are
forked ahead: up to `spare_children` while the worker is idle (in SC-TIR, while the model generates), and at least
one while a block runs, so that the fork and the child's set-up are off a block's critical path. `isolation.isolate_child` sets up each child before it
sees any code; `numina_kit.sandbox.child` runs the blocks inside it. The worker enforces the wall-clock timeout,
kills and reaps everything a block leaves behind (it is PID 1 of its namespace, or a child subreaper) and deletes
its files.
"""

import contextlib
import gc
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import asdict

from numina_kit.sandbox.child import serve_blocks
from numina_kit.sandbox.isolation import (
    PRIVATE_DIRS,
    WorkerSetup,
    become_subreaper,
    child_pids,
    descendants,
    enter_pid_namespace,
    isolate_child,
    isolate_worker,
    kill_processes_of,
)
from numina_kit.sandbox.leftovers import SharedDirs, remove
from numina_kit.sandbox.protocol import STATE_LOST, Pipe, pipe_pair, timeout_message


WARMUP = """
x, y, n = sp.symbols('x y n')
sp.solve([sp.Eq(x + y, 10), sp.Eq(x - y, 2)], (x, y)); sp.solve(x**2 - 5*x + 6, x); sp.solveset(x**2 - 4, x)
sp.simplify(sp.sin(x)**2 + sp.cos(x)**2); sp.factor(x**3 - 1); sp.expand((x + 1)**5); sp.nsimplify(0.5)
sp.integrate(x**2 * sp.exp(x), x); sp.integrate(1 / (1 + x**2), (x, 0, 1)); sp.diff(sp.sin(x) * x, x)
sp.limit(sp.sin(x) / x, x, 0); sp.summation(n**2, (n, 1, 10)); sp.series(sp.exp(x), x, 0, 4)
sp.Matrix([[1, 2], [3, 4]]).det(); sp.Matrix([[1, 2], [3, 4]]).inv(); sp.N(sp.pi, 20); sp.sqrt(8)
sp.factorint(360); sp.isprime(97); sp.divisors(36); sp.binomial(10, 3); sp.Rational(3, 4) + sp.Rational(1, 6)
sp.gcd(12, 18); sp.lcm(4, 6); sp.floor(sp.Rational(7, 2)); sp.Poly(x**2 + 1, x).all_coeffs(); sp.primerange(1, 50)
sp.latex(x**2 / 3); str(sp.sqrt(2) * x + sp.Rational(1, 3)); sp.Abs(-x); sp.Eq(x, 1).lhs; sp.nroots(x**3 - 2)
np.array([1.0, 2.0]).sum(); np.linalg.solve(np.eye(2), np.ones(2)); np.arange(10).reshape(2, 5).mean(axis=0)
math.comb(10, 3); math.gcd(4, 6); math.factorial(10); math.isqrt(99)
"""


_exit = os._exit
IDLE_AFTER_S = 0.02  # how long the caller must be quiet before the worker forks spares


class PreambleError(Exception):
    """The configured preamble raised in the worker."""


class Child:
    """One forked interpreter: its pid, its uid (or None), its pipe, and the files it made in the private dirs."""

    def __init__(self, pid: int, uid: int | None, pipe: Pipe) -> None:
        self.pid, self.uid, self.pipe = pid, uid, pipe
        self.status: int | None = None
        self.files: set[str] = set()  # what a stateful interpreter keeps in /tmp or /dev/shm between its blocks


class Worker:
    """Serves run/forget requests from the caller, forking one isolated child per block (or per stateful key)."""

    def __init__(self, config: dict, setup: WorkerSetup) -> None:
        self.config, self.setup = config, setup
        self.runs_root, self.uid_base = setup.runs_root, setup.uid_base
        self.pid = os.getpid()
        self.spares: list[Child] = []  # forked ahead, isolated, waiting for a block (oldest first)
        self.spare_target = int(config["spare_children"])
        self.interpreters: dict[str, Child] = {}
        self.finished: list[Child] = []  # one-off children that answered: killed and cleaned after the reply
        self.shared_dirs = SharedDirs()  # the host's /tmp, /dev/shm... ("setuid" mode)
        self.prepare_runs_root()
        become_subreaper()
        self.baseline = self.private_files()  # the private dirs hold only the runs directory (and mounted-back code)
        self.namespace: dict = {"__name__": "__main__", "__builtins__": __builtins__}
        os.environ["SYMPY_CACHE_SIZE"] = str(config["sympy_cache_size"])  # read when the preamble imports sympy
        try:
            exec(compile(config["preamble"], "<preamble>", "exec"), self.namespace)
        except BaseException as exc:  # noqa: BLE001
            raise PreambleError(f"{type(exc).__name__}: {exc}") from exc
        finally:
            del os.environ["SYMPY_CACHE_SIZE"]  # blocks get exactly ENVIRONMENT
        if config.get("warmup", True) and {"sp", "np", "math"} <= self.namespace.keys():
            exec(WARMUP, dict(self.namespace))
        gc.collect()
        gc.freeze()

    # ---- children -------------------------------------------------------------------------------------------------

    def prepare_runs_root(self) -> None:
        """(Re)create the blocks' directory: where blocks share the worker's uid, a block may have removed it."""
        os.makedirs(self.runs_root, exist_ok=True)
        os.chmod(self.runs_root, 0o1733 if self.uid_base is not None else 0o700)

    def fork_child(self) -> Child:
        """Fork a child that prepares its isolation and then waits for blocks on its request pipe."""
        if self.uid_base is None:
            self.prepare_runs_root()
        ours, theirs = pipe_pair()
        pid = os.fork()
        if pid == 0:
            try:
                isolate_child(self.config, self.setup, self.pid, (theirs.read_fd, theirs.write_fd))
                serve_blocks(theirs, dict(self.namespace), self.config, uid_mode=self.uid_base is not None)
            finally:
                _exit(70)  # never unwind into the worker's code (serve_blocks replaces os._exit for the model)
        theirs.close()
        return Child(pid, None if self.uid_base is None else self.uid_base + pid, ours)

    def reap(self, child: Child) -> None:
        """Kill `child` and everything it started, wait for them, and delete its files."""
        with contextlib.suppress(OSError):
            os.killpg(child.pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            os.kill(child.pid, signal.SIGKILL)
        if child.status is None:
            child.status = self._wait(child.pid)
        if child.uid is not None and not self.setup.pid_namespace:
            kill_processes_of({child.uid})  # without a PID namespace to die with, every process of its uid
        self.kill_leftovers()
        self.forget_files(child)
        self.clean_runs_root()

    def take_spare(self) -> Child:
        """The oldest spare child still alive and still in its directory, or a new one (where blocks share a uid, an
        earlier block may have killed spares or deleted their directories)."""
        if self.uid_base is None:
            self.prepare_runs_root()
        while self.spares:
            spare = self.spares.pop(0)
            if not self._exited_now(spare) and self.kept_directory(spare):
                return spare
            self.reap(spare)
        return self.fork_child()

    def kept_directory(self, spare: Child) -> bool:
        """Whether `spare` still has its working directory. Only where blocks share the worker's uid can a block have
        deleted it; a spare still setting up (its cwd not yet there) has not made it yet, and will."""
        workdir = os.path.join(self.runs_root, str(spare.pid))
        if self.uid_base is not None or os.path.isdir(workdir):
            return True
        try:
            cwd = os.readlink(f"/proc/{spare.pid}/cwd")
        except OSError:
            return False
        return not cwd.startswith(workdir)  # in its directory, and the directory is gone: "<workdir> (deleted)"

    def wants_spares(self) -> bool:
        return len(self.spares) < self.spare_target

    def fork_spares(self, interrupted: Callable[[], bool] = lambda: False) -> None:
        """Fork spare children, one at a time, up to the target or until `interrupted()`."""
        while self.wants_spares() and not interrupted():
            self.spares.append(self.fork_child())

    def _wait(self, pid: int) -> int:
        try:
            return os.waitpid(pid, 0)[1]
        except ChildProcessError:
            return 0

    def _exited_now(self, child: Child) -> bool:
        if child.status is None:
            with contextlib.suppress(ChildProcessError):
                pid, status = os.waitpid(child.pid, os.WNOHANG)
                if pid:
                    child.status = status
        return child.status is not None

    def live_children(self) -> list[Child]:
        return [*self.interpreters.values(), *self.finished, *self.spares]

    def live_pids(self) -> set[int]:
        return {child.pid for child in self.live_children()}

    def has_leftovers(self) -> bool:
        """Whether a finished child, or a process re-parented to this worker, has not been reaped yet."""
        return bool(self.finished) or bool(self._children() - self.live_pids())

    def _children(self) -> set[int]:
        return child_pids(self.pid, self.pid)

    def kill_leftovers(self, dying: list[Child] = ()) -> None:
        """Kill what finished blocks left running, and reap the processes already dead. Everything a block started
        stays below this worker (PID 1 of its namespace, or a subreaper), so the strays are the children that are
        not live and their descendants; a fork bomb forks while it is being killed: until no new one appears."""
        signaled = {child.pid for child in dying}
        for _ in range(200):
            stray = descendants(self._children() - self.live_pids())
            if not stray - signaled:
                break
            for pid in stray - signaled:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)  # once signalled it can fork no more
            signaled |= stray
        for pid in self._children() - self.live_pids():
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)  # the dead ones; the dying are reaped on a later pass

    # ---- files ----------------------------------------------------------------------------------------------------

    def private_files(self) -> set[str]:
        """Every entry of the worker's private /tmp, /var/tmp and /dev/shm (none outside the namespace modes)."""
        if not self.setup.isolation.private_tmp:
            return set()
        found = set()
        for path in PRIVATE_DIRS:
            with contextlib.suppress(OSError):
                found |= {os.path.join(path, name) for name in os.listdir(path)}
        return found

    def forget_files(self, child: Child, *, thorough: bool = True) -> None:
        """Delete a finished child's directory and output file, and what blocks left in the shared directories
        (not `thorough`: only what appeared there since the last block, enough for a one-off block)."""
        child.pipe.close()
        remove(os.path.join(self.runs_root, str(child.pid)))
        remove(os.path.join(self.runs_root, f"{child.pid}.out"))
        if self.setup.isolation.private_tmp:
            kept = set().union(*(live.files for live in self.live_children()))
            for path in self.private_files() - self.baseline - kept:
                remove(path)
        elif child.uid is not None:
            self.shared_dirs.clean(child.uid, thorough=thorough)

    def clean_runs_root(self) -> None:
        """Delete anything in the runs directory that does not belong to a live child."""
        live = {str(pid) for pid in self.live_pids()} | {f"{pid}.out" for pid in self.live_pids()}
        with contextlib.suppress(OSError), os.scandir(self.runs_root) as entries:
            for entry in entries:
                if entry.name not in live:
                    remove(entry.path)

    # ---- requests -------------------------------------------------------------------------------------------------

    def await_result(self, child: Child, deadline: float) -> dict | None:
        """The child's result, or None when it died or the deadline passed (then `child.status` says which)."""
        try:
            pidfd = os.pidfd_open(child.pid)
        except (AttributeError, OSError):  # kernels before 5.3: look for its exit every 50 ms instead
            pidfd = None
        try:
            while True:
                wait_until = deadline if pidfd is not None else min(deadline, time.monotonic() + 0.05)
                result = child.pipe.receive(wait_until, unless_readable=pidfd)
                if result is not None or time.monotonic() >= deadline:
                    break
                if self._exited_now(child) or pidfd is not None:  # it died, or closed its end of the pipe
                    return None
        except (ValueError, OSError):  # the model's code wrote into the result pipe
            result = "unreadable"
        finally:
            if pidfd is not None:
                os.close(pidfd)
        if result is None:
            return None
        if not isinstance(result, dict) or not {"status", "output"} <= result.keys():
            return {"status": "error", "output": "The sandbox could not read the result of this block."}
        return {"status": str(result["status"]), "output": str(result["output"])}

    def run(self, code: str, timeout: float, key: str | None) -> dict:
        start = time.monotonic()
        if self.finished:
            self.collect()  # nothing an earlier block left may be seen by this one
        child = self.interpreters.get(key) if key is not None else None
        if child is None:
            child = self.take_spare()
            if key is not None:
                self.interpreters[key] = child
        before = self.private_files() if key is not None else set()
        try:
            child.pipe.send({"code": code, "timeout": timeout, "last": key is None})
        except OSError:
            pass  # the child died while idle; the result below says so
        if not self.spares:
            self.spares.append(self.fork_child())  # overlaps with the run
        result = self.await_result(child, start + timeout)
        if result is not None and key is None:
            self.finished.append(child)  # collected after the reply
        elif result is not None:
            child.files |= self.private_files() - before
        else:
            timed_out = time.monotonic() >= start + timeout
            if key is not None:
                self.interpreters.pop(key, None)
            self.reap(child)
            result = self.describe_death(child.status, timed_out, timeout)
            if key is not None:
                result["output"] += "\n" + STATE_LOST
        result["duration_s"] = time.monotonic() - start
        return result

    def collect(self) -> None:
        """After a reply: kill the children that answered (they are exiting anyway) and what they started, and
        delete their files. Nothing waits for their exit: a killed process runs no more code, and the worker
        reaps them while it has nothing else to do."""
        finished, self.finished = self.finished, []
        for child in finished:
            with contextlib.suppress(OSError):
                os.kill(child.pid, signal.SIGKILL)
        self.kill_leftovers(dying=finished)  # first: nothing may write a file after the cleanup below
        for child in finished:
            self.forget_files(child, thorough=False)
        self.clean_runs_root()

    @staticmethod
    def describe_death(status: int | None, timed_out: bool, timeout: float) -> dict:
        """The result for a child that never answered: a timeout, or how it died."""
        if timed_out:
            return {"status": "timeout", "output": timeout_message(timeout)}
        if status is not None and os.WIFSIGNALED(status):
            sig = os.WTERMSIG(status)
            try:
                name = signal.Signals(sig).name
            except ValueError:
                name = str(sig)
            return {"status": "killed", "output": f"Killed by signal {name} ({signal.strsignal(sig)})."}
        code = os.WEXITSTATUS(status) if status is not None else -1
        return {"status": "killed", "output": f"The Python process exited with status {code} before finishing."}

    def forget(self, key: str) -> None:
        child = self.interpreters.pop(key, None)
        if child is not None:
            self.reap(child)

    def close(self) -> None:
        self.collect()
        for key in list(self.interpreters):
            self.forget(key)
        spares, self.spares = self.spares, []
        for spare in spares:
            self.reap(spare)
        self.kill_leftovers()
        shutil.rmtree(self.runs_root, ignore_errors=True)


def idle(worker: Worker, caller: Pipe) -> None:
    """Until the next request arrives: fork spare children up to the target, one at a time, once the caller has been
    quiet for `IDLE_AFTER_S` (within a round the next block comes sooner: forking then would delay it); then, while
    finished children or their orphans are still exiting, collect them."""
    if worker.wants_spares() and caller.ready(IDLE_AFTER_S):
        return
    worker.fork_spares(interrupted=lambda: caller.ready(0))
    if worker.wants_spares():  # a request came in first
        return
    while worker.has_leftovers() and not caller.ready(0.02):
        worker.collect()


def main() -> int:
    """Isolate this process, then serve requests on stdin/stdout until stdin closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    caller = Pipe(0, 1)
    config = caller.receive()
    if config is None:
        return 1
    try:
        setup = isolate_worker(config)
        if setup.pid_namespace:
            enter_pid_namespace()  # from here on this process is PID 1 of the blocks' namespace
    except BaseException as exc:  # noqa: BLE001 - reported to the caller, which raises it
        caller.send({"ready": False, "error": f"the sandbox could not isolate itself: {type(exc).__name__}: {exc}"})
        return 1
    caller.write_fd = os.dup(1)
    os.dup2(2, 1)  # stray prints from imports go to the log, never into the protocol
    try:
        worker = Worker(config, setup)
        worker.spares.append(worker.fork_child())
    except BaseException as exc:  # noqa: BLE001 - reported to the caller, which raises it
        error = f"{type(exc).__name__}: {exc}"
        caller.send({"ready": False, "error": error, "preamble": isinstance(exc, PreambleError)})
        return 1
    caller.send(
        {
            "ready": True,
            "isolation": asdict(setup.isolation),
            "uid_base": setup.uid_base,
            "runs_root": setup.runs_root,
            "live": sorted(worker.live_pids()),
        }
    )
    try:
        while True:
            idle(worker, caller)
            request = caller.receive()
            if request is None:
                break
            if request["op"] == "run":
                result = worker.run(request["code"], float(request["timeout"]), request.get("key"))
                caller.send(result | {"live": sorted(worker.live_pids())})
                worker.collect()
            elif request["op"] == "live":  # the spares it keeps when idle included (for the containment tests)
                worker.fork_spares()
                caller.send({"live": sorted(worker.live_pids())})
            elif request["op"] == "forget":
                worker.forget(request["key"])
                caller.send({"ok": True})
    finally:
        worker.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
