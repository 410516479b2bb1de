"""The command line dispatcher (`python -m numina_kit`): usage, unknown commands, one-line errors.

Run: pytest tests/test_cli.py
"""

import subprocess
import sys

from numina_kit.__main__ import COMMANDS


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "numina_kit", *args], capture_output=True, text=True, timeout=120)


def test_no_command_prints_usage_and_fails():
    result = run_cli()
    assert result.returncode == 2
    for name in COMMANDS:
        assert name in result.stderr


def test_help_succeeds():
    assert run_cli("--help").returncode == 0


def test_missing_problem_file_is_one_line_error(tmp_path):
    result = run_cli("evaluate", "--model", str(tmp_path), "--data", str(tmp_path / "missing.jsonl"))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
