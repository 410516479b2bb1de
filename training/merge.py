"""Merge fine-tuned models with mergekit, from a YAML recipe: linear, SLERP, TIES, DARE-TIES, task arithmetic, WARP.

NuminaMath tried merging their SFT model with KTO models and with DeepSeekMath's public models (DARE, TIES, WARP) and
kept none: the merges regressed on their internal validation sets (the team's write-up,
https://huggingface.co/blog/winning-aimo-progress-prize). These recipes make those merges, and
`python -m numina_kit validate` judges them against their parents.

Usage:

    python training/merge.py --config training/recipes/merge/tiny/ties.yaml
    python training/merge.py --config RECIPE --output_dir DIR --model kto=models/other-kto   # override a path

A recipe names its models once and merges them in one or more stages, each a mergekit configuration
(https://github.com/arcee-ai/mergekit, `docs/merge_methods.md`) whose model references are those names, or the name
of an earlier stage:

    models: {sft: models/tiny-tir, kto: models/tiny-tir-kto}   # a folder, or {hub: org/name} for a Hub model
    output_dir: models/tiny-merge-ties
    tokenizer_from: sft       # tokenizer and generation config of the merged model (default: the first model)
    stages:
      - name: ties
        merge_method: ties
        base_model: sft
        models: [{model: kto, parameters: {weight: 1.0, density: 0.5}}]
        dtype: float32

WARP (Rame et al., 2024, arXiv:2406.16768) is two stages: `nuslerp` of fine-tuned runs' task vectors from the initial
model, then `linear` between that and the initial model ("LITI"). Before anything is written the script checks that
every model exists and that all share one architecture; a problem is one line (`error: ...`) and nothing is
written. Stages run in a temporary folder beside `output_dir`, renamed into place only when every stage succeeded.
The merged folder loads like any model (`numina_kit.models.load.load_generator`, the notebook) and quantizes with
`training/quantize.py`; it also holds `merge_recipe.yaml`, the recipe with the paths it used.

mergekit is an optional extra (`pip install -e ".[merge]"`), imported only here.
"""

import argparse
import dataclasses
import json
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from numina_kit.configs import read_mapping, reject_unknown_keys
from numina_kit.errors import InputError


# config.json keys that decide whether two checkpoints' tensors line up one to one
ARCHITECTURE_KEYS = (
    "model_type",
    "architectures",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "tie_word_embeddings",
    "vocab_size",
)
REFERENCE_KEYS = ("model", "base_model", "tokenizer_source")  # where a mergekit configuration names a model
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "tokenizer.model",
    "special_tokens_map.json",
    "added_tokens.json",
    "merges.txt",
    "vocab.json",
    "chat_template.jinja",
    "generation_config.json",
)


@dataclass
class MergeRecipe:
    """A merge: the models by name, the mergekit stages, where the result goes, whose tokenizer it keeps."""

    models: dict
    stages: list
    output_dir: str
    tokenizer_from: str | None = None
    seed: int = 0  # DARE's random drops
    options: dict = field(
        default_factory=dict
    )  # mergekit MergeOptions (e.g. {cuda: true, out_shard_size: 2000000000})


def read_recipe(path: str | Path, *, output_dir: str | None = None, models: list[str] = ()) -> MergeRecipe:
    """The recipe at `path` with command-line overrides (`--output_dir`, `--model NAME=PATH`)."""
    data = read_mapping(path, what="merge recipe keys")
    reject_unknown_keys(data, MergeRecipe, source=str(path))
    if output_dir is not None:
        data["output_dir"] = output_dir
    for override in models:
        name, sep, value = override.partition("=")
        if not sep or not name or not value:
            raise InputError(f"--model takes NAME=PATH, got {override!r}")
        if name not in data.get("models", {}):
            raise InputError(f"--model {name}: the recipe has no model {name!r} ({', '.join(data.get('models', {}))})")
        data["models"][name] = value
    for key in ("models", "stages", "output_dir"):
        if not data.get(key):
            raise InputError(f"{path}: the recipe needs {key}")
    if not isinstance(data["models"], dict) or not isinstance(data["stages"], list):
        raise InputError(f"{path}: models must map names to folders and stages must be a list of mergekit configs")
    recipe = MergeRecipe(**data)
    if recipe.tokenizer_from is not None and recipe.tokenizer_from not in recipe.models:
        raise InputError(
            f"tokenizer_from {recipe.tokenizer_from!r} is not one of the models ({', '.join(recipe.models)})"
        )
    return recipe


