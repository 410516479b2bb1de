"""The sandbox worker: a warm process that has run the preamble once and forks one isolated child per block.

`numina_kit.sandbox.pool.Sandbox` starts it as `python -m numina_kit.sandbox.worker` and speaks newline-delimited JSON with it on
stdin/stdout. Forking from a parent that has already imported numpy and sympy (and exercised sympy once) makes a block
cost milliseconds instead of a fresh interpreter; one spare child is always forked ahead so the fork overlaps the
previous run. `numina_kit.sandbox.isolation` sets up each child before it sees any code; `numina_kit.sandbox.child` runs the
blocks inside it. The worker enforces the wall-clock timeout, kills and reaps everything a block leaves behind (it is
a child subreaper) and deletes its files.
"""

import contextlib
import gc
import os
import shutil
import signal
import sys
import time

from numina_kit.sandbox.child import serve_blocks
from numina_kit.sandbox.isolation import (
    UID_BASE,
    become_subreaper,
    clean_shared_dirs,
    count_own_processes,
    isolate_child,
    mount_private_tmpfs,
    probe_setuid,
    reveal_python,
    unshare_network,
)
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


class PreambleError(Exception):
    """The configured preamble raised in the worker."""


class Child:
    """One forked interpreter: its pid, its uid (or None), and the pipe for its requests and results."""

    def __init__(self, pid: int, uid: int | None, pipe: Pipe) -> None:
        self.pid, self.uid, self.pipe = pid, uid, pipe
        self.status: int | None = None


