"""How a sandbox child is isolated: namespaces for the worker, and the rlimits, uid and scrubbed process state of
each child, set up before it sees any model code (see docs/executor.md for what this does and does not guarantee).

As root the worker moves into new network and mount namespaces (no network; root-owned tmpfs over the world-writable
directories) where the OS allows it, and each child drops to a uid of its own (`UID_BASE + pid`), so that killing
everything the uid owns reaps fork bombs and `setsid` escapees, `RLIMIT_NPROC` applies, and nothing root-owned is
writable. Without root only the rlimits, the session, the directory and the environment apply.
"""

import contextlib
import ctypes
import os
import resource
import shutil
import signal
import sys
import tempfile

from numina_kit.sandbox.protocol import ENVIRONMENT


UID_BASE = 1_000_000
CLONE_NEWNS, CLONE_NEWNET = 0x00020000, 0x40000000
MS_NOSUID, MS_NODEV, MS_BIND, MS_REC, MS_PRIVATE = 2, 4, 1 << 12, 1 << 14, 1 << 18
MNT_DETACH = 2
PR_SET_PDEATHSIG, PR_SET_CHILD_SUBREAPER = 1, 36
SHARED_WRITABLE_DIRS = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock")
_libc = ctypes.CDLL(None, use_errno=True)


def mount_private_tmpfs(max_file_mb: int) -> bool:
    """In a new mount namespace, hide the shared writable directories behind root-owned tmpfs (root only).

    Not done when Python or its packages live under one of them (a venv in /tmp): lazy imports would break.
    """
    here = os.getcwd()  # `python -m` puts the working directory on sys.path; nothing is imported from it
    code_paths = [os.path.realpath(path) for path in [sys.prefix, sys.executable, *sys.path] if path not in ("", here)]
    if any(path.startswith(shared + "/") for path in code_paths for shared in SHARED_WRITABLE_DIRS):
        return False
    if _libc.unshare(CLONE_NEWNS) != 0:
        return False
    if _libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None) != 0:
        return False
    for path in SHARED_WRITABLE_DIRS:
        if os.path.isdir(path) and not os.path.islink(path):
            size = f"{4 * max_file_mb}m" if path == "/tmp" else "1m"
            options = f"mode=0755,size={size}".encode()
            if _libc.mount(b"tmpfs", path.encode(), b"tmpfs", MS_NOSUID | MS_NODEV, options) != 0 and path == "/tmp":
                return False
    return True


def reveal_python() -> bool:
    """Let the per-block uid read the Python installation when a root-only directory above it hides it (root only).

    With pyenv under /root (mode 0700), a block dropped to its own uid could not import any module the worker had not
    already loaded (`import statistics` failed). In a new mount namespace, each hidden installation is bound aside, a
    small root-owned tmpfs (mode 0755) covers the closed directory, and the installation is bound back at its own
    path: blocks see Python and nothing else of that directory. True when nothing was hidden or all is now visible.
    """
    roots = sorted({os.path.realpath(path) for path in (sys.base_prefix, sys.prefix)})
    hidden = [(root, closed) for root in roots if (closed := _closed_ancestor(root))]
    if not hidden:
        return True
    if _libc.unshare(CLONE_NEWNS) != 0 or _libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None) != 0:
        return False
    stashes = []
    for root, _ in hidden:
        stash = tempfile.mkdtemp(prefix="numina_kit_python_")
        if _libc.mount(root.encode(), stash.encode(), None, MS_BIND | MS_REC, None) != 0:
            return False
        stashes.append((root, stash))
    for closed in sorted({closed for _, closed in hidden}):
        if _libc.mount(b"tmpfs", closed.encode(), b"tmpfs", MS_NOSUID | MS_NODEV, b"mode=0755,size=1m") != 0:
            return False
    for root, stash in stashes:
        os.makedirs(root, mode=0o755, exist_ok=True)
        if _libc.mount(stash.encode(), root.encode(), None, MS_BIND | MS_REC, None) != 0:
            return False
        _libc.umount2(stash.encode(), MNT_DETACH)
        with contextlib.suppress(OSError):
            os.rmdir(stash)
    return all(_closed_ancestor(root) is None for root in roots)


