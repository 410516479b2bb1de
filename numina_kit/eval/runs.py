"""Where a validation suite keeps its results: one run log per model and set, so a run resumes and models are added.

`OUT/runs/<model>/<set>/` holds `manifest.json` (what the results depend on: the model, the set's source, rule and
problem ids, the SC-TIR config) and `solutions.jsonl` (one `numina_kit.eval.results.solution_row` per problem and
seed: the scored result and every candidate, appended and flushed as each problem is solved). A killed run loses
at most the problem it was solving; running the suite again solves only what the log lacks. A log made under other
settings is never mixed with new results: `RunLog.claim` refuses it with a one-line error.
"""

import json
from pathlib import Path

from numina_kit.data.jsonl import JsonlAppender, read_jsonl, write_json
from numina_kit.errors import InputError
from numina_kit.eval.results import Evaluation, ProblemResult
from numina_kit.sctir.loop import SCTIRConfig


MANIFEST, LOG = "manifest.json", "solutions.jsonl"


class RunLog:
    """The results of one model on one set, under `out/runs/<model>/<set>/`."""

    def __init__(self, out: str | Path, model: str, set_name: str) -> None:
        self.folder = Path(out) / "runs" / model / set_name
        self.model, self.set_name = model, set_name

    @property
    def path(self) -> Path:
        return self.folder / LOG

    def claim(self, manifest: dict) -> None:
        """Record what these results depend on, or check it against what the folder already records."""
        path = self.folder / MANIFEST
        if path.is_file():
            recorded = json.loads(path.read_text(encoding="utf-8"))
            plain = json.loads(json.dumps(manifest, default=str))
            if recorded != plain:
                changed = sorted(key for key in set(recorded) | set(plain) if recorded.get(key) != plain.get(key))
                raise InputError(
                    f"{self.folder} holds results made with other settings ({', '.join(changed)} changed): "
                    "use another --out, or delete that folder to rerun it"
                )
            return
        write_json(manifest, path)

    def done(self) -> set[tuple[str, int]]:
        """(problem id, seed) of every result in the log; a line cut by a crash is removed."""
        rows = read_jsonl(self.path, missing_ok=True, appended=True, repair=True)
        return {(row["id"], row["seed"]) for row in rows}

    def appender(self) -> JsonlAppender:
        return JsonlAppender(self.path, fsync=True)

    def evaluation(self, config: SCTIRConfig, seeds: list[int], data: str) -> Evaluation:
        """The logged results for `seeds`, of the problems solved under every one of them (so that every problem
        weighs the same in a figure), in log order."""
        results: dict[tuple[str, int], ProblemResult] = {}
        for row in read_jsonl(self.path, missing_ok=True, appended=True):
            if row["seed"] in seeds:
                results.setdefault((row["id"], row["seed"]), ProblemResult.from_dict(row["result"]))
        complete = {pid for pid, _ in results if all((pid, seed) in results for seed in seeds)}
        rows = [result for (pid, _), result in results.items() if pid in complete]
        return Evaluation(data=data, model=self.model, config=config, seeds=list(seeds), results=rows)
