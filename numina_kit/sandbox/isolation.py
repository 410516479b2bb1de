"""How blocks are isolated: the strongest mechanism this machine allows, found when each worker starts.

A worker tries, strongest first (see docs/executor.md for what each mode guarantees, as measured):

- "root" (root with CAP_SYS_ADMIN): new mount, network and PID namespaces, entered directly;
- "user-namespace" (no CAP_SYS_ADMIN, but unprivileged user namespaces allowed: a normal user, or root in a
  container that dropped capabilities): the same namespaces inside a new user namespace;
- "setuid" (root where namespaces are blocked, such as Docker's default seccomp profile): a uid per block only;
- "none": rlimits, a session, a private directory and a clean environment only.

With namespaces the whole filesystem is read-only except private tmpfs over /tmp, /var/tmp and /dev/shm (code that
lives there is mounted back, read-only); there is no network; the worker is PID 1 of its own PID namespace, so a
block's signals, ptrace and /proc reach only the sandbox's processes and everything dies with the worker. Where
the kernel lets the worker map a range of uids (root, container root) each block also runs as `uid_base + pid`.
Every child is set up by `isolate_child` before it sees any code. A block never runs where its uid cannot read the
Python installation: the worker checks, and where only root can read it and nothing can mount it back, blocks keep
CAP_DAC_OVERRIDE (or, without it, the worker's uid).
"""

import _signal
import contextlib
import importlib.util
import os
import resource
import signal
import sys
import time
from dataclasses import dataclass, field

from numina_kit.sandbox import namespaces as ns
from numina_kit.sandbox.protocol import ENVIRONMENT


UID_BASE = 1_000_000
UIDS_PER_WORKER = 1 << 22  # pids stay below 2**22 (the largest pid_max), so uid_base + pid is unique in a worker
PRIVATE_DIRS = ("/tmp", "/var/tmp", "/dev/shm")  # tmpfs of the worker's own in the namespace modes
RUNS_DIR = "/tmp/numina_kit_runs"  # the blocks' working directories, inside the private /tmp
GUARANTEES = {  # each guarantee, and the line that says it is missing
    "uid_per_block": "blocks share one uid: no per-block process cap, and a block can signal the other "
    "interpreters of its worker",
    "no_network": "no network isolation: blocks can reach the network and the host's localhost services",
    "read_only_files": "the filesystem is writable: blocks can change any file the sandbox's user can",
    "private_tmp": "no private /tmp and /dev/shm: blocks share the host's (their files are deleted after them)",
    "private_processes": "no PID namespace: blocks can see the machine's processes, and signal those of their uid",
}


@dataclass(frozen=True)
class Isolation:
    """What isolates the blocks here: the `mode` and each guarantee, with `reasons` for those that are missing."""

    mode: str = "none"
    uid_per_block: bool = False
    no_network: bool = False
    read_only_files: bool = False
    private_tmp: bool = False
    private_processes: bool = False
    reasons: dict = field(default_factory=dict)

    def missing(self) -> list[str]:
        """One line per missing guarantee, saying what is lost and why (for the notebook and the CLIs to log)."""
        return [
            f"sandbox: {text} ({self.reasons.get(name, 'not available here')})"
            for name, text in GUARANTEES.items()
            if not getattr(self, name)
        ]


@dataclass
class WorkerSetup:
    """What `isolate_worker` set up, for the worker: the report, and how to fork and where to put blocks."""

    isolation: Isolation
    uid_base: int | None  # blocks run as uid_base + pid; None: under the worker's own uid
    pid_namespace: bool  # the worker must fork itself into PID 1 of a new PID namespace (`enter_pid_namespace`)
    runs_root: str
    nproc_limit: int  # RLIMIT_NPROC of a block that keeps the worker's uid (it counts all of the uid's processes)
    keep_capabilities: frozenset = frozenset()  # what blocks keep after their uid drop (CAP_DAC_OVERRIDE, rarely)
    # a child's sys.stdin and sys.stderr, on its descriptors 0 and 2 once they are /dev/null: made once in the worker
    # (never used there), because every object a child creates costs it page faults on a busy machine
    null_streams: tuple = field(default_factory=lambda: (open(0, closefd=False), open(2, "w", closefd=False)))  # noqa: SIM115


