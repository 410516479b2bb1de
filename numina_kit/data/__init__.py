"""Data: problem files, NuminaMath schemas, and training data made with a teacher model.

TIR solutions for known problems (`synthesis`, NuminaMath-TIR's recipe) and JiuZhang3.0's problem writing from
corpus texts (`corpus`, `stages`, `verification`, `jiuzhang`, `near_duplicates`, `influence`); `jsonl` and `ledger`
are the files both write, resumably.
"""

from numina_kit.data.jsonl import read_jsonl, write_jsonl
from numina_kit.data.problems import Problem, load_problems


__all__ = ["Problem", "load_problems", "read_jsonl", "write_jsonl"]
