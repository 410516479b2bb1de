"""A validation suite: the problem sets and models that `python -m numina_kit validate` compares, read from YAML.

NuminaMath chose its submission by scoring checkpoints on a few small internal sets (AMC 12 2022-2023, AIME
2022-2024, subsets of the MATH test set) rather than on the public leaderboard (the team's write-up,
https://huggingface.co/blog/winning-aimo-progress-prize). A suite file names such sets and the models to score:

    seeds: [0, 1]                  # every model runs every set once per seed
    sctir: configs/aimo1_t4.yaml   # an SC-TIR recipe, or a mapping of SCTIRConfig fields; each set sets `competition`
    baseline: null                 # a model name: compare every other model with it (default: every pair)
    sets:
      - {name: aime, hub: AI-MO/aimo-validation-aime, split: train, rule: aimo1}
      - {name: math, file: data/math500.jsonl, rule: general, where: {level: [4, 5]}, subset: 100, subset_seed: 0}
    models:
      - models/numina-math-7b-tir                       # a model folder, in one line
      - {name: rl, hub: deepseek-ai/deepseek-math-7b-rl}
      - {name: served, endpoint: {base_url: "http://127.0.0.1:8000/v1", model: numina}, concurrency: 16}

A set is a local file (JSONL, CSV or Parquet with `problem`, `answer` and an id column) or a Hugging Face dataset,
loaded through `datasets` only when the suite runs; `rule` is one of `numina_kit.answers.COMPETITIONS` (`aimo1`:
integers reduced mod 1000, as Numina scored AIME and AMC; `general`: MATH-style LaTeX by equivalence). A model is a
folder, a Hub id (downloaded once into the Hub cache) or an OpenAI-compatible endpoint (`numina_kit.data.teacher`
settings), e.g. `vllm serve MODEL --data-parallel-size 8`, with `concurrency` problems solved at once. Relative paths
are read from the current directory, as every other command reads them.
"""

import dataclasses
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from numina_kit.answers import competition_rule
from numina_kit.configs import read_mapping, reject_unknown_keys
from numina_kit.data.problems import Problem, problems_from_rows, read_rows
from numina_kit.errors import InputError
from numina_kit.models.base import Generator
from numina_kit.sctir.loop import SCTIRConfig


NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


@dataclass(frozen=True)
class SuiteSet:
    """One problem set of a suite: where its problems come from, how answers are judged, which subset is used."""

    name: str
    rule: str  # a rule in numina_kit.answers.COMPETITIONS
    file: str | None = None  # a local JSONL, CSV or Parquet file
    hub: str | None = None  # a Hugging Face dataset id
    split: str = "test"  # Hub datasets only
    revision: str | None = None  # Hub datasets only: a commit or tag, for a suite that never changes under you
    id_field: str = "id"  # the column that names each problem (MATH-500: unique_id; AMC: url)
    where: dict | None = None  # keep only rows whose field is one of the listed values, e.g. {level: [4, 5]}
    subset: int | None = None  # score only this many problems (after `where`), drawn with `subset_seed`
    subset_seed: int = 0

    def __post_init__(self) -> None:
        _check_name(self.name, "set")
        competition_rule(self.rule)
        if (self.file is None) == (self.hub is None):
            raise InputError(f"set {self.name}: give exactly one of file (a local file) or hub (a dataset id)")
        if self.where is not None and not (
            isinstance(self.where, dict) and self.where and all(isinstance(v, list) and v for v in self.where.values())
        ):
            raise InputError(f"set {self.name}: where maps a field to a list of the values kept, got {self.where!r}")
        if self.subset is not None and (not isinstance(self.subset, int) or self.subset < 1):
            raise InputError(f"set {self.name}: subset must be a positive integer, got {self.subset!r}")

    @property
    def source(self) -> str:
        where = "".join(f", {key} in {values}" for key, values in (self.where or {}).items())
        return (self.file or f"{self.hub} ({self.split})") + where

    def identity(self) -> dict:
        """What decides which problems and references the set holds (so results are comparable across runs)."""
        return {key: value for key, value in dataclasses.asdict(self).items() if key != "name"}


