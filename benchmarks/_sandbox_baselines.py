"""What other executors do with the same code blocks: the baselines of benchmarks/executor.py's isolation rounds.

- `JupyterPool`: the sandbox of the AIMO-3 public notebooks (e.g. github.com/AndreasBis/AIMO3-Solution): persistent
  IPython kernels driven by jupyter_client, pre-warmed with math, numpy and sympy, a block interrupted after 6 s;
  no isolation at all.
- `fresh_python_round`: Numina's executor: preamble + block written to a file and run by a fresh `python3`.
- `own_compute`: what the blocks themselves cost: each exec'd in fresh globals, one after another, in one warm process.
- `spawn_per_call` (Numina's executor, one block) and `bare_fork` (a warm process forking per block, no isolation):
  the per-call baselines; `compare_trees`: `run_code` in another checkout (the base commit), timed alongside.
"""

import contextlib
import gc
import io
import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from numina_kit.sandbox.worker import WARMUP


PREAMBLE = "import math\nimport numpy as np\nimport sympy as sp\n"


class JupyterPool:
    """`size` warm IPython kernels; `run_round` hands blocks to whichever kernel is free (one thread per kernel)."""

    def __init__(self, size: int, timeout: float = 6.0) -> None:
        from jupyter_client.manager import start_new_kernel

        self.timeout = timeout
        started = time.perf_counter()
        self.kernels = [start_new_kernel(kernel_name="python3", startup_timeout=120) for _ in range(size)]
        for _, client in self.kernels:
            client.execute_interactive(PREAMBLE, timeout=120)
        self.start_s = time.perf_counter() - started

    def _run(self, manager, client, code: str) -> str:
        """Run one block; its stdout (or error name); interrupt the kernel when it runs past the timeout."""
        msg_id = client.execute(code, store_history=False)
        deadline, output, interrupted = time.monotonic() + self.timeout, [], False
        while True:
            left = deadline - time.monotonic()
            if left <= 0 and not interrupted:
                manager.interrupt_kernel()
                interrupted, deadline = True, time.monotonic() + 30
                continue
            if left <= 0:  # the kernel died or ignores interrupts: restart it, warm again
                manager.restart_kernel(now=True)
                client.wait_for_ready(timeout=120)
                client.execute_interactive(PREAMBLE, timeout=120)
                return "restarted"
            try:
                message = client.get_iopub_msg(timeout=max(left, 0.01))
            except queue.Empty:
                continue
            if message["parent_header"].get("msg_id") != msg_id:
                continue
            kind, content = message["msg_type"], message["content"]
            if kind == "stream":
                output.append(content["text"])
            elif kind == "execute_result":
                output.append(content["data"].get("text/plain", ""))
            elif kind == "error":
                output.append(content["ename"])
            elif kind == "status" and content["execution_state"] == "idle":
                return "timeout" if interrupted else "".join(output)

    def run_round(self, codes: list[str]) -> float:
        """Wall seconds for all `codes`, spread over the kernels."""
        work: queue.Queue = queue.Queue()
        for code in codes:
            work.put(code)

        def drain(manager, client) -> None:
            while True:
                try:
                    code = work.get_nowait()
                except queue.Empty:
                    return
                self._run(manager, client, code)

        started = time.perf_counter()
        threads = [threading.Thread(target=drain, args=kernel) for kernel in self.kernels]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return time.perf_counter() - started

    def close(self) -> None:
        for manager, client in self.kernels:
            client.stop_channels()
            manager.shutdown_kernel(now=True)


def fresh_python_round(codes: list[str], workers: int, timeout: float = 6.0) -> float:
    """Wall seconds for `codes` run Numina's way, `workers` at a time: a fresh interpreter per block."""

    def run(code: str) -> None:
        with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as handle:
            handle.write(PREAMBLE + code)
        try:
            subprocess.run(
                [sys.executable, handle.name], capture_output=True, timeout=timeout, cwd=tempfile.gettempdir()
            )
        except subprocess.TimeoutExpired:
            pass
        finally:
            os.unlink(handle.name)

    started = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(run, codes))
    return time.perf_counter() - started


