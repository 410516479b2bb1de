"""Tests for numina_kit.sandbox.leftovers: SharedDirs deletes what a block's uid left in world-writable directories
and lists a directory again only when its mtime moved or was too recent to trust; `remove` deletes what it finds."""

import os
import time

import pytest

from numina_kit.sandbox import leftovers
from numina_kit.sandbox.leftovers import SharedDirs, remove


BLOCK_UID, OTHER_UID = 4_000_123, 4_000_456
HOUR_NS = 3600 * 10**9

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="giving files to other uids needs root")


@pytest.fixture
def shared(tmp_path, monkeypatch):
    """Two world-writable directories standing in for /tmp and /dev/shm, and a counter of their listings."""
    dirs = [tmp_path / "tmp", tmp_path / "shm"]
    for path in dirs:
        path.mkdir()
    monkeypatch.setattr(leftovers, "SHARED_WRITABLE_DIRS", tuple(map(str, dirs)))
    listed = []
    real_listdir = os.listdir
    monkeypatch.setattr(leftovers.os, "listdir", lambda path: listed.append(path) or real_listdir(path))
    return dirs, listed


def make(path, uid: int) -> None:
    path.write_text("x")
    os.chown(path, uid, -1)


def age(path) -> None:
    """Set the directory's mtime an hour back, as if it was last modified long before the listing."""
    old = time.time_ns() - HOUR_NS
    os.utime(path, ns=(old, old))


def test_deletes_only_the_blocks_new_entries(shared):
    (tmp, shm), _ = shared
    make(tmp / "before", BLOCK_UID)  # present at the previous block's cleanup: not looked at again
    dirs = SharedDirs()
    dirs.clean(OTHER_UID)
    make(tmp / "left", BLOCK_UID)
    make(shm / "other", OTHER_UID)
    (tmp / "sub").mkdir()
    make(tmp / "sub" / "inner", BLOCK_UID)
    os.chown(tmp / "sub", BLOCK_UID, -1)
    dirs.clean(BLOCK_UID)
    assert sorted(p.name for p in tmp.iterdir()) == ["before"]
    assert [p.name for p in shm.iterdir()] == ["other"]


def test_thorough_looks_at_every_entry(shared):
    (tmp, _), _ = shared
    make(tmp / "before", BLOCK_UID)
    dirs = SharedDirs()
    dirs.clean(OTHER_UID)
    dirs.clean(BLOCK_UID, thorough=True)
    assert list(tmp.iterdir()) == []


@pytest.mark.parametrize(
    "aged, relisted",
    [
        (True, False),  # settled long ago and unchanged: the listing is trusted
        (False, True),  # modified just now: its mtime may not move through a change in the same tick
    ],
)
def test_lists_again_only_a_moved_or_recent_directory(shared, aged, relisted):
    (tmp, shm), listed = shared
    for path in (tmp, shm):
        make(path / "existing", OTHER_UID)
        if aged:
            age(path)
    dirs = SharedDirs()
    dirs.clean(BLOCK_UID)
    listed.clear()
    dirs.clean(BLOCK_UID)
    assert (len(listed) == 2) is relisted


def test_a_new_entry_moves_the_mtime_and_is_found(shared):
    (tmp, shm), listed = shared
    for path in (tmp, shm):
        age(path)
    dirs = SharedDirs()
    dirs.clean(BLOCK_UID)
    make(tmp / "left", BLOCK_UID)
    listed.clear()
    dirs.clean(BLOCK_UID)
    assert listed == [str(tmp)]
    assert list(tmp.iterdir()) == []


def test_remove_deletes_files_trees_links_and_missing_paths(tmp_path):
    (tmp_path / "tree" / "deep").mkdir(parents=True)
    (tmp_path / "tree" / "deep" / "f").write_text("x")
    (tmp_path / "file").write_text("x")
    (tmp_path / "link").symlink_to(tmp_path / "tree")
    for name in ("tree", "file", "link", "missing"):
        remove(str(tmp_path / name))
    assert list(tmp_path.iterdir()) == []
