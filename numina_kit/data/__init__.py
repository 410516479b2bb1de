"""Data: problem files, NuminaMath schemas, and tool-integrated training data made with a teacher model."""

from numina_kit.data.problems import Problem, load_problems, write_jsonl


__all__ = ["Problem", "load_problems", "write_jsonl"]
