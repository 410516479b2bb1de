"""Fidelity on real model code: every code block of ../shared/data/tir_traces_sample.jsonl, rerun through the executor.

The traces are ToRA generations whose ```output blocks hold what the original executor printed. A block reproduces
when our output equals the recorded one; error outputs compare only on their last line (ToRA showed only the final
exception line). docs/benchmarks.md explains each block that does not reproduce.
"""

import pytest

from numina_kit.sandbox.pool import run_codes
from numina_kit.testing import load_trace_blocks, reproduces


MIN_REPRODUCED = 2114


def replay(path) -> tuple[list[tuple[str, int, str, str]], list]:
    blocks = load_trace_blocks(path)
    results = []
    for start in range(0, len(blocks), 256):
        results += run_codes([code for _, _, code, _ in blocks[start : start + 256]], timeout=5.0)
    return blocks, results


def test_replay_reproduces_recorded_outputs(shared_data):
    blocks, results = replay(shared_data / "tir_traces_sample.jsonl")
    assert len(blocks) == 2124
    misses = [
        (trace, index, recorded, result.status, result.output)
        for (trace, index, _, recorded), result in zip(blocks, results, strict=True)
        if not reproduces(recorded, result.status, result.output)
    ]
    reproduced = len(blocks) - len(misses)
    assert reproduced >= MIN_REPRODUCED, f"{reproduced} of {len(blocks)} reproduce; misses: {misses[:20]}"


@pytest.mark.parametrize(
    "recorded,status,output,expected",
    [
        ("42", "ok", "42", True),
        ("42", "ok", "43", False),
        ("NameError: name 'x' is not defined", "error", "Traceback ...\nNameError: name 'x' is not defined", True),
        ("NameError: name 'x' is not defined", "error", "Traceback ...\nNameError: name 'y' is not defined", False),
    ],
)
def test_reproduces_compares_errors_on_last_line(recorded, status, output, expected):
    assert reproduces(recorded, status, output) is expected