def isolate_worker(config: dict) -> WorkerSetup:
    """Put this worker process under the strongest isolation the machine allows, before it imports anything."""
    for key in os.environ.keys() - ENVIRONMENT.keys():  # the worker's own settings (PYTHONPATH, malloc) end here:
        del os.environ[key]  # its children inherit exactly ENVIRONMENT
    runs_root, uid_base = config["runs_root"], UID_BASE + config.get("slot", 0) % 1000 * UIDS_PER_WORKER
    spares = config.get("spare_children", 1) * (config.get("num_workers") or os.cpu_count() or 1)
    nproc_limit = count_own_processes() + config["max_processes"] + spares + 64  # the workers' spares share the uid
    if not config.get("privileged", True):
        off = "turned off: ExecutorConfig(privileged=False)"
        return WorkerSetup(Isolation(reasons=dict.fromkeys(GUARANTEES, off)), None, False, runs_root, nproc_limit)
    reasons: dict[str, str] = {}
    mode, mapped = _enter_namespaces(uid_base, reasons)
    read_only = private_tmp = private_processes = False
    if mode != "none":
        private_tmp, read_only = _private_filesystem(config["max_file_mb"], reveal=mapped, reasons=reasons)
        private_processes = _can_mount_proc(reasons)
        runs_root = RUNS_DIR if private_tmp else runs_root
    elif os.geteuid() == 0:
        mode, mapped = "setuid", True
    keep: frozenset[int] = frozenset()
    uid_per_block = mapped and _blocks_can_read_python(uid_base, keep, reasons)
    if mode == "setuid" and not uid_per_block and ns.has_capability(ns.CAP_DAC_OVERRIDE):
        # without namespaces nothing can make a root-only installation readable to another uid; a block that keeps
        # CAP_DAC_OVERRIDE reads it (and can write any file), but it still cannot signal the caller or other blocks
        keep = frozenset({ns.CAP_DAC_OVERRIDE})
        uid_per_block = _blocks_can_read_python(uid_base, keep, reasons)
        reasons["read_only_files"] = (
            "the Python installation is readable only by root and no namespace can re-mount it, so blocks keep "
            "CAP_DAC_OVERRIDE (they can write any file)"
        )
    if not uid_per_block and mode == "setuid":
        mode = "none"
    if not mapped and mode == "user-namespace":
        reasons["uid_per_block"] = "without root, a user namespace maps only the user's own uid"
    elif not mapped:
        reasons.setdefault("uid_per_block", reasons.get("namespaces", "not root"))
    isolation = Isolation(
        mode=mode,
        uid_per_block=uid_per_block,
        no_network=mode in ("root", "user-namespace"),
        read_only_files=read_only and (uid_per_block or private_processes),  # else /proc/<pid>/root is a way out
        private_tmp=private_tmp,
        private_processes=private_processes,
        reasons={name: reasons.get(name) or reasons.get("namespaces", "") for name in GUARANTEES},
    )
    if not uid_per_block:
        ns.prctl(ns.PR_SET_DUMPABLE, 0)  # blocks of the worker's uid cannot ptrace it or read its memory
    if uid_per_block:
        return WorkerSetup(isolation, uid_base, private_processes, runs_root, nproc_limit, keep)
    return WorkerSetup(isolation, None, private_processes, runs_root, nproc_limit)


def _enter_namespaces(uid_base: int, reasons: dict) -> tuple[str, bool]:
    """(mode, whether blocks can get uids of their own) after entering new mount and network namespaces."""
    flags = ns.CLONE_NEWNS | ns.CLONE_NEWNET
    if os.geteuid() == 0 and ns.has_capability(ns.CAP_SYS_ADMIN):
        try:
            ns.unshare(flags)
            return "root", True
        except OSError as error:
            reasons["namespaces"] = f"namespaces are blocked: {error}"
    try:
        return "user-namespace", ns.enter_user_namespace(flags, (uid_base, UIDS_PER_WORKER))
    except OSError as error:
        reasons["namespaces"] = f"user namespaces are blocked: {error}"
        return "none", False


