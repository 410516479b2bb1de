"""The bookkeeping of a resumable data run: a journal of finished work and the output it produced, kept consistent.

Every finished unit of work (a TIR attempt, a JiuZhang request) is first appended to the journal
(`<output stem>.journal.jsonl`, fsync'ed), then, when it was kept, its row to the output. Reopening repairs a
crash: a partial last line is cut off either file, and kept records missing from the output (a crash between the
two writes) are written again, so the output holds exactly the journal's kept records, once each. Work in flight at
a crash was never journaled, so a rerun simply does it again.
"""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from numina_kit.data.jsonl import JsonlAppender, read_jsonl
from numina_kit.errors import InputError


KEPT = "kept"  # the outcome of a record whose row is in the output


@dataclass
class OutputPaths:
    """The files of one run: the dataset, its journal and its statistics."""

    output: Path
    journal: Path
    stats: Path

    @classmethod
    def beside(cls, output: str | Path, stats: str | Path | None = None) -> "OutputPaths":
        output = Path(output)
        stem = output.with_suffix("") if output.suffix == ".jsonl" else output
        return cls(output, Path(f"{stem}.journal.jsonl"), Path(stats) if stats else Path(f"{stem}.stats.json"))


class Ledger:
    """The journal and the output of a run; `records` holds every journaled record, all runs together."""

    def __init__(self, paths: OutputPaths, to_row: Callable[[dict], dict]) -> None:
        self.paths = paths
        self.to_row = to_row
        self.records = read_jsonl(paths.journal, missing_ok=True, appended=True, repair=True)
        rows = read_jsonl(paths.output, missing_ok=True, appended=True, repair=True)
        kept = [r for r in self.records if r.get("outcome") == KEPT]
        if len(rows) > len(kept):
            raise InputError(
                f"{paths.output} has {len(rows)} rows but its journal {paths.journal} only {len(kept)} kept "
                "records: it is not this run's output (move it, or the journal, away)"
            )
        self._journal = JsonlAppender(paths.journal, fsync=True)
        self._output = JsonlAppender(paths.output)
        self.restored = len(kept) - len(rows)
        for record in kept[len(rows) :]:  # kept records journaled just before a crash
            self._output.append(to_row(record))

    def record(self, record: dict) -> None:
        """Journal a record, then write its row when it was kept: a crash between the two is repaired on open."""
        self._journal.append(record)
        self.records.append(record)
        if record.get("outcome") == KEPT:
            self._output.append(self.to_row(record))

    def close(self) -> None:
        self._journal.close()
        self._output.close()

    def __enter__(self) -> "Ledger":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
