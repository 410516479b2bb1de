"""The containment cases (hostile programs) and the checks that each is contained, shared by every host.

tests/sandbox/test_isolation.py runs them in its own process (root) and, for the other hosts (container root, a
normal user, namespaces blocked: `numina_kit.sandbox.hosts`), runs this file's source with `python -c` (the user may
not be able to read the checkout) under that host's credentials: it reads {"cases": [...], "truth": bool} as JSON
on stdin and prints {"isolation", "problems", "truth"} as JSON, where `problems` maps each case to what was not
contained (empty when all held).
"""

import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

from numina_kit.sandbox.isolation import UID_BASE
from numina_kit.sandbox.pool import ExecutorConfig, Sandbox


TIMEOUT = 2.0  # the cases the clock must stop
# The cases a limit must stop (memory, processes, output, file size): a timeout that load cannot reach, so that on a
# busy machine they never end as "timeout" instead of showing the limit; a broken limit still fails (as a timeout).
LIMIT_TIMEOUT = 30.0
GRACE = 3.0  # kill, clean up and answer: the bound on top of the timeout
SECRET = "numina-kit-test-secret-8d1f"
MARKER = "numina_kit_escape_marker"
REPO = Path(os.environ.get("NUMINA_KIT_REPO") or Path(__file__).resolve().parents[2])  # set when run with -c
SIGNALS_CONTAINED = ("uid_per_block", "private_processes")  # either keeps a block's signals off other processes


@dataclass(frozen=True)
class Case:
    """A hostile program, the statuses that mean it was contained, and the guarantees it needs (any one of them;
    docs/executor.md states what a host without them cannot contain); the exact output or its last line where it
    matters, and the timeout it runs under. `code` is formatted with the context."""

    name: str
    code: str
    statuses: tuple[str, ...]
    needs: tuple[str, ...] = ()
    output: str | None = None
    last_line: str | None = None
    timeout: float = TIMEOUT


