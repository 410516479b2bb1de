"""Linux namespaces, mounts and capabilities through libc: the kernel mechanisms `numina_kit.sandbox.isolation` uses.

Everything here is a thin, checked wrapper around one system call (see the man pages of unshare(2),
user_namespaces(7), mount_setattr(2), open_tree(2), move_mount(2), capabilities(7)). A failure raises `OSError`
naming the call, so that the caller can say which guarantee is missing and why.
"""

import ctypes
import os


CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x00020000, 0x10000000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 1 << 12, 1 << 14, 1 << 18
MS_NOATIME, MS_NODIRATIME, MS_RELATIME, MS_STRICTATIME = 1 << 10, 1 << 11, 1 << 21, 1 << 24
# open_tree, move_mount and mount_setattr have the same numbers on every architecture (the unified syscall table)
SYS_OPEN_TREE, SYS_MOVE_MOUNT, SYS_MOUNT_SETATTR = 428, 429, 442
OPEN_TREE_CLONE, AT_RECURSIVE, AT_FDCWD, MOVE_MOUNT_F_EMPTY_PATH, MOUNT_ATTR_RDONLY = 1, 0x8000, -100, 4, 1
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_KEEPCAPS, PR_CAPBSET_DROP, PR_SET_CHILD_SUBREAPER = 1, 4, 8, 24, 36
PR_SET_NO_NEW_PRIVS = 38
CAP_DAC_OVERRIDE, CAP_SYS_ADMIN = 1, 21
_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_prctl, _capset = _libc.prctl, _libc.capset  # looked up once here: every forked child calls them


def _last_capability() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap") as handle:
            return int(handle.read())
    except (OSError, ValueError):
        return 40


LAST_CAPABILITY = _last_capability()


def _check(result: int, call: str) -> int:
    if result < 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{call}: {os.strerror(errno)}")
    return result


def unshare(flags: int) -> None:
    _check(_libc.unshare(flags), "unshare")


def has_capability(cap: int) -> bool:
    """Whether this process holds `cap` in its effective set (in its own user namespace)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) >> cap & 1)
    return False


def enter_user_namespace(flags: int, uid_range: tuple[int, int]) -> bool:
    """Move this process into a new user namespace (and the namespaces in `flags`), root inside it.

    The uid and gid maps are written by a helper left in the parent namespace: the kernel lets a process with
    CAP_SETUID/CAP_SETGID there (container root) map root and the range `uid_range` = (first, count) to themselves,
    so blocks can still get uids of their own; anyone else may map only their own uid (then it stays that uid
    inside, with all capabilities over the new namespaces). Returns whether the range was mapped.
    """
    uid, gid = os.geteuid(), os.getegid()
    first, count = uid_range
    ready_r, ready_w = os.pipe()
    helper = os.fork()
    if helper == 0:
        code = 2
        try:
            os.close(ready_w)
            if not os.read(ready_r, 1):  # the parent could not unshare: nothing to map
                os._exit(code)
            proc = f"/proc/{os.getppid()}"
            try:
                _write(f"{proc}/uid_map", f"0 {uid} 1\n{first} {first} {count}\n")
                _write(f"{proc}/gid_map", f"0 {gid} 1\n{first} {first} {count}\n")
                code = 0
            except PermissionError:
                _write(f"{proc}/setgroups", "deny")  # required before an unprivileged gid map
                _write(f"{proc}/uid_map", f"{uid} {uid} 1\n")
                _write(f"{proc}/gid_map", f"{gid} {gid} 1\n")
                code = 1
        finally:
            os._exit(code)
    os.close(ready_r)
    try:
        unshare(CLONE_NEWUSER | flags)
        os.write(ready_w, b"1")
    finally:
        os.close(ready_w)
        status = os.waitpid(helper, 0)[1]
    if not os.WIFEXITED(status) or os.WEXITSTATUS(status) not in (0, 1):
        raise OSError(1, "unshare: the uid and gid maps of the new user namespace could not be written")
    return os.WEXITSTATUS(status) == 0


def _write(path: str, text: str) -> None:
    with open(path, "w") as handle:
        handle.write(text)


def mount(source: str | None, target: str, fstype: str | None, flags: int, options: str | None = None) -> None:
    encode = lambda text: text.encode() if text is not None else None  # noqa: E731
    _check(_libc.mount(encode(source), target.encode(), encode(fstype), flags, encode(options)), f"mount {target}")


def make_mounts_private() -> None:
    """Stop mount events from propagating between this mount namespace and the host's."""
    mount("none", "/", None, MS_REC | MS_PRIVATE)


