"""Local stand-ins for Kaggle's competition APIs, for running the submission notebook away from Kaggle.

Kaggle's own code (`kaggle_evaluation` for AIMO-2/3, `aimo` for AIMO-1) ships only inside each competition's data
folder and is never copied here. These stand-ins follow the contracts of `kaggle_evaluation` 0.3.0 (AIMO-2) and
0.9.0 (AIMO-3) and of AIMO-1's `aimo` module, so that a `predict` that passes here also passes under the real gateway:

- `LocalInferenceServer` (AIMO-2/3): `polars.read_csv` of an `id,problem` file, rows in a shuffled order,
  `predict(*row)` with one one-row `polars.Series` per CSV column, called one at a time from a worker thread (never
  the main thread), each reply checked to be a one-row frame with the `id` sent back, any exception fatal, and
  `submission.parquet` written at the end.
- `LocalAimoEnv` (AIMO-1): `iter_test()` yields one-row pandas frames `test` (`id`, `problem`) and
  `sample_submission` (`id`, `answer`); `predict(sample_submission)` must be called once per item before the next
  one; `submission.csv` is written at the end.
"""

import logging
import os
import random
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path


logger = logging.getLogger(__name__)


class GatewayError(RuntimeError):
    """The local gateway refused a run, as Kaggle's would: `kind` is the gateway's error type, e.g.
    `SERVER_RAISED_EXCEPTION` or `INVALID_SUBMISSION`."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind


class LocalInferenceServer:
    """The AIMO-2/3 inference server's local half: `run_local_gateway((csv_path,))` plays Kaggle's gateway.

    Mirrors the constructor and the two methods a notebook calls on `AIMO{2,3}InferenceServer`. The endpoint must
    be a named function called `predict`: the real server registers endpoints by `__name__`.
    """

    def __init__(self, *endpoints: Callable, response_timeout_s: float | None = None, seed: int | None = None) -> None:
        names = [getattr(endpoint, "__name__", "") for endpoint in endpoints]
        if "<lambda>" in names or not all(names):
            raise ValueError("endpoints must be named functions (the gateway calls them by __name__)")
        self.endpoints = dict(zip(names, endpoints, strict=True))
        if "predict" not in self.endpoints:
            raise ValueError(f"no endpoint named 'predict' among {names}")
        self.response_timeout_s = response_timeout_s
        self.seed = seed

    def serve(self) -> None:
        """The real server starts gRPC here; the stand-in has no network side, so a rerun cannot use it."""
        raise RuntimeError(
            "the local stand-in cannot serve Kaggle's hidden rerun: import kaggle_evaluation from the "
            "competition's data folder"
        )

    def run_local_gateway(self, data_paths: tuple[str, ...] | None = None, *, out_dir: str | Path = ".") -> Path:
        """Play the gateway over `data_paths[0]` and write `submission.parquet` in `out_dir`; return its path."""
        if not data_paths:
            raise ValueError("run_local_gateway needs data_paths=(test_csv,) away from Kaggle")
        return run_gateway(
            self.endpoints["predict"],
            data_paths[0],
            out_dir=out_dir,
            response_timeout_s=self.response_timeout_s,
            seed=self.seed,
        )


def run_gateway(
    predict: Callable,
    csv_path: str | Path,
    *,
    out_dir: str | Path = ".",
    response_timeout_s: float | None = None,
    seed: int | None = None,
) -> Path:
    """Call `predict` once per CSV row as Kaggle's AIMO-2/3 gateway does, check each reply, write the submission.

    `seed=None` draws the shuffle seed from `os.urandom`, as the real gateway does. `response_timeout_s` limits
    every call after the first (the first may load a model). Raises `GatewayError` on the first bad reply or
    exception; nothing is written then.
    """
    import polars as pl

    table = pl.read_csv(csv_path)
    order = list(range(table.height))
    random.Random(int.from_bytes(os.urandom(8)) if seed is None else seed).shuffle(order)
    id_column = table.columns[0]
    replies = []
    # One worker thread, as the gRPC server's pool of one: calls are sequential and never on the main thread.
    worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gateway-worker")
    try:
        for call, index in enumerate(order):
            row = table.slice(index, 1)
            future = worker.submit(predict, *row.get_columns())
            try:
                reply = future.result(timeout=None if call == 0 else response_timeout_s)
            except FutureTimeout:
                raise GatewayError("TIMEOUT", f"predict took over {response_timeout_s} s on row {index}") from None
            except Exception as error:
                raise GatewayError("SERVER_RAISED_EXCEPTION", f"predict raised {error!r} on row {index}") from error
            replies.append(_check_reply(reply, row[id_column], id_column))
    finally:
        worker.shutdown(wait=False, cancel_futures=True)
    try:
        submission = pl.concat(replies, how="vertical_relaxed")
    except (pl.exceptions.SchemaError, pl.exceptions.ComputeError) as error:
        raise GatewayError("INVALID_SUBMISSION", f"replies do not stack into one table: {error}") from None
    path = Path(out_dir) / "submission.parquet"
    submission.write_parquet(path)
    logger.info("local gateway: %d replies written to %s", submission.height, path)
    return path


def _check_reply(reply, sent_ids, id_column: str):
    """Return the reply as a polars frame, or raise `GatewayError` the way the AIMO-2 gateway's checks do."""
    import pandas as pd
    import polars as pl

    if reply is None:
        raise GatewayError("INVALID_SUBMISSION", "predict returned None")
    if isinstance(reply, pd.DataFrame):
        reply = pl.from_pandas(reply)
    if not isinstance(reply, pl.DataFrame):
        raise GatewayError("INVALID_SUBMISSION", f"predict returned {type(reply).__name__}, not a DataFrame")
    if reply.height != len(sent_ids):
        raise GatewayError("INVALID_SUBMISSION", f"expected {len(sent_ids)} row, got {reply.height}")
    if id_column not in reply.columns:
        raise GatewayError("INVALID_SUBMISSION", f"Prediction missing column {id_column}")
    if reply[id_column].to_list() != sent_ids.to_list():
        raise GatewayError("INVALID_SUBMISSION", f"ids {reply[id_column].to_list()} != {sent_ids.to_list()}")
    if "answer" not in reply.columns:
        raise GatewayError("INVALID_SUBMISSION", "Prediction missing column answer")
    return reply