@dataclass(frozen=True)
class SuiteModel:
    """One model of a suite: a folder, a Hub id, or an OpenAI-compatible endpoint."""

    name: str
    path: str | None = None
    hub: str | None = None
    endpoint: dict | None = None  # numina_kit.data.teacher.TeacherConfig fields (base_url, model, max_concurrency...)
    backend: str = "auto"  # folders and Hub ids: load_generator's backend (auto, hf, vllm)
    concurrency: int = 1  # problems solved at once; more than 1 only for an endpoint, which serves concurrent calls

    def __post_init__(self) -> None:
        _check_name(self.name, "model")
        if sum(x is not None for x in (self.path, self.hub, self.endpoint)) != 1:
            raise InputError(f"model {self.name}: give exactly one of path, hub or endpoint")
        if not isinstance(self.concurrency, int) or self.concurrency < 1:
            raise InputError(f"model {self.name}: concurrency must be a positive integer, got {self.concurrency!r}")
        if self.concurrency > 1 and self.endpoint is None:
            raise InputError(f"model {self.name}: concurrency > 1 needs an endpoint (an in-process model is one)")
        if self.endpoint is not None:
            self.teacher_config()  # InputError now for a misspelt endpoint key, not when the model's turn comes

    def identity(self) -> dict:
        """What decides the samples: the weights (or the served model) and the backend that runs them."""
        if self.endpoint is not None:
            config = self.teacher_config()
            return {"endpoint": config.base_url, "served_model": config.model, "api": config.api}
        return {"path": self.path, "hub": self.hub, "backend": self.backend}

    def teacher_config(self):
        from numina_kit.data.teacher import TeacherConfig

        reject_unknown_keys(self.endpoint, TeacherConfig, source=f"model {self.name}", name="endpoint ")
        return TeacherConfig(**self.endpoint)


@dataclass
class Suite:
    """Sets, models, seeds and the one SC-TIR config every model runs every set with (`competition` per set)."""

    sets: list[SuiteSet]
    models: list[SuiteModel]
    sctir: SCTIRConfig = field(default_factory=SCTIRConfig)
    seeds: list[int] = field(default_factory=lambda: [0])
    baseline: str | None = None

    def config_for(self, suite_set: SuiteSet) -> SCTIRConfig:
        return dataclasses.replace(self.sctir, competition=suite_set.rule)

    def pairs(self) -> list[tuple[str, str]]:
        """The model pairs the report compares: the baseline with every other model, or every pair."""
        names = [model.name for model in self.models]
        if self.baseline is not None:
            return [(name, self.baseline) for name in names if name != self.baseline]
        return [(a, b) for i, a in enumerate(names) for b in names[i + 1 :]]


