"""The hosts a sandbox meets, reproduced on one root machine: for the containment tests and the benchmark.

A Kaggle notebook or a `docker run` container is root with Docker's default capability set and its default seccomp
profile (which refuses to create namespaces); a user's own GPU box runs it as a normal user. `host_command` turns
a command into one that runs under such a host's credentials, so every mode can be tested on a machine where the
test runner is root with every capability:

- "root": unchanged;
- "container-root": root with only Docker's default capabilities (what `capsh --drop=...` gives);
- "container-root-seccomp": the same, plus Docker's rule that no namespace may be created (unshare, setns, clone
  with a namespace flag: EPERM; clone3: ENOSYS);
- "user": a normal user (a uid with no account and no privilege), running a Python it can read;
- "user-seccomp": that user where namespaces cannot be created (user namespaces blocked).
"""

import atexit
import contextlib
import ctypes
import functools
import importlib.util
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from numina_kit.errors import InputError
from numina_kit.sandbox import namespaces as ns


HOSTS = ("root", "container-root", "container-root-seccomp", "user", "user-seccomp")
# Docker's default capabilities (moby's oci/caps/defaults.go): chown, dac_override, fowner, fsetid, kill, setgid,
# setuid, setpcap, net_bind_service, net_raw, sys_chroot, mknod, audit_write, setfcap
DOCKER_CAPABILITIES = frozenset({0, 1, 3, 4, 5, 6, 7, 8, 10, 13, 18, 27, 29, 31})
USER_UID = 64_101  # the normal user's uid (the first unused one from here); it needs no account
# (AUDIT_ARCH, unshare, setns, clone) per machine; clone3 is 435 everywhere
_SYSCALLS = {"x86_64": (0xC000003E, 272, 308, 56), "aarch64": (0xC00000B7, 97, 268, 220)}
_NAMESPACE_FLAGS = 0x7E020000  # CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET
_PACKAGES = ("numpy", "sympy", "mpmath", "scipy", "psutil", "numina_kit")  # what the user's Python must import


@dataclass
class HostCommand:
    """A command and what `subprocess` needs to run it as a host: `subprocess.run(c.argv, **c.popen)`."""

    argv: list[str]
    popen: dict


def host_command(host: str, argv: list[str], *, env: dict | None = None) -> HostCommand:
    """`argv` run as `host`; for a user host, an `argv[0]` that is this Python becomes one the user can run."""
    if host not in HOSTS:
        raise InputError(f"unknown host {host!r}; expected one of {', '.join(HOSTS)}")
    if os.geteuid() != 0 and host != "root":
        raise PermissionError(f"reproducing the {host!r} host needs root")
    env = dict(os.environ if env is None else env)
    steps: list[Callable[[], None]] = []
    if host.endswith("seccomp"):
        steps.append(_block_namespaces)
    if host.startswith("container-root"):
        steps.append(_keep_docker_capabilities)
    if host.startswith("user"):
        python, home = user_python()
        argv = [python, *argv[1:]] if argv[0] == sys.executable else argv
        env.update(HOME=home, USER="numina-kit-test", LOGNAME="numina-kit-test")
        steps.append(_become_user)

    def prepare() -> None:
        for step in steps:
            step()

    return HostCommand(argv, {"env": env, "preexec_fn": prepare if steps else None})


def _keep_docker_capabilities() -> None:
    for cap in range(ns.LAST_CAPABILITY + 1):
        if cap not in DOCKER_CAPABILITIES and ns.prctl(ns.PR_CAPBSET_DROP, cap) != 0:
            raise OSError(ctypes.get_errno(), f"PR_CAPBSET_DROP {cap}")


def _become_user() -> None:
    os.setgroups([])
    os.setgid(user_uid())
    os.setuid(user_uid())


class _SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8), ("k", ctypes.c_uint32)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter))]


def _block_namespaces() -> None:
    """Install a seccomp filter like Docker's default profile for a process without CAP_SYS_ADMIN."""
    arch, unshare, setns, clone = _SYSCALLS[platform.machine()]
    load, jeq, jset, ret = 0x20, 0x15, 0x45, 0x06
    allow, eperm, enosys = 0x7FFF0000, 0x00050000 | 1, 0x00050000 | 38
    program = [
        (load, 0, 0, 4),  # the architecture
        (jeq, 1, 0, arch),
        (ret, 0, 0, allow),
        (load, 0, 0, 0),  # the system call number
        (jeq, 0, 1, unshare),
        (ret, 0, 0, eperm),
        (jeq, 0, 1, setns),
        (ret, 0, 0, eperm),
        (jeq, 0, 1, 435),  # clone3: its flags are out of a filter's reach, so Docker answers ENOSYS (glibc falls back)
        (ret, 0, 0, enosys),
        (jeq, 0, 3, clone),
        (load, 0, 0, 16),  # clone's flags (the low half of its first argument)
        (jset, 0, 1, _NAMESPACE_FLAGS),
        (ret, 0, 0, eperm),
        (ret, 0, 0, allow),
    ]
    filters = (_SockFilter * len(program))(*[_SockFilter(*step) for step in program])
    fprog = _SockFprog(len(program), filters)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(22, 2, ctypes.byref(fprog), 0, 0) != 0:  # PR_SET_SECCOMP, SECCOMP_MODE_FILTER
        raise OSError(ctypes.get_errno(), "PR_SET_SECCOMP")


