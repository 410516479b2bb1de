"""What `sft.py` and `kto.py` train on: the data set a recipe names, cleared of evaluation problems, as text.

`dataset_name` is `synthetic` (numina_kit.data.problems's tool-integrated problems), a local JSONL/Parquet file, or
a dataset id on the Hub. Rows in the NuminaMath-CoT/-TIR schema (`messages`) or with `problem` and `solution` are
rendered to a `prompt` (`numina_kit.protocols.tora.render_prompt`, what inference sends) and a `completion` (the solution
and EOS), so one recipe key, TRL's `completion_only_loss`, decides whether the loss covers the prompt.

Decontamination: `decontaminate_against` names evaluation problem files (the project ships none: bring AIME, AMC,
MATH test files yourself); a training row whose problem shares a `decontamination_ngram`-gram with any of them is
dropped, or with `contaminated_rows: refuse` stops the run. The rule is `numina_kit.data.decontamination`'s
(Numina's 10-gram exact match).
"""

import logging
from dataclasses import dataclass, field
from pathlib import Path

from trl import ScriptArguments

from numina_kit.data.decontamination import DEFAULT_N, build_index
from numina_kit.data.problems import load_problems, synthetic_problems, to_messages
from numina_kit.errors import InputError
from numina_kit.protocols.tora import render_prompt


logger = logging.getLogger(__name__)

SYNTHETIC = "synthetic"
CONTAMINATED_ROWS = ("drop", "refuse")


@dataclass
class DataArguments(ScriptArguments):
    """TRL's script arguments plus the synthetic data set, a held-out file, and the evaluation sets to keep out."""

    synthetic_size: int = field(
        default=4000, metadata={"help": "Problems to generate when dataset_name is 'synthetic'."}
    )
    synthetic_seed: int = field(default=1, metadata={"help": "Seed of the synthetic training problems."})
    held_out_problems: str | None = field(
        default=None,
        metadata={
            "help": "A problem file (JSONL/CSV/Parquet) whose problems are excluded from synthetic training data."
        },
    )
    decontaminate_against: list[str] | None = field(
        default=None,
        metadata={
            "help": "Evaluation problem files (JSONL/CSV/Parquet with a 'problem' column): training rows whose "
            "problem shares an n-gram with one of them are dropped (or refused, see contaminated_rows)."
        },
    )
    decontamination_ngram: int = field(
        default=DEFAULT_N, metadata={"help": "n of the n-gram overlap test (Numina: 10 words)."}
    )
    contaminated_rows: str = field(
        default="drop",
        metadata={
            "help": "What to do with contaminated rows: 'drop' them (logged) or 'refuse' to train.",
            "choices": list(CONTAMINATED_ROWS),
        },
    )


def load_rows(data_args: DataArguments):
    """The `DatasetDict` a recipe names, decontaminated against its evaluation files."""
    from datasets import Dataset, DatasetDict, load_dataset

    name = data_args.dataset_name
    if not name:
        raise InputError("no dataset: set dataset_name to a JSONL/Parquet file, a dataset id, or 'synthetic'")
    if name == SYNTHETIC:
        exclude = set()
        if data_args.held_out_problems:
            exclude = {p.problem for p in load_problems(data_args.held_out_problems)}
        rows = [
            p.to_row()
            for p in synthetic_problems(data_args.synthetic_size, seed=data_args.synthetic_seed, exclude=exclude)
        ]
        dataset = DatasetDict({data_args.dataset_train_split: Dataset.from_list(rows)})
        return decontaminate(dataset, data_args)
    path = Path(name)
    if path.suffix.lower() in (".jsonl", ".json", ".parquet"):
        if not path.is_file():
            raise InputError(f"dataset file not found: {path}")
        builder = "parquet" if path.suffix.lower() == ".parquet" else "json"
        dataset = load_dataset(builder, data_files={data_args.dataset_train_split: str(path)})
        return decontaminate(dataset, data_args)
    if path.exists():
        raise InputError(f"{path}: unsupported dataset file type (use .jsonl or .parquet)")
    try:
        dataset = load_dataset(name, name=data_args.dataset_config)
    except OSError as error:  # no such dataset, or no network (ConnectionError and the Hub's not-found errors)
        raise InputError(
            f"dataset {name!r}: not a local .jsonl/.parquet file, and the Hub could not give it "
            f"({type(error).__name__}: {_first_line(error)})"
        ) from None
    return decontaminate(dataset, data_args)


def problem_text(row: dict) -> str:
    """The problem a training row poses (its user turn; a raw row's `input`), the text decontamination compares."""
    if is_raw(row):
        return row["input"]
    return to_messages(row)[0]["content"]


def is_raw(row: dict) -> bool:
    """A raw `input`/`output` row (JiuZhang3.0's schema, `numina_kit.data.jiuzhang`): text without a chat template."""
    return isinstance(row.get("input"), str) and isinstance(row.get("output"), str)


def decontaminate(dataset, data_args: DataArguments):
    """`dataset` without the rows whose problem overlaps an evaluation file; `InputError` on them under 'refuse'."""
    if not data_args.decontaminate_against:
        return dataset
    if data_args.contaminated_rows not in CONTAMINATED_ROWS:
        raise InputError(f"contaminated_rows must be one of {', '.join(CONTAMINATED_ROWS)}")
    texts = [p.problem for path in data_args.decontaminate_against for p in load_problems(path)]
    index = build_index(texts, n=data_args.decontamination_ngram)
    logger.info("decontamination index: %d problems, %d %d-grams", len(texts), len(index), index.n)
    cleaned = {}
    for split, rows in dataset.items():
        flags = [index.contains(problem_text(row)) for row in rows]
        contaminated = [i for i, flag in enumerate(flags) if flag]
        if contaminated and data_args.contaminated_rows == "refuse":
            raise InputError(
                f"{len(contaminated)} {split} rows overlap the evaluation files (first: row {contaminated[0]}: "
                f"{problem_text(rows[contaminated[0]])[:80]!r}); set contaminated_rows: drop to train without them"
            )
        logger.info("decontamination: %d of %d %s rows dropped", len(contaminated), len(rows), split)
        cleaned[split] = rows.select([i for i, flag in enumerate(flags) if not flag])
    return type(dataset)(cleaned)


def render_prompt_completion(dataset, eos_token: str):
    """Each row as `prompt` (the inference prompt) and `completion` (the solution closed by EOS).

    Together they are exactly `numina_kit.protocols.tora.CHAT_TEMPLATE` applied to the row's messages. A raw `input`/`output`
    row (`is_raw`) is kept as it is: `input` is the prompt, `output` and EOS the completion.
    """

    def render(row: dict) -> dict:
        if is_raw(row):
            return {"prompt": row["input"], "completion": row["output"] + eos_token}
        problem, solution = (message["content"] for message in to_messages(row))
        return {"prompt": render_prompt(problem), "completion": solution + eos_token}

    return dataset.map(render, remove_columns=dataset.column_names, desc="Rendering prompts and completions")


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__
