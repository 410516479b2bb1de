"""On-policy KTO: sample SC-TIR solutions from the SFT model, label them by their answer, train with TRL's KTOTrainer.

NuminaMath's most promising unshipped idea (numina.md §1, "KTO"): sample 4 tool-integrated completions per training
problem from the stage-2 model, mark each desirable when its answer matches the reference, and run KTO on the same
model (27/50 on the AIMO-1 public board against 29/50 for the shipped SFT model with more candidates).

Usage:

    # The tiny demo model on CPU (train it first with sft.py):
    python training/kto.py --config training/recipes/tiny/kto.yaml

    # NuminaMath-7B-TIR on 8x H100 (sampling runs on the main process with vLLM when installed):
    accelerate launch --config_file training/recipes/accelerate_configs/zero3.yaml \\
        training/kto.py --config training/recipes/deepseek-math-7b/kto.yaml

The phases: 1) sample `num_samples` candidates per problem with `numina_kit.sctir.loop.solve` (the same generation and
sandboxed code execution as inference), 2) label each by `numina_kit.answers.judge` against the reference,
3) weigh desirable and undesirable examples so they count equally, 4) train and save.
"""

import logging
from dataclasses import dataclass, field
from pathlib import Path

from components import DataArguments, load_rows, run_script, train_and_save, usage
from trl import KTOConfig, KTOTrainer, ModelConfig, TrlParser

from numina_kit.data.jsonl import read_jsonl, write_jsonl
from numina_kit.errors import InputError
from numina_kit.prompts import render_prompt


logger = logging.getLogger(__name__)


@dataclass
class SamplingArguments:
    """How the on-policy completions are sampled (an SC-TIR run per training problem)."""

    num_samples: int = field(default=4, metadata={"help": "Completions sampled per problem (Numina: 4)."})
    num_problems: int | None = field(default=None, metadata={"help": "Use only the first N problems."})
    sampling_temperature: float = field(default=0.8, metadata={"help": "Sampling temperature."})
    sampling_max_rounds: int = field(default=4, metadata={"help": "Code-execution rounds per completion."})
    sampling_max_new_tokens: int = field(default=1024, metadata={"help": "New tokens per round."})
    sampling_backend: str = field(default="auto", metadata={"help": "load_generator backend: auto, hf or vllm."})
    sampling_seed: int = field(default=0, metadata={"help": "Seed of the sampling."})
    balance_weights: bool = field(
        default=True,
        metadata={"help": "Set desirable/undesirable weights so both classes weigh the same in the loss."},
    )
    samples_from: str | None = field(
        default=None,
        metadata={
            "help": "Train on labelled samples of an earlier run (JSONL with prompt/completion/label) instead of sampling."
        },
    )
    samples_path: str | None = field(
        default=None,
        metadata={"help": "Where to write the labelled samples (JSONL); default output_dir/samples.jsonl."},
    )


def reference_answer(row: dict) -> str | None:
    """The row's `answer`, or the answer its reference `solution` states (NuminaMath-TIR has no answer column)."""
    from numina_kit.answers.extract import extract_answer

    if row.get("answer") not in (None, ""):
        return str(row["answer"])
    return extract_answer(row["solution"]) if isinstance(row.get("solution"), str) else None


def sample_completions(problems: list[dict], model_path: str, sampling: SamplingArguments) -> list[dict]:
    """KTO rows (`prompt`, `completion`, `label`) from SC-TIR candidates of `model_path` on `problems`.

    A candidate is desirable when it finished with an answer equivalent to the reference; candidates that wrote
    no answer, a wrong one, or ran out of rounds are undesirable. Empty candidates are dropped.
    """
    from numina_kit.answers import GENERAL, judge
    from numina_kit.models.load import load_generator
    from numina_kit.sandbox.pool import Sandbox
    from numina_kit.sctir.loop import CandidateStatus, SCTIRConfig, solve

    config = SCTIRConfig(
        num_candidates=sampling.num_samples,
        max_rounds=sampling.sampling_max_rounds,
        temperature=sampling.sampling_temperature,
        max_new_tokens=sampling.sampling_max_new_tokens,
        restart_on_fail=False,  # a failed candidate is a lesson (undesirable), not something to hide
        seed=sampling.sampling_seed,
    )
    generator = load_generator(model_path, backend=sampling.sampling_backend)
    rows = []
    with Sandbox(config.executor) as sandbox:
        for problem in problems:
            solution = solve(problem["problem"], generator, config, executor=sandbox)
            for candidate in solution.candidates:
                if not candidate.text.strip():
                    continue
                answered = candidate.status is CandidateStatus.ANSWERED  # judged on what it wrote, any rule
                correct = answered and judge(str(problem["answer"]), candidate.raw_answer, GENERAL)
                rows.append(
                    {
                        "id": problem.get("id"),
                        "prompt": render_prompt(problem["problem"]),
                        "completion": candidate.text,
                        "label": bool(correct),
                        "answer": None if candidate.answer is None else str(candidate.answer),
                        "reference": str(problem["answer"]),
                    }
                )
    return rows


