"""Shared pytest setup: the `--runslow` switch and the location of ../shared/data.

Fast tests run by default (`pytest`); end-to-end tests are marked `slow` and run with `pytest --runslow` (`make test`).
"""

import os
from pathlib import Path

import pytest


REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("NUMINA_SHARED_DATA", REPO.parent / "shared" / "data"))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--runslow", action="store_true", default=False, help="also run tests marked slow")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--runslow"):
        return
    skip_slow = pytest.mark.skip(reason="slow end-to-end test: run with --runslow (make test)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip_slow)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The evaluation sets and traces in ../shared/data; tests that need them skip in a user's clone."""
    if not (SHARED_DATA / "tir_traces_sample.jsonl").exists():
        pytest.skip(f"{SHARED_DATA} not found: the shared evaluation data ships with CI, not with a clone")
    return SHARED_DATA


@pytest.fixture(scope="module")
def one_torch_thread():
    """Run a module's tiny models on one torch thread (about 30x faster than two threads on two busy cores)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