def _private_filesystem(max_file_mb: int, *, reveal: bool, reasons: dict) -> tuple[bool, bool]:
    """Private tmpfs over PRIVATE_DIRS, everything else read-only; returns (private_tmp, read_only).

    Code under a covered directory (a venv in /tmp) is mounted back read-only at its path. With `reveal` (blocks
    will run under other uids), a root-only directory above the Python installation (pyenv under /root, mode 0700)
    is covered too, with the installation mounted back: blocks see Python and nothing else of that directory.
    """
    ns.make_mounts_private()
    covers = {path: "mode=1777,size=" + (f"{max_file_mb}m" if path == "/dev/shm" else f"{4 * max_file_mb}m")
              for path in PRIVATE_DIRS if os.path.isdir(path) and not os.path.islink(path)}  # fmt: skip
    if reveal:
        covers |= {closed: "mode=0755,size=1m" for code in _code_paths() if (closed := _closed_ancestor(code))}
    private_tmp = "/tmp" in covers
    for path, options in covers.items():
        try:
            _cover(path, options)
        except OSError as error:
            reasons["private_tmp" if path in PRIVATE_DIRS else "uid_per_block"] = f"{path}: {error}"
            private_tmp &= path not in PRIVATE_DIRS
    if not private_tmp:
        return False, False  # the working directories must stay writable on the host's /tmp
    try:
        ns.set_read_only("/")
        for path in PRIVATE_DIRS:
            if path in covers:
                ns.set_read_only(path, False, recursive=False)
    except OSError as error:
        reasons["read_only_files"] = str(error)
        return True, False
    return True, True


def _cover(path: str, options: str) -> None:
    """Mount a tmpfs over `path`, mounting the code that lived under it back at the same places."""
    keep = sorted({code for code in _code_paths() if code.startswith(path.rstrip("/") + "/")})
    keep = [code for code in keep if not any(code.startswith(outer + "/") for outer in keep)]  # outermost only
    trees = {code: ns.clone_tree(code) for code in keep}
    ns.mount("tmpfs", path, "tmpfs", ns.MS_NOSUID | ns.MS_NODEV, options)
    for code, tree in trees.items():
        os.makedirs(code, mode=0o755, exist_ok=True)
        ns.attach_tree(tree, code)
    if options.startswith("mode=0755"):
        ns.set_read_only(path, recursive=False)


def _code_paths() -> set[str]:
    """Every directory Python imports from here (real paths): the installation, the venv, sys.path."""
    paths = {os.path.realpath(sys.base_prefix), os.path.realpath(sys.prefix)}
    paths.add(os.path.dirname(os.path.realpath(sys.executable)))
    paths |= {os.path.realpath(path) for path in sys.path if os.path.isabs(path) and os.path.isdir(path)}
    return paths - {"/"}


def _closed_ancestor(path: str) -> str | None:
    """The first directory above `path` that others cannot enter (no o+x), or None."""
    parts = path.strip("/").split("/")
    for depth in range(1, len(parts)):
        ancestor = "/" + "/".join(parts[:depth])
        with contextlib.suppress(OSError):
            if not os.stat(ancestor).st_mode & 0o001:
                return ancestor
    return None


def _can_mount_proc(reasons: dict) -> bool:
    """Whether a new PID namespace can have its own /proc (Docker's masked /proc forbids it), tried in a child."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            ns.unshare(ns.CLONE_NEWPID | ns.CLONE_NEWNS)
            inner = os.fork()
            if inner == 0:
                try:
                    ns.mount("proc", "/proc", "proc", ns.MS_NOSUID | ns.MS_NODEV | ns.MS_NOEXEC)
                    os._exit(0)
                finally:
                    os._exit(1)
            code = os.waitpid(inner, 0)[1] >> 8
        finally:
            os._exit(code)
    if os.waitpid(pid, 0)[1] == 0:
        return True
    reasons["private_processes"] = "a PID namespace with its own /proc is not allowed here"
    return False


def enter_pid_namespace() -> None:
    """Fork into PID 1 of a new PID namespace (with its own /proc); the original process waits and exits with it."""
    ns.unshare(ns.CLONE_NEWPID)
    pid = os.fork()
    if pid:
        null = os.open(os.devnull, os.O_RDWR)
        os.dup2(null, 0)  # only PID 1 holds the caller's pipes, so that they close when it dies
        os.dup2(null, 1)
        status = os.waitpid(pid, 0)[1]
        os._exit(os.waitstatus_to_exitcode(status) % 256)
    ns.prctl(ns.PR_SET_PDEATHSIG, signal.SIGKILL)
    ns.mount("proc", "/proc", "proc", ns.MS_NOSUID | ns.MS_NODEV | ns.MS_NOEXEC)


def _blocks_can_read_python(uid_base: int, keep: frozenset[int], reasons: dict) -> bool:
    """Whether a process dropped to a block's uid (keeping `keep`) can list every import directory and read the
    standard library."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            ns.become(uid_base, keep)
            code = 2
            for path in _code_paths():
                os.listdir(path)
            with open(importlib.util.find_spec("colorsys").origin, "rb") as source:
                source.read(1)
            code = 0
        finally:
            os._exit(code)
    code = os.waitpid(pid, 0)[1] >> 8
    if code == 1:
        reasons["uid_per_block"] = "the kernel refused to change uid"
    elif code:
        reasons["uid_per_block"] = "other uids cannot read the Python installation, so blocks keep the worker's uid"
    return code == 0


