"""numina_kit.data.problems.load_problems: JSONL/CSV/Parquet problem files, reference answers kept verbatim, one-line errors.

Run: pytest tests/test_data_loading.py
"""

import pytest

from numina_kit.data.jsonl import write_jsonl
from numina_kit.data.problems import Problem, load_problems
from numina_kit.errors import InputError


def test_jsonl_keeps_answer_strings(tmp_path):
    path = write_jsonl(
        [{"id": "a", "problem": "P1", "answer": "142.0"}, {"id": 7, "problem": "P2"}], tmp_path / "p.jsonl"
    )
    assert load_problems(path) == [Problem("a", "P1", "142.0"), Problem("7", "P2", None)]


def test_csv_and_row_number_ids(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text('problem,answer\n"What is $1,000+1$?",1001\nSecond,\n')
    assert load_problems(path) == [Problem("0", "What is $1,000+1$?", "1001"), Problem("1", "Second", None)]


def test_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "p.parquet"
    pq.write_table(pa.table({"id": ["x", "y"], "problem": ["A", "B"], "answer": [3, None]}), path)
    assert load_problems(path) == [Problem("x", "A", "3"), Problem("y", "B", None)]


def test_limit(tmp_path):
    path = write_jsonl([{"problem": f"P{i}"} for i in range(5)], tmp_path / "p.jsonl")
    assert [p.id for p in load_problems(path, limit=2)] == ["0", "1"]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.jsonl", None, "not found"),
        ("bad.jsonl", '{"problem": "ok"}\n{not json\n', "line 2 is not valid JSON"),
        ("empty.jsonl", "\n", "no problems"),
        ("noproblem.jsonl", '{"id": 1, "question": "x"}\n', "row 1 has no 'problem'"),
        ("blank.jsonl", '{"id": 1, "problem": "   "}\n', "row 1 has no 'problem'"),
        ("dup.jsonl", '{"id": 1, "problem": "a"}\n{"id": 1, "problem": "b"}\n', "duplicate id '1'"),
        ("list.jsonl", "[1, 2]\n", "not an object"),
        ("cols.csv", "id,question\n1,x\n", "needs a 'problem' column"),
        ("p.txt", "hello", "unsupported problem file type"),
    ],
)
def test_malformed_files_raise_one_line_errors(tmp_path, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    with pytest.raises(InputError, match=message) as error:
        load_problems(path)
    assert "\n" not in str(error.value)


def test_reads_shared_sets_as_they_are(shared_data):
    amc = load_problems(shared_data / "amc_2022.jsonl")
    assert len(amc) == 43 and amc[0].answer == "142.0"
    assert len(load_problems(shared_data / "math500.jsonl")) == 500
