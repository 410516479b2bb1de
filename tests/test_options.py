"""SC-TIR settings read one way (numina_kit.options): the flags both commands share (defaults from the recipe, else
SCTIRConfig), flags over a recipe, and the notebook's parameters under a recipe that must agree on the competition."""

import argparse

import pytest

from numina_kit.errors import InputError
from numina_kit.options import add_sctir_arguments, notebook_config, sctir_settings
from numina_kit.sctir.loop import SCTIRConfig


def parse(argv: list[str], recipe=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_sctir_arguments(parser, recipe=recipe)
    return parser.parse_args(argv)


def test_flags_left_out_keep_the_recipe_or_sctir_config_defaults(tmp_path):
    assert SCTIRConfig.from_dict(sctir_settings(parse([]))) == SCTIRConfig()
    recipe = tmp_path / "r.yaml"
    recipe.write_text("num_candidates: 8\nmax_rounds: 3\nearly_stop: {agree: 4}\n")
    settings = sctir_settings(parse(["--max-rounds", "2", "--seed", "7", "--temperature", "0.5"], recipe=recipe))
    config = SCTIRConfig.from_dict(settings)
    assert (config.num_candidates, config.max_rounds, config.seed, config.temperature) == (8, 2, 7, 0.5)
    assert config.early_stop.agree == 4 and config.max_new_tokens == SCTIRConfig().max_new_tokens


def test_help_names_the_default_and_bad_values_are_refused(capsys):
    parser = argparse.ArgumentParser()
    add_sctir_arguments(parser)
    assert "else 48" in parser.format_help()
    with pytest.raises(SystemExit):
        parser.parse_args(["--competition", "aimo9"])
    assert "invalid choice" in capsys.readouterr().err


def test_notebook_config_from_parameters_and_recipe(tmp_path):
    parameters = {"competition": "aimo2", "num_candidates": 48, "max_rounds": 4}
    assert notebook_config(parameters).competition == "aimo2"
    recipe = tmp_path / "r.yaml"
    recipe.write_text("num_candidates: 16\n")
    config = notebook_config(parameters, recipe)
    assert (config.competition, config.num_candidates, config.max_rounds) == ("aimo2", 16, 4)
    recipe.write_text("num_candidates: 16\ncompetition: aimo3\n")
    with pytest.raises(InputError, match="is for competition 'aimo3' but COMPETITION is 'aimo2'"):
        notebook_config(parameters, recipe)
