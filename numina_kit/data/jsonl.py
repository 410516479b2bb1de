"""JSON Lines, the one way numina_kit reads and writes row files: read, write (atomic), append (crash-safe).

Every row is a JSON object on one line, written with one `write`. `write_jsonl` replaces a file through a temporary
file, so a reader never sees half of it. `JsonlAppender` adds rows to a log and flushes (with `fsync=True`, also
syncs) each before returning, so a killed process leaves at most one partial last line; `read_jsonl(appended=True)`
ignores that line, and with `repair=True` cuts it off the file. A bad line anywhere else is an `InputError` naming
the line: the file was edited or is not ours, and skipping it would lose a row silently.

Values that JSON lacks are written plainly: an `Enum` as its value, a dataclass as its fields, a `Path` as text.
"""

import dataclasses
import json
import os
from collections.abc import Iterable
from enum import Enum
from pathlib import Path

from numina_kit.errors import InputError


def _plain(value: object) -> object:
    if isinstance(value, Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def dumps(row: object) -> str:
    """One row as one line of JSON text (no newline), non-ASCII characters kept."""
    return json.dumps(row, ensure_ascii=False, default=_plain)


def read_jsonl(
    path: str | Path, *, missing_ok: bool = False, appended: bool = False, repair: bool = False
) -> list[dict]:
    """Every row of a JSONL file; `InputError` (one line) for a missing file, a bad line or a row that is not an object.

    Args:
        missing_ok: a missing file reads as no rows (a log not started yet).
        appended: the file is a log written by `JsonlAppender`: a last line without its newline was cut by a crash
            (never acknowledged), so it is ignored.
        repair: with `appended`, also cut that partial line off the file, so the next append starts a fresh line.
    """
    path = Path(path)
    if not path.is_file():
        if missing_ok:
            return []
        raise InputError(f"file not found: {path}")
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1 if appended else len(data)
    rows: list[dict] = []
    for number, line in enumerate(data[:end].splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise InputError(f"{path}: line {number} is not valid JSON ({error.msg})") from None
        if not isinstance(row, dict):
            raise InputError(f"{path}: line {number} is not an object ({{...}})")
        rows.append(row)
    if appended and repair and end < len(data):
        with path.open("r+b") as handle:
            handle.truncate(end)
    return rows


def write_jsonl(rows: Iterable[dict], path: str | Path) -> Path:
    """Replace `path` with `rows`, one per line (creating the folder); readers see the old file or the new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    with temporary.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(dumps(row) + "\n")
    os.replace(temporary, path)
    return path


def write_json(data: object, path: str | Path) -> Path:
    """Replace `path` with `data` as indented JSON (a statistics or summary file), atomically as `write_jsonl`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(data, indent=2, ensure_ascii=False, default=_plain) + "\n", encoding="utf-8")
    os.replace(temporary, path)
    return path


class JsonlAppender:
    """A JSONL file opened for appending; `append` returns once the row is flushed (and synced, with `fsync`)."""

    def __init__(self, path: str | Path, *, fsync: bool = False) -> None:
        self.path = Path(path)
        self.fsync = fsync
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = self.path.open("a", encoding="utf-8")

    def append(self, row: dict) -> None:
        """Write one row as one line and flush it before returning."""
        self._handle.write(dumps(row) + "\n")
        self._handle.flush()
        if self.fsync:
            os.fsync(self._handle.fileno())

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> "JsonlAppender":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
