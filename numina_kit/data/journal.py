"""Append-only JSONL files that survive a crash: the record of long runs such as TIR data generation.

A record is one line written with one `write` and flushed (and, for a `Journal`, fsync'ed) before the caller goes
on, so a killed process leaves at most one partial last line. Opening the file again cuts that line off; a bad line
anywhere else means the file was edited or is not ours, and raises `InputError` instead of being skipped.
"""

import json
import os
from pathlib import Path

from numina_kit.errors import InputError


def read_records(path: str | Path, *, repair: bool = True) -> list[dict]:
    """Every complete record of a JSONL file ([] when it does not exist); with `repair`, cut a partial last line."""
    path = Path(path)
    if not path.exists():
        return []
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    records: list[dict] = []
    for number, line in enumerate(data[:end].splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            raise InputError(
                f"{path}: line {number} is not valid JSON; the file was edited or is not a journal"
            ) from None
        if not isinstance(record, dict):
            raise InputError(f"{path}: line {number} is not a JSON object")
        records.append(record)
    if end < len(data) and repair:  # a line cut short by a crash: it was never acknowledged, so drop it
        with path.open("r+b") as handle:
            handle.truncate(end)
    return records


class Journal:
    """An append-only JSONL file; `append` returns only once the record is on disk."""

    def __init__(self, path: str | Path, *, fsync: bool = True) -> None:
        self.path = Path(path)
        self.fsync = fsync
        self.records = read_records(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = self.path.open("a", encoding="utf-8")

    def append(self, record: dict) -> None:
        """Write one record as one line and flush it (fsync too, when asked) before returning."""
        self._handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._handle.flush()
        if self.fsync:
            os.fsync(self._handle.fileno())
        self.records.append(record)

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> "Journal":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_json_atomic(data: dict, path: str | Path) -> None:
    """Replace `path` with `data` as indented JSON, via a temporary file so readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(temporary, path)
