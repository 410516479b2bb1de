"""The JiuZhang toy pipeline end to end, reduced (training/jiuzhang_toy.py; the full run is benchmarks/jiuzhang.py).

Slow: the stages up to LESS selection at a size CI can afford (a toy base model, the scripted teacher, a stand-in for
GPT-4, over HTTP, the initial synthesis model and its candidate rows); at that size the synthesis model is too weak to
select from, and the driver must say so in one line and keep what it made. The whole toy run (selection, both boost
arms, final models and their scores) is benchmarks/jiuzhang.py's. Also: the released JiuZhang3.0 SFT
sample trains through training/sft.py as it is (skipped without ../shared/data). Fast: an arm's child process gets
the same sizes; a rerun reuses a finished arm or stage made with the same settings and redoes it otherwise.
"""

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from trl import TrlParser

from numina_kit.data.jsonl import read_jsonl, write_jsonl
from numina_kit.errors import InputError


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


def test_a_finished_arm_is_reused_only_with_the_same_settings(tmp_path):
    toy = toy_script()
    args = toy.ToyArguments(workdir=str(tmp_path), corpus_size=40, target_train=2, target_test=2)

    class Stub(toy.Toy):  # stages that write rows about their texts at once, instead of training models
        def teach(self, texts, name):
            return write_jsonl([{"text_id": t.id} for t in texts], self.work / f"{name}.jsonl")

        def train(self, recipe, data, output, seed, flags):
            return self.work / output

        def synthesize(self, model, texts, name, seed):
            return self.teach(texts[:3], name)

        def score(self, model):
            return 0.5

    class Finished(toy.Toy):  # a run whose arm is done: nothing may be trained, written or scored again
        def teach(self, texts, name):
            raise AssertionError(f"redone: the teacher writes {name}")

    stub = Stub(args, None, None)
    stub.keys["base"] = "base-key"
    files = [stub.teach(stub.texts[:2], "distill"), stub.teach(stub.texts[2:4], "boost_influence")]
    pool = [t.id for t in stub.texts[4:10]]
    done = toy.run_arm(stub, "random", 1, *files, pool, 2)
    assert done["accuracy"] == 0.5 and done["boost"]["rows"] == 2 and done["final_data"]["rows"] == 3
    finished = Finished(args, None, None)
    finished.keys["base"] = "base-key"
    assert toy.run_arm(finished, "random", 1, *files, pool, 2) == done
    changed = Finished(replace(args, final_flags="--num_train_epochs 9"), None, None)
    changed.keys["base"] = "base-key"
    with pytest.raises(AssertionError, match="redone: the teacher writes boost_random_1"):  # other settings
        toy.run_arm(changed, "random", 1, *files, pool, 2)
    assert not (tmp_path / "arm_random_1.json").exists()


def test_a_stage_is_redone_when_what_determines_it_changes(tmp_path):
    """The stage key: a rerun with the same key keeps the stage's outputs, one with another key or none recorded
    deletes them (the bug it fixes: changing only --synthesis_flags reused the synthesis model of the old flags)."""
    toy = toy_script()
    args = toy.ToyArguments(workdir=str(tmp_path), corpus_size=40, target_train=2, target_test=2)
    run = toy.Toy(args, None, None)
    model = tmp_path / "synth0"
    model.mkdir()
    (model / "config.json").write_text("{}")
    key = {"recipe": "r", "data": "d", "seed": 0, "flags": ""}
    assert run.claim("synth0", key, [model]) and not model.exists()  # made by a run that recorded no key
    model.mkdir()
    (model / "config.json").write_text("{}")
    first = run.claim("synth0", key, [model])
    assert run.claim("synth0", dict(key), [model]) == first and (model / "config.json").exists()
    resumed = toy.Toy(args, None, None)  # a rerun of the same workdir with other flags
    assert resumed.claim("synth0", key | {"flags": "--num_train_epochs 20"}, [model]) != first
    assert not model.exists()
    assert resumed.claim("synth0", key, [model]) == first  # and back: the new key was recorded in between