def model_folders(recipe: MergeRecipe) -> dict[str, Path]:
    """Every model's local folder (Hub models are fetched), after checking each holds a model."""
    from numina_kit.models.load import read_model_config

    folders = {}
    for name, source in recipe.models.items():
        if isinstance(source, dict) and set(source) <= {"hub", "revision"} and "hub" in source:
            folders[name] = _hub_folder(name, source)
        elif isinstance(source, str):
            folders[name] = Path(source)
        else:
            raise InputError(f"model {name}: give a folder, or {{hub: org/name}} for a Hub model; got {source!r}")
        try:
            read_model_config(folders[name])
        except InputError as error:
            raise InputError(f"model {name}: {error}") from None
    return folders


def check_architectures(folders: dict[str, Path], *, vocab_may_differ: bool = False) -> None:
    """One line naming two models and the first setting they differ in, when their tensors cannot be merged."""
    configs = {
        name: json.loads((folder / "config.json").read_text(encoding="utf-8")) for name, folder in folders.items()
    }
    first, reference = next(iter(configs.items()))
    for name, config in configs.items():
        for key in ARCHITECTURE_KEYS:
            if key == "vocab_size" and vocab_may_differ:
                continue
            if config.get(key) != reference.get(key):
                raise InputError(
                    f"models {first} and {name} differ in architecture ({key} {reference.get(key)} vs "
                    f"{config.get(key)}): mergekit merges models of one architecture"
                )


def resolve_stages(recipe: MergeRecipe, folders: dict[str, Path], scratch: Path) -> list[tuple[str, dict, Path]]:
    """(name, mergekit configuration with paths, output folder) per stage; the last writes `scratch/final`."""
    known = {name: str(folder) for name, folder in folders.items()}
    stages = []
    for number, stage in enumerate(recipe.stages, start=1):
        if not isinstance(stage, dict):
            raise InputError(f"stage {number}: expected a mergekit configuration (a mapping), got {stage!r}")
        stage = dict(stage)
        name = str(stage.pop("name", f"stage{number}"))
        where = f"stage {name}"
        config = _substitute(stage, known, where)
        out = scratch / ("final" if number == len(recipe.stages) else f"stage-{name}")
        stages.append((name, config, out))
        known[name] = str(out)
    return stages


