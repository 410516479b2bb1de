"""Tests for numina_kit.sandbox.pool: TIR semantics (fresh globals, auto-print, compact tracebacks, output cap, timeouts),
stateful interpreters, the default sandbox, and that a block's working directory is private and deleted. What the
isolation contains is tested in test_isolation.py."""

import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import psutil
import pytest

from numina_kit.errors import InputError
from numina_kit.sandbox.pool import ExecResult, ExecutorConfig, Sandbox, run_code, run_codes
from numina_kit.sandbox.protocol import STATE_LOST
from tests.sandbox.containment import (
    GRACE,
    TIMEOUT,
    leftover_files,
    make_sandbox,
    refreshed,
    settle,
    stray_processes,
)


REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def sandbox():
    with make_sandbox() as box:
        assert box.isolation  # start the workers now, not inside the first timed test
        yield box


@pytest.fixture(scope="module")
def stateful():
    with Sandbox(ExecutorConfig(timeout=TIMEOUT, num_workers=2, stateful=True)) as box:
        yield box


# ---- TIR semantics --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "code,output",
    [
        ("1 + 1", "2"),
        ("x = 3\nx * 2", "6"),
        ("x = 1 / 0" + "\n" * 0, None),  # an assignment is never wrapped in print (Numina's bug)
        ("print('a')\n'b'", "a"),  # something was printed: the final value is not
        ("def f(x):\n    return x + 1\nf(\n    41\n)", "42"),  # multi-line final expression
        ("for i in range(3):\n    i", ""),  # indented last line is not a bare top-level expression
        ("x = 5", ""),
        ("None", ""),
        ("sp.Rational(1, 3) + sp.Rational(1, 6)", "1/2"),
        ("np.array([1, 2, 3]).sum()", "6"),
        ("math.factorial(5)", "120"),
    ],
)
def test_auto_print_uses_the_ast(sandbox, code, output):
    result = sandbox.run(code)
    if output is None:
        assert result.status == "error" and result.output.endswith("ZeroDivisionError: division by zero")
    else:
        assert (result.status, result.output) == ("ok", output)


def test_auto_print_can_be_turned_off():
    with Sandbox(ExecutorConfig(auto_print=False, num_workers=1, warmup=False)) as box:
        assert box.run("1 + 1").output == ""
        assert box.run("print(3)").output == "3"


@pytest.mark.parametrize("module", ["statistics", "colorsys", "fractions"])
def test_blocks_import_modules_the_worker_never_loaded(sandbox, module):
    """Python may live under a root-only directory (pyenv in /root): the block's own uid must still import from it."""
    result = sandbox.run(f"import {module}\nprint({module}.__name__)")
    assert (result.status, result.output) == ("ok", module), result.output


def test_scipy_is_importable_but_not_preloaded(sandbox):
    """Kaggle's image has scipy and models use it; the worker does not import it, so it costs only the blocks that do."""
    assert sandbox.run("import sys\n'scipy' in sys.modules").output == "False"
    result = sandbox.run("from scipy import optimize\nround(optimize.brentq(lambda x: x**2 - 2, 0, 2), 6)", timeout=30)
    assert (result.status, result.output) == ("ok", "1.414214")


def test_each_block_runs_in_fresh_globals(sandbox):
    assert sandbox.run("leak = 1\nimport fractions").status == "ok"
    result = sandbox.run("print(leak)")
    assert result.status == "error" and result.output.endswith("NameError: name 'leak' is not defined")
    assert sandbox.run("sp.x = 1\nnp.pi = 3").status == "ok"
    assert sandbox.run("print(hasattr(sp, 'x'), np.pi > 3.1)").output == "False True"


