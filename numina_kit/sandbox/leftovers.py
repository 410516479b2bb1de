"""What blocks leave behind in directories the sandbox does not own: the host's world-writable directories in the
"setuid" mode, where blocks run under their own uid without a private /tmp, and `remove` for whatever is found."""

import contextlib
import os
import shutil
import time

from numina_kit.sandbox.isolation import PRIVATE_DIRS


SHARED_WRITABLE_DIRS = (*PRIVATE_DIRS, "/run/lock")
RACY_NS = 50_000_000  # a directory modified this recently when listed may change again within its mtime's tick


class SharedDirs:
    """The entries of the host's world-writable directories, to delete what a finished block's uid left there.

    A busy /tmp holds hundreds of entries, and listing it after every block cost about 2 ms of a 5 ms block. No entry
    can be added, removed or renamed without updating the directory's mtime, and a block can set that only to the
    present (`utime(path, None)` needs just write access), so a directory whose mtime has not moved since it was
    listed is not listed again. A directory modified within `RACY_NS` of its listing is listed again next time: its
    mtime could stay the same through a change that came later in the same clock tick."""

    def __init__(self) -> None:
        self.listings: dict[str, tuple[int | None, set[str]]] = {}  # path -> (trusted mtime or None, entries)

    def clean(self, uid: int, *, thorough: bool = False) -> None:
        """Delete the entries owned by `uid`: among those new since the last listing, or (`thorough`, after a block
        that was killed or timed out) among all of them."""
        for path in SHARED_WRITABLE_DIRS:
            try:
                before = os.stat(path).st_mtime_ns
            except OSError:
                continue
            mtime, known = self.listings.get(path, (None, set()))
            if mtime == before and not thorough:
                continue
            try:
                names = set(os.listdir(path))
            except OSError:
                continue
            for name in names - (set() if thorough else known):
                entry = os.path.join(path, name)
                with contextlib.suppress(OSError):
                    if os.lstat(entry).st_uid == uid:
                        remove(entry)
                        names.discard(name)
            with contextlib.suppress(OSError):
                after = os.stat(path).st_mtime_ns
                settled = after == before and time.time_ns() - after > RACY_NS
                self.listings[path] = (after if settled else None, names)


def remove(path: str) -> None:
    """Delete a file or a directory tree, whatever is left of it (cheapest first: most are empty or gone)."""
    try:
        os.rmdir(path)
    except NotADirectoryError:
        with contextlib.suppress(OSError):
            os.unlink(path)
    except OSError:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                os.unlink(path)
