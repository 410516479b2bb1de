"""`python -m numina_kit <command>`: the project's command line.

Each command lives in the module that does the work; that module exposes `add_arguments(parser)` and `run(args)`,
and is imported only when its command is called, so `--help` stays fast and needs no heavy dependency.
"""

import argparse
import importlib
import sys

from numina_kit.errors import InputError


COMMANDS = {
    "evaluate": (
        "numina_kit.eval.evaluate",
        "run SC-TIR over a problem set with reference answers and report accuracy",
    ),
    "validate": (
        "numina_kit.eval.validate",
        "run a validation suite (every model on every set) and compare the models with intervals",
    ),
    "notebook": ("numina_kit.kaggle.notebook", "run the submission notebook headless in local mode"),
    "package": ("numina_kit.kaggle.package", "build the offline wheelhouse and model folder for a Kaggle submission"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS:
        usage = "\n".join(f"  {name:<10} {help_}" for name, (_, help_) in COMMANDS.items())
        print(f"usage: python -m numina_kit <command> [options]\n\ncommands:\n{usage}", file=sys.stderr)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    name, rest = argv[0], argv[1:]
    module_name, help_ = COMMANDS[name]
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(prog=f"python -m numina_kit {name}", description=help_)
    module.add_arguments(parser)
    try:
        return int(module.run(parser.parse_args(rest)) or 0)
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