def read_samples(path: str | Path) -> list[dict]:
    """Labelled samples written by an earlier run (`samples.jsonl`); `InputError` when a row lacks a field."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"samples file not found: {path}")
    rows = read_jsonl(path)
    for number, row in enumerate(rows, start=1):
        if not isinstance(row.get("prompt"), str) or not isinstance(row.get("completion"), str):
            raise InputError(f"{path}: row {number} needs 'prompt' and 'completion' text")
        if not isinstance(row.get("label"), bool):
            raise InputError(f"{path}: row {number} needs a true/false 'label'")
    return rows


def balanced_weights(num_desirable: int, num_undesirable: int) -> tuple[float, float]:
    """(desirable_weight, undesirable_weight) that make both classes weigh the same, the rarer one scaled up.

    The KTO paper asks for desirable_weight * D / (undesirable_weight * U) in [1, 4/3]; equal mass gives 1.
    """
    if num_desirable == 0 or num_undesirable == 0:
        raise InputError(
            f"KTO needs both desirable and undesirable samples, got {num_desirable} and {num_undesirable}: "
            "sample more problems or completions (num_problems, num_samples)"
        )
    if num_desirable < num_undesirable:
        return num_undesirable / num_desirable, 1.0
    return 1.0, num_desirable / num_undesirable


def main(
    data_args: DataArguments, training_args: KTOConfig, model_args: ModelConfig, sampling: SamplingArguments
) -> Path:
    """Sample, label, train and save to `training_args.output_dir`; returns that folder."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer

    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    if not model_args.model_name_or_path:
        raise InputError("no model: set model_name_or_path to the SFT model to improve")

    ###############
    # Sample on-policy completions
    ###############
    if sampling.samples_from:
        rows = read_samples(sampling.samples_from)
    else:
        split = load_rows(data_args)[data_args.dataset_train_split]
        problems = [{**row, "answer": reference_answer(row)} for row in split]
        problems = [row for row in problems if row["answer"] is not None][: sampling.num_problems]
        if not problems:
            raise InputError(f"{data_args.dataset_name}: no problems with an 'answer' to label completions against")
        rows = []
        if training_args.distributed_state.is_main_process:
            rows = sample_completions(problems, model_args.model_name_or_path, sampling)
            write_jsonl(rows, sampling.samples_path or Path(training_args.output_dir) / "samples.jsonl")
        rows = _broadcast(rows, training_args)

    ###############
    # Label and balance
    ###############
    num_desirable = sum(row["label"] for row in rows)
    num_undesirable = len(rows) - num_desirable
    logger.info("%d samples: %d desirable, %d undesirable", len(rows), num_desirable, num_undesirable)
    if sampling.balance_weights:
        training_args.desirable_weight, training_args.undesirable_weight = balanced_weights(
            num_desirable, num_undesirable
        )
        logger.info(
            "weights: desirable %.3f, undesirable %.3f",
            training_args.desirable_weight,
            training_args.undesirable_weight,
        )
    dataset = Dataset.from_list([{k: row[k] for k in ("prompt", "completion", "label")} for row in rows])

    ###############
    # Train and save
    ###############
    tokenizer = AutoTokenizer.from_pretrained(model_args.model_name_or_path, revision=model_args.model_revision)
    model = AutoModelForCausalLM.from_pretrained(
        model_args.model_name_or_path,
        revision=model_args.model_revision,
        dtype=model_args.dtype,
        attn_implementation=model_args.attn_implementation,
        **(training_args.model_init_kwargs or {}),
    )
    trainer = KTOTrainer(model=model, args=training_args, train_dataset=dataset, processing_class=tokenizer)
    output_dir = train_and_save(trainer, tokenizer, training_args.output_dir)
    trainer.end()
    return output_dir


def _broadcast(rows: list[dict], training_args: KTOConfig) -> list[dict]:
    """Send the main process's samples to every process (a no-op on one process)."""
    state = training_args.distributed_state
    if state.num_processes == 1:
        return rows
    from accelerate.utils import broadcast_object_list

    box = [rows]
    broadcast_object_list(box, from_process=0)
    return box[0]


def make_parser() -> TrlParser:
    """The recipe parser: TRL's script, KTO and model arguments plus the sampling arguments."""
    return TrlParser(
        (DataArguments, KTOConfig, ModelConfig, SamplingArguments), allow_abbrev=False
    )  # --learning_rat must not mean --learning_rate


if __name__ == "__main__":
    run_script(main, make_parser(), usage("kto.py", kto=True))
