"""End to end (slow): a tiny random gpt-oss-architecture model and a tiny Qwen3-architecture model, with their real
special tokens and chat templates, trained in-process to call the python tool (`numina_kit.testing.make_tool_model`),
go through SC-TIR on the transformers backend: prompt, tool call, persistent interpreter (the second call uses the
first call's variable), tool result, answer and vote, in both engines. Then the submission notebook runs AIMO-3's
gpt-oss configuration (`configs/aimo3_gpt_oss.yaml`, scaled down for a CPU) with the tiny gpt-oss model through
Kaggle's real AIMO-3 gateway, `kaggle_evaluation` 0.9.0, when a copy is on PYTHONPATH (it ships only with the
competition's data; the test skips otherwise).
"""

import copy
import importlib
import importlib.util
import json
import os
from pathlib import Path

import pytest
import yaml

from numina_kit.models.load import load_generator
from numina_kit.sandbox.pool import Sandbox
from numina_kit.sctir.loop import SCTIRConfig, solve
from numina_kit.testing import IN_PROCESS_VLLM_ARGS, TOOL_PROBLEM, VLLM_MISSING, make_tool_model


pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


AIMO3 = yaml.safe_load((REPO / "configs" / "aimo3_gpt_oss.yaml").read_text())
# what each tiny model is trained on and served with: gpt-oss with the AIMO-3 configuration's developer message
PROTOCOLS = {"harmony": AIMO3["protocol"] | {"stateful": True}, "qwen3": {"name": "qwen3", "stateful": True}}


@pytest.fixture(scope="module")
def tool_models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tool_models")
    return {name: make_tool_model(name, folder / name, options=PROTOCOLS[name]) for name in PROTOCOLS}


def solve_with(path, generator=None, **settings):
    """SC-TIR on `TOOL_PROBLEM` with the tiny model at `path` (greedy; transformers unless `generator` is given),
    `settings` on top."""
    values = dict(num_candidates=2, max_rounds=4, temperature=0.0, max_new_tokens=96, max_context_tokens=2048)
    config = SCTIRConfig(**values | dict(competition="aimo3", restart_on_fail=False) | settings)
    with Sandbox(config.executor) as sandbox:
        return solve(TOOL_PROBLEM, generator or load_generator(path, backend="hf"), config, executor=sandbox)


@pytest.mark.parametrize("engine", ["sync", "async"])
@pytest.mark.parametrize("name", ["harmony", "qwen3"])
def test_a_tiny_model_of_the_family_solves_through_its_protocol(tool_models, name, engine):
    path, loss = tool_models[name]
    assert loss < 0.05
    solution = solve_with(path, protocol=PROTOCOLS[name], engine=engine, logprobs=3)
    assert solution.answer == 43 and solution.votes == [(43, 2)] and not solution.is_fallback
    for candidate in solution.candidates:
        assert candidate.code_runs == 2 and candidate.from_code
        # 43 is printed by `print(x + 1)`, which only a persistent interpreter can run
        assert candidate.last_output == "43" and "NameError" not in candidate.text
        assert candidate.mean_entropy is not None and candidate.mean_entropy >= 0


def test_a_stateless_interpreter_loses_the_variable(tool_models):
    path, _ = tool_models["qwen3"]
    solution = solve_with(path, protocol="qwen3", num_candidates=1)  # Qwen3's default: a fresh interpreter per call
    assert "NameError: name 'x' is not defined" in solution.candidates[0].text


@pytest.mark.vllm
@pytest.mark.parametrize("name", ["harmony", "qwen3"])
def test_a_tiny_model_of_the_family_solves_on_vllms_engine(tool_models, name):
    if importlib.util.find_spec("vllm") is None:
        pytest.skip(VLLM_MISSING)
    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")  # leave the CPU affinity of other processes alone
    path, _ = tool_models[name]
    # AsyncLLM (the notebook's engine for vLLM): the async SC-TIR engine; closed so no engine process outlives the test
    generator = load_generator(path, backend="vllm", streaming=True, max_model_len=2048, **IN_PROCESS_VLLM_ARGS)
    try:
        solution = solve_with(path, generator, protocol=PROTOCOLS[name], logprobs=3)
    finally:
        generator.close()
    assert solution.answer == 43 and solution.votes == [(43, 2)]
    assert all(c.code_runs == 2 and c.last_output == "43" and c.mean_entropy is not None for c in solution.candidates)


def real_aimo3_gateway() -> bool:
    try:
        package = importlib.import_module("kaggle_evaluation")
        importlib.import_module("kaggle_evaluation.aimo_3_inference_server")
    except (ImportError, SystemExit):
        return False
    return getattr(package, "__version__", None) == "0.9.0"


def test_the_notebook_runs_the_gpt_oss_configuration_through_the_real_aimo3_gateway(tool_models, tmp_path, capsys):
    from numina_kit.__main__ import main

    if not real_aimo3_gateway():
        pytest.skip("kaggle_evaluation 0.9.0 (AIMO-3's gateway, from the competition's data) is not on PYTHONPATH")
    path, _ = tool_models["harmony"]
    recipe = copy.deepcopy(AIMO3)
    assert recipe["protocol"]["name"] == "harmony" and recipe["vllm_args"]["max_model_len"] >= 65536
    # the same configuration, scaled to a tiny model on 2 CPU cores
    recipe |= {"num_candidates": 2, "max_new_tokens": 96, "max_context_tokens": 2048, "temperature": 0.0}
    recipe["executor"] |= {"num_workers": 2}
    recipe_path = tmp_path / "aimo3_gpt_oss_tiny.yaml"
    recipe_path.write_text(yaml.safe_dump(recipe))
    rows = [{"id": f"{i:03d}abc", "problem": TOOL_PROBLEM, "answer": "43"} for i in range(3)]
    problems = tmp_path / "problems.jsonl"
    problems.write_text("".join(json.dumps(row) + "\n" for row in rows))
    out = tmp_path / "out"
    argv = ["notebook", "--model", str(path), "--problems", str(problems), "--out", str(out)]
    argv += ["--competition", "aimo3", "--config", str(recipe_path), "--gateway", "kaggle", "--backend", "auto"]
    assert main([*argv, "--budget-s", "300", "--timeout", "600"]) == 0
    printed = capsys.readouterr().out
    assert "score: 3/3" in printed
    import pandas as pd

    submission = pd.read_parquet(out / "submission.parquet")
    assert sorted(submission["id"]) == [row["id"] for row in rows] and submission["answer"].tolist() == [43] * 3
    executed = (out / "submission.ipynb").read_text()
    assert "(kaggle_evaluation gateway)" in executed and "protocol=ProtocolConfig(name='harmony'" in executed
