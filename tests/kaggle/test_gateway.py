"""The local stand-ins for Kaggle's APIs (numina_kit.kaggle.gateway): what `predict` receives, from which thread, in what
order, which replies are refused, and the submission files written (the contracts of `kaggle_evaluation` 0.3.0 and
0.9.0 and of AIMO-1's `aimo` loop)."""

import threading

import pandas as pd
import polars as pl
import pytest

from numina_kit.kaggle.gateway import GatewayError, LocalAimoEnv, LocalInferenceServer, run_gateway


def write_csv(path, rows, columns=("id", "problem")):
    pl.DataFrame({column: [row[i] for row in rows] for i, column in enumerate(columns)}).write_csv(path)
    return path


@pytest.fixture
def test_csv(tmp_path):
    return write_csv(tmp_path / "test.csv", [(f"p{i:02d}", f"What is {i}+0?") for i in range(12)])


def test_predict_gets_one_row_series_from_a_worker_thread(test_csv, tmp_path):
    calls = []

    def predict(id_, problem):
        calls.append((id_, problem, threading.current_thread()))
        return pl.DataFrame({"id": id_.item(0), "answer": int(problem.item(0).split()[2].split("+")[0])})

    path = run_gateway(predict, test_csv, out_dir=tmp_path, seed=0)
    assert len(calls) == 12
    for id_, problem, thread in calls:
        assert isinstance(id_, pl.Series) and isinstance(problem, pl.Series)
        assert (id_.name, problem.name, len(id_), len(problem)) == ("id", "problem", 1, 1)
        assert thread is not threading.main_thread()
    submission = pl.read_parquet(path)
    assert path.name == "submission.parquet"
    assert submission.schema == {"id": pl.String, "answer": pl.Int64}
    assert dict(submission.iter_rows()) == {f"p{i:02d}": i for i in range(12)}


def test_order_is_shuffled_and_differs_between_runs(test_csv, tmp_path):
    def order_of(seed):
        seen = []

        def predict(id_, problem):
            seen.append(id_.item(0))
            return pl.DataFrame({"id": id_.item(0), "answer": 0})

        run_gateway(predict, test_csv, out_dir=tmp_path, seed=seed)
        return seen

    ids = [f"p{i:02d}" for i in range(12)]
    orders = [order_of(seed) for seed in (None, None, 1)]
    assert all(sorted(order) == ids for order in orders)
    assert any(order != ids for order in orders)
    assert len({tuple(order) for order in orders}) > 1


def test_extra_csv_column_becomes_a_third_argument(tmp_path):
    csv = write_csv(tmp_path / "reference.csv", [("a", "1+1", 2)], columns=("id", "problem", "answer"))

    def predict(id_, problem):
        return pl.DataFrame({"id": id_.item(0), "answer": 2})

    with pytest.raises(GatewayError, match="SERVER_RAISED_EXCEPTION.*3 were given"):
        run_gateway(predict, csv, out_dir=tmp_path)


def test_pandas_reply_is_accepted(test_csv, tmp_path):
    def predict(id_, problem):
        return pd.DataFrame({"id": [id_.item(0)], "answer": [7]})

    submission = pl.read_parquet(run_gateway(predict, test_csv, out_dir=tmp_path))
    assert submission["answer"].to_list() == [7] * 12


def reply_raises(id_, problem):
    raise ValueError("model crashed")


def reply_none(id_, problem):
    return None


def reply_two_rows(id_, problem):
    return pl.DataFrame({"id": [id_.item(0)] * 2, "answer": [1, 2]})


def reply_wrong_id(id_, problem):
    return pl.DataFrame({"id": "zzz", "answer": 1})


def reply_no_id(id_, problem):
    return pl.DataFrame({"answer": 1})


def reply_scalar(id_, problem):
    return 5


def reply_changing_columns(id_, problem):
    if id_.item(0) == "p03":
        return pl.DataFrame({"id": id_.item(0), "answer": 1, "extra": 2})
    return pl.DataFrame({"id": id_.item(0), "answer": 1})


@pytest.mark.parametrize(
    ("predict", "kind", "message"),
    [
        (reply_raises, "SERVER_RAISED_EXCEPTION", "model crashed"),
        (reply_none, "INVALID_SUBMISSION", "returned None"),
        (reply_two_rows, "INVALID_SUBMISSION", "expected 1 row, got 2"),
        (reply_wrong_id, "INVALID_SUBMISSION", "zzz"),
        (reply_no_id, "INVALID_SUBMISSION", "missing column id"),
        (reply_scalar, "INVALID_SUBMISSION", "not a DataFrame"),
        (reply_changing_columns, "INVALID_SUBMISSION", "do not stack"),
    ],
)
def test_a_bad_reply_fails_the_whole_run(test_csv, tmp_path, predict, kind, message):
    with pytest.raises(GatewayError, match=message) as caught:
        run_gateway(predict, test_csv, out_dir=tmp_path)
    assert caught.value.kind == kind
    assert not (tmp_path / "submission.parquet").exists()


def test_late_reply_times_out_after_the_first_call(test_csv, tmp_path):
    import time

    def predict(id_, problem):
        time.sleep(0.3)
        return pl.DataFrame({"id": id_.item(0), "answer": 0})

    with pytest.raises(GatewayError, match="TIMEOUT"):
        run_gateway(predict, test_csv, out_dir=tmp_path, response_timeout_s=0.05)


def test_server_wants_a_named_predict_and_cannot_serve_a_rerun(test_csv, tmp_path):
    with pytest.raises(ValueError, match="named functions"):
        LocalInferenceServer(lambda id_, problem: None)

    def solve(id_, problem):
        return pl.DataFrame({"id": id_.item(0), "answer": 0})

    with pytest.raises(ValueError, match="no endpoint named 'predict'"):
        LocalInferenceServer(solve)

    def predict(id_, problem):
        return solve(id_, problem)

    server = LocalInferenceServer(predict)
    with pytest.raises(RuntimeError, match="cannot serve"):
        server.serve()
    assert server.run_local_gateway((str(test_csv),), out_dir=tmp_path).is_file()


def test_aimo1_env_yields_pandas_rows_and_insists_on_predict(test_csv, tmp_path):
    env = LocalAimoEnv(test_csv, out_dir=tmp_path, seed=0)
    seen = []
    for test, sample in env.iter_test():
        assert isinstance(test, pd.DataFrame) and list(test.columns) == ["id", "problem"] and len(test) == 1
        assert list(sample.columns) == ["id", "answer"] and sample["id"].iloc[0] == test["id"].iloc[0]
        seen.append(test["id"].iloc[0])
        sample["answer"] = len(seen)
        env.predict(sample)
    assert sorted(seen) == [f"p{i:02d}" for i in range(12)] and seen != sorted(seen)
    submission = pd.read_csv(tmp_path / "submission.csv", dtype={"id": str})
    assert submission["id"].tolist() == seen and submission["answer"].tolist() == list(range(1, 13))

    skipping = LocalAimoEnv(test_csv, out_dir=tmp_path)
    steps = skipping.iter_test()
    next(steps)
    with pytest.raises(RuntimeError, match="must call `predict"):
        next(steps)
