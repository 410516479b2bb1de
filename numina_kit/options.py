"""SC-TIR settings for the commands and the notebook, read one way: a YAML recipe, then what the caller sets.

`python -m numina_kit evaluate` and `python -m numina_kit notebook` take the same flags (`add_sctir_arguments`), each
named after an `SCTIRConfig` field, with no default of their own: a flag left out keeps the recipe's value (`--config`),
else the command's default recipe's, else `SCTIRConfig`'s. The notebook reads its parameters the same way
(`notebook_config`), so a setting has its default in exactly one place.
"""

import argparse
import dataclasses
from pathlib import Path

from numina_kit.answers import COMPETITIONS
from numina_kit.configs import read_mapping
from numina_kit.errors import InputError
from numina_kit.sctir.loop import SCTIRConfig


# The SCTIRConfig fields a command line may set directly, with their help; any other field comes from the recipe.
FLAGS = {
    "num_candidates": "N, candidates per problem",
    "max_rounds": "M, generate/execute rounds per candidate",
    "max_new_tokens": "tokens per round",
    "max_context_tokens": "prompt + solution limit; longer candidates are pruned",
    "temperature": "sampling temperature",
    "seed": "sampling seed",
    "competition": "answer rule",
}


def add_sctir_arguments(parser: argparse.ArgumentParser, *, recipe: Path | None = None) -> None:
    """Add `--config` (default: `recipe`) and one flag per field of `FLAGS` to `parser`."""
    defaults = SCTIRConfig()
    where = f"{recipe.name}'s value" if recipe else "SCTIRConfig's"
    parser.add_argument("--config", default=recipe, help=f"SC-TIR recipe (YAML; default: {recipe or 'none'})")
    types = {field.name: field.type for field in dataclasses.fields(SCTIRConfig)}
    for name, help_ in FLAGS.items():
        flag = "--" + name.replace("_", "-")
        kind = int if name == "seed" else types[name]
        choices = list(COMPETITIONS) if name == "competition" else None
        default = getattr(defaults, name)
        parser.add_argument(flag, type=kind, choices=choices, help=f"{help_} (default: {where}, else {default})")


def sctir_settings(args: argparse.Namespace) -> dict:
    """The recipe's settings (`args.config`), with every flag the user gave on top; keys are SCTIRConfig fields."""
    settings = read_mapping(args.config, what="SCTIRConfig fields") if args.config else {}
    return settings | {name: getattr(args, name) for name in FLAGS if getattr(args, name) is not None}


def notebook_config(settings: dict, recipe: str | Path | None = None) -> SCTIRConfig:
    """The notebook's SC-TIR config: its parameters (`settings`), with a recipe's keys on top when one is given.

    The recipe names its competition or inherits the notebook's; one that names another is an `InputError`, because
    the competition also decides which Kaggle API is served and the two must not disagree silently.
    """
    if not recipe:
        return SCTIRConfig.from_dict(settings, source="notebook parameters")
    values = read_mapping(recipe, what="SCTIRConfig fields")
    chosen = settings.get("competition")
    if chosen is not None and values.get("competition", chosen) != chosen:
        raise InputError(f"{recipe} is for competition {values['competition']!r} but COMPETITION is {chosen!r}")
    return SCTIRConfig.from_dict(settings | values, source=str(recipe))