# Runs in a subprocess (a block may call os._exit or loop): warm up, then exec each block in fresh globals, each
# under a 6 s alarm, its output discarded; writes the seconds of each block as one JSON list.
_COMPUTE = """
import contextlib, gc, io, json, os, signal, sys, time
from numina_kit.sandbox.config import DEFAULT_PREAMBLE
from numina_kit.sandbox.worker import WARMUP
warm = {"__name__": "__main__"}
exec(DEFAULT_PREAMBLE, warm)
exec(WARMUP, dict(warm))
gc.collect()
gc.freeze()
def stop(*_):
    raise TimeoutError
def no_exit(code=0):
    raise SystemExit(code)
signal.signal(signal.SIGALRM, stop)
os._exit = no_exit
report = os.dup(1)
os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
seconds = []
for code in json.loads(sys.stdin.read()):
    started = time.perf_counter()
    try:
        signal.alarm(6)
        with contextlib.redirect_stdout(io.StringIO()):
            exec(code, dict(warm))
    except BaseException:
        pass
    finally:
        signal.alarm(0)
    seconds.append(time.perf_counter() - started)
os.write(report, json.dumps(seconds).encode())
"""


def own_compute(codes: list[str]) -> list[float]:
    """Seconds each block takes by itself (exec'd in fresh globals in one warm process, sympy's caches shared)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    with tempfile.TemporaryDirectory() as cwd:
        done = subprocess.run([sys.executable, "-c", _COMPUTE], input=json.dumps(codes), capture_output=True,
                              text=True, env=env, cwd=cwd, check=True)  # fmt: skip
    return json.loads(done.stdout)


def spawn_per_call(code: str) -> tuple[float, str]:
    """Numina's executor: write preamble + code to a file, run a fresh `python3` on it, capture its output."""
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as handle:
        handle.write(PREAMBLE + code)
    try:
        started = time.perf_counter()
        done = subprocess.run([sys.executable, handle.name], capture_output=True, text=True, timeout=60)
        elapsed = time.perf_counter() - started
    finally:
        os.unlink(handle.name)
    return elapsed, done.stdout.strip()


_WARM: dict = {}


def bare_fork(code: str) -> float:
    """The floor: fork this (warm) process and exec the block in the child, with no isolation at all."""
    if not _WARM:
        exec(PREAMBLE, _WARM)
        exec(WARMUP, dict(_WARM))
        gc.collect()
        gc.freeze()
    read_fd, write_fd = os.pipe()
    started = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        with contextlib.redirect_stdout(io.StringIO()) as out:
            exec(code, dict(_WARM))
        os.write(write_fd, out.getvalue().encode() or b"-")
        os._exit(0)
    os.close(write_fd)
    os.read(read_fd, 65536)
    os.close(read_fd)
    os.waitpid(pid, 0)
    return time.perf_counter() - started


# Times `run_code` in a checkout given by its working directory: the codes come as one JSON line, then each line
# "N" asks for N timed calls (cycling through the codes), answered with a JSON list of seconds.
LATENCY_PROBE = """
import json, sys, time
from numina_kit.sandbox.pool import run_code
codes = json.loads(sys.stdin.readline())
run_code("1")
print(json.dumps(__import__("numina_kit").__file__), flush=True)
for line in sys.stdin:
    times = []
    for i in range(int(line)):
        started = time.perf_counter()
        run_code(codes[i % len(codes)])
        times.append(time.perf_counter() - started)
    print(json.dumps(times), flush=True)
"""


def compare_trees(
    base: Path, this: Path, codes: list[str], rounds: int, calls: int
) -> tuple[list[float], list[float]]:
    """`run_code` seconds per call in the `base` checkout and in this one: both sandboxes started, then timed in
    alternating rounds of `calls` calls, so that both see the same machine load."""
    probes = []
    for tree in (base, this):
        env = {**os.environ, "PYTHONPATH": str(tree)}
        probe = subprocess.Popen(
            [sys.executable, "-c", LATENCY_PROBE], cwd=tree, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        probe.stdin.write(json.dumps(codes) + "\n")
        probe.stdin.flush()
        loaded = Path(json.loads(probe.stdout.readline())).resolve()
        assert loaded.is_relative_to(tree.resolve()), f"{tree} imported numina_kit from {loaded}"
        probes.append(probe)
    times: list[list[float]] = [[], []]
    for _ in range(rounds):
        for probe, seconds in zip(probes, times, strict=True):
            probe.stdin.write(f"{calls}\n")
            probe.stdin.flush()
            seconds += json.loads(probe.stdout.readline())
    for probe in probes:
        probe.stdin.close()
        probe.wait(timeout=60)
    return times[0], times[1]


def git_short(tree: Path) -> str:
    done = subprocess.run(["git", "-C", str(tree), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return done.stdout.strip() or str(tree)