def read_suite(path: str | Path, *, extra_models: Sequence[str] = ()) -> Suite:
    """Read a suite file; `extra_models` are model folders added after its own (`validate --model PATH`)."""
    data = read_mapping(path, what="suite settings (sets, models, seeds, sctir, baseline)")
    source = str(path)
    known = {"sets", "models", "seeds", "sctir", "baseline"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise InputError(f"{source}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    sets = [_read_entry(entry, SuiteSet, source, "set") for entry in _list(data.get("sets"), "sets", source)]
    models = [_read_model(entry, source) for entry in _list(data.get("models") or [], "models", source)]
    models += [_read_model(path, "--model") for path in extra_models]
    if not sets:
        raise InputError(f"{source}: no sets")
    if not models:
        raise InputError(f"{source}: no models: list them under models, or pass --model PATH")
    for kind, names in (("set", [s.name for s in sets]), ("model", [m.name for m in models])):
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise InputError(f"{source}: {kind} name(s) {', '.join(repeated)} used twice; give each a unique name")
    seeds = data.get("seeds", [0])
    if (
        not isinstance(seeds, list)
        or not seeds
        or not all(type(s) is int for s in seeds)
        or len(set(seeds)) < len(seeds)
    ):
        raise InputError(f"{source}: seeds must be a non-empty list of distinct integers, got {seeds!r}")
    sctir = data.get("sctir") or {}
    if isinstance(sctir, str):
        config = SCTIRConfig.from_yaml(sctir)
    elif isinstance(sctir, dict):
        config = SCTIRConfig.from_dict(sctir, source=f"{source} sctir")
    else:
        raise InputError(f"{source}: sctir must be a recipe path or a mapping of SCTIRConfig fields")
    baseline = data.get("baseline")
    if baseline is not None and baseline not in [m.name for m in models]:
        raise InputError(
            f"{source}: baseline {baseline!r} is not one of the models ({', '.join(m.name for m in models)})"
        )
    return Suite(sets=sets, models=models, sctir=config, seeds=seeds, baseline=baseline)


def load_set(suite_set: SuiteSet) -> list[Problem]:
    """The set's problems (its subset, in file order); every one must have a reference answer."""
    if suite_set.file is not None:
        path = Path(suite_set.file)
        if not path.is_file():
            raise InputError(f"set {suite_set.name}: problem file not found: {path}")
        rows = read_rows(path)
    else:
        rows = _hub_rows(suite_set)
    for key, values in (suite_set.where or {}).items():
        kept = {str(value) for value in values}
        rows = [row for row in rows if str(row.get(key)) in kept]
    if not rows:
        raise InputError(f"set {suite_set.name}: no problems in {suite_set.source}")
    if suite_set.id_field != "id":
        missing = next((n for n, row in enumerate(rows, 1) if row.get(suite_set.id_field) in (None, "")), None)
        if missing is not None:
            raise InputError(f"set {suite_set.name}: row {missing} has no {suite_set.id_field!r} (the set's id_field)")
        rows = [{**row, "id": row[suite_set.id_field]} for row in rows]
    problems = problems_from_rows(rows, f"set {suite_set.name} ({suite_set.source})")
    unanswered = [p.id for p in problems if p.answer is None]
    if unanswered:
        raise InputError(f"set {suite_set.name}: {len(unanswered)} problem(s) have no answer (first: {unanswered[0]})")
    if suite_set.subset is not None and suite_set.subset < len(problems):
        chosen = sorted(random.Random(suite_set.subset_seed).sample(range(len(problems)), suite_set.subset))
        problems = [problems[i] for i in chosen]
    return problems


def open_model(model: SuiteModel) -> Generator:
    """The model's `Generator`: an HTTP client for an endpoint, else the folder (a Hub id downloaded first)."""
    if model.endpoint is not None:
        from numina_kit.data.teacher import HTTPTeacher

        return HTTPTeacher(model.teacher_config())
    from numina_kit.models.load import load_generator

    return load_generator(model_folder(model), backend=model.backend)


def model_folder(model: SuiteModel) -> str:
    """The local folder of a path or Hub model; a Hub id is fetched into the Hub cache (one-line error offline)."""
    if model.path is not None:
        return model.path
    try:
        from huggingface_hub import snapshot_download

        return snapshot_download(model.hub)
    except Exception as error:  # offline, unknown id, gated repository: the hub client raises many kinds
        raise InputError(
            f"model {model.name}: could not fetch {model.hub} from the Hugging Face Hub ({_first_line(error)})"
        ) from None


def _hub_rows(suite_set: SuiteSet) -> list[dict]:
    try:
        import datasets
    except ImportError:
        raise InputError(
            f"set {suite_set.name}: Hub datasets need the datasets package: pip install datasets"
        ) from None
    try:
        dataset = datasets.load_dataset(suite_set.hub, split=suite_set.split, revision=suite_set.revision)
    except Exception as error:  # offline, unknown id or split: the hub client raises many kinds
        raise InputError(
            f"set {suite_set.name}: could not load {suite_set.hub} (split {suite_set.split}) from the Hugging Face "
            f"Hub ({_first_line(error)})"
        ) from None
    return dataset.to_list()


def _read_model(entry: object, source: str) -> SuiteModel:
    if isinstance(entry, str):
        return SuiteModel(name=Path(entry).name or entry, path=entry)
    if isinstance(entry, dict) and "name" not in entry and isinstance(entry.get("path") or entry.get("hub"), str):
        entry = {**entry, "name": (entry.get("path") or entry["hub"]).rstrip("/").split("/")[-1]}
    return _read_entry(entry, SuiteModel, source, "model")


def _read_entry(entry: object, cls: type, source: str, kind: str):
    if not isinstance(entry, dict):
        raise InputError(f"{source}: each {kind} must be a mapping, got {entry!r}")
    reject_unknown_keys(entry, cls, source=f"{source} {kind} {entry.get('name', '?')}")
    try:
        return cls(**entry)
    except TypeError as error:
        raise InputError(f"{source}: {kind} {entry.get('name', '?')}: {error}") from None


def _list(value: object, key: str, source: str) -> list:
    if not isinstance(value, list):
        raise InputError(f"{source}: {key} must be a list")
    return value


def _check_name(name: object, kind: str) -> None:
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise InputError(f"{kind} name {name!r} must be letters, digits, '.', '_' or '-' (it names a folder)")


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
