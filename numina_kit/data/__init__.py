"""Data: problem files, NuminaMath schemas, and tool-integrated training data made with a teacher model."""

from numina_kit.data.jsonl import read_jsonl, write_jsonl
from numina_kit.data.problems import Problem, load_problems


__all__ = ["Problem", "load_problems", "read_jsonl", "write_jsonl"]
