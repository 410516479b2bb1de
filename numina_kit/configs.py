"""YAML configs with one-line errors: read a mapping from a file and reject keys its dataclass does not have.

Used by `SCTIRConfig.from_yaml` and `training/generate_tir.py`, so a missing file, bad YAML or a misspelt key reads
the same everywhere (TRL's parser does this for the training recipes).
"""

import dataclasses
from pathlib import Path

from numina_kit.errors import InputError


def read_mapping(path: str | Path, *, what: str = "settings") -> dict:
    """The top-level mapping of a YAML file; `InputError` when the file is missing, not YAML, or not a mapping."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise InputError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        raise InputError(f"{path}: not valid YAML ({str(error).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a mapping of {what}")
    return data


def reject_unknown_keys(data: dict, cls: type, *, source: str, name: str = "") -> None:
    """`InputError` naming every key of `data` that is not a field of dataclass `cls` (`name` prefixes the word key)."""
    known = [field.name for field in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise InputError(f"{source}: unknown {name}key(s) {', '.join(unknown)} (known: {', '.join(known)})")
