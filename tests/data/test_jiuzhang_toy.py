"""The JiuZhang toy pipeline end to end, reduced (training/jiuzhang_toy.py; the full run is benchmarks/jiuzhang.py).

Slow: a toy base model, the scripted teacher (a stand-in for GPT-4) over HTTP, the initial synthesis model, its
candidate rows, LESS selection from real gradients, both boost arms for one seed, their synthesis models, the final
data and final models, SC-TIR scoring on held-out target problems. Checks that every stage ran and wrote what the
next one reads, that the selection and its p-value are consistent, that every kept tool row's outputs are the
sandbox's, and that the held-out problems never appear in any training row. Also: the released JiuZhang3.0 SFT
sample trains through training/sft.py as it is (skipped without ../shared/data). Fast: an arm's child process gets
the same sizes, and a rerun reuses a finished arm instead of redoing it.
"""

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from trl import TrlParser

from numina_kit.data.jsonl import read_jsonl, write_json


REPO = Path(__file__).resolve().parents[2]


def toy_script():
    sys.path.insert(0, str(REPO / "training"))
    try:
        import jiuzhang_toy
    finally:
        sys.path.remove(str(REPO / "training"))
    return jiuzhang_toy


def test_an_arm_process_runs_the_same_sizes():
    toy = toy_script()
    args = toy.ToyArguments(corpus_size=99, select_flags="--num_train_epochs 2 --projection_dim 1024", processes=6)
    command = toy.arm_command(args, 2, "random")
    assert command[:2] == [sys.executable, toy.__file__]
    (child,) = TrlParser((toy.ToyArguments,), allow_abbrev=False).parse_args_and_config(command[2:])
    assert child == replace(args, seeds=[2], arms=["random"], processes=1)


def test_a_finished_arm_is_reused(tmp_path):
    toy = toy_script()

    class Finished:  # a run whose arm is done: nothing may be trained, written or scored again
        work = tmp_path

        def __getattr__(self, name):
            raise AssertionError(f"the finished arm touched {name}")

    done = {"seed": 1, "accuracy": 0.5, "boost": {"rows": 3, "relevant_rows": 1}, "seconds": {}}
    write_json(done, tmp_path / "arm_random_1.json")
    assert toy.run_arm(Finished(), "random", 1, tmp_path / "d.jsonl", tmp_path / "b.jsonl", ["t1"], 1) == done


@pytest.mark.slow
def test_toy_pipeline_runs_every_stage(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "training"))  # the driver imports sft.py and friends as it goes
    jiuzhang_toy = toy_script()
    args = jiuzhang_toy.ToyArguments(
        workdir=str(tmp_path),
        corpus_size=160,
        initial_texts=60,
        budget=10,
        target_train=6,
        target_test=6,
        base_passages=400,
        seeds=[1],
        base_flags="--num_train_epochs 3",
        synthesis_flags="--num_train_epochs 4",
        final_flags="--num_train_epochs 2",
        select_flags="--num_train_epochs 2 --projection_dim 1024",
    )
    results = jiuzhang_toy.main(args)
    selection = results["selection"]
    assert selection["selected"] == 10 and 0 < selection["hypergeometric_p"] <= 1
    assert selection["relevant_selected"] <= selection["relevant_among_them"] <= selection["candidate_texts_with_rows"]
    for arm in ("influence", "random"):
        (run,) = results["arms"][arm]
        assert 0.0 <= run["accuracy"] <= 1.0 and run["boost"]["rows"] > 0
    assert set(results["stage_seconds"]) >= {"teacher calls", "synthesis model training", "influence selection"}
    held_out = {row["problem"] for row in read_jsonl(tmp_path / "held_out.jsonl")}
    targets = [row["input"] for row in read_jsonl(tmp_path / "targets.jsonl")]
    assert len(held_out) == 6 and not any(problem in target for problem in held_out for target in targets)
    for rows_file in tmp_path.glob("final_*.jsonl"):
        if rows_file.name.endswith((".journal.jsonl", ".stats.json")):
            continue
        for row in read_jsonl(rows_file):
            assert not any(problem in row["input"] for problem in held_out)
            assert "```output" in row["output"] and "\\boxed" in row["output"]


@pytest.mark.slow
def test_released_sft_sample_trains_through_sft(tmp_path, shared_data):
    rows = read_jsonl(shared_data / "jiuzhang3" / "sft_sample.jsonl")[:64]
    data = tmp_path / "sample.jsonl"
    data.write_text("".join(__import__("json").dumps(r) + "\n" for r in rows))
    done = subprocess.run(
        [sys.executable, "training/sft.py", "--config", "training/recipes/tiny/sft.yaml", "--dataset_name", str(data),
         "--output_dir", str(tmp_path / "model"), "--max_steps", "2", "--held_out_problems", "", "--max_length", "256",
         "--per_device_train_batch_size", "8"],
        capture_output=True, text=True, timeout=900, cwd=REPO,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "model" / "config.json").exists()