@functools.cache
def user_uid() -> int:
    """The normal user's uid: the first from USER_UID that has no account and runs nothing (chosen once)."""
    import pwd

    uid = USER_UID
    while True:
        with contextlib.suppress(KeyError):
            pwd.getpwuid(uid)
            uid += 1
            continue
        if not any(_owner(entry) == uid for entry in os.listdir("/proc") if entry.isdigit()):
            return uid
        uid += 1


def _owner(pid: str) -> int | None:
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return None


_USER_PYTHON: tuple[str, str] | None = None


def user_python() -> tuple[str, str]:
    """(python, home) for the normal user: a venv the user owns, made from a system Python of this version, that
    imports numina_kit and its dependencies from this checkout (or, where the user cannot read them, from a copy)."""
    global _USER_PYTHON
    if _USER_PYTHON is not None and os.path.exists(_USER_PYTHON[0]):
        return _USER_PYTHON
    uid = user_uid()
    base = _readable_python(uid)
    home = tempfile.mkdtemp(prefix="numina_kit_user_")
    atexit.register(shutil.rmtree, home, True)
    os.chown(home, uid, uid)
    venv = os.path.join(home, "venv")
    subprocess.run([base, "-m", "venv", "--without-pip", venv], check=True, user=uid, group=uid, extra_groups=[],
                   cwd=home, capture_output=True)  # fmt: skip
    site = subprocess.run(
        [os.path.join(venv, "bin", "python"), "-c", "import site; print(site.getsitepackages()[0])"],
        check=True, user=uid, group=uid, extra_groups=[], cwd=home, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    lines = []
    for package in _PACKAGES:
        parent = _package_parent(package)
        if not _readable_by_others(parent):
            parent = _copy_package(package, parent, os.path.join(home, "packages"))
        lines.append(parent)
    Path(site, "numina_kit_checkout.pth").write_text("\n".join(dict.fromkeys(lines)) + "\n")
    _USER_PYTHON = (os.path.join(venv, "bin", "python"), home)
    return _USER_PYTHON


def _readable_python(uid: int) -> str:
    """A Python of this version (same ABI as the checkout's compiled packages) that `uid` can run."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    candidates = [sys.executable, os.path.realpath(sys.executable), f"/usr/bin/{version}", f"/usr/local/bin/{version}"]
    candidates += [found for found in [shutil.which(version)] if found]
    for python in dict.fromkeys(candidates):
        with contextlib.suppress(OSError):
            done = subprocess.run([python, "-c", "import venv"], user=uid, group=uid, extra_groups=[], cwd="/",
                                  capture_output=True)  # fmt: skip
            if done.returncode == 0:
                return python
    raise FileNotFoundError(f"no {version} that a normal user can run (tried {', '.join(dict.fromkeys(candidates))})")


def _package_parent(package: str) -> str:
    spec = importlib.util.find_spec(package)
    location = spec.submodule_search_locations[0] if spec.submodule_search_locations else spec.origin
    return os.path.dirname(os.path.realpath(location))


def _readable_by_others(path: str) -> bool:
    parts = Path(path).resolve().parts
    return all(os.stat(Path(*parts[:i])).st_mode & 0o005 == 0o005 for i in range(2, len(parts) + 1))


def _copy_package(package: str, parent: str, dest: str) -> str:
    """Copy `package` (and `<package>.libs`, its bundled shared libraries) to `dest`, readable by everyone."""
    for name in (package, f"{package}.libs"):
        source, target = os.path.join(parent, name), os.path.join(dest, name)
        if os.path.isdir(source) and not os.path.exists(target):
            shutil.copytree(source, target, symlinks=True)
    for folder, _, files in os.walk(dest):
        os.chmod(folder, 0o755)
        for name in files:
            path = os.path.join(folder, name)
            if not os.path.islink(path):
                os.chmod(path, os.stat(path).st_mode | 0o444)
    return dest
