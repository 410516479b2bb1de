"""Problem sets and training data: reading problem files, and turning datasets into chat messages.

`load_problems` is the one reader of problem files for evaluation, the Kaggle local mode and TIR data generation.
It takes JSONL, CSV or Parquet with an `id` (optional: the row number is used) and a `problem` column, and an
optional reference `answer`, kept as the exact string the file gives (AIME/AMC files write `142.0`).
"""

import csv
import json
from dataclasses import dataclass
from pathlib import Path

from numina_kit.errors import InputError


@dataclass(frozen=True)
class Problem:
    """One problem of a set; `answer` is the reference as written in the file, or None when there is none."""

    id: str
    problem: str
    answer: str | None = None


def load_problems(path: str | Path, *, limit: int | None = None) -> list[Problem]:
    """Read a JSONL, CSV or Parquet problem file; raise `InputError` (one line) for anything malformed.

    Ids must be unique and every problem non-empty text, so that no row is silently lost or merged.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"problem file not found: {path}")
    rows = _read_rows(path)
    problems: list[Problem] = []
    seen: set[str] = set()
    for number, row in enumerate(rows, start=1):
        if not isinstance(row, dict):
            raise InputError(f"{path}: row {number} is not an object with a 'problem' field")
        text = row.get("problem")
        if not isinstance(text, str) or not text.strip():
            raise InputError(f"{path}: row {number} has no 'problem' text")
        pid = str(row["id"]) if row.get("id") not in (None, "") else str(number - 1)
        if pid in seen:
            raise InputError(f"{path}: duplicate id {pid!r} at row {number}")
        seen.add(pid)
        answer = row.get("answer")
        problems.append(Problem(id=pid, problem=text, answer=None if answer in (None, "") else str(answer)))
        if limit is not None and len(problems) >= limit:
            break
    if not problems:
        raise InputError(f"{path}: no problems found")
    return problems


def _read_rows(path: Path) -> list:
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        rows = []
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise InputError(f"{path}: line {number} is not valid JSON ({error.msg})") from None
        return rows
    if suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            if not reader.fieldnames or "problem" not in reader.fieldnames:
                raise InputError(f"{path}: CSV needs a 'problem' column, found {reader.fieldnames}")
            return list(reader)
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    raise InputError(f"{path}: unsupported problem file type {suffix!r} (use .jsonl, .csv or .parquet)")