CASES = [
    Case("infinite loop", "while True:\n    pass", ("timeout",)),
    Case(
        "ignores SIGINT and SIGTERM",
        "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\nwhile True:\n    pass",
        ("timeout",),
    ),  # fmt: skip
    Case("memory bomb", "a = []\nwhile True:\n    a.append(bytes(10**8))", ("killed",), timeout=LIMIT_TIMEOUT),
    Case("one huge allocation", "x = bytearray(64 * 2**30)", ("killed",), timeout=LIMIT_TIMEOUT),
    Case("fork bomb", "import os\nwhile True:\n    os.fork()", ("killed", "timeout"), SIGNALS_CONTAINED),
    Case(
        "thread spam",
        "import threading, time\nfor _ in range(100000):\n    threading.Thread(target=time.sleep, args=(60,)).start()",
        ("killed",),
        SIGNALS_CONTAINED,
        timeout=LIMIT_TIMEOUT,
    ),  # fmt: skip
    Case("huge output", "while True:\n    print('x' * 1000)", ("killed",), timeout=LIMIT_TIMEOUT),
    Case("one huge print", "print('x' * 50_000_000)", ("killed",), timeout=LIMIT_TIMEOUT),
    Case("deep recursion", "def f(n):\n    return f(n + 1)\nf(0)", ("error",)),
    Case("segfault through ctypes", "import ctypes\nctypes.string_at(0)", ("killed",)),
    Case("os._exit", "import os\nprint('bye')\nos._exit(3)", ("error",)),
    Case("os._exit(0)", "import os\nprint('bye')\nos._exit(0)", ("ok",)),
    Case("sys.exit", "import sys\nprint('bye')\nsys.exit(0)", ("ok",)),
    Case(
        "kill the parent",
        "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\nprint('alive')",
        ("ok", "error"),
        SIGNALS_CONTAINED,
    ),  # fmt: skip
    Case(
        "kill every process",
        "import os, signal\ntry:\n    os.kill(-1, signal.SIGKILL)\nexcept ProcessLookupError:\n    pass  # nothing it may signal\nprint('alone')",
        ("ok",),
        SIGNALS_CONTAINED,
        "alone",
    ),  # fmt: skip
    Case(
        "signal a process outside the sandbox", "import os\nos.kill({outside_pid}, 9)", ("error",), SIGNALS_CONTAINED
    ),
    Case(
        "ptrace the worker",
        "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\n"
        "print(libc.ptrace(16, os.getppid(), 0, 0), ctypes.get_errno())",
        ("ok",),
        (),
        "-1 1",
    ),  # fmt: skip
    Case(
        "write outside the working directory",
        f"import os\nos.chdir('/tmp')\nopen('{MARKER}', 'w').write('x')",
        ("ok",),
        ("private_tmp", "uid_per_block"),
    ),  # fmt: skip
    Case(
        "leave a file in /dev/shm",
        f"open('/dev/shm/{MARKER}', 'w').write('x')",
        ("ok",),
        ("private_tmp", "uid_per_block"),
    ),  # fmt: skip
    Case(
        "write into the Python installation",
        f"import sys\nopen(sys.prefix + '/{MARKER}', 'w').write('x')",
        ("error",),
        ("read_only_files",),
    ),  # fmt: skip
    Case("write into the repository", f"open('{REPO / MARKER}', 'w').write('x')", ("error",), ("read_only_files",)),
    Case(
        "reach the network",
        "import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=0.5)",
        ("error",),
        ("no_network",),
    ),  # fmt: skip
    Case(
        "delete the sandbox's directories",
        "import os, shutil\nshutil.rmtree(os.path.dirname(os.getcwd()), ignore_errors=True)\nprint('done')",
        ("ok",),
    ),  # fmt: skip
    Case(
        "read environment secrets",
        "import os\nprint(dict(os.environ))\n"
        "for p in ('/proc/1/environ', f'/proc/{{os.getppid()}}/environ'):\n    try:\n"
        "        print(open(p, 'rb').read())\n    except OSError as e:\n        print(e)",
        ("ok",),
    ),  # fmt: skip
    Case("input()", "x = input()", ("error",)),
    Case("sleep past the timeout", "import time\ntime.sleep(30)", ("timeout",)),
    Case("leave a child running", "import subprocess\nsubprocess.Popen(['sleep', '300'])\nprint('started')", ("ok",)),
    Case(
        "setsid escapee",
        "import os, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
        "        time.sleep(300)\n    os._exit(0)\nprint('forked')",
        ("ok",),
    ),  # fmt: skip
    Case(
        "atexit hook that hangs", "import atexit, time\natexit.register(time.sleep, 300)\nprint('registered')", ("ok",)
    ),  # fmt: skip
    Case(
        "huge file",
        "open('big', 'wb').write(b'x' * (65 * 2**20))  # just past max_file_mb",
        ("error",),
        last_line="OSError: [Errno 27] File too large",
        timeout=LIMIT_TIMEOUT,
    ),
    Case(
        "import a module the worker never loaded",
        "import colorsys, statistics\nprint(statistics.__name__)",
        ("ok",),
        (),
        "statistics",
    ),  # fmt: skip
]
BY_NAME = {case.name: case for case in CASES}
# one or two cases per guarantee: what every host runs in the fast suite (the whole table runs with --runslow)
FAST = ["kill every process", "signal a process outside the sandbox", "ptrace the worker",
        "write outside the working directory", "leave a file in /dev/shm", "write into the Python installation",
        "reach the network", "import a module the worker never loaded"]  # fmt: skip