def merge(recipe: MergeRecipe) -> Path:
    """Check everything, run the stages in a scratch folder, move the result to `output_dir`; returns it."""
    output = Path(recipe.output_dir)
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise InputError(f"{output} already exists and is not empty: choose a new output_dir")
    try:
        from mergekit import merge_methods
        from mergekit.config import MergeConfiguration
        from mergekit.merge import run_merge
        from mergekit.options import MergeOptions
    except ImportError:
        raise InputError("mergekit is not installed: pip install -e '.[merge]'") from None
    folders = model_folders(recipe)
    referenced = {ref for stage in recipe.stages if isinstance(stage, dict) for ref in _references(stage)}
    check_architectures(
        {name: folder for name, folder in folders.items() if name in referenced or name == recipe.tokenizer_from},
        vocab_may_differ=any(
            isinstance(s, dict) and ("tokenizer_source" in s or "tokenizer" in s) for s in recipe.stages
        ),
    )
    try:
        options = MergeOptions(**{"random_seed": recipe.seed, "quiet": True, **recipe.options})
    except ValueError as error:  # pydantic's ValidationError
        raise InputError(f"options: {_first_line(error)}") from None
    for name, config, _ in resolve_stages(recipe, folders, output.parent / "scratch"):  # checked before any write
        try:
            MergeConfiguration.model_validate(config)
            merge_methods.get(config.get("merge_method"))
        except (ValueError, RuntimeError) as error:  # pydantic's ValidationError; an unknown merge_method
            raise InputError(f"stage {name}: not a valid mergekit configuration ({_first_line(error)})") from None
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{output.name}.", dir=output.parent) as scratch:
        stages = resolve_stages(recipe, folders, Path(scratch))
        configurations = [MergeConfiguration.model_validate(config) for _, config, _ in stages]
        for (_, _, out), configuration in zip(stages, configurations, strict=True):
            run_merge(configuration, str(out), options=options)
        final = stages[-1][2]
        donor = folders[recipe.tokenizer_from or next(iter(recipe.models))]
        keeps_tokenizer = "tokenizer_source" in recipe.stages[-1] or "tokenizer" in recipe.stages[-1]
        for file_name in ("generation_config.json",) if keeps_tokenizer else TOKENIZER_FILES:
            if (donor / file_name).is_file():
                shutil.copy(donor / file_name, final / file_name)
        used = dataclasses.asdict(recipe) | {"models": {name: str(folder) for name, folder in folders.items()}}
        (final / "merge_recipe.yaml").write_text(_yaml(used))
        from numina_kit.models.load import read_model_config

        read_model_config(final)  # config, weights and tokenizer are all there
        if output.exists():  # an empty folder made beforehand
            _move_into(final, output)
        else:
            final.rename(output)
    return output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, metavar="RECIPE", help="merge recipe (YAML)")
    parser.add_argument("--output_dir", help="where the merged model goes (overrides the recipe's)")
    parser.add_argument("--model", action="append", default=[], metavar="NAME=PATH", help="override a model's path")
    args = parser.parse_args(argv)
    try:
        output = merge(read_recipe(args.config, output_dir=args.output_dir, models=args.model))
    except InputError as error:
        print(f"error: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
    print(f"wrote merged model to {output}")
    return 0


def _substitute(value: object, known: dict[str, str], where: str) -> object:
    """`value` with every model reference (a name in `known`) replaced by its folder; InputError for others."""
    if isinstance(value, list):
        return [_substitute(item, known, where) for item in value]
    if not isinstance(value, dict):
        return value
    result = {}
    for key, item in value.items():
        if key in REFERENCE_KEYS and isinstance(item, str) and not _tokenizer_rule(key, item):
            if item not in known:
                raise InputError(
                    f"{where} names model {item!r}, which is neither in models nor an earlier stage "
                    f"({', '.join(known)})"
                )
            result[key] = known[item]
        else:
            result[key] = _substitute(item, known, where)
    return result


def _references(value: object) -> set[str]:
    if isinstance(value, list):
        return set().union(*(_references(item) for item in value)) if value else set()
    if not isinstance(value, dict):
        return set()
    found = {
        item
        for key, item in value.items()
        if key in REFERENCE_KEYS and isinstance(item, str) and not _tokenizer_rule(key, item)
    }
    return found.union(*(_references(item) for item in value.values()))


def _tokenizer_rule(key: str, item: str) -> bool:
    """mergekit's `tokenizer_source: base | union` name a rule, not a model."""
    return key == "tokenizer_source" and item in ("base", "union")


def _hub_folder(name: str, source: dict) -> Path:
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(source["hub"], revision=source.get("revision")))
    except Exception as error:  # offline, unknown id, gated repository: the hub client raises many kinds
        raise InputError(
            f"model {name}: could not fetch {source['hub']} from the Hugging Face Hub ({_first_line(error)})"
        ) from None


def _move_into(source: Path, target: Path) -> None:
    """Move `source`'s files into the existing empty folder `target`."""
    for item in source.iterdir():
        item.rename(target / item.name)


def _yaml(data: dict) -> str:
    import yaml

    return yaml.safe_dump(data, sort_keys=False)


def _first_line(error: BaseException) -> str:
    lines = [line for line in str(error).strip().splitlines() if line.strip()]
    return " ".join(lines[:3]) if lines else type(error).__name__


if __name__ == "__main__":
    sys.exit(main())
