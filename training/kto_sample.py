"""On-policy KTO, step 1 of 2: sample SC-TIR solutions from the SFT model and write them, labelled, to a JSONL file.

NuminaMath's most promising unshipped idea (https://huggingface.co/blog/winning-aimo-progress-prize):
sample 4 tool-integrated completions per training problem from the stage-2 model, mark each desirable when its
answer matches the reference, and run KTO on the same model. This script does the sampling, in ONE process (vLLM on
the GPUs it is given, or transformers); `kto.py` then trains on the file, under `accelerate` if wanted. Both read the
same recipe, so the sampling limits and the training `max_length` come from one place.

Usage:

    python training/kto_sample.py --config training/recipes/tiny/kto.yaml      # CPU, the demo model
    python training/kto.py --config training/recipes/tiny/kto.yaml             # then train on the samples

The file (`samples_path`, default `output_dir/samples.jsonl`) has one line per problem, written and flushed as soon
as the problem is sampled: a killed run is resumed by running the same command again (done problems are skipped),
and a larger `num_problems` extends it. Each line holds the problem's prompt, its reference answer and every
candidate with its label.

Lengths: a candidate is pruned by the SC-TIR loop once prompt + solution reach the recipe's `max_length` (the loop's
`max_context_tokens`), and `kto.py` drops the few that a last round still pushed past it, so no training sample is cut.
"""

import logging
from dataclasses import dataclass, field
from pathlib import Path

from components import recipe_parser, require_model, run_script, usage
from data import DataArguments, load_rows, problem_text
from trl import KTOConfig, ModelConfig, TrlParser

from numina_kit.data.jsonl import JsonlAppender, read_jsonl
from numina_kit.errors import InputError
from numina_kit.protocols.tora import render_prompt


logger = logging.getLogger(__name__)
USAGE = usage("kto_sample.py", kto=True)


@dataclass
class SamplingArguments:
    """How the on-policy completions are sampled (an SC-TIR run per training problem) and where they are written."""

    num_samples: int = field(default=4, metadata={"help": "Completions sampled per problem (Numina: 4)."})
    num_problems: int | None = field(default=None, metadata={"help": "Use only the first N problems."})
    sampling_temperature: float = field(default=0.8, metadata={"help": "Sampling temperature."})
    sampling_max_rounds: int = field(default=4, metadata={"help": "Code-execution rounds per completion."})
    sampling_max_new_tokens: int = field(default=1024, metadata={"help": "New tokens per round."})
    sampling_backend: str = field(default="auto", metadata={"help": "load_generator backend: auto, hf or vllm."})
    sampling_seed: int = field(default=0, metadata={"help": "Seed of the sampling."})
    sampling_tensor_parallel_size: int | None = field(
        default=None, metadata={"help": "vLLM: GPUs the model is split over (default: every visible GPU)."}
    )
    sampling_gpu_memory_utilization: float = field(
        default=0.9, metadata={"help": "vLLM: fraction of each GPU's memory the engine may take."}
    )
    answer_rule: str = field(
        default="general",
        metadata={
            "help": "How answers are judged: 'general' (MATH-style answers, NuminaMath-TIR) or a competition name."
        },
    )
    balance_weights: bool = field(
        default=True,
        metadata={"help": "Set desirable/undesirable weights so both classes weigh the same in the loss."},
    )
    samples_path: str | None = field(
        default=None,
        metadata={
            "help": "The labelled samples (JSONL) kto_sample.py writes and kto.py reads "
            "(default: output_dir/samples.jsonl)."
        },
    )


def samples_file(sampling: SamplingArguments, training_args: KTOConfig) -> Path:
    """Where the labelled samples live: `samples_path`, or `output_dir/samples.jsonl`."""
    return Path(sampling.samples_path or Path(training_args.output_dir) / "samples.jsonl")


def reference_answer(row: dict) -> str | None:
    """The row's `answer`, or the answer its reference `solution` states (NuminaMath-TIR has no answer column)."""
    from numina_kit.answers.extract import extract_answer

    if row.get("answer") not in (None, ""):
        return str(row["answer"])
    return extract_answer(row["solution"]) if isinstance(row.get("solution"), str) else None


def training_problems(data_args: DataArguments, num_problems: int | None) -> list[dict]:
    """The first `num_problems` training rows that have a reference answer, each with an `id`."""
    split = load_rows(data_args)[data_args.dataset_train_split]
    problems = []
    for number, row in enumerate(split):
        answer = reference_answer(row)
        if answer is not None:
            problems.append({"id": str(row.get("id") or number), "problem": problem_text(row), "answer": answer})
        if num_problems is not None and len(problems) >= num_problems:
            break
    if not problems:
        raise InputError(f"{data_args.dataset_name}: no problems with an answer to label completions against")
    return problems