class _MountAttr(ctypes.Structure):
    _fields_ = [(name, ctypes.c_uint64) for name in ("attr_set", "attr_clr", "propagation", "userns_fd")]


def set_read_only(path: str, read_only: bool = True, *, recursive: bool = True) -> None:
    """Make the mount at `path` (and, if `recursive`, every mount below it) read-only, or writable again."""
    attr = _MountAttr(MOUNT_ATTR_RDONLY if read_only else 0, 0 if read_only else MOUNT_ATTR_RDONLY, 0, 0)
    flags = AT_RECURSIVE if recursive else 0
    result = _libc.syscall(SYS_MOUNT_SETATTR, AT_FDCWD, path.encode(), flags, ctypes.byref(attr), ctypes.sizeof(attr))
    if result == 0:
        return
    if ctypes.get_errno() != 38:  # ENOSYS: a kernel before 5.12 remounts mount by mount below
        _check(result, "mount_setattr")
    mounts = _mounts_below(path)
    for target, options in mounts if recursive else [m for m in mounts if m[0] == path][-1:]:  # the top one
        flags = MS_BIND | MS_REMOUNT | _locked_flags(options) | (MS_RDONLY if read_only else 0)
        mount(None, target, None, flags)


def _mounts_below(path: str) -> list[tuple[str, set[str]]]:
    """(mount point, per-mount options) of every mount at or below `path`, parents first."""
    found = []
    with open("/proc/self/mountinfo") as mountinfo:
        for line in mountinfo:
            fields = line.split()
            target = fields[4].encode().decode("unicode_escape")
            if target == path or target.startswith(path.rstrip("/") + "/"):
                found.append((target, set(fields[5].split(","))))
    return found


def _locked_flags(options: set[str]) -> int:
    """The flags a remount inside a user namespace must repeat (the kernel refuses to clear them)."""
    table = {"nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC, "noatime": MS_NOATIME,
             "nodiratime": MS_NODIRATIME, "relatime": MS_RELATIME, "strictatime": MS_STRICTATIME}  # fmt: skip
    flags = 0
    for option, flag in table.items():
        if option in options:
            flags |= flag
    return flags


def clone_tree(path: str) -> int:
    """A detached copy of the mount tree at `path` (a file descriptor for `attach_tree`)."""
    return _check(
        _libc.syscall(SYS_OPEN_TREE, AT_FDCWD, path.encode(), OPEN_TREE_CLONE | AT_RECURSIVE | os.O_CLOEXEC),
        "open_tree",
    )


def attach_tree(tree: int, path: str) -> None:
    """Mount a tree from `clone_tree` at `path` (which must exist), and close its descriptor."""
    try:
        _check(
            _libc.syscall(SYS_MOVE_MOUNT, tree, b"", AT_FDCWD, path.encode(), MOVE_MOUNT_F_EMPTY_PATH), "move_mount"
        )
    finally:
        os.close(tree)


def prctl(option: int, value: int) -> int:
    return _prctl(option, value, 0, 0, 0)


_CapHeader, _CapData = ctypes.c_uint32 * 2, ctypes.c_uint32 * 6  # made once: a ctypes type is costly to create


def drop_capabilities(keep: frozenset[int] = frozenset()) -> None:
    """Give up every capability but `keep`, for good: the rest dropped, and no new privileges through execve
    (no_new_privs: setuid files and file capabilities grant nothing, so the bounding set need not be emptied)."""
    mask = sum(1 << cap for cap in keep)
    header = _CapHeader(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
    data = _CapData(mask & 0xFFFFFFFF, mask & 0xFFFFFFFF, 0, mask >> 32, mask >> 32, 0)
    _check(_capset(header, data), "capset")  # (effective, permitted, inheritable) low words, then high words
    prctl(PR_SET_NO_NEW_PRIVS, 1)


def become(uid: int, keep: frozenset[int] = frozenset()) -> None:
    """Switch to `uid` (and gid `uid`, no groups) for good, keeping only the capabilities in `keep`."""
    if keep:
        prctl(PR_SET_KEEPCAPS, 1)  # the uid change below keeps the permitted set; `drop_capabilities` trims it
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)
    drop_capabilities(keep)