class LocalAimoEnv:
    """A local AIMO-1 `aimo` environment: `iter_test()` / `predict(sample_submission)` over a problem CSV.

    Problems come one at a time in a shuffled order and the iterator refuses to go on until `predict` was called
    for the current one, as the compiled `aimo` module did. `submission.csv` is written when the iterator ends.
    """

    def __init__(self, csv_path: str | Path, *, out_dir: str | Path = ".", seed: int | None = None) -> None:
        import pandas as pd

        self.table = pd.read_csv(csv_path, dtype={"id": str})[["id", "problem"]]
        self.out_dir = Path(out_dir)
        self.seed = seed
        self.answers: list = []
        self._pending: str | None = None
        self._started = False

    def iter_test(self) -> Iterator[tuple]:
        import pandas as pd

        if self._started:
            raise RuntimeError("iter_test() can only be called once per environment")
        self._started = True
        order = list(range(len(self.table)))
        random.Random(int.from_bytes(os.urandom(8)) if self.seed is None else self.seed).shuffle(order)
        for index in order:
            test = self.table.iloc[[index]].reset_index(drop=True)
            self._pending = test["id"].iloc[0]
            yield test, pd.DataFrame({"id": [self._pending], "answer": [0]})
            if self._pending is not None:
                raise RuntimeError("You must call `predict()` successfully before you can continue with `iter_test()`")
        path = self.out_dir / "submission.csv"
        pd.DataFrame(self.answers, columns=["id", "answer"]).to_csv(path, index=False)
        logger.info("local aimo env: %d answers written to %s", len(self.answers), path)

    def predict(self, sample_submission) -> None:
        if self._pending is None:
            raise RuntimeError("predict() called with no problem pending: call it once per item of iter_test()")
        if len(sample_submission) != 1 or list(sample_submission["id"]) != [self._pending]:
            raise RuntimeError(f"predict() expects one row with id {self._pending!r}")
        self.answers.append((self._pending, int(sample_submission["answer"].iloc[0])))
        self._pending = None
