"""Benchmark the tiny demo model: training time on CPU, and SC-TIR accuracy on the 50 held-out problems with and
without code execution (the baseline measured in the same run: the same model, code switched off).

    python benchmarks/demo_model.py                # train models/tiny-tir if absent (timed), then evaluate
    python benchmarks/demo_model.py --retrain      # train again even if the model exists

Training time is the wall time of `python training/sft.py --config training/recipes/tiny/sft.yaml` when this script
trains; for a model trained earlier it is the `train_runtime` that run wrote to `train_results.json` (the training
loop only). Accuracy is `python -m numina_kit evaluate`'s maj@8 (SC-TIR, 8 candidates, majority vote).
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from _results import markdown_table, write_section


REPO = Path(__file__).resolve().parents[1]
RECIPE = "training/recipes/tiny/sft.yaml"
PROBLEMS = "tests/fixtures/demo_problems.jsonl"
EVALUATE = ["--num-candidates", "8", "--max-rounds", "2", "--max-new-tokens", "128", "--backend", "hf"]


def train(model: Path) -> float:
    """Train the demo model with its recipe; the wall time in seconds."""
    start = time.perf_counter()
    command = [sys.executable, "training/sft.py", "--config", RECIPE, "--output_dir", str(model)]
    subprocess.run(command, cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def evaluate(model: Path, out: Path, *, code: bool) -> dict:
    """The evaluate command's summary for `model` on the held-out problems."""
    command = [sys.executable, "-m", "numina_kit", "evaluate", "--model", str(model), "--data", PROBLEMS,
               *EVALUATE, "--out", str(out)]  # fmt: skip
    if not code:
        command.append("--no-code")
    subprocess.run(command, cwd=REPO, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return json.loads((out / "results.json").read_text())["summary"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="models/tiny-tir", help="the demo model folder")
    parser.add_argument("--retrain", action="store_true", help="train even if the model exists")
    parser.add_argument("--out", default="outputs/bench_demo_model", help="folder for the evaluate outputs")
    args = parser.parse_args()
    model, out = REPO / args.model, REPO / args.out

    if args.retrain or not (model / "config.json").exists():
        train_s, how = train(model), "wall time of `training/sft.py` (this run)"
    else:
        train_s = json.loads((model / "train_results.json").read_text())["train_runtime"]
        how = "`train_runtime` of the run that trained it (training loop only)"
    with_code = evaluate(model, out / "code", code=True)
    without_code = evaluate(model, out / "no_code", code=False)

    rows = [
        ["SC-TIR, code executed", f"{with_code['maj@8']:.0%}", f"{with_code['pass@8']:.0%}",
         f"{with_code['seconds_per_problem']:.1f}"],
        ["same model, code off (`--no-code`)", f"{without_code['maj@8']:.0%}", f"{without_code['pass@8']:.0%}",
         f"{without_code['seconds_per_problem']:.1f}"],
    ]  # fmt: skip
    body = (
        f"The tiny demo model (`{RECIPE}`, trained from scratch on CPU, nothing downloaded) on the 50 held-out "
        f"synthetic problems of `{PROBLEMS}`, with `python -m numina_kit evaluate {' '.join(EVALUATE)}`.\n\n"
        f"Training time: **{train_s / 60:.1f} min** ({how}; torch threads: "
        f"{os.environ.get('OMP_NUM_THREADS', 'default')}).\n\n"
        + markdown_table(["run", "maj@8", "pass@8", "s/problem"], rows)
        + "\n\nThe gap is the point of tool-integrated reasoning: the model copies the numbers into code and the "
        "answer out of the output block; without execution it has no way to know the output."
    )
    write_section("demo_model", "Tiny demo model: training time and SC-TIR accuracy", body)
    print(f"train {train_s:.0f}s  maj@8 with code {with_code['maj@8']:.0%}  without {without_code['maj@8']:.0%}")


if __name__ == "__main__":
    main()