def test_error_shows_the_failing_model_line_and_no_host_path(sandbox):
    code = "import sympy\nx = sp.symbols('x')\ny = 2\nsp.solve(x**2 - 1, x, bogus_flag_value=object())[5]"
    result = sandbox.run(code)
    assert result.status == "error"
    lines = result.output.splitlines()
    assert lines[0] == "Traceback (most recent call last):"
    assert lines[1] == '  File "<code>", line 4, in <module>'
    assert lines[2].strip().startswith("sp.solve(x**2 - 1")
    assert lines[-1].startswith(("IndexError", "TypeError", "ValueError"))
    assert "/" not in "\n".join(lines[:2]) and ".py" not in result.output and len(lines) == 4


def test_error_keeps_stdout_printed_before_it(sandbox):
    result = sandbox.run("print('partial')\ndef f():\n    return {}['k']\nf()")
    assert result.output.splitlines()[0] == "partial"
    assert '  File "<code>", line 3, in f' in result.output
    assert result.output.endswith("KeyError: 'k'")


def test_syntax_error_is_compact(sandbox):
    result = sandbox.run("x = (1 +\nprint(x)")
    assert result.status == "error"
    assert result.output.splitlines()[-1].startswith("SyntaxError")
    assert '"<code>"' in result.output and "/" not in result.output


def test_output_is_capped_with_a_visible_marker():
    with Sandbox(ExecutorConfig(max_output_chars=100, num_workers=1, warmup=False)) as box:
        result = box.run("for i in range(1000):\n    print(i)")
        assert result.status == "ok"
        assert result.output.startswith("0\n1\n2\n") and result.output.endswith("998\n999")
        assert "characters of output truncated" in result.output
        assert len(result.output) < 100 + 80
        assert box.run("print('x' * 100)").output == "x" * 100


def test_timeout_is_reported_in_one_line(sandbox):
    result = sandbox.run("import time\ntime.sleep(10)", timeout=0.5)
    assert result == ExecResult("timeout", "Timed out after 0.5 seconds.", result.duration_s)
    assert 0.5 <= result.duration_s < 0.5 + GRACE


def test_run_many_is_parallel_and_in_input_order(sandbox):
    codes = [f"import time\ntime.sleep(0.3)\nprint({i} * {i})" for i in range(4)]
    started = time.monotonic()
    results = sandbox.run_many(codes)
    elapsed = time.monotonic() - started
    assert [r.output for r in results] == ["0", "1", "4", "9"]
    assert elapsed < 4 * 0.3  # two workers: about 0.6 s, never the serial 1.2 s
    assert sandbox.run_many([]) == []


def test_run_many_rejects_mismatched_keys(sandbox):
    with pytest.raises(InputError):
        sandbox.run_many(["1", "2"], keys=["a"])


@pytest.mark.parametrize(
    "field,value",
    [
        ("timeout", 0),
        ("timeout", -1.0),
        ("max_output_chars", 0),
        ("memory_mb", "big"),
        ("num_workers", 0),
        ("spare_children", 0),
        ("sympy_cache_size", -1),
        ("sympy_cache_size", "big"),
    ],
)
def test_config_rejects_bad_values(field, value):
    with pytest.raises(InputError):
        ExecutorConfig(**{field: value})


def test_bad_preamble_is_an_input_error():
    with (
        Sandbox(ExecutorConfig(preamble="import not_a_module_numina", num_workers=1)) as box,
        pytest.raises(InputError),
    ):
        box.run("1")


def test_custom_preamble_seeds_globals():
    with Sandbox(ExecutorConfig(preamble="from fractions import Fraction\nK = 7", num_workers=1)) as box:
        assert box.run("Fraction(1, 2) + K").output == "15/2"
        assert box.run("sp").output.endswith("NameError: name 'sp' is not defined")


CACHE_SIZE = "from sympy.core.cache import SYMPY_CACHE_SIZE\nSYMPY_CACHE_SIZE"


def test_one_off_blocks_get_a_large_sympy_cache(sandbox):
    assert sandbox.run(CACHE_SIZE).output == "100000"


def test_stateful_interpreters_keep_sympys_default_cache(stateful):
    assert stateful.run(CACHE_SIZE, key="cache").output == "1000"