def count_own_processes() -> int:
    """How many processes this user runs now (RLIMIT_NPROC counts them all when blocks keep the worker's uid)."""
    uid, count = os.getuid(), 0
    for name in os.listdir("/proc"):
        if name.isdigit():
            with contextlib.suppress(OSError):
                count += os.stat(f"/proc/{name}").st_uid == uid
    return count


def _status_fields(pid: str) -> dict[str, str]:
    with open(f"/proc/{pid}/status") as status:
        return dict(line.split(":", 1) for line in status if ":" in line)


def kill_processes_of(uids: set[int], rounds: int = 20) -> None:
    """SIGKILL every process whose real uid is in `uids` (blocks' own uids), until none is left."""
    for _ in range(rounds):
        found = False
        for name in os.listdir("/proc"):
            with contextlib.suppress(OSError, KeyError, ValueError):
                if name.isdigit() and int(_status_fields(name)["Uid"].split()[0]) in uids:
                    found = True
                    os.kill(int(name), signal.SIGKILL)
        if not found:
            return
        time.sleep(0.01)


def descendants(roots: set[int]) -> set[int]:
    """`roots` and every process below them (the /proc children lists of each of their threads)."""
    found, frontier = set(), set(roots)
    while frontier:
        found |= frontier
        below = set()
        for pid in frontier:
            with contextlib.suppress(OSError):
                for task in os.listdir(f"/proc/{pid}/task"):
                    below |= child_pids(pid, task)
        frontier = below - found
    return found


def become_subreaper() -> None:
    """Make orphans of this process's descendants re-parent to it, so that it can kill and reap them."""
    ns.prctl(ns.PR_SET_CHILD_SUBREAPER, 1)


def isolate_child(config: dict, setup: WorkerSetup, worker_pid: int, keep_fds: tuple[int, ...]) -> None:
    """In a freshly forked child, before any model code: session, stdio, fds, rlimits, uid, capabilities,
    directory, environment."""
    pid, runs_root = os.getpid(), setup.runs_root
    uid = setup.uid_base + pid if setup.uid_base is not None else None
    os.setsid()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGPIPE, signal.SIGCHLD, signal.SIGHUP):
        _signal.signal(sig, _signal.SIG_DFL)  # the C function: signal.signal's enum conversions cost page faults
    _signal.signal(signal.SIGXFSZ, _signal.SIG_IGN)  # writes past the file-size cap raise instead of killing
    null = os.open(os.devnull, os.O_RDWR)
    out = os.open(os.path.join(runs_root, f"{pid}.out"), os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
    os.dup2(null, 0)
    os.dup2(out, 1)
    os.dup2(null, 2)
    for name in os.listdir("/proc/self/fd"):  # the worker's other pipes (to other interpreters) included
        if int(name) > 2 and int(name) not in keep_fds:
            with contextlib.suppress(OSError):
                os.close(int(name))
    limits = [
        (resource.RLIMIT_AS, config["memory_mb"] * 2**20),
        (resource.RLIMIT_FSIZE, config["max_file_mb"] * 2**20),
        (resource.RLIMIT_NOFILE, 256),
        (resource.RLIMIT_CORE, 0),
        (resource.RLIMIT_NPROC, config["max_processes"] if uid is not None else setup.nproc_limit),
    ]
    for which, value in limits:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(which, (value, value))
    workdir = os.path.join(runs_root, str(pid))
    if uid is not None:
        ns.become(uid, setup.keep_capabilities)
    else:
        ns.drop_capabilities()
    ns.prctl(ns.PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != worker_pid:
        os._exit(71)
    os.mkdir(workdir, 0o700)
    os.chdir(workdir)
    os.environ.update(HOME=workdir, TMPDIR=workdir, PWD=workdir)  # the rest is the worker's: ENVIRONMENT
    sys.stdin, sys.stderr = setup.null_streams
    sys.argv = [""]


def child_pids(pid: int, task: int | str) -> set[int]:
    """The children of thread `task` of process `pid` (empty when it is gone)."""
    try:
        fd = os.open(f"/proc/{pid}/task/{task}/children", os.O_RDONLY)
    except OSError:
        return set()
    try:
        return {int(child) for child in os.read(fd, 1 << 16).split()}
    finally:
        os.close(fd)
