"""`python -m numina_kit package`: everything a Kaggle submission needs offline, in three upload-ready folders.

Kaggle reruns a competition notebook with the internet off, so every wheel and the model must come from attached
datasets (Numina's AIMO-1 notebook installed vLLM from an attached wheel dataset the same way). This command writes, under `--out`:

- `wheels/`: `pip download` of `requirements.txt` plus numina_kit's own wheel, for Kaggle's Python and platform
  (`--only-binary=:all:`, so nothing needs compiling there), the requirements file itself, and `dataset-metadata.json`;
- `model/`: the (quantized) model folder's files and `dataset-metadata.json`;
- `kernel/`: the submission notebook, its parameters pointed at those datasets, and `kernel-metadata.json`;

then prints the `kaggle datasets create`, `kaggle kernels push` and `kaggle competitions submit` commands.
"""

import argparse
import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from numina_kit.answers import KAGGLE_COMPETITIONS, competition_rule
from numina_kit.errors import InputError


REPO = Path(__file__).resolve().parents[2]
NOTEBOOK = REPO / "notebooks" / "submission.ipynb"
KERNEL_METADATA = REPO / "kernel-metadata.json"
# Kaggle's image runs Ubuntu 22.04 (glibc 2.35) on x86_64; pip does not expand manylinux_2_X tags, so list them.
DEFAULT_GLIBC = (2, 35)
# Training leftovers that a model dataset does not need.
SKIPPED_MODEL_FILES = {"optimizer.pt", "scheduler.pt", "training_args.bin", "trainer_state.json", "rng_state.pth"}


@dataclass(frozen=True)
class Target:
    """The interpreter and platform the wheels are for."""

    python_version: str = "3.12"
    glibc: tuple[int, int] = DEFAULT_GLIBC
    arch: str = "x86_64"

    @property
    def abi(self) -> str:
        return "cp" + self.python_version.replace(".", "")

    def platforms(self) -> list[str]:
        major, minor = self.glibc
        tags = [f"manylinux_{major}_{m}_{self.arch}" for m in range(minor, 16, -1)]
        return [*tags, f"manylinux2014_{self.arch}"]


def download_command(requirements: Path, extra: list[str], dest: Path, target: Target, index_args=()) -> list[str]:
    """The `pip download` that fetches binary wheels of `requirements` and `extra` for `target` into `dest`."""
    command = [sys.executable, "-m", "pip", "download", "--dest", str(dest), "--only-binary=:all:"]
    command += ["--python-version", target.python_version, "--implementation", "cp", "--abi", target.abi]
    for platform in target.platforms():
        command += ["--platform", platform]
    return [*command, *index_args, "-r", str(requirements), *extra]


def build_own_wheel(dest: Path) -> Path:
    """Build numina_kit's wheel from this checkout into `dest` (no dependencies, no network)."""
    dest.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(dest), str(REPO)]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    wheels = sorted(dest.glob("numina_kit-*.whl"), key=lambda path: path.stat().st_mtime)
    if not wheels:
        raise RuntimeError(f"pip wheel wrote no numina_kit wheel to {dest}")
    return wheels[-1]


def build_wheelhouse(
    requirements: Path, dest: Path, target: Target, *, index_args=(), download: bool = True
) -> list[Path]:
    """numina_kit's wheel plus every wheel `requirements` needs on `target`, and a copy of the requirements."""
    if not requirements.is_file():
        raise InputError(f"requirements file not found: {requirements}")
    own = build_own_wheel(dest)
    shutil.copyfile(requirements, dest / "requirements.txt")
    if download:
        subprocess.run(download_command(requirements, [str(own)], dest, target, index_args), check=True)
    return sorted(dest.glob("*.whl"))


def stage_model(model: Path, dest: Path) -> list[Path]:
    """Link (or copy) the model folder's top-level files into `dest`; return them.

    Kaggle uploads a folder's files flat, so subfolders (checkpoints) are left out, as are training leftovers.
    """
    if not (model / "config.json").is_file():
        raise InputError(f"{model} is not a model folder (no config.json)")
    dest.mkdir(parents=True, exist_ok=True)
    staged = []
    for path in sorted(model.iterdir()):
        if not path.is_file() or path.name in SKIPPED_MODEL_FILES:
            continue
        target = dest / path.name
        target.unlink(missing_ok=True)
        try:
            target.hardlink_to(path)
        except OSError:
            shutil.copy2(path, target)
        staged.append(target)
    return staged


def is_quantized(model: Path) -> bool:
    """Whether the model's config.json declares a quantization (GPTQ 8-bit is what Kaggle's T4s should serve)."""
    config = json.loads((model / "config.json").read_text())
    return "quantization_config" in config


def write_dataset_metadata(folder: Path, owner: str, slug: str, title: str) -> Path:
    """`dataset-metadata.json` for `kaggle datasets create -p folder`."""
    metadata = {"title": title, "id": f"{owner}/{slug}", "licenses": [{"name": "other"}]}
    path = folder / "dataset-metadata.json"
    path.write_text(json.dumps(metadata, indent=2) + "\n")
    return path