# what each guarantee lets a block observe: (code, its output when the guarantee holds, and when it does not)
TRUTH = {
    "uid_per_block": (f"import os\nprint(os.getuid() >= {UID_BASE})", "True", "False"),
    "no_network": ("import socket\ntry:\n    socket.create_connection(('127.0.0.1', {port}), timeout=2)\n"
                   "    print('reached')\nexcept OSError:\n    print('unreachable')", "unreachable", "reached"),
    "read_only_files": ("try:\n    open('{writable}/x', 'w').write('x')\n    print('wrote')\nexcept OSError:\n"
                        "    print('refused')", "refused", "wrote"),
    "private_tmp": ("import os\nprint(os.path.exists('{host_tmp_file}'))", "False", "True"),
    "private_processes": ("import os\nprint(os.path.exists('/proc/{outside_pid}'))", "False", "True"),
}  # fmt: skip


class Context:
    """What the cases aim at outside the sandbox: a process, a listening port, a writable directory, a file in the
    host's /tmp; and where a marker would show that a block escaped. Use it as a context manager."""

    def __enter__(self) -> "Context":
        self.outside = subprocess.Popen(["sleep", "600"])
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(64)
        self.writable = Path(sys.prefix) / f"numina_kit_writable_{os.getpid()}"
        self.writable.mkdir(mode=0o777)
        self.writable.chmod(0o777)
        self.host_tmp_file = Path(f"/tmp/numina_kit_host_file_{os.getpid()}")
        self.host_tmp_file.write_text("host")
        self.fields = {"outside_pid": self.outside.pid, "port": self.server.getsockname()[1],
                       "writable": self.writable, "host_tmp_file": self.host_tmp_file}  # fmt: skip
        self.markers = [Path(folder) / MARKER for folder in ("/tmp", "/var/tmp", "/dev/shm", sys.prefix, REPO)]
        return self

    def __exit__(self, *exc: object) -> None:
        self.outside.kill()
        self.outside.wait()
        self.server.close()
        for path in [*self.markers, self.host_tmp_file, *self.writable.glob("*")]:
            path.unlink(missing_ok=True)
        self.writable.rmdir()


def make_sandbox(num_workers: int = 2, **settings: object) -> Sandbox:
    config = dict(timeout=TIMEOUT, num_workers=num_workers, memory_mb=384, max_processes=16) | settings
    return Sandbox(ExecutorConfig(**config))


