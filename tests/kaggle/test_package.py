"""Offline packaging for Kaggle (numina_kit.kaggle.package): the wheelhouse is built for Kaggle's interpreter and
platform, the model folder and notebook are staged, and the metadata files and printed commands are right."""

import json
import zipfile
from pathlib import Path

import nbformat
import pytest

from numina_kit.__main__ import main
from numina_kit.errors import InputError
from numina_kit.kaggle import package as packaging


def fake_wheel(folder: Path, name: str, tag: str) -> Path:
    """A minimal valid wheel `name-1.0-{tag}.whl` with no dependencies."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}-1.0-{tag}.whl"
    info = f"{name}-1.0.dist-info"
    with zipfile.ZipFile(path, "w") as wheel:
        wheel.writestr(f"{name}/__init__.py", "")
        wheel.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
        wheel.writestr(f"{info}/WHEEL", f"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: false\nTag: {tag}\n")
        wheel.writestr(f"{info}/RECORD", "")
    return path


def test_target_lists_every_manylinux_tag_pip_will_not_expand():
    target = packaging.Target(python_version="3.12", glibc=(2, 35))
    platforms = target.platforms()
    assert target.abi == "cp312"
    assert platforms[0] == "manylinux_2_35_x86_64" and "manylinux_2_17_x86_64" in platforms
    assert platforms[-1] == "manylinux2014_x86_64" and len(platforms) == 35 - 17 + 2
    command = packaging.download_command(Path("req.txt"), ["own.whl"], Path("w"), target)
    assert command[3:6] == ["download", "--dest", "w"] and "--only-binary=:all:" in command
    assert command[command.index("--python-version") + 1] == "3.12" and command[command.index("--abi") + 1] == "cp312"
    assert command.count("--platform") == len(platforms) and command[-3:] == ["-r", "req.txt", "own.whl"]


@pytest.mark.parametrize(
    ("tag", "python_version", "fits"),
    [
        ("cp312-cp312-manylinux_2_28_x86_64", "3.12", True),
        ("cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64", "3.12", True),
        ("py3-none-any", "3.12", True),
        ("cp312-cp312-manylinux_2_39_x86_64", "3.12", False),  # needs a newer glibc than Kaggle's
        ("cp312-cp312-win_amd64", "3.12", False),
        ("cp311-cp311-manylinux_2_28_x86_64", "3.12", False),
        ("cp311-cp311-manylinux_2_28_x86_64", "3.11", True),
    ],
)
def test_wheelhouse_downloads_only_wheels_for_the_target(tmp_path, monkeypatch, tag, python_version, fits):
    # numina_kit's own wheel is built for real in the command test below; a stand-in keeps this one fast
    monkeypatch.setattr(packaging, "build_own_wheel", lambda dest: fake_wheel(dest, "numina_kit", "py3-none-any"))
    index = tmp_path / "index"
    fake_wheel(index, "fakepkg", tag)
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("fakepkg==1.0\n")
    dest = tmp_path / "wheels"
    target = packaging.Target(python_version=python_version)
    index_args = ("--no-index", "--no-deps", "--find-links", str(index))
    if not fits:
        with pytest.raises(packaging.subprocess.CalledProcessError):
            packaging.build_wheelhouse(requirements, dest, target, index_args=index_args)
        return
    wheels = packaging.build_wheelhouse(requirements, dest, target, index_args=index_args)
    names = sorted(path.name for path in wheels)
    assert names[0] == f"fakepkg-1.0-{tag}.whl" and names[1].startswith("numina_kit-")
    assert (dest / "requirements.txt").read_text() == "fakepkg==1.0\n"


def test_repo_requirements_pin_the_kaggle_inference_stack():
    lines = (packaging.REPO / "requirements.txt").read_text().splitlines()
    pins = dict(line.split("==") for line in lines if "==" in line and not line.startswith("#"))
    assert pins["vllm"] == "0.19.1" and pins["torch"] == "2.10.0" and pins["transformers"] == "5.5.4"


def model_folder(tmp_path: Path, config: dict) -> Path:
    model = tmp_path / "model-src"
    (model / "checkpoint-10").mkdir(parents=True)
    (model / "config.json").write_text(json.dumps(config))
    for name in ("model.safetensors", "tokenizer.json", "optimizer.pt", "trainer_state.json"):
        (model / name).write_text(name)
    return model


def test_stage_model_keeps_only_the_files_inference_needs(tmp_path):
    model = model_folder(tmp_path, {"quantization_config": {"bits": 8, "quant_method": "gptq"}})
    staged = packaging.stage_model(model, tmp_path / "staged")
    assert sorted(path.name for path in staged) == ["config.json", "model.safetensors", "tokenizer.json"]
    assert (tmp_path / "staged" / "model.safetensors").read_text() == "model.safetensors"
    assert packaging.is_quantized(model)
    assert not packaging.is_quantized(model_folder(tmp_path / "plain", {"model_type": "llama"}))
    with pytest.raises(InputError, match="no config.json"):
        packaging.stage_model(tmp_path, tmp_path / "x")


def test_stage_notebook_rewrites_only_the_named_parameters(tmp_path):
    path = packaging.stage_notebook(
        packaging.NOTEBOOK, tmp_path, {"MODEL_PATH": "/kaggle/input/m", "COMPETITION": "aimo3"}
    )
    original = nbformat.read(packaging.NOTEBOOK, as_version=4)
    staged = nbformat.read(path, as_version=4)
    index = next(i for i, cell in enumerate(staged.cells) if "parameters" in cell.metadata.get("tags", []))
    lines = staged.cells[index].source.splitlines()
    assert 'MODEL_PATH = "/kaggle/input/m"  # a model folder' in lines[1].replace("'", '"')
    assert any(line.startswith("COMPETITION = 'aimo3'  #") for line in lines)
    assert [cell.source for i, cell in enumerate(staged.cells) if i != index] == [
        cell.source for i, cell in enumerate(original.cells) if i != index
    ]
    with pytest.raises(ValueError, match="no NOT_A_PARAMETER"):
        packaging.stage_notebook(packaging.NOTEBOOK, tmp_path, {"NOT_A_PARAMETER": 1})


def test_package_command_writes_three_upload_folders_and_prints_the_kaggle_commands(tmp_path, capsys):
    model = model_folder(tmp_path, {"model_type": "llama"})
    out = tmp_path / "dist"
    argv = ["package", "--model", str(model), "--owner", "alice", "--out", str(out), "--competition", "aimo3"]
    assert main([*argv, "--no-download"]) == 0
    printed = capsys.readouterr().out

    wheels = json.loads((out / "wheels" / "dataset-metadata.json").read_text())
    model_meta = json.loads((out / "model" / "dataset-metadata.json").read_text())
    assert wheels["id"] == "alice/numina-kit-wheels" and model_meta["id"] == "alice/numina-kit-model"
    assert 6 <= len(wheels["title"]) <= 50 and wheels["licenses"][0]["name"]
    [own] = (out / "wheels").glob("numina_kit-*.whl")
    with zipfile.ZipFile(own) as wheel:
        assert {"numina_kit/kaggle/serving.py", "numina_kit/kaggle/gateway.py", "numina_kit/sctir/loop.py"} <= set(
            wheel.namelist()
        )
    assert (out / "wheels" / "requirements.txt").is_file()
    assert (out / "model" / "model.safetensors").is_file()

    kernel = json.loads((out / "kernel" / "kernel-metadata.json").read_text())
    assert kernel["id"] == "alice/numina-kit-sc-tir" and kernel["code_file"] == "submission.ipynb"
    assert kernel["competition_sources"] == ["ai-mathematical-olympiad-progress-prize-3"]
    assert kernel["dataset_sources"] == ["alice/numina-kit-wheels", "alice/numina-kit-model"]
    assert kernel["machine_shape"] == "NvidiaH100" and kernel["enable_internet"] == "false"
    source = nbformat.read(out / "kernel" / "submission.ipynb", as_version=4).cells[1].source
    assert "MODEL_PATH = '/kaggle/input/numina-kit-model'" in source and "COMPETITION = 'aimo3'" in source

    assert f"kaggle datasets create -p {out / 'wheels'}" in printed
    assert f"kaggle datasets create -p {out / 'model'}" in printed
    assert f"kaggle kernels push -p {out / 'kernel'}" in printed
    assert (
        "kaggle competitions submit ai-mathematical-olympiad-progress-prize-3 -k alice/numina-kit-sc-tir -v VERSION"
        " -f submission.parquet" in printed
    )
    assert "declares no quantization" in printed


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--model", "/no/such/model"], "model folder not found"),
        (["--model", ".", "--glibc", "two"], "--glibc must look like 2.35"),
        (["--model", ".", "--requirements", "/no/req.txt"], "requirements file not found"),
    ],
)
def test_package_command_reports_bad_input(tmp_path, capsys, extra, message):
    assert main(["package", "--owner", "a", "--out", str(tmp_path), "--no-download", *extra]) == 2
    assert message in capsys.readouterr().err