def is_desirable(candidate, reference: str, rule: str) -> bool:
    """The one labelling rule: desirable when the candidate finished on an answer `numina_kit.answers.judge` finds
    right under `rule` ('general' accepts any MATH-style answer, such as \\frac12).

    Candidates that wrote no answer, a wrong one, or ran out of rounds or context are undesirable.
    """
    from numina_kit.answers import judge
    from numina_kit.sctir.loop import CandidateStatus

    return candidate.status is CandidateStatus.ANSWERED and judge(reference, candidate.raw_answer, rule)


def sample_problem(problem: dict, generator, config, sandbox) -> dict:
    """One problem's line of the samples file: its prompt, reference, and every non-empty candidate, labelled."""
    from numina_kit.sctir.loop import solve

    solution = solve(problem["problem"], generator, config, executor=sandbox)
    return {
        "id": problem["id"],
        "prompt": render_prompt(problem["problem"]),
        "reference": problem["answer"],
        "samples": [
            {
                "completion": candidate.text,
                "label": is_desirable(candidate, problem["answer"], config.competition),
                "answer": candidate.raw_answer,
                "status": candidate.status.value,
                "reason": candidate.reason,
            }
            for candidate in solution.candidates
            if candidate.text.strip()
        ],
    }


def sampling_config(sampling: SamplingArguments, max_length: int | None):
    """The SC-TIR settings of the sampling; a candidate is pruned once prompt + solution reach `max_length`."""
    from numina_kit.sctir.loop import SCTIRConfig

    return SCTIRConfig(
        num_candidates=sampling.num_samples,
        max_rounds=sampling.sampling_max_rounds,
        temperature=sampling.sampling_temperature,
        max_new_tokens=sampling.sampling_max_new_tokens,
        max_context_tokens=max_length or SCTIRConfig.max_context_tokens,
        restart_on_fail=False,  # a failed candidate is a lesson (undesirable), not something to hide
        competition=sampling.answer_rule,
        seed=sampling.sampling_seed,
    )


def pending(problems: list[dict], path: Path) -> list[dict]:
    """The problems that have no line in the samples file yet (all of them when it does not exist)."""
    done = {record.get("id") for record in read_jsonl(path, missing_ok=True, appended=True, repair=True)}
    return [problem for problem in problems if problem["id"] not in done]


def sample(problems: list[dict], generator, config, path: Path) -> None:
    """Sample and label `problems`, appending one flushed line per problem to `path` as each one is done."""
    from numina_kit.sandbox.pool import Sandbox

    with JsonlAppender(path, fsync=True) as samples, Sandbox(config.executor) as sandbox:
        for number, problem in enumerate(problems, start=1):
            samples.append(sample_problem(problem, generator, config, sandbox))
            logger.info("sampled %d/%d problems", number, len(problems))


def vllm_arguments(sampling: SamplingArguments) -> dict:
    """The engine limits passed to vLLM (none for the transformers backend, which takes no such arguments)."""
    if sampling.sampling_backend == "hf":
        return {}
    limits = {"gpu_memory_utilization": sampling.sampling_gpu_memory_utilization}
    if sampling.sampling_tensor_parallel_size is not None:
        limits["tensor_parallel_size"] = sampling.sampling_tensor_parallel_size
    return limits


def main(
    data_args: DataArguments, training_args: KTOConfig, model_args: ModelConfig, sampling: SamplingArguments
) -> Path:
    """Sample, label and write the samples file; returns its path."""
    from numina_kit.models.load import load_generator, read_model_config

    read_model_config(require_model(model_args))  # a missing or broken model folder fails before any sampling

    problems = training_problems(data_args, sampling.num_problems)
    path = samples_file(sampling, training_args)
    todo = pending(problems, path)
    logger.info(
        "%d problems: %d already in %s, %d to sample", len(problems), len(problems) - len(todo), path, len(todo)
    )
    if todo:
        model = model_args.model_name_or_path
        generator = load_generator(model, backend=sampling.sampling_backend, **vllm_arguments(sampling))
        sample(todo, generator, sampling_config(sampling, training_args.max_length), path)
    return path


def make_parser(usage_line: str = USAGE) -> TrlParser:
    """The KTO recipe parser (kto_sample.py and kto.py read the same recipe): script, KTO, model, sampling."""
    return recipe_parser((DataArguments, KTOConfig, ModelConfig, SamplingArguments), usage_line)


if __name__ == "__main__":
    run_script(main, make_parser(), USAGE)