def test_sympy_cache_size_can_be_set():
    with Sandbox(ExecutorConfig(num_workers=1, sympy_cache_size=5000)) as box:
        assert box.run(CACHE_SIZE).output == "5000"


# ---- stateful mode --------------------------------------------------------------------------------------------------


def test_stateful_keeps_state_per_key(stateful):
    assert stateful.run("a = 10", key="c1").status == "ok"
    assert stateful.run("a = 20", key="c2").status == "ok"
    results = stateful.run_many(["a + 1", "a + 2", "a"], keys=["c1", "c2", "c3"])
    assert [r.output for r in results[:2]] == ["11", "22"]
    assert results[2].output.endswith("NameError: name 'a' is not defined")


def test_stateful_timeout_restarts_and_says_state_was_lost(stateful):
    assert stateful.run("b = 5", key="t").status == "ok"
    result = stateful.run("while True:\n    pass", key="t")
    assert result.status == "timeout"
    assert result.output == f"Timed out after {TIMEOUT:g} seconds.\n{STATE_LOST}"
    assert stateful.run("b", key="t").output.endswith("NameError: name 'b' is not defined")


def test_forget_drops_the_interpreter(stateful):
    stateful.run("z = 1", key="f")
    stateful.forget("f")
    assert stateful.run("z", key="f").output.endswith("NameError: name 'z' is not defined")
    stateful.forget("never-used")


def test_keys_are_ignored_when_not_stateful(sandbox):
    sandbox.run("q = 1", key="k")
    assert sandbox.run("q", key="k").status == "error"


# ---- the default sandbox --------------------------------------------------------------------------------------------


def test_run_code_and_run_codes_work_from_a_worker_thread():
    box: dict = {}

    def call() -> None:
        box["one"] = run_code("print(6 * 7)", timeout=2.0)
        box["many"] = run_codes(["1", "x = 1/0", "import time\ntime.sleep(5)"], timeout=0.5)

    thread = threading.Thread(target=call)
    thread.start()
    thread.join(30)
    assert not thread.is_alive()
    assert box["one"].output == "42"
    assert [r.status for r in box["many"]] == ["ok", "error", "timeout"]


def test_default_sandbox_is_cleaned_up_at_exit(tmp_path):
    script = textwrap.dedent(
        """
        import os, tempfile
        from numina_kit.sandbox.pool import run_code, default_sandbox
        print(run_code("print(1)").output)
        box = default_sandbox()
        print(box._root)
        print(" ".join(str(w.proc.pid) for w in box._workers if w.proc is not None))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert done.returncode == 0, done.stderr
    output, root, pids = done.stdout.splitlines()
    assert output == "1"
    assert not Path(root).exists()
    assert all(
        not psutil.pid_exists(int(pid)) or psutil.Process(int(pid)).status() == "zombie" for pid in pids.split()
    )


def test_working_directory_is_private_and_deleted(sandbox):
    first = sandbox.run("import os\nopen('note.txt', 'w').write('hi')\nprint(os.getcwd())").output
    second = sandbox.run("import os\nprint(os.getcwd(), os.listdir('.'))").output
    assert first != second.split()[0]
    assert second.endswith("[]")
    assert settle(lambda: stray_processes(sandbox)) == []
    assert settle(lambda: leftover_files(sandbox)) == []


def test_idle_worker_forks_spares_ahead_and_each_block_gets_its_own():
    """While idle a worker forks `spare_children` isolated children; blocks take them, one block each,
    and nothing of the used ones is left behind."""
    with make_sandbox(num_workers=1, spare_children=3) as box:
        box.run("1")
        spares = refreshed(box)[0].live
        assert len(spares) == 3
        pids = [int(box.run("import os\nprint(os.getpid())").output) for _ in range(3)]
        assert sorted(pids) == spares
        assert box.run("import os\nprint(os.getpid())").output not in {str(pid) for pid in pids}
        assert settle(lambda: stray_processes(box)) == []
        assert settle(lambda: leftover_files(box)) == []