class Worker:
    """Serves run/forget requests from the caller, forking one isolated child per block (or per stateful key)."""

    def __init__(self, config: dict) -> None:
        self.config = config
        self.runs_root = config["runs_root"]
        self.pid = os.getpid()
        self.spare: Child | None = None
        self.interpreters: dict[str, Child] = {}
        self.exiting: list[tuple[Child, float]] = []
        privileged = config.get("privileged", True) and os.geteuid() == 0
        self.uid_mode = privileged and probe_setuid()
        if not self.uid_mode:  # RLIMIT_NPROC counts all of this user's processes: leave room for the ones running
            config["nproc_limit"] = count_own_processes() + config["max_processes"] + 64
        self.net_isolated = privileged and unshare_network()
        self.fs_isolated = privileged and mount_private_tmpfs(config["max_file_mb"])
        self.python_visible = not self.uid_mode or reveal_python()
        os.makedirs(self.runs_root, exist_ok=True)
        os.chmod(self.runs_root, 0o1733 if self.uid_mode else 0o700)
        become_subreaper()
        self.namespace: dict = {"__name__": "__main__", "__builtins__": __builtins__}
        try:
            exec(compile(config["preamble"], "<preamble>", "exec"), self.namespace)
        except BaseException as exc:  # noqa: BLE001
            raise PreambleError(f"{type(exc).__name__}: {exc}") from exc
        if config.get("warmup", True) and {"sp", "np", "math"} <= self.namespace.keys():
            exec(WARMUP, dict(self.namespace))
        gc.collect()
        gc.freeze()

    # ---- children -------------------------------------------------------------------------------------------------

    def fork_child(self) -> Child:
        """Fork a child that prepares its isolation and then waits for blocks on its request pipe."""
        ours, theirs = pipe_pair()
        pid = os.fork()
        if pid == 0:
            try:
                self._child_main(theirs)
            finally:
                os._exit(70)
        theirs.close()
        uid = UID_BASE + pid if self.uid_mode else None
        return Child(pid, uid, ours)

    def _child_main(self, pipe: Pipe) -> None:
        isolate_child(self.config, self.runs_root, self.pid, self.uid_mode, (pipe.read_fd, pipe.write_fd))
        serve_blocks(pipe, dict(self.namespace), self.config, self.uid_mode)

    def reap(self, child: Child) -> None:
        """Kill `child` and everything it started, wait for them, and delete its files."""
        with contextlib.suppress(OSError):
            os.killpg(child.pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            os.kill(child.pid, signal.SIGKILL)
        if child.uid is not None:
            killer = os.fork()
            if killer == 0:
                try:
                    os.setgid(child.uid)
                    os.setuid(child.uid)
                    os.kill(-1, signal.SIGKILL)
                finally:
                    os._exit(0)
            os.waitpid(killer, 0)
        if child.status is None:
            child.status = self._wait(child.pid)
        child.pipe.close()
        self.reap_orphans()
        shutil.rmtree(os.path.join(self.runs_root, str(child.pid)), ignore_errors=True)
        with contextlib.suppress(OSError):
            os.unlink(os.path.join(self.runs_root, f"{child.pid}.out"))
        self.clean_shared_dirs(child.uid)
        self.clean_runs_root()

    def _wait(self, pid: int) -> int:
        try:
            return os.waitpid(pid, 0)[1]
        except ChildProcessError:
            return 0

    def live_pids(self) -> set[int]:
        pids = {child.pid for child in self.interpreters.values()} | {child.pid for child, _ in self.exiting}
        if self.spare is not None:
            pids.add(self.spare.pid)
        return pids

    def has_leftovers(self) -> bool:
        """Whether a finished child, or a process re-parented to this worker, has not been waited for yet."""
        return bool(self.exiting) or bool(self._children() - self.live_pids())

    def _children(self) -> set[int]:
        try:
            with open(f"/proc/self/task/{self.pid}/children") as handle:
                return {int(pid) for pid in handle.read().split()}
        except OSError:
            return set()

    def reap_orphans(self) -> None:
        """Kill and wait for processes re-parented to this worker (it is a subreaper) that are not live children."""
        for _ in range(200):
            stray = self._children() - self.live_pids()
            if not stray:
                return
            for pid in stray:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, 0)

    def clean_shared_dirs(self, uid: int | None) -> None:
        """Without a private /tmp, delete what a finished child's uid left in the world-writable directories."""
        if not self.fs_isolated:
            clean_shared_dirs(uid)

    def clean_runs_root(self) -> None:
        """Delete anything in the runs directory that does not belong to a live child."""
        live = {str(pid) for pid in self.live_pids()} | {f"{pid}.out" for pid in self.live_pids()}
        with os.scandir(self.runs_root) as entries:
            for entry in entries:
                if entry.name in live:
                    continue
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path, ignore_errors=True)
                else:
                    with contextlib.suppress(OSError):
                        os.unlink(entry.path)

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

    def _exited_now(self, child: Child) -> bool:
        pid, status = os.waitpid(child.pid, os.WNOHANG)
        if pid:
            child.status = status
        return bool(pid)

    # ---- requests -------------------------------------------------------------------------------------------------

    def run(self, code: str, timeout: float, key: str | None) -> dict:
        start = time.monotonic()
        child = self.interpreters.get(key) if key is not None else None
        if child is None:
            child, self.spare = self.spare or self.fork_child(), None
            if key is not None:
                self.interpreters[key] = child
        try:
            child.pipe.send({"code": code, "timeout": timeout, "last": key is None})
        except OSError:
            pass  # the child died while idle; the result below says so
        if self.spare is None:
            self.spare = self.fork_child()  # overlaps with the run
        result = self.await_result(child, start + timeout)
        if result is not None and key is None:
            self.exiting.append((child, time.monotonic() + 1.0))  # it exits by itself; collected after the reply
        elif result is None:
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
        """After a reply: close and delete what finished children left; wait for them, reap any stragglers."""
        still = []
        for child, deadline in self.exiting:
            if child.status is None:
                pid, status = os.waitpid(child.pid, os.WNOHANG)
                if pid:
                    child.status = status
                elif time.monotonic() < deadline:
                    still.append((child, deadline))
                else:
                    self.reap(child)
            if child.pipe.read_fd is not None:
                child.pipe.close()
                shutil.rmtree(os.path.join(self.runs_root, str(child.pid)), ignore_errors=True)
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(self.runs_root, f"{child.pid}.out"))
                self.clean_shared_dirs(child.uid)
        self.exiting = still
        self.reap_orphans()
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
        for child, _ in self.exiting:
            self.reap(child)
        self.exiting = []
        for key in list(self.interpreters):
            self.forget(key)
        if self.spare is not None:
            spare, self.spare = self.spare, None
            self.reap(spare)
        self.reap_orphans()
        shutil.rmtree(self.runs_root, ignore_errors=True)


def main() -> int:
    """Serve requests on stdin/stdout until stdin closes."""
    protocol_out = os.dup(1)
    os.dup2(2, 1)  # stray prints from imports go to the log, never into the protocol
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    caller = Pipe(0, protocol_out)
    reply = caller.send
    config = caller.receive()
    if config is None:
        return 1
    try:
        worker = Worker(config)
        worker.spare = worker.fork_child()
    except BaseException as exc:  # noqa: BLE001 - reported to the caller, which raises it
        reply({"ready": False, "error": f"{type(exc).__name__}: {exc}", "preamble": isinstance(exc, PreambleError)})
        return 1
    reply(
        {
            "ready": True,
            "pid": os.getpid(),
            "uid_mode": worker.uid_mode,
            "net_isolated": worker.net_isolated,
            "fs_isolated": worker.fs_isolated,
            "python_visible": worker.python_visible,
            "live": sorted(worker.live_pids()),
        }
    )
    try:
        while True:
            # while finished children or their orphans are still exiting, keep collecting them between requests
            while worker.has_leftovers() and not caller.ready(0.02):
                worker.collect()
            request = caller.receive()
            if request is None:
                break
            if request["op"] == "run":
                result = worker.run(request["code"], float(request["timeout"]), request.get("key"))
                reply(result | {"live": sorted(worker.live_pids())})
                worker.collect()
            elif request["op"] == "forget":
                worker.forget(request["key"])
                reply({"ok": True})
    finally:
        worker.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