def _closed_ancestor(path: str) -> str | None:
    """The first directory above `path` that others cannot enter (no o+x), or None."""
    parts = path.strip("/").split("/")
    for depth in range(1, len(parts)):
        ancestor = "/" + "/".join(parts[:depth])
        with contextlib.suppress(OSError):
            if not os.stat(ancestor).st_mode & 0o001:
                return ancestor
    return None


def probe_setuid() -> bool:
    """Whether a forked child can drop to `UID_BASE + pid` (root, and the uid exists in this user namespace)."""
    if os.geteuid() != 0:
        return False
    pid = os.fork()
    if pid == 0:
        try:
            os.setgid(UID_BASE + os.getpid())
            os.setuid(UID_BASE + os.getpid())
            os._exit(0)
        except BaseException:  # noqa: BLE001
            os._exit(1)
    return os.waitpid(pid, 0)[1] == 0


def count_own_processes() -> int:
    """How many processes this user runs now (RLIMIT_NPROC counts them all when the sandbox cannot change uid)."""
    uid, count = os.getuid(), 0
    for name in os.listdir("/proc"):
        if name.isdigit():
            with contextlib.suppress(OSError):
                count += os.stat(f"/proc/{name}").st_uid == uid
    return count


def become_subreaper() -> None:
    """Make orphans of this process's descendants re-parent to it, so that it can kill and reap them."""
    _libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def unshare_network() -> bool:
    """Move this process into a new, empty network namespace (root with CAP_SYS_ADMIN only)."""
    return _libc.unshare(CLONE_NEWNET) == 0


def isolate_child(config: dict, runs_root: str, worker_pid: int, uid_mode: bool, keep_fds: tuple[int, ...]) -> None:
    """In a freshly forked child, before any model code: session, stdio, fds, rlimits, uid, directory, environment."""
    pid = os.getpid()
    os.setsid()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGPIPE, signal.SIGCHLD, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the file-size cap raise instead of killing
    null = os.open(os.devnull, os.O_RDWR)
    out_path = os.path.join(runs_root, f"{pid}.out")
    out = os.open(out_path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
    os.dup2(null, 0)
    os.dup2(out, 1)
    os.dup2(null, 2)
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2 and fd not in keep_fds:
            with contextlib.suppress(OSError):
                os.close(fd)
    memory = config["memory_mb"] * 2**20
    limits = [
        (resource.RLIMIT_AS, memory),
        (resource.RLIMIT_FSIZE, config["max_file_mb"] * 2**20),
        (resource.RLIMIT_NOFILE, 256),
        (resource.RLIMIT_CORE, 0),
    ]
    if uid_mode:
        limits.append((resource.RLIMIT_NPROC, config["max_processes"]))
    elif config.get("nproc_limit"):
        limits.append((resource.RLIMIT_NPROC, config["nproc_limit"]))
    for which, value in limits:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(which, (value, value))
    if uid_mode:
        os.setgroups([])
        os.setgid(UID_BASE + pid)
        os.setuid(UID_BASE + pid)
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != worker_pid:
        os._exit(71)
    workdir = os.path.join(runs_root, str(pid))
    os.mkdir(workdir, 0o700)
    os.chdir(workdir)
    os.environ.clear()
    os.environ.update(ENVIRONMENT, HOME=workdir, TMPDIR=workdir, PWD=workdir)
    sys.stdin = open(os.devnull)  # noqa: SIM115 - lives as long as the process
    sys.stderr = open(os.devnull, "w")  # noqa: SIM115
    sys.argv = [""]


def clean_shared_dirs(uid: int | None) -> None:
    """Without a private /tmp, delete what a finished child's uid left in the world-writable directories."""
    if uid is None:
        return
    for path in SHARED_WRITABLE_DIRS:
        with contextlib.suppress(OSError), os.scandir(path) as entries:
            for entry in entries:
                with contextlib.suppress(OSError):
                    if entry.stat(follow_symlinks=False).st_uid != uid:
                        continue
                    if entry.is_dir(follow_symlinks=False):
                        shutil.rmtree(entry.path, ignore_errors=True)
                    else:
                        os.unlink(entry.path)