def settle(check, seconds: float = 3.0):
    """`check()` once it returns something falsy, or its last value after `seconds` (exits are asynchronous)."""
    deadline = time.monotonic() + seconds
    while (value := check()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return value


def _pid_inside(pid: int) -> int:
    """A process's pid in its own PID namespace (the last NSpid field)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("NSpid:"):
                return int(line.split()[-1])
    return pid


def stray_processes(box: Sandbox) -> list[str]:
    """Processes the blocks of `box` left behind: descendants of its workers (PID 1 of their namespace, or
    subreapers, so orphans stay below them) other than the serving worker and its live (spare, stateful) children."""
    strays = []
    for worker in refreshed(box):
        pid_namespace = worker.info["isolation"]["private_processes"]
        for proc in descendants(worker.proc.pid):
            try:
                inside = _pid_inside(proc.pid)
                if inside not in worker.live and not (pid_namespace and inside == 1):
                    strays.append(f"{proc.pid} (pid {inside} inside, uid {proc.uids().real})")
            except (OSError, psutil.Error):
                continue  # gone meanwhile
    return strays


def refreshed(box: Sandbox) -> list:
    """The running workers of `box`, each asked to finish forking its spare children and to say which children are
    live (a worker forks spares while idle, after its last reply)."""
    workers = [worker for worker in box._workers if worker.proc is not None and worker.proc.poll() is None]
    for worker in workers:
        worker.request({"op": "live"}, time.monotonic() + 30)
    return [worker for worker in workers if worker.proc is not None and worker.proc.poll() is None]


def descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def leftover_files(box: Sandbox) -> list[str]:
    """Entries of each worker's runs directory that belong to no live child, seen through its mount namespace
    (/proc/PID/root) or, where the worker cannot be inspected (it shares its uid with the blocks), by a block."""
    found = []
    for worker in refreshed(box):
        runs = worker.info["runs_root"]
        try:
            entries = os.listdir(f"/proc/{worker.proc.pid}/root{runs}")
        except PermissionError:
            result = box.run(f"import json, os\nprint(json.dumps(os.listdir({runs!r})))")
            entries = json.loads(result.output) if result.ok else [result.output]
        allowed = {str(pid) for pid in worker.live} | {f"{pid}.out" for pid in worker.live}
        found += [entry for entry in entries if entry not in allowed]
    return found


def private_listing(box: Sandbox) -> str:
    return box.run("import os\nprint([sorted(os.listdir(d)) for d in ('/tmp', '/var/tmp', '/dev/shm')])").output


def problems_of(box: Sandbox, case: Case, context: Context, baseline: str | None) -> list[str]:
    """What `case` was not contained in: empty when its status, time, output, processes and files all held."""
    started = time.monotonic()
    result = box.run(case.code.format(**context.fields), timeout=case.timeout)
    elapsed = time.monotonic() - started
    problems = []
    last_line = result.output.splitlines()[-1] if result.output else ""
    if (
        result.status not in case.statuses
        or (case.output is not None and result.output != case.output)
        or (case.last_line is not None and last_line != case.last_line)
    ):
        problems.append(f"status {result.status!r}, output {result.output[-300:]!r}")
    if elapsed >= case.timeout + GRACE:
        problems.append(f"took {elapsed:.1f} s")
    if len(result.output) >= 2000 or SECRET in result.output:
        problems.append("the output is too long or holds the caller's secret")
    if context.outside.poll() is not None:
        problems.append("the process outside the sandbox was killed")
    if strays := settle(lambda: stray_processes(box)):
        problems.append(f"processes left behind: {strays}")
    if leftovers := settle(lambda: leftover_files(box)):
        problems.append(f"files left in the runs directory: {leftovers}")
    if escaped := settle(lambda: [str(path) for path in context.markers if path.exists()]):  # deleted by uid after
        problems.append(f"wrote outside the sandbox: {escaped}")
    if baseline is not None and (listing := private_listing(box)) != baseline:
        problems.append(f"the next block sees {listing}, not {baseline}")
    if (after := box.run("print('still fine')")).output != "still fine":
        problems.append(f"the sandbox is broken afterwards: {after}")
    return problems


def check(box: Sandbox, names: list[str], context: Context) -> dict[str, list[str]]:
    """Problems per case name; a case whose guarantees are all missing here is left out."""
    isolation = box.isolation
    baseline = private_listing(box) if isolation.private_tmp else None  # the host's /tmp changes all the time
    problems: dict[str, list[str]] = {}
    for name in names:
        case = BY_NAME[name]
        if case.needs and not any(getattr(isolation, need) for need in case.needs):
            continue
        problems[name] = problems_of(box, case, context, baseline)
        for marker in context.markers:
            marker.unlink(missing_ok=True)
    return problems


def truth(box: Sandbox, context: Context) -> dict[str, str]:
    """For each guarantee whose observation contradicts what `isolation` reports: what the block saw."""
    isolation, wrong = box.isolation, {}
    for name, (code, holds, lost) in TRUTH.items():
        output = box.run(code.format(**context.fields), timeout=5.0).output
        if output != (holds if getattr(isolation, name) else lost):
            wrong[name] = output
    return wrong


def main() -> int:
    request = json.loads(sys.stdin.read())
    os.environ["NUMINA_KIT_TEST_SECRET"] = SECRET
    with Context() as context, make_sandbox(num_workers=1, warmup=False) as box:
        report = {
            "isolation": asdict(box.isolation),
            "problems": check(box, request["cases"], context),
            "truth": truth(box, context) if request.get("truth") else {},
        }
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