def kernel_metadata(template: dict, *, owner: str, slug: str, competition: str, wheels: str, model: str) -> dict:
    """The repo's kernel-metadata.json with the user's ids, the datasets and the competition filled in."""
    rule = competition_rule(competition, kaggle=True)
    metadata = dict(template)
    metadata |= {
        "id": f"{owner}/{slug}",
        "title": slug.replace("-", " "),
        "machine_shape": rule.machine_shape,
        "competition_sources": [rule.kaggle_slug],
        "dataset_sources": [f"{owner}/{wheels}", f"{owner}/{model}"],
    }
    return metadata


def stage_notebook(notebook: Path, dest: Path, parameters: dict) -> Path:
    """Copy the notebook into `dest`, with these defaults written into its `parameters` cell."""
    import nbformat

    nb = nbformat.read(notebook, as_version=4)
    cell = next(cell for cell in nb.cells if "parameters" in cell.metadata.get("tags", []))
    lines = cell.source.splitlines()
    for name, value in parameters.items():
        index = next((i for i, line in enumerate(lines) if line.startswith(f"{name} = ")), None)
        if index is None:
            raise InputError(f"{notebook}: the parameters cell has no {name}")
        comment = lines[index].partition("  #")[2]
        lines[index] = f"{name} = {value!r}" + (f"  #{comment}" if comment else "")
    cell.source = "\n".join(lines)
    dest.mkdir(parents=True, exist_ok=True)
    path = dest / notebook.name
    nbformat.write(nb, path)
    return path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="the model folder to upload (8-bit GPTQ for T4s)")
    parser.add_argument("--owner", required=True, help="your Kaggle username (dataset and kernel owner)")
    parser.add_argument("--out", default="dist/kaggle", help="output folder (default: dist/kaggle)")
    parser.add_argument("--competition", default="aimo1", choices=KAGGLE_COMPETITIONS)
    parser.add_argument("--requirements", default=str(REPO / "requirements.txt"))
    parser.add_argument("--python-version", default="3.12", help="Kaggle's Python (check: !python --version)")
    parser.add_argument("--glibc", default="2.35", help="Kaggle's glibc (Ubuntu 22.04: 2.35)")
    parser.add_argument("--kernel-slug", default="numina-kit-sc-tir")
    parser.add_argument("--wheels-slug", default="numina-kit-wheels")
    parser.add_argument("--model-slug", default="numina-kit-model")
    parser.add_argument("--no-download", action="store_true", help="only numina_kit's wheel (no pip download)")
    parser.add_argument("--find-links", default=None, help="download from this folder instead of PyPI (offline)")


def run(args: argparse.Namespace) -> int:
    model, out = Path(args.model), Path(args.out)
    rule = competition_rule(args.competition, kaggle=True)
    if not NOTEBOOK.is_file() or not KERNEL_METADATA.is_file():
        raise InputError(f"{NOTEBOOK.parent} not found: run the package command from a numina_kit checkout")
    if not model.is_dir():
        raise InputError(f"model folder not found: {model}")
    try:
        major, minor = (int(part) for part in args.glibc.split("."))
    except ValueError:
        raise InputError(f"--glibc must look like 2.35, got {args.glibc!r}") from None
    target = Target(python_version=args.python_version, glibc=(major, minor))
    index_args = ("--no-index", "--find-links", args.find_links) if args.find_links else ()

    wheels_dir, model_dir, kernel_dir = out / "wheels", out / "model", out / "kernel"
    print(f"wheelhouse for CPython {target.python_version} on manylinux (glibc <= {args.glibc}) -> {wheels_dir}")
    wheels = build_wheelhouse(
        Path(args.requirements), wheels_dir, target, index_args=index_args, download=not args.no_download
    )
    write_dataset_metadata(wheels_dir, args.owner, args.wheels_slug, "numina_kit wheels")
    print(f"  {len(wheels)} wheels")
    staged = stage_model(model, model_dir)
    write_dataset_metadata(model_dir, args.owner, args.model_slug, "numina_kit model")
    print(f"model: {len(staged)} files -> {model_dir}")
    if not is_quantized(model):
        print(f"  note: config.json declares no quantization; check that the model fits {rule.hardware}")

    parameters = {
        "MODEL_PATH": f"/kaggle/input/{args.model_slug}",
        "COMPETITION": args.competition,
        "WHEELS_DIR": f"/kaggle/input/{args.wheels_slug}",
    }
    notebook = stage_notebook(NOTEBOOK, kernel_dir, parameters)
    template = json.loads(KERNEL_METADATA.read_text())
    metadata = kernel_metadata(
        template,
        owner=args.owner,
        slug=args.kernel_slug,
        competition=args.competition,
        wheels=args.wheels_slug,
        model=args.model_slug,
    )
    metadata["code_file"] = notebook.name
    (kernel_dir / "kernel-metadata.json").write_text(json.dumps(metadata, indent=2) + "\n")
    print(f"kernel: {notebook} and kernel-metadata.json -> {kernel_dir}")

    print("\nnext steps (Kaggle CLI, logged in as the owner):")
    print(f"  kaggle datasets create -p {wheels_dir}")
    print(f"  kaggle datasets create -p {model_dir}")
    print(f"  kaggle kernels push -p {kernel_dir}")
    print(f"  kaggle kernels status {args.owner}/{args.kernel_slug}   # wait for COMPLETE; note the version number")
    print(
        f"  kaggle competitions submit {rule.kaggle_slug} -k {args.owner}/{args.kernel_slug}"
        f' -v VERSION -f {rule.submission_file} -m "numina_kit SC-TIR"'
    )
    return 0