def test_stage_times_add_up_across_resumed_runs(tmp_path):
    """An unfinished run reports its stages' times from progress.json; a resumed run adds its own to them."""
    toy = toy_script()
    args = toy.ToyArguments(workdir=str(tmp_path), corpus_size=40, target_train=2, target_test=2)
    first = toy.Toy(args, None, None)
    assert first.timed("teacher calls", lambda x: x + 1, 1) == 2
    first.timings["teacher calls"] = 10.0  # as if the stage had taken 10 s
    first.timed("synthesis", lambda: None)
    progress = json.loads((tmp_path / "progress.json").read_text())
    assert progress["arguments"]["corpus_size"] == 40 and progress["stage_seconds"]["teacher calls"] == 10.0
    resumed = toy.Toy(args, None, None)
    resumed.timed("teacher calls", lambda: None)
    seconds = json.loads((tmp_path / "progress.json").read_text())["stage_seconds"]
    assert 10.0 <= seconds["teacher calls"] < 11.0 and "synthesis" in seconds
    child = toy.Toy(replace(args, arms=["random"]), None, None)  # an arm's process keeps its times in arm_*.json
    child.timed("teacher calls", lambda: None)
    assert json.loads((tmp_path / "progress.json").read_text())["stage_seconds"] == seconds


@pytest.mark.slow
def test_toy_pipeline_at_test_scale_stops_before_selection_in_one_line(tmp_path, monkeypatch):
    """At a size CI can afford (minutes on 2 cores) the initial synthesis model is too weak to write rows for more
    candidate texts than the budget B: its base model (128 wide x 3 layers, 400 passages with their worked problems x
    3 epochs, 38 steps, where the full run's has 192 x 4 and 7,500 rows) is far from copying numbers and the replies
    are degenerate or box numbers other than the printed ones. The driver must run every stage before it (toy base model, teacher distillation over HTTP with executed tool outputs,
    synthesis model training, candidate synthesis), then refuse to select from too few texts in one line, keeping
    every stage's output for a rerun at a larger size."""
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
        base_problems=0,
        seeds=[1],
        base_flags="--hidden_size 128 --num_hidden_layers 3 --num_attention_heads 4 --num_train_epochs 3",
        synthesis_flags="--num_train_epochs 4",
        final_flags="--num_train_epochs 2",
        select_flags="--num_train_epochs 2 --projection_dim 1024",
    )
    with pytest.raises(InputError, match=r"the initial synthesis model kept rows for only \d+ of 100 candidate texts"):
        jiuzhang_toy.main(args)
    for model in ("base", "synth0"):
        assert (tmp_path / model / "config.json").exists(), f"{model} model not kept for a rerun"
    distill = read_jsonl(tmp_path / "distill.jsonl")
    assert distill and all("[Problem]" in row["output"] for row in distill)
    tool_rows = [row for row in distill if "```output" in row["output"]]
    assert tool_rows, "no tool-stage row in the distillation set"
    stats = json.loads((tmp_path / "candidates.stats.json").read_text())
    assert stats["requests"] == 100 and stats["pending"] == 0  # every candidate text was tried, none lost
    held_out = {row["problem"] for row in read_jsonl(tmp_path / "held_out.jsonl")}
    targets = [row["input"] for row in read_jsonl(tmp_path / "targets.jsonl")]
    assert len(held_out) == 6 and not any(problem in target for problem in held_out for target in targets)


@pytest.mark.slow
def test_released_sft_sample_trains_through_sft(tmp_path, shared_data):
    rows = read_jsonl(shared_data / "jiuzhang3" / "sft_sample.jsonl")[:64]
    data = write_jsonl(rows, tmp_path / "sample.jsonl")
    done = subprocess.run(
        [sys.executable, "training/sft.py", "--config", "training/recipes/tiny/sft.yaml", "--dataset_name", str(data),
         "--output_dir", str(tmp_path / "model"), "--max_steps", "2", "--held_out_problems", "", "--max_length", "256",
         "--per_device_train_batch_size", "8"],
        capture_output=True, text=True, timeout=900, cwd=REPO,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "model" / "config.json").exists()
